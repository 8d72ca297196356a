// A blocking HTTP/2 client for the integration suites: nghttp2's client session over a plain
// TCP connection to 127.0.0.1 (prior knowledge), pumped with poll() under a deadline, so that a
// broken server fails a test instead of hanging it. It can also send raw bytes (a frame the
// library would never write) and hold its receive window shut (a client that does not read).
// One connection per object; not thread-safe.
#ifndef PERCORE_TESTS_SUPPORT_H2_CLIENT_H_
#define PERCORE_TESTS_SUPPORT_H2_CLIENT_H_

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/test_client.h"

namespace percore::testing {

using Fields = std::vector<std::pair<std::string, std::string>>;

struct H2Response {
  int status = 0;
  Fields headers;  // the response's fields, :status aside
  std::string body;
  bool closed = false;      // the stream closed (answered, or reset)
  uint32_t error_code = 0;  // its RST_STREAM's, or 0
  std::string Header(std::string_view name) const;
};

struct H2ClientOptions {
  // Whether the client opens its windows as it reads (false: only Consume() does).
  bool auto_window_update = true;
  // The client's SETTINGS_INITIAL_WINDOW_SIZE.
  uint32_t initial_window = 65535;
};

class H2Client {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kTimeout{10000};

  // Connects to 127.0.0.1:port and queues the preface and SETTINGS (see connected()).
  explicit H2Client(int port, H2ClientOptions options = {});
  ~H2Client();
  H2Client(const H2Client&) = delete;
  H2Client& operator=(const H2Client&) = delete;

  bool connected() const { return socket_.ok(); }
  int fd() const { return socket_.fd(); }
  // Queues a request (:scheme http, :authority localhost); `body` is sent as DATA after it.
  // Returns its stream id, or a negative nghttp2 error.
  int32_t Submit(std::string_view method, std::string_view path, const Fields& fields = {},
                 std::optional<std::string> body = std::nullopt);
  // Queues RST_STREAM for `stream`.
  void Reset(int32_t stream, uint32_t error_code = NGHTTP2_CANCEL);
  // Queues a PING.
  void Ping();
  // Opens the stream's (and the connection's) window by `bytes` the client has read.
  void Consume(int32_t stream, size_t bytes);
  // Sends `bytes` as they are, after what is queued.
  bool SendRaw(std::string_view bytes, std::chrono::milliseconds timeout = kTimeout);
  // Pumps until `done()` or the deadline; false at the deadline or if the connection ended
  // first (closed()) and `done()` is still false.
  bool Until(const std::function<bool()>& done, std::chrono::milliseconds timeout = kTimeout);
  // Pumps until `stream` closed; its response.
  std::optional<H2Response> Wait(int32_t stream, std::chrono::milliseconds timeout = kTimeout);
  // Submit() then Wait().
  std::optional<H2Response> Fetch(std::string_view method, std::string_view path,
                                  const Fields& fields = {},
                                  std::optional<std::string> body = std::nullopt);
  const H2Response& response(int32_t stream) { return responses_[stream]; }
  // The server closed the connection (EOF, reset).
  bool closed() const { return closed_; }
  // The server's GOAWAY, once one came.
  std::optional<uint32_t> goaway_error() const { return goaway_error_; }
  int32_t goaway_last_stream() const { return goaway_last_stream_; }
  // Every PING ACK received.
  int pongs() const { return pongs_; }
  nghttp2_session* session() { return session_; }

 private:
  struct Callbacks;
  // One poll(): sends what nghttp2 has, reads what came. False at the deadline or the end.
  bool Step(Clock::time_point deadline);

  Socket socket_;
  nghttp2_session* session_ = nullptr;
  std::string out_;  // bytes to send, raw ones included
  std::map<int32_t, H2Response> responses_;
  std::map<int32_t, std::string> bodies_;  // request bodies not yet sent
  std::map<int32_t, size_t> body_sent_;
  bool closed_ = false;
  std::optional<uint32_t> goaway_error_;
  int32_t goaway_last_stream_ = -1;
  int pongs_ = 0;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_H2_CLIENT_H_
