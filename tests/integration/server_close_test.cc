// How the server ends connections, with the engine in-process on 127.0.0.1 (server_suite.h),
// once per backend: a client's last request, lingering closes, header and idle timeouts, slow
// senders, and peers that read late or never.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "percore/options.h"
#include "server_suite.h"
#include "support/backends.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using http::HttpOptions;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A client that says its request is its last, and sends nothing after it, is not waited for: the
// server closes its socket once the response is sent (no lingering for the client's FIN, as
// nginx), so the connection costs no further wake-up. The client here never closes its end.
TEST_P(ServerTest, LastRequestOfTheClientIsClosedWithoutLingering) {
  EngineOptions options;
  options.linger_timeout = absl::Seconds(60);  // a lingering close would hold on for a minute
  Restart(HttpOptions(), options);
  const int baseline = CountOpenFds();
  for (const char* request :
       {"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"}) {
    Socket socket = Connect();
    ASSERT_TRUE(SendAll(socket.fd(), request));
    percore::testing::ReadToEndResult read = ReadToEnd(socket.fd(), kReadTimeout);
    EXPECT_EQ(read.end, StreamEnd::kClosed) << request;
    size_t consumed = 0;
    std::optional<HttpResponse> response = percore::testing::ParseResponse(read.data, &consumed);
    ASSERT_TRUE(response.has_value()) << read.data;
    EXPECT_EQ(response->body, "Hello World!");
    EXPECT_EQ(response->Header("connection"), "close");
    // Only the client's socket is left open.
    EXPECT_EQ(WaitForFdCount(baseline + 1, kReadTimeout), baseline + 1) << request;
  }
}

