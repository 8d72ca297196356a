// percore/tls.h — HTTPS on the engine's own loops: TLS 1.2 and 1.3 with OpenSSL 3.
//
// Give the engine a certificate and its key and every connection on its port speaks TLS: each
// loop still does every read and write (io_uring or epoll), and OpenSSL works on the loop's
// buffers, never on the socket. The session (HTTP, WebSocket) sees plaintext and is made once
// the handshake is done, so it can ask which protocol ALPN chose (Connection::tls()).
//
//   percore::EngineOptions options;
//   options.port = 8443;
//   options.tls.certificates = {{"/etc/percore/site.pem", "/etc/percore/site.key"}};
//   auto engine = percore::Engine::Create(options, factory);  // an error names a bad file
//
// Several certificates are chosen among by the name the client asks for (SNI); an RSA and an
// ECDSA certificate for the same names are both offered, the client's signature algorithms
// choosing. Engine::ReloadTls() (and SIGHUP under Engine::Run()) reads the files again: new
// handshakes use the new certificates, open connections keep theirs, and a file that fails to
// load keeps the old set and says why.
#ifndef PERCORE_TLS_H_
#define PERCORE_TLS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace percore {

// One certificate: PEM files of the certificate followed by its chain, and of its private key.
struct TlsCertificate {
  std::string cert_file;
  std::string key_file;
};

// Mozilla's "intermediate" TLS 1.2 cipher list (TLS 1.3's suites are OpenSSL's defaults): forward
// secrecy and AEAD ciphers only, which every client of the last decade supports. The server's
// order decides.
inline constexpr std::string_view kIntermediateCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

// How the engine's port speaks TLS (EngineOptions::tls). A plain value type.
struct TlsOptions {
  // Empty: plain TCP. Otherwise the port speaks TLS only. The first certificate answers a
  // client that names no host, or one that no certificate's names (subjectAltName DNS entries,
  // wildcards included; the subject's CN when there are none) match.
  std::vector<TlsCertificate> certificates;
  // Protocols offered through ALPN, preferred first: the first of them the client offers is
  // chosen; a client that offers none of them goes on without ALPN, as nginx lets it.
  // http::App::Listen puts "h2" first when its HttpOptions::http2 is enabled and this is left
  // as it is.
  std::vector<std::string> alpn = {"http/1.1"};
  // The TLS 1.2 cipher list (OpenSSL's syntax); TLS 1.1 and older are always refused.
  std::string ciphers = std::string(kIntermediateCiphers);
  // A client that has not finished its handshake this long after connecting is disconnected.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Session tickets (resumption without a full handshake) are encrypted with a key every loop
  // shares, replaced this often; a ticket issued under the previous key is still accepted (and
  // replaced), so a ticket lives up to twice this. Zero: no tickets.
  absl::Duration ticket_key_rotation = absl::Hours(12);
  // Kernel TLS (Linux's `tls` module): after the handshake the kernel seals what the
  // connection sends, so a file goes out by sendfile() (splice under io_uring) as over plain
  // TCP and no record is sealed in user space; receiving stays with OpenSSL. Where the kernel
  // has no TLS (no `tls` in /proc/sys/net/ipv4/tcp_available_ulp and the module not loadable)
  // or not the negotiated version and cipher, the connection stays in user space. Off by
  // default, as in nginx: OpenSSL 3.0 cannot re-key the kernel, so a client's TLS 1.3 KeyUpdate
  // request ends the connection, and a close_notify the kernel cannot take at once is left out.
  bool kernel_tls = false;

  bool enabled() const { return !certificates.empty(); }
};

// What a TLS connection negotiated (Connection::tls(), Request::tls()). The views stay valid
// while the connection is open.
struct TlsInfo {
  std::string_view version;      // "TLSv1.3", "TLSv1.2"
  std::string_view cipher;       // OpenSSL's name: "TLS_AES_128_GCM_SHA256"
  std::string_view server_name;  // the host the client named (SNI); empty if none
  std::string_view alpn;         // the protocol ALPN chose ("http/1.1"); empty if none
  bool resumed = false;          // resumed from a session ticket (no full handshake)
  bool kernel = false;           // the kernel seals what it sends (TlsOptions::kernel_tls)
};

}  // namespace percore

#endif  // PERCORE_TLS_H_
