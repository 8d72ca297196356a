// A blocking TLS client over a real TCP connection to 127.0.0.1, for the integration suites: a
// TlsPeer (support/tls_peer.h) whose records are pumped both ways through a non-blocking socket
// with poll(), every call bounded by a deadline, so a broken server fails a test instead of
// hanging it. One connection per object; not thread-safe.
#ifndef PERCORE_TESTS_SUPPORT_TLS_SOCKET_H_
#define PERCORE_TESTS_SUPPORT_TLS_SOCKET_H_

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "support/test_client.h"
#include "support/tls_peer.h"

namespace percore::testing {

class TlsSocket {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kTimeout{10000};

  // Connects to 127.0.0.1:port (see connected()); the ClientHello waits for the first call.
  explicit TlsSocket(int port, const TlsPeerOptions& options = {});

  bool connected() const { return socket_.ok(); }
  int fd() const { return socket_.fd(); }
  TlsPeer& peer() { return peer_; }
  // The server closed the TCP connection (EOF, reset) or its close_notify came.
  bool closed() const { return closed_ || peer_.peer_closed(); }

  // Runs the handshake: true once established (and the client's last flight sent); false if it
  // failed (peer().error()), the connection ended or `timeout` passed.
  bool Handshake(std::chrono::milliseconds timeout = kTimeout);
  // Encrypts `plain` and sends every record pending (the ClientHello, if nothing was sent yet,
  // with an empty `plain`); false on error or at the deadline.
  bool Send(std::string_view plain, std::chrono::milliseconds timeout = kTimeout);
  // Reads one HTTP/1.1 response (Content-Length, chunked, or until the close); bytes read past
  // it stay for the next call. `head`: the answer to a HEAD request. nullopt if the connection
  // ended before it was complete or `timeout` passed.
  std::optional<HttpResponse> ReadResponse(std::chrono::milliseconds timeout = kTimeout,
                                           bool head = false);
  // `plain` sent, then ReadResponse().
  std::optional<HttpResponse> Fetch(std::string_view request,
                                    std::chrono::milliseconds timeout = kTimeout);
  // At least `n` bytes of plaintext (all that came, taken), or nullopt at the end or deadline.
  std::optional<std::string> ReadAtLeast(size_t n, std::chrono::milliseconds timeout = kTimeout);
  // Whether the server closed the connection within `timeout` (the plaintext meanwhile is kept).
  bool WaitClosed(std::chrono::milliseconds timeout = kTimeout);

 private:
  // One poll(): sends what it can of the pending records, reads what came and hands it to the
  // peer. False at the deadline or once the connection ended (closed_).
  bool Step(Clock::time_point deadline);
  // Where the response at the start of buffer_ ends, or 0 while it is incomplete (scans a
  // chunked body incrementally, so a long one is not parsed again for every read).
  size_t ResponseEnd(bool head);

  Socket socket_;
  TlsPeer peer_;
  std::string out_;     // records not yet sent
  std::string buffer_;  // plaintext not yet returned
  size_t scan_ = 0;     // ResponseEnd's position in a chunked body of buffer_ (0: not started)
  bool closed_ = false;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_TLS_SOCKET_H_
