#include "tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tls_tickets.h"

namespace percore {
namespace {

// The DNS names a certificate is for: its subjectAltName entries, or its subject's CN when it
// has none (as X509_check_host() falls back), lowercased and sorted.
std::vector<std::string> NamesOf(X509* cert) {
  std::vector<std::string> names;
  auto* alt =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; alt != nullptr && i < sk_GENERAL_NAME_num(alt); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(alt, i);
    if (name->type != GEN_DNS) continue;
    const ASN1_STRING* dns = name->d.dNSName;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                       static_cast<size_t>(ASN1_STRING_length(dns)));
  }
  GENERAL_NAMES_free(alt);
  if (names.empty()) {
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    names.emplace_back(cn);
  }
  for (std::string& name : names) absl::AsciiStrToLower(&name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::string TakeOpensslError(std::string_view otherwise) {
  const unsigned long error = ERR_get_error();  // the first: the cause, not its consequences
  ERR_clear_error();
  if (error == 0) return std::string(otherwise);
  char text[256];
  ERR_error_string_n(error, text, sizeof(text));
  return text;
}

TlsContext::TlsContext(const TlsOptions& options, std::shared_ptr<TicketKeys> keys)
    : options_(options), keys_(std::move(keys)) {
  for (const std::string& protocol : options_.alpn) {
    alpn_.push_back(static_cast<char>(protocol.size()));
    alpn_ += protocol;
  }
}

TlsContext::~TlsContext() {
  for (Site& site : sites_) {
    SSL_CTX_free(site.ctx);
    X509_free(site.leaf);
  }
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Load(
    const TlsOptions& options, std::shared_ptr<TicketKeys> keys) {
  if (options.certificates.empty()) return absl::InvalidArgumentError("tls: no certificate");
  for (const std::string& protocol : options.alpn) {
    if (protocol.empty() || protocol.size() > 255) {
      return absl::InvalidArgumentError(absl::StrCat("tls: bad ALPN protocol \"", protocol, "\""));
    }
  }
  std::shared_ptr<TlsContext> context(new TlsContext(options, std::move(keys)));
  for (const TlsCertificate& certificate : options.certificates) {
    absl::Status added = context->Add(certificate);
    if (!added.ok()) return added;
  }
  return std::shared_ptr<const TlsContext>(std::move(context));
}

absl::StatusOr<SSL_CTX*> TlsContext::NewCtx() const {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(TakeOpensslError("tls: SSL_CTX_new failed"));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Renegotiation lets a client make the server redo the costly half of a handshake at will;
  // TLS 1.3 has none, and no browser needs it for 1.2.
  // The server's order of ciphers decides (ours lists the strongest AEAD first), as nginx's
  // `ssl_prefer_server_ciphers on` does: a client that prefers a weaker one does not get it.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE |
                               (keys_ == nullptr ? SSL_OP_NO_TICKET : 0) |
                               (options_.kernel_tls ? SSL_OP_ENABLE_KTLS : 0));
  // OpenSSL frees a connection's 16 KiB record buffers whenever they are empty: an idle
  // connection keeps none.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Several records per read of the transport, not a header and then a body.
  SSL_CTX_set_read_ahead(ctx, 1);
  // Resumption by tickets alone: a session cache would be one more lock between the loops.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // One TLS 1.3 ticket per full handshake, not OpenSSL's two (as Go's server): a client uses a
  // ticket once, and each resumption brings it a new one (tls_tickets.cc), so the second would
  // only serve a connection opened beside the first; each ticket is a session encoded, sealed
  // and MACed on the handshake's time.
  SSL_CTX_set_num_tickets(ctx, 1);
  static constexpr unsigned char kSessionContext[] = "percore";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  SSL_CTX_set_dh_auto(ctx, 1);
  if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1 ||
      SSL_CTX_set_cipher_list(ctx, options_.ciphers.c_str()) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        TakeOpensslError(absl::StrCat("tls: bad cipher list \"", options_.ciphers, "\"")));
  }
  SSL_CTX_set_app_data(ctx, const_cast<TlsContext*>(this));
  SSL_CTX_set_tlsext_servername_callback(ctx, &TlsContext::OnServerName);
  SSL_CTX_set_alpn_select_cb(ctx, &TlsContext::OnAlpn, const_cast<TlsContext*>(this));
  if (keys_ != nullptr) keys_->Use(ctx);
  return ctx;
}

