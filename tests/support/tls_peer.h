// The client's side of TLS for tests, the fuzzer and the bench tools: certificates made on the
// spot, and an OpenSSL client that works on memory (bytes in, bytes out), so a test drives it
// over a socket or straight into a loop harness, splitting records wherever it likes.
#ifndef PERCORE_TESTS_SUPPORT_TLS_PEER_H_
#define PERCORE_TESTS_SUPPORT_TLS_PEER_H_

#include <string>
#include <string_view>
#include <vector>

#include "percore/testing/harness.h"
#include "percore/tls.h"

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace percore::testing {

enum class KeyType { kEcdsaP256, kRsa2048 };

// Writes a self-signed certificate for `names` (subjectAltName DNS entries; the first is also
// the CN) and its key, as PEM files `<dir>/<stem>.pem` and `<dir>/<stem>.key`. It is valid from
// an hour ago for `days`; a non-empty `crl_uri` goes into a CRL distribution point extension, as
// a CA's certificates have one (nothing fetches it here). Throws std::runtime_error if OpenSSL
// or the files fail.
TlsCertificate MakeCertificate(const std::string& dir, const std::string& stem,
                               const std::vector<std::string>& names,
                               KeyType type = KeyType::kEcdsaP256, int days = 30,
                               const std::string& crl_uri = "");

// What a client offers.
struct TlsPeerOptions {
  std::string server_name;        // SNI; empty: none
  std::vector<std::string> alpn;  // offered, in order; empty: no ALPN
  int min_version = 0;            // TLS1_VERSION .. TLS1_3_VERSION; 0: OpenSSL's default
  int max_version = 0;
  std::string sigalgs;             // e.g. "RSA-PSS+SHA256": the certificate types accepted
  std::string ciphers;             // TLS 1.2 and older cipher list; "DEFAULT:@SECLEVEL=0" etc.
  std::string ciphersuites;        // TLS 1.3's suites, e.g. "TLS_CHACHA20_POLY1305_SHA256"
  SSL_SESSION* session = nullptr;  // resume this session (not owned)
};

// An OpenSSL client on memory BIOs. Not thread-safe; no certificate verification (the tests
// look at the certificate the server chose instead).
class TlsPeer {
 public:
  explicit TlsPeer(const TlsPeerOptions& options = {});
  ~TlsPeer();
  TlsPeer(const TlsPeer&) = delete;
  TlsPeer& operator=(const TlsPeer&) = delete;

  // Records for the server: the ClientHello first, then whatever the client has to say.
  std::string TakeOutput();
  // Records from the server; moves the handshake on and decrypts what it can.
  void Receive(std::string_view records);
  // Encrypts `plain` for the server; before the handshake is done, it waits until it is.
  void Write(std::string_view plain);
  // Sends a close_notify.
  void Close();
  // TLS 1.3: a KeyUpdate that asks the server to re-key too (update_requested).
  void RequestKeyUpdate();
  // Plaintext received so far, taken.
  std::string TakePlaintext();

  bool established() const;
  // The handshake or a record failed: OpenSSL's reason (an alert from the server included).
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  // The server's close_notify came.
  bool peer_closed() const { return peer_closed_; }
  // What was negotiated.
  std::string version() const;
  std::string alpn() const;
  std::string peer_common_name() const;  // the CN of the server's certificate
  std::string peer_key_type() const;     // "EC" or "RSA"
  bool resumed() const;
  // The session to resume later, owned by the caller (SSL_SESSION_free); null before any
  // ticket came.
  SSL_SESSION* TakeSession() const;

 private:
  void Pump();
  void Flush();
  SSL* ssl_ = nullptr;
  std::string unsent_;  // written before the handshake was done
  std::string plain_;
  std::string error_;
  bool peer_closed_ = false;
};

// Passes records between `peer` and connection `c` of `harness` (fed whole, or a byte per read)
// until neither side has more, giving the loop a turn each time (input kept while the output
// was full goes to the session then). False if they never settle.
bool Exchange(LoopHarness& harness, Connection* c, TlsPeer& peer, bool bytewise = false);

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_TLS_PEER_H_
