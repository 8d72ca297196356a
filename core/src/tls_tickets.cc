#include "tls_tickets.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <cstring>

#include "tls_context.h"

namespace percore {
namespace {

// OpenSSL's ticket callback: `encrypt` 1 to issue a ticket (fill in the key's name and a fresh
// IV), 0 to open one. Returns 1 to go on, 2 to accept a ticket and issue a new one, 0 for an
// unknown key (a full handshake follows), -1 on an error.
int OnTicketKey(SSL* ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  TicketKeys* keys =
      static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)))->keys();
  TicketKeys::Key key;
  bool current = true;
  if (encrypt == 1) {
    key = keys->Current(absl::Now());
    if (!key.valid) return 0;  // no ticket
    std::memcpy(name, key.name, sizeof(key.name));
    if (RAND_bytes(iv, 16) != 1) return -1;
  } else if (!keys->Find(name, &key, &current)) {
    return 0;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof(key.hmac)),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  // Fetched once: OpenSSL 3 looks a cipher named by EVP_aes_256_cbc() up in its providers on
  // every init (locks and string compares), twice a resumption (the ticket opened, its renewal).
  static EVP_CIPHER* const aes = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  const EVP_CIPHER* chosen = aes != nullptr ? aes : EVP_aes_256_cbc();
  const int ready = encrypt == 1 ? EVP_EncryptInit_ex(cipher, chosen, nullptr, key.aes, iv)
                                 : EVP_DecryptInit_ex(cipher, chosen, nullptr, key.aes, iv);
  if (ready != 1) return -1;
  // 2 renews: a new ticket goes out after this resumption. TLS 1.3 clients use a ticket once
  // (RFC 8446 C.4; OpenSSL's client will not offer it again), and OpenSSL's server issues
  // none after a resumption unless asked, so without renewing only every other connection
  // would resume. In TLS 1.2 a ticket stays valid: renewed only once its key is the old one.
  return current && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
}

}  // namespace

TicketKeys::TicketKeys(absl::Duration rotation)
    : rotation_(rotation), current_(NewKey()), made_(absl::Now()) {}

TicketKeys::Key TicketKeys::NewKey() {
  Key key;
  // RAND_bytes fails only when the kernel gives OpenSSL no randomness: then no ticket is issued
  // rather than one sealed with a key anyone could guess.
  key.valid = RAND_bytes(key.name, sizeof(key.name)) == 1 &&
              RAND_bytes(key.aes, sizeof(key.aes)) == 1 &&
              RAND_bytes(key.hmac, sizeof(key.hmac)) == 1;
  return key;
}

void TicketKeys::Use(SSL_CTX* ctx) { SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, OnTicketKey); }

TicketKeys::Key TicketKeys::Current(absl::Time now) {
  std::lock_guard lock(mu_);
  if (now - made_ >= rotation_) {
    previous_ = current_;
    current_ = NewKey();
    made_ = now;
  }
  return current_;
}

bool TicketKeys::Find(const uint8_t name[16], Key* key, bool* current) {
  std::lock_guard lock(mu_);
  if (current_.valid && std::memcmp(name, current_.name, sizeof(current_.name)) == 0) {
    *key = current_;
    *current = true;
    return true;
  }
  if (previous_.valid && std::memcmp(name, previous_.name, sizeof(previous_.name)) == 0) {
    *key = previous_;
    *current = false;
    return true;
  }
  return false;
}

}  // namespace percore
