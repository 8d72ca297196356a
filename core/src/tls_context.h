// The certificates a TLS port serves, as OpenSSL contexts every loop shares (OpenSSL's SSL_CTX is
// safe to use from several threads once set up), and the engine's hold on the current set, which
// a reload replaces while connections made from the old one keep it.
#ifndef PERCORE_SRC_TLS_CONTEXT_H_
#define PERCORE_SRC_TLS_CONTEXT_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "percore/tls.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;

namespace percore {

class TicketKeys;

// One loaded set of certificates. Immutable once loaded; kept alive by every connection made
// from it (TlsStream), so a reload never pulls a context from under a handshake.
class TlsContext {
 public:
  // Loads every certificate of `options` (an error names the file and OpenSSL's reason).
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Load(const TlsOptions& options,
                                                                std::shared_ptr<TicketKeys> keys);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A server-side SSL for one connection, on the default certificate until the ClientHello's
  // SNI picks another; null if OpenSSL is out of memory.
  SSL* NewSsl() const;
  const TlsOptions& options() const { return options_; }
  // The ticket keys its contexts use; null when tickets are off.
  TicketKeys* keys() const { return keys_.get(); }

 private:
  // The certificates for one set of names: an SSL_CTX holding one per key type (RSA, ECDSA).
  struct Site {
    std::vector<std::string> names;  // sorted; what makes two certificates one site
    SSL_CTX* ctx = nullptr;
    X509* leaf = nullptr;  // its first certificate, for matching a requested name
  };
  explicit TlsContext(const TlsOptions& options, std::shared_ptr<TicketKeys> keys);
  absl::StatusOr<SSL_CTX*> NewCtx() const;
  absl::Status Add(const TlsCertificate& certificate);
  // OpenSSL callbacks; the context is each SSL_CTX's app data.
  static int OnServerName(SSL* ssl, int* alert, void* arg);
  static int OnAlpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                    const unsigned char* in, unsigned int in_length, void* arg);

  const TlsOptions options_;
  const std::shared_ptr<TicketKeys> keys_;
  std::string alpn_;         // options_.alpn in ALPN's wire format
  std::vector<Site> sites_;  // sites_[0]: the default
};

// The engine's current certificates: loaded at start-up, replaced by Reload(). Thread-safe.
class TlsSource {
 public:
  static absl::StatusOr<std::unique_ptr<TlsSource>> Create(const TlsOptions& options);
  // Loads the files again; on an error the current set stays and the error says why.
  absl::Status Reload();
  // The set new connections use.
  std::shared_ptr<const TlsContext> Current() const { return current_.load(); }

 private:
  explicit TlsSource(const TlsOptions& options);
  const TlsOptions options_;
  const std::shared_ptr<TicketKeys> keys_;  // kept across reloads: tickets stay valid
  std::mutex reload_mu_;
  std::atomic<std::shared_ptr<const TlsContext>> current_;
};

// The reason of OpenSSL's last error on this thread (and the queue emptied), or `otherwise`.
std::string TakeOpensslError(std::string_view otherwise);

}  // namespace percore

#endif  // PERCORE_SRC_TLS_CONTEXT_H_