// Bytes after the last request (here a pipelined one) mean the client may still be sending: the
// server lingers, so its close cannot turn into a reset that destroys the response.
TEST_P(ServerTest, BytesAfterTheLastRequestKeepTheLingeringClose) {
  EngineOptions options;
  options.linger_timeout = absl::Seconds(60);
  Restart(HttpOptions(), options);
  const int baseline = CountOpenFds();
  Socket socket = Connect();
  ASSERT_TRUE(
      SendAll(socket.fd(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->Header("connection"), "close");
  // Still lingering: more bytes are read and discarded, and answered by nothing but the FIN.
  ASSERT_TRUE(SendAll(socket.fd(), Get("/")));
  ASSERT_EQ(shutdown(socket.fd(), SHUT_WR), 0);
  percore::testing::ReadToEndResult read = ReadToEnd(socket.fd(), kReadTimeout);
  EXPECT_EQ(read.end, StreamEnd::kClosed);
  EXPECT_EQ(read.data, "");
  socket.Reset();
  ExpectConnectionsReleased(baseline);
}

TEST_P(ServerTest, SlowSenderOneByteAtATimeSucceeds) {
  HttpOptions http;
  http.header_timeout = absl::Seconds(10);
  ASSERT_NO_FATAL_FAILURE(Restart(http));
  Socket socket = Connect();
  ASSERT_TRUE(socket.ok());
  std::string buffer;
  for (int i = 0; i < 2; ++i) {  // twice on one connection
    const std::string body = "slow " + std::to_string(i);
    const std::string request = PostEcho(body);
    for (char c : request) {
      ASSERT_TRUE(SendAll(socket.fd(), std::string_view(&c, 1)));
      std::this_thread::sleep_for(milliseconds(2));  // pacing, not waiting
    }
    std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "request " << i;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, body);
  }
  EXPECT_TRUE(buffer.empty());
}

TEST_P(ServerTest, IncompleteHeadersAfterHeaderTimeoutGet408AndClose) {
  HttpOptions http;
  http.header_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(Restart(http));
  Socket socket = Connect();
  const auto sent = Clock::now();
  ASSERT_TRUE(SendAll(socket.fd(), "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pending: yes\r\n"));
  percore::testing::ReadToEndResult read = ReadToEnd(socket.fd(), kReadTimeout);
  const auto elapsed = Clock::now() - sent;
  EXPECT_EQ(read.end, StreamEnd::kClosed);
  size_t consumed = 0;
  std::optional<HttpResponse> response = percore::testing::ParseResponse(read.data, &consumed);
  ASSERT_TRUE(response.has_value()) << read.data;
  EXPECT_EQ(response->status, 408);
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_EQ(consumed, read.data.size());
  // Not before the timeout (less one tick of the loop's clock).
  EXPECT_GE(elapsed, milliseconds(800));
}

TEST_P(ServerTest, HeadersTricklingPastHeaderTimeoutGet408) {
  // The header timeout runs from a request's first byte: steady progress does not extend it.
  HttpOptions http;
  http.header_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(Restart(http));
  Socket socket = Connect();
  const std::string request =
      "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + std::string(400, 'a') + "\r\n\r\n";
  size_t sent = 0;
  bool answered = false;
  const auto start = Clock::now();
  // At 30 ms a byte the request would need 13 s; the answer must come long before it is done.
  while (sent < request.size() - 4 && Clock::now() - start < milliseconds(12000)) {
    pollfd p{socket.fd(), POLLIN, 0};
    if (poll(&p, 1, 0) == 1) {
      answered = true;
      break;
    }
    if (!SendAll(socket.fd(), std::string_view(request).substr(sent, 1))) break;  // closed
    ++sent;
    std::this_thread::sleep_for(milliseconds(30));
  }
  EXPECT_TRUE(answered || sent < request.size() - 4) << "no answer while the headers trickled";
  percore::testing::ReadToEndResult read = ReadToEnd(socket.fd(), kReadTimeout);
  EXPECT_NE(read.end, StreamEnd::kTimeout);
  size_t consumed = 0;
  std::optional<HttpResponse> response = percore::testing::ParseResponse(read.data, &consumed);
  ASSERT_TRUE(response.has_value()) << read.data;
  EXPECT_EQ(response->status, 408);
}

TEST_P(ServerTest, IdleKeepAliveConnectionClosedSilently) {
  HttpOptions http;
  http.idle_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(Restart(http));
  // After a response.
  Socket used = Connect();
  std::string buffer;
  ASSERT_TRUE(SendAll(used.fd(), Get("/")));
  ASSERT_TRUE(ReadResponse(used.fd(), buffer, kReadTimeout).has_value());
  // And one that never sent a byte.
  Socket silent = Connect();
  const auto idle_since = Clock::now();
  for (Socket* socket : {&used, &silent}) {
    percore::testing::ReadToEndResult read = ReadToEnd(socket->fd(), kReadTimeout);
    EXPECT_EQ(read.end, StreamEnd::kClosed);
    EXPECT_EQ(read.data, "") << "an idle close sends no response";
  }
  EXPECT_GE(Clock::now() - idle_since, milliseconds(800));
  EXPECT_TRUE(buffer.empty());
  ExpectServing();
}

TEST_P(ServerTest, PeerThatNeverReadsDoesNotMakeServerBufferWithoutBound) {
  const int baseline = CountOpenFds();
  Socket hog = Connect();
  ASSERT_TRUE(percore::testing::SetNonBlocking(hog.fd()));
  // Pipelined echoes: each request's response is a little larger than the request.
  std::string requests;
  for (int i = 0; i < 100; ++i) requests += PostEcho(std::string(1000, 'p'));
  // If the server read without bound, every byte would go through, and its output for this
  // connection would grow with it. Bounded, the socket buffers on both sides fill and sending
  // stalls well before kCap.
  constexpr size_t kCap = size_t{96} << 20;  // ~9 MB go through here before the stall
  size_t total = 0;
  size_t offset = 0;
  bool stalled = false;
  while (total < kCap) {
    ssize_t n = send(hog.fd(), requests.data() + offset, requests.size() - offset, MSG_NOSIGNAL);
    if (n > 0) {
      total += static_cast<size_t>(n);
      offset = (offset + static_cast<size_t>(n)) % requests.size();
      continue;
    }
    ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EINTR)) << strerror(errno);
    pollfd p{hog.fd(), POLLOUT, 0};
    if (poll(&p, 1, 3000) == 0) {  // no room for 3 s: the server stopped reading
      stalled = true;
      break;
    }
  }
  EXPECT_TRUE(stalled) << "sent " << total << " bytes to a server that should have stopped reading";
  RecordProperty("bytes_sent_before_stall", std::to_string(total));
  // The other connections do not notice.
  ExpectServing();
  hog.Reset();
  ExpectServing();
  ExpectConnectionsReleased(baseline);
}