absl::Status TlsContext::Add(const TlsCertificate& certificate) {
  // The certificate is read alone first, for its names, which decide its site.
  BIO* file = BIO_new_file(certificate.cert_file.c_str(), "r");
  X509* leaf = file == nullptr ? nullptr : PEM_read_bio_X509(file, nullptr, nullptr, nullptr);
  BIO_free(file);
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tls: cannot read the certificate ",
                                                   certificate.cert_file, ": ",
                                                   TakeOpensslError("no PEM certificate in it")));
  }
  std::vector<std::string> names = NamesOf(leaf);
  auto site =
      std::find_if(sites_.begin(), sites_.end(), [&](const Site& s) { return s.names == names; });
  if (site == sites_.end()) {
    absl::StatusOr<SSL_CTX*> ctx = NewCtx();
    if (!ctx.ok()) {
      X509_free(leaf);
      return ctx.status();
    }
    site = sites_.insert(sites_.end(), Site{std::move(names), *ctx, leaf});
  } else {
    X509_free(leaf);  // a second key type for the same names: the first certificate matches
  }
  // Into the site's context: the certificate and its chain, then the key, which OpenSSL files
  // under the certificate's key type, so an RSA and an ECDSA certificate sit side by side.
  if (SSL_CTX_use_certificate_chain_file(site->ctx, certificate.cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("tls: cannot use the certificate ",
                                                   certificate.cert_file, ": ",
                                                   TakeOpensslError("unknown error")));
  }
  if (SSL_CTX_use_PrivateKey_file(site->ctx, certificate.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(site->ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("tls: cannot use the key ", certificate.key_file,
                                                   " for ", certificate.cert_file, ": ",
                                                   TakeOpensslError("unknown error")));
  }
  return absl::OkStatus();
}

SSL* TlsContext::NewSsl() const {
  SSL* ssl = SSL_new(sites_.front().ctx);
  if (ssl != nullptr) SSL_set_accept_state(ssl);
  return ssl;
}

int TlsContext::OnServerName(SSL* ssl, int* alert, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  const auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  for (const Site& site : self->sites_) {
    if (X509_check_host(site.leaf, name, 0, 0, nullptr) == 1) {
      if (&site != &self->sites_.front()) SSL_set_SSL_CTX(ssl, site.ctx);
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;  // the default certificate answers, as nginx's default server
}

int TlsContext::OnAlpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                       const unsigned char* in, unsigned int in_length, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  unsigned char* chosen = nullptr;
  const auto* ours = reinterpret_cast<const unsigned char*>(self->alpn_.data());
  // The first of ours that the client offers.
  if (SSL_select_next_proto(&chosen, out_length, ours, static_cast<unsigned>(self->alpn_.size()),
                            in, in_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

TlsSource::TlsSource(const TlsOptions& options)
    : options_(options),
      keys_(options.ticket_key_rotation > absl::ZeroDuration()
                ? std::make_shared<TicketKeys>(options.ticket_key_rotation)
                : nullptr) {}

absl::StatusOr<std::unique_ptr<TlsSource>> TlsSource::Create(const TlsOptions& options) {
  std::unique_ptr<TlsSource> source(new TlsSource(options));
  absl::Status loaded = source->Reload();
  if (!loaded.ok()) return loaded;
  return source;
}

absl::Status TlsSource::Reload() {
  std::lock_guard lock(reload_mu_);
  absl::StatusOr<std::shared_ptr<const TlsContext>> context = TlsContext::Load(options_, keys_);
  if (!context.ok()) return context.status();
  current_.store(std::move(*context));
  return absl::OkStatus();
}

}  // namespace percore
