// Socket helpers for the integration suites: connect to 127.0.0.1, send, read one HTTP/1.1
// response (blocking, with a deadline), and an epoll-driven client that keeps many keep-alive
// connections busy at once. Every read has a deadline, so a broken server fails a test instead
// of hanging it.
#ifndef PERCORE_TESTS_SUPPORT_TEST_CLIENT_H_
#define PERCORE_TESTS_SUPPORT_TEST_CLIENT_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "percore/testing/client.h"

namespace percore::testing {

// One parsed response (percore/testing/client.h).
using HttpResponse = TestResponse;

// Owns a client socket: closes it when it goes out of scope.
class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() { Reset(); }
  Socket(Socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  int fd() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void Reset();

 private:
  int fd_;
};

// A TCP connection to 127.0.0.1:port, with TCP_NODELAY (so small writes leave at once); -1 on
// failure.
int ConnectLocal(int port);
// "GET <path> HTTP/1.1" with Host: localhost, as one request's bytes.
std::string Get(std::string_view path);
// Writes all of `data`; false on error.
bool SendAll(int fd, std::string_view data);
// Reads one response (Content-Length framed). `buffer` carries bytes read past it to the next
// call. nullopt on EOF, error, malformed response or when `timeout` passes.
std::optional<HttpResponse> ReadResponse(
    int fd, std::string& buffer,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
// Sends `request` on a fresh connection to 127.0.0.1:port and reads one response; nullopt if
// the connection or the response failed.
std::optional<HttpResponse> Fetch(
    int port, std::string_view request,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
// Reads until the peer closes or `timeout` passes; returns what was read.
std::string ReadUntilClose(int fd,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// How ReadToEnd() stopped.
enum class StreamEnd {
  kClosed,   // the peer's FIN
  kReset,    // ECONNRESET or another receive error
  kTimeout,  // the timeout passed with the connection still open
};

// Everything read until the peer closes, the connection fails or `timeout` passes.
struct ReadToEndResult {
  std::string data;
  StreamEnd end = StreamEnd::kTimeout;
};
ReadToEndResult ReadToEnd(int fd, std::chrono::milliseconds timeout);

// Sets O_NONBLOCK on `fd`; false on error.
bool SetNonBlocking(int fd);
// Makes close() of `fd` send a reset instead of a FIN (SO_LINGER with a zero timeout).
bool SetResetOnClose(int fd);

// Number of open descriptors of this process (entries of /proc/self/fd, not counting the one
// used to list them); -1 on error.
int CountOpenFds();
// Polls CountOpenFds() until it equals `expected` or `timeout` passes; returns the last count.
int WaitForFdCount(int expected, std::chrono::milliseconds timeout);

// Raises this process's RLIMIT_NOFILE soft limit to at least `wanted` (never above the hard
// limit); returns the soft limit in force afterwards.
uint64_t RaiseFdLimit(uint64_t wanted);

// What RunConnections() does: `connections` keep-alive connections to 127.0.0.1:port, all open
// at once, each sending `requests_per_connection` requests one after another (the next once the
// previous response is in) and checking every response.
struct ConnectionsOptions {
  int port = 0;
  int connections = 1;
  int requests_per_connection = 1;
  // The bytes of request `index` (0-based) on connection `conn`.
  std::function<std::string(int conn, int index)> make_request;
  // Checks the response to that request: empty if right, otherwise what is wrong.
  std::function<std::string(int conn, int index, const HttpResponse& response)> check_response;
  // The whole run ends here, finished or not.
  std::chrono::milliseconds timeout{60000};
};

// What RunConnections() saw.
struct ConnectionsResult {
  int connected = 0;                // connections that were established
  int completed = 0;                // connections that got every response, all of them right
  int64_t responses = 0;            // responses received (right or wrong)
  int64_t bad_responses = 0;        // responses check_response rejected
  bool timed_out = false;           // the timeout passed before every connection finished
  std::vector<std::string> errors;  // the first few problems, for a failure message
};

// Drives the connections from one epoll loop on the calling thread. Every connection stays
// open until all have finished (so all of them are open at once), then all are closed.
ConnectionsResult RunConnections(const ConnectionsOptions& options);

// Polls `condition` (every few milliseconds) until it holds or `timeout` passes; its last value.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// VmRSS of process `pid` in KiB (from /proc), or -1.
long ResidentKib(pid_t pid);

// Closed-loop load on 127.0.0.1:port from a few threads, until Stop(): each thread sends GET
// `path` and reads the response, on one keep-alive connection that it replaces when a response
// says "Connection: close" (or after every response, with `connection_per_request`). A connect
// that fails, a request without a response (reset, EOF, 10 s without one) and a status other
// than 200 are failures.
class LoadClient {
 public:
  struct Options {
    int port = 0;
    int threads = 4;
    std::string path = "/";
    bool connection_per_request = false;
  };
  explicit LoadClient(Options options);
  ~LoadClient() { Stop(); }
  LoadClient(const LoadClient&) = delete;
  LoadClient& operator=(const LoadClient&) = delete;

  // Waits for the threads to finish their request in flight and stops them. Idempotent.
  void Stop();
  int64_t responses() const { return responses_.load(); }
  int64_t failures() const { return failures_.load(); }
  // Connects refused (ECONNREFUSED), counted in failures() too.
  int64_t refused() const { return refused_.load(); }
  // The first few failures, described.
  std::vector<std::string> errors() const;

 private:
  void Run();
  void Fail(const std::string& what, bool refused);

  const Options options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> responses_{0};
  std::atomic<int64_t> failures_{0};
  std::atomic<int64_t> refused_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_TEST_CLIENT_H_
