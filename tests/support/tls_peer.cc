#include "support/tls_peer.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <functional>
#include <stdexcept>
#include <utility>

namespace percore::testing {
namespace {

std::string OpensslError() {
  const unsigned long error = ERR_get_error();
  ERR_clear_error();
  if (error == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(error, text, sizeof(text));
  return text;
}

void WritePem(const std::string& path, const std::function<int(FILE*)>& write) {
  FILE* file = std::fopen(path.c_str(), "w");
  const bool ok = file != nullptr && write(file) == 1;
  if (file != nullptr) std::fclose(file);
  if (!ok) throw std::runtime_error("cannot write " + path);
}

}  // namespace

TlsCertificate MakeCertificate(const std::string& dir, const std::string& stem,
                               const std::vector<std::string>& names, KeyType type, int days,
                               const std::string& crl_uri) {
  EVP_PKEY* key = type == KeyType::kEcdsaP256
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  X509* cert = X509_new();
  if (key == nullptr || cert == nullptr || names.empty()) {
    throw std::runtime_error("MakeCertificate: " + OpensslError());
  }
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(std::hash<std::string>()(stem)));
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(days) * 24 * 3600);
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(names[0].c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, subject);
  X509_set_pubkey(cert, key);
  std::string alt;
  for (const std::string& name : names) alt += (alt.empty() ? "DNS:" : ",DNS:") + name;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> extensions = {{NID_subject_alt_name, alt}};
  if (!crl_uri.empty()) extensions.emplace_back(NID_crl_distribution_points, "URI:" + crl_uri);
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    const bool added = ext != nullptr && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    if (!added) throw std::runtime_error("MakeCertificate: " + OpensslError());
  }
  if (X509_sign(cert, key, EVP_sha256()) == 0) {
    throw std::runtime_error("MakeCertificate: " + OpensslError());
  }
  TlsCertificate files{dir + "/" + stem + ".pem", dir + "/" + stem + ".key"};
  WritePem(files.cert_file, [&](FILE* f) { return PEM_write_X509(f, cert); });
  WritePem(files.key_file, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

TlsPeer::TlsPeer(const TlsPeerOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (options.min_version != 0) SSL_CTX_set_min_proto_version(ctx, options.min_version);
  if (options.max_version != 0) SSL_CTX_set_max_proto_version(ctx, options.max_version);
  if (!options.ciphers.empty()) SSL_CTX_set_cipher_list(ctx, options.ciphers.c_str());
  if (!options.ciphersuites.empty()) SSL_CTX_set_ciphersuites(ctx, options.ciphersuites.c_str());
  if (!options.sigalgs.empty()) SSL_CTX_set1_sigalgs_list(ctx, options.sigalgs.c_str());
  ssl_ = SSL_new(ctx);
  SSL_CTX_free(ctx);  // the SSL keeps its own reference
  SSL_set_bio(ssl_, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
  SSL_set_connect_state(ssl_);
  if (!options.server_name.empty()) SSL_set_tlsext_host_name(ssl_, options.server_name.c_str());
  if (!options.alpn.empty()) {
    std::string wire;
    for (const std::string& p : options.alpn) wire += static_cast<char>(p.size()) + p;
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  if (options.session != nullptr) SSL_set_session(ssl_, options.session);
  Pump();  // the ClientHello
}

TlsPeer::~TlsPeer() { SSL_free(ssl_); }

std::string TlsPeer::TakeOutput() {
  BIO* out = SSL_get_wbio(ssl_);
  std::string bytes(static_cast<size_t>(BIO_pending(out)), '\0');
  if (!bytes.empty()) BIO_read(out, bytes.data(), static_cast<int>(bytes.size()));
  return bytes;
}

void TlsPeer::Receive(std::string_view records) {
  if (!records.empty())
    BIO_write(SSL_get_rbio(ssl_), records.data(), static_cast<int>(records.size()));
  Pump();
}

void TlsPeer::Pump() {
  if (failed() || peer_closed_) return;
  if (!SSL_is_init_finished(ssl_)) {
    const int done = SSL_do_handshake(ssl_);
    if (done != 1) {
      const int error = SSL_get_error(ssl_, done);
      if (error != SSL_ERROR_WANT_READ) error_ = OpensslError();
      return;
    }
  }
  Flush();
  char buffer[16384];
  for (;;) {
    size_t got = 0;
    if (SSL_read_ex(ssl_, buffer, sizeof(buffer), &got) == 1) {
      plain_.append(buffer, got);
      continue;
    }
    const int error = SSL_get_error(ssl_, 0);
    if (error == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
    } else if (error != SSL_ERROR_WANT_READ) {
      error_ = OpensslError();
    }
    return;
  }
}

void TlsPeer::Write(std::string_view plain) {
  unsent_.append(plain);
  Flush();
}

void TlsPeer::Flush() {
  // Before the handshake is done SSL_write would only start it: the bytes wait here.
  if (unsent_.empty() || !established() || failed()) return;
  size_t written = 0;
  if (SSL_write_ex(ssl_, unsent_.data(), unsent_.size(), &written) != 1) {
    error_ = "write: " + OpensslError();
  }
  unsent_.clear();
}

void TlsPeer::Close() { SSL_shutdown(ssl_); }

void TlsPeer::RequestKeyUpdate() {
  if (SSL_key_update(ssl_, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_do_handshake(ssl_) != 1) {
    error_ = "key update: " + OpensslError();
  }
}

std::string TlsPeer::TakePlaintext() {
  std::string plain;
  plain.swap(plain_);
  return plain;
}

bool TlsPeer::established() const { return SSL_is_init_finished(ssl_) == 1; }

std::string TlsPeer::version() const { return SSL_get_version(ssl_); }

std::string TlsPeer::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl_, &data, &length);
  return data == nullptr ? "" : std::string(reinterpret_cast<const char*>(data), length);
}

std::string TlsPeer::peer_common_name() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr) return "";
  char cn[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  X509_free(cert);
  return cn;
}

std::string TlsPeer::peer_key_type() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr) return "";
  const EVP_PKEY* key = X509_get0_pubkey(cert);
  std::string type = EVP_PKEY_is_a(key, "EC") ? "EC" : EVP_PKEY_is_a(key, "RSA") ? "RSA" : "?";
  X509_free(cert);
  return type;
}

bool TlsPeer::resumed() const { return SSL_session_reused(ssl_) == 1; }

SSL_SESSION* TlsPeer::TakeSession() const {
  SSL_SESSION* session = SSL_get1_session(ssl_);
  if (session != nullptr && SSL_SESSION_is_resumable(session) != 1) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

bool Exchange(LoopHarness& harness, Connection* c, TlsPeer& peer, bool bytewise) {
  for (int round = 0; round < 20; ++round) {
    const std::string out = peer.TakeOutput();
    if (!out.empty()) bytewise ? harness.FeedBytewise(c, out) : harness.Feed(c, out);
    harness.RunUntil([] { return true; }, absl::ZeroDuration());
    const std::string back = harness.TakeOutput(c);
    if (!back.empty()) peer.Receive(back);
    if (out.empty() && back.empty()) return true;
  }
  return false;
}

}  // namespace percore::testing