// Small requests for large answers, pipelined by a client that reads nothing for a while: the
// server answers until max_pending_output (1 MiB) waits, then holds the rest of what it
// received unparsed (io_uring's multishot receive included) without letting a header
// deadline run against it, and answers every request once the client reads.
TEST_P(ServerTest, PipeliningClientThatReadsLateGetsEveryAnswerFromBoundedMemory) {
  HttpOptions http;
  http.header_timeout = absl::Milliseconds(1500);
  ASSERT_NO_FATAL_FAILURE(Restart(http));
  Socket c = Connect();
  ASSERT_TRUE(percore::testing::SetNonBlocking(c.fd()));
  const std::string request = Get("/big");
  constexpr int kRequests = 20000;  // 320 MB of answers if the server read without bound
  const std::string all = [&] {
    std::string s;
    for (int i = 0; i < kRequests; ++i) s += request;
    return s;
  }();
  const long rss_before = ResidentKib(getpid());
  size_t sent = 0;
  while (sent < all.size()) {
    ssize_t n = send(c.fd(), all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EINTR)) << strerror(errno);
    pollfd p{c.fd(), POLLOUT, 0};
    if (poll(&p, 1, 300) == 0) break;  // the server stopped reading
  }
  const auto stalled_at = Clock::now();
  const long growth_kib = ResidentKib(getpid()) - rss_before;
  EXPECT_LT(growth_kib, 64 * 1024) << "resident memory grew by " << growth_kib << " KiB";
  // Past the header timeout, with the client reading nothing: the time is the condition.
  std::this_thread::sleep_until(stalled_at + milliseconds(2000));
  const size_t whole = sent / request.size();
  std::string buffer;
  size_t answered = 0;
  for (; answered < whole; ++answered) {
    std::optional<HttpResponse> response = ReadResponse(c.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "answer " << answered << " of " << whole;
    ASSERT_EQ(response->status, 200) << "answer " << answered;
  }
  EXPECT_EQ(answered, whole);
  RecordProperty("requests_sent", std::to_string(whole));
}

TEST_P(ServerTest, PeerThatStopsReadingIsDroppedAfterSendTimeout) {
  EngineOptions options;
  options.send_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(Restart(HttpOptions(), options));
  const int baseline = CountOpenFds();
  Socket hog = Connect();
  ASSERT_TRUE(percore::testing::SetNonBlocking(hog.fd()));
  // Enough large echoes to fill both sides' socket buffers; then the client reads nothing.
  const std::string request = PostEcho(std::string(512 * 1024, 'q'));
  size_t total = 0;
  const auto start = Clock::now();
  while (total < (size_t{64} << 20) && Clock::now() - start < milliseconds(30000)) {
    ssize_t n = send(hog.fd(), request.data() + total % request.size(),
                     request.size() - total % request.size(), MSG_NOSIGNAL);
    if (n > 0) {
      total += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) break;  // the server already gave up on us
    pollfd p{hog.fd(), POLLOUT, 0};
    if (poll(&p, 1, 500) == 0) break;  // full: the server stopped reading
  }
  // The server releases its end although ours stays open: only our socket is left.
  EXPECT_EQ(WaitForFdCount(baseline + 1, milliseconds(20000)), baseline + 1)
      << "the server kept a connection whose output made no progress";
  ExpectServing();
}

TEST_P(ServerTest, LingeringCloseDeliversResponseDespiteUnreadInput) {
  // The server closes after an HTTP/1.0 response while the client is still sending. Closing a
  // socket with unread input sends a reset, which can destroy the response in flight; the
  // server half-closes and drains instead, so the response arrives whole, ended by a FIN.
  for (int round = 0; round < 5; ++round) {
    Socket socket = Connect();
    ASSERT_TRUE(percore::testing::SetNonBlocking(socket.fd()));
    std::string data = "GET / HTTP/1.0\r\n\r\n" + std::string(256 * 1024, 'g');
    std::string received;
    size_t offset = 0;
    const auto deadline = Clock::now() + kReadTimeout;
    bool closed = false;
    while (!closed && Clock::now() < deadline) {
      if (offset < data.size()) {
        ssize_t n = send(socket.fd(), data.data() + offset, data.size() - offset, MSG_NOSIGNAL);
        if (n > 0) offset += static_cast<size_t>(n);
        if (offset == data.size()) shutdown(socket.fd(), SHUT_WR);
      }
      pollfd p{socket.fd(), static_cast<short>(POLLIN | (offset < data.size() ? POLLOUT : 0)), 0};
      poll(&p, 1, 100);
      char chunk[65536];
      ssize_t n = recv(socket.fd(), chunk, sizeof(chunk), 0);
      if (n > 0) received.append(chunk, static_cast<size_t>(n));
      if (n == 0) closed = true;
      ASSERT_FALSE(n < 0 && errno != EAGAIN && errno != EINTR)
          << "round " << round << ": " << strerror(errno) << " after " << received.size()
          << " bytes";
    }
    EXPECT_TRUE(closed) << "round " << round;
    size_t consumed = 0;
    std::optional<HttpResponse> response = percore::testing::ParseResponse(received, &consumed);
    ASSERT_TRUE(response.has_value()) << "round " << round << ": " << received;
    EXPECT_EQ(response->body, "Hello World!");
    EXPECT_EQ(consumed, received.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ServerTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore::testing
