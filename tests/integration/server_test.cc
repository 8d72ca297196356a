// The engine in-process, serving an App on 127.0.0.1 with two loops; the test thread is the
// client. Every wait has a deadline; sleeps only pace a slow sender.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore {

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using percore::http::App;
using percore::http::HttpOptions;
using percore::http::Request;
using percore::http::Response;
using percore::testing::ConnectionsOptions;
using percore::testing::ConnectionsResult;
using percore::testing::ConnectLocal;
using percore::testing::CountOpenFds;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::ListenLocal;
using percore::testing::ReadResponse;
using percore::testing::ReadToEnd;
using percore::testing::ResidentKib;
using percore::testing::SendAll;
using percore::testing::Socket;
using percore::testing::StreamEnd;
using percore::testing::WaitForFdCount;

constexpr milliseconds kReadTimeout(10000);

std::string PostEcho(std::string_view body) {
  return "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

App MakeApp(HttpOptions http) {
  App app(http);
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/worker", [](const Request& req, Response& res) {
    res.Send("worker " + std::to_string(req.worker_id()));
  });
  app.Get("/big", [](const Request&, Response& res) { res.Send(std::string(16 * 1024, 'b')); });
  app.All("/echo", [](const Request& req, Response& res) {
    std::string_view type = req.Header("content-type");
    res.Type(type.empty() ? "application/octet-stream" : type).Send(req.body());
  });
  return app;
}

// The suite runs once per backend.
class ServerTest : public percore::testing::EngineTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Serve(MakeApp(HttpOptions()))); }

  // Serves MakeApp(http) with `options`, replacing the running engine.
  void Restart(HttpOptions http, EngineOptions options = {}) { Serve(MakeApp(http), options); }

  void StopEngine() { percore::testing::StopLocal(&engine_); }

  Socket Connect() {
    Socket socket(ConnectLocal(port_));
    EXPECT_TRUE(socket.ok()) << "connect to port " << port_ << ": " << strerror(errno);
    return socket;
  }

  // One request on a fresh connection; the response, or nullopt.
  std::optional<HttpResponse> Fetch(const std::string& request) {
    return percore::testing::Fetch(port_, request, kReadTimeout);
  }

  // The server still answers a new connection, several requests on it.
  void ExpectServing() {
    Socket socket = Connect();
    ASSERT_TRUE(socket.ok());
    std::string buffer;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(SendAll(socket.fd(), Get("/")));
      std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
      ASSERT_TRUE(response.has_value()) << "request " << i;
      EXPECT_EQ(response->status, 200);
      EXPECT_EQ(response->body, "Hello World!");
    }
    for (int i = 0; i < 20; ++i) {  // fresh connections, so both loops are asked
      std::optional<HttpResponse> response = Fetch(Get("/"));
      ASSERT_TRUE(response.has_value()) << "fresh connection " << i;
      EXPECT_EQ(response->body, "Hello World!");
    }
  }

  // Every connection the server accepted has been released: this process is back to
  // `baseline` descriptors (taken with no client connection open).
  void ExpectConnectionsReleased(int baseline) {
    EXPECT_EQ(WaitForFdCount(baseline, milliseconds(20000)), baseline)
        << "the server still holds connections the clients closed";
  }
};

TEST_P(ServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  Socket socket = Connect();
  ASSERT_TRUE(socket.ok());
  std::string buffer;
  std::optional<std::string> worker;
  for (int i = 0; i < 300; ++i) {
    std::string request;
    std::string expected;
    if (i % 3 == 0) {
      request = Get("/");
      expected = "Hello World!";
    } else if (i % 3 == 1) {
      expected = "body of request " + std::to_string(i);
      request = PostEcho(expected);
    } else {
      request = Get("/worker");
    }
    ASSERT_TRUE(SendAll(socket.fd(), request)) << "request " << i;
    std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "request " << i;
    EXPECT_EQ(response->status, 200) << "request " << i;
    EXPECT_NE(response->Header("connection"), "close") << "request " << i;
    if (i % 3 == 2) {
      // A connection belongs to one loop for its whole life.
      if (!worker) worker = response->body;
      EXPECT_EQ(response->body, *worker) << "request " << i;
    } else {
      EXPECT_EQ(response->body, expected) << "request " << i;
    }
  }
  EXPECT_TRUE(buffer.empty());
}

TEST_P(ServerTest, PipelinesHundredRequestsInOrder) {
  Socket socket = Connect();
  ASSERT_TRUE(socket.ok());
  std::string requests;
  for (int i = 0; i < 100; ++i) {
    requests += i % 4 == 3 ? Get("/") : PostEcho("pipelined request " + std::to_string(i));
  }
  ASSERT_TRUE(SendAll(socket.fd(), requests));  // one write
  std::string buffer;
  for (int i = 0; i < 100; ++i) {
    std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "response " << i;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body,
              i % 4 == 3 ? "Hello World!" : "pipelined request " + std::to_string(i));
  }
  EXPECT_TRUE(buffer.empty());
  // Still usable afterwards, with nothing extra sent.
  ASSERT_TRUE(SendAll(socket.fd(), Get("/")));
  std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "Hello World!");
  EXPECT_TRUE(buffer.empty());
}

TEST_P(ServerTest, ThousandConnectionsHundredRequestsEach) {
  constexpr int kConnections = 1000;
  constexpr int kRequests = 100;
  // Both ends of every connection live in this process. The engine raised the soft limit to
  // the hard one when it was created; make sure, and skip if the hard limit is too low.
  const uint64_t limit = percore::testing::RaiseFdLimit(2 * kConnections + 256);
  if (limit < 2 * kConnections + 256) {
    GTEST_SKIP() << "RLIMIT_NOFILE is " << limit << ", too low for " << kConnections
                 << " connections with both ends in one process";
  }
  const int baseline = CountOpenFds();

  ConnectionsOptions options;
  options.port = port_;
  options.connections = kConnections;
  options.requests_per_connection = kRequests;
  options.timeout = milliseconds(200000);
  options.make_request = [](int conn, int index) {
    if (index % 5 == 4) return Get("/");
    return PostEcho("c" + std::to_string(conn) + "-r" + std::to_string(index));
  };
  options.check_response = [](int conn, int index, const HttpResponse& response) {
    std::string expected =
        index % 5 == 4 ? "Hello World!" : "c" + std::to_string(conn) + "-r" + std::to_string(index);
    if (response.status != 200) return "status " + std::to_string(response.status);
    if (response.body != expected)
      return "body \"" + response.body + "\", want \"" + expected + "\"";
    return std::string();
  };
  ConnectionsResult result = percore::testing::RunConnections(options);

  std::string errors;
  for (const std::string& e : result.errors) errors += "\n  " + e;
  EXPECT_EQ(result.connected, kConnections) << errors;
  EXPECT_EQ(result.completed, kConnections) << errors;
  EXPECT_EQ(result.responses, int64_t{kConnections} * kRequests) << errors;
  EXPECT_EQ(result.bad_responses, 0) << errors;
  EXPECT_FALSE(result.timed_out) << errors;
  ExpectServing();
  ExpectConnectionsReleased(baseline);
}

TEST_P(ServerTest, ClientDisconnectingMidRequestLeavesServerServing) {
  const int baseline = CountOpenFds();
  {
    // In the request line.
    Socket socket = Connect();
    ASSERT_TRUE(SendAll(socket.fd(), "GET /ech"));
  }
  {
    // In the header section.
    Socket socket = Connect();
    ASSERT_TRUE(SendAll(socket.fd(), "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Le"));
  }
  {
    // In the body, after a complete request on the same connection.
    Socket socket = Connect();
    std::string buffer;
    ASSERT_TRUE(SendAll(socket.fd(), Get("/")));
    ASSERT_TRUE(ReadResponse(socket.fd(), buffer, kReadTimeout).has_value());
    ASSERT_TRUE(SendAll(socket.fd(),
                        "POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                        "Content-Length: 100000\r\n\r\n" +
                            std::string(30000, 'x')));
  }
  {
    // In a chunked body, with a reset instead of a FIN.
    Socket socket = Connect();
    ASSERT_TRUE(percore::testing::SetResetOnClose(socket.fd()));
    ASSERT_TRUE(SendAll(socket.fd(),
                        "POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789"));
  }
  {
    // Half-close (FIN) with the request incomplete, then wait for the server to close too.
    Socket socket = Connect();
    ASSERT_TRUE(SendAll(socket.fd(), "GET / HTTP/1.1\r\nHost: loc"));
    ASSERT_EQ(shutdown(socket.fd(), SHUT_WR), 0);
    percore::testing::ReadToEndResult end = ReadToEnd(socket.fd(), kReadTimeout);
    EXPECT_NE(end.end, StreamEnd::kTimeout) << "the server kept a half-closed connection open";
  }
  ExpectServing();
  ExpectConnectionsReleased(baseline);
}

TEST_P(ServerTest, ClientDisconnectingMidResponseLeavesServerServing) {
  const int baseline = CountOpenFds();
  for (int i = 0; i < 3; ++i) {
    // A 1 MiB echo: close once its first bytes arrive, with the rest unread.
    Socket socket = Connect();
    ASSERT_TRUE(SendAll(socket.fd(), PostEcho(RandomBytes(1 << 20, i))));
    pollfd p{socket.fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, static_cast<int>(kReadTimeout.count())), 1);
    char some[100];
    ASSERT_GT(recv(socket.fd(), some, sizeof(some), 0), 0);
  }
  for (int i = 0; i < 3; ++i) {
    // 2,000 pipelined requests, closed without reading a byte.
    Socket socket = Connect();
    std::string requests;
    for (int j = 0; j < 2000; ++j) requests += PostEcho(std::string(200, 'a' + j % 26));
    ASSERT_TRUE(SendAll(socket.fd(), requests));
  }
  {
    // Pipelined 1 MiB echoes, closed with a reset while the server is still writing.
    Socket socket = Connect();
    ASSERT_TRUE(percore::testing::SetResetOnClose(socket.fd()));
    ASSERT_TRUE(percore::testing::SetNonBlocking(socket.fd()));
    std::string requests = PostEcho(std::string(1 << 20, 'z'));
    requests += requests;
    // Non-blocking: the server stops reading when its output for us is large, so this may not
    // all go out.
    (void)send(socket.fd(), requests.data(), requests.size(), MSG_NOSIGNAL);
    pollfd p{socket.fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, static_cast<int>(kReadTimeout.count())), 1);
  }
  ExpectServing();
  ExpectConnectionsReleased(baseline);
}

TEST_P(ServerTest, EchoesOneMebibyteBody) {
  Socket socket = Connect();
  ASSERT_TRUE(socket.ok());
  std::string buffer;
  for (uint32_t seed = 1; seed <= 2; ++seed) {  // twice on one connection
    const std::string body = RandomBytes(1 << 20, seed);
    ASSERT_TRUE(SendAll(socket.fd(), PostEcho(body)));
    std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->Header("content-length"), std::to_string(1 << 20));
    EXPECT_EQ(response->Header("content-type"), "application/octet-stream");
    ASSERT_EQ(response->body.size(), body.size());
    EXPECT_TRUE(response->body == body) << "the echoed body differs";
  }
  EXPECT_TRUE(buffer.empty());
}

TEST_P(ServerTest, EchoesChunkedBody) {
  Socket socket = Connect();
  ASSERT_TRUE(socket.ok());
  std::string buffer;
  ASSERT_TRUE(SendAll(socket.fd(),
                      "POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello world");
  EXPECT_EQ(response->Header("content-length"), "11");

  // Larger: many chunks of varied sizes, sent in pieces that split chunk sizes and data.
  std::mt19937 random(7);
  std::string body;
  std::string encoded =
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 120; ++i) {
    const std::string chunk = RandomBytes(1 + random() % 5000, 100 + i);
    char size[16];
    snprintf(size, sizeof(size), "%zx", chunk.size());
    encoded += std::string(size) + "\r\n" + chunk + "\r\n";
    body += chunk;
  }
  encoded += "0\r\n\r\n";
  for (size_t offset = 0; offset < encoded.size();) {
    const size_t piece = std::min<size_t>(1 + random() % 7000, encoded.size() - offset);
    ASSERT_TRUE(SendAll(socket.fd(), std::string_view(encoded).substr(offset, piece)));
    offset += piece;
  }
  response = ReadResponse(socket.fd(), buffer, kReadTimeout);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->Header("content-length"), std::to_string(body.size()));
  EXPECT_TRUE(response->body == body) << "the echoed chunked body differs";
  EXPECT_TRUE(buffer.empty());
}

TEST_P(ServerTest, EchoesChunkedBodyWhoseChunksArriveInSeparateReads) {
  // Two whole chunks in the read that carries the header section, the last chunk in a later
  // read. The pause only makes separate reads likely; if they merge, the test is merely weaker.
  Socket socket = Connect();
  ASSERT_TRUE(SendAll(socket.fd(),
                      "POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n"));
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(SendAll(socket.fd(), "1\r\n!\r\n0\r\n\r\n"));
  std::string buffer;
  std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello world!");
}

TEST_P(ServerTest, Http10WithoutKeepAliveCloses) {
  Socket socket = Connect();
  ASSERT_TRUE(SendAll(socket.fd(), "GET / HTTP/1.0\r\n\r\n"));
  percore::testing::ReadToEndResult read = ReadToEnd(socket.fd(), kReadTimeout);
  EXPECT_EQ(read.end, StreamEnd::kClosed);
  size_t consumed = 0;
  std::optional<HttpResponse> response = percore::testing::ParseResponse(read.data, &consumed);
  ASSERT_TRUE(response.has_value()) << read.data;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "Hello World!");
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_EQ(consumed, read.data.size());
}

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

TEST_P(ServerTest, Http10WithKeepAliveStaysOpen) {
  Socket socket = Connect();
  std::string buffer;
  for (int i = 0; i < 3; ++i) {
    const std::string body = "one-oh " + std::to_string(i);
    ASSERT_TRUE(SendAll(socket.fd(),
                        "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n"
                        "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body));
    std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "request " << i;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, body);
    EXPECT_EQ(response->Header("connection"), "keep-alive");
  }
  // The last request does not ask to keep the connection: answered, then closed.
  ASSERT_TRUE(SendAll(socket.fd(), "GET / HTTP/1.0\r\n\r\n"));
  percore::testing::ReadToEndResult read = ReadToEnd(socket.fd(), kReadTimeout);
  EXPECT_EQ(read.end, StreamEnd::kClosed);
  buffer += read.data;
  size_t consumed = 0;
  std::optional<HttpResponse> response = percore::testing::ParseResponse(buffer, &consumed);
  ASSERT_TRUE(response.has_value()) << buffer;
  EXPECT_EQ(response->body, "Hello World!");
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_EQ(consumed, buffer.size());
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

TEST_P(ServerTest, AcceptRecoversAfterRunningOutOfDescriptors) {
  // epoll's accept4() fails with EMFILE here. io_uring's armed multishot accept took the limit
  // when it was submitted, so on that backend this checks only that nothing breaks.
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own (its vptr check opens a "
                  "pipe to probe memory), and this test leaves none";
#endif
  constexpr int kClients = 8;
  std::vector<Socket> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(clients.back().ok());
  }
  // A new descriptor takes the lowest free number; with the limit at that number, none can be
  // made.
  const int lowest_free = fcntl(clients[0].fd(), F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // No descriptor to spare: the loops' accepts fail with EMFILE while the connections wait in
  // the accept queue. This thread opens nothing until the limit is back.
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int connected = 0;
  for (Socket& client : clients) {
    if (connect(client.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        SendAll(client.fd(), Get("/"))) {
      ++connected;
    }
  }
  // Give the loops time to hit the limit (pacing: a too-short pause only weakens the test).
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_EQ(connected, kClients);
  for (int i = 0; i < kClients; ++i) {
    std::string buffer;
    std::optional<HttpResponse> response = ReadResponse(clients[i].fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "client " << i << " was never served";
    EXPECT_EQ(response->body, "Hello World!");
  }
  ExpectServing();
}

TEST_P(ServerTest, SecondEngineOnTheSamePortIsRefused) {
  EngineOptions options;
  options.port = port_;
  absl::StatusOr<std::unique_ptr<Engine>> second =
      ListenLocal(MakeApp(HttpOptions()), GetParam(), options);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use"), std::string_view::npos) << second.status();
  ExpectServing();
}

TEST_P(ServerTest, WorkerEndpointAnsweredByEveryLoop) {
  std::set<std::string> workers;
  for (int i = 0; i < 200; ++i) {
    std::optional<HttpResponse> response = Fetch(Get("/worker"));
    ASSERT_TRUE(response.has_value()) << "connection " << i;
    EXPECT_EQ(response->status, 200);
    workers.insert(response->body);
  }
  EXPECT_EQ(workers, (std::set<std::string>{"worker 0", "worker 1"}));
}

TEST_P(ServerTest, RunReturnsOnceStopped) {
  StopEngine();
  absl::StatusOr<std::unique_ptr<Engine>> engine = ListenLocal(MakeApp(HttpOptions()), GetParam());
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::Status run_status = absl::UnknownError("Run() has not returned");
  std::atomic<bool> returned{false};
  std::thread runner([&] {
    run_status = (*engine)->Run();
    returned.store(true);
  });
  // Run() serves: wait (bounded) for an answer on its port.
  port_ = (*engine)->port();
  std::optional<HttpResponse> response;
  for (auto deadline = Clock::now() + kReadTimeout; !response && Clock::now() < deadline;) {
    response = Fetch(Get("/"));
  }
  EXPECT_TRUE(response.has_value());
  (*engine)->Stop();
  // Run() looks for Stop() every 100 ms.
  for (auto deadline = Clock::now() + kReadTimeout; !returned.load() && Clock::now() < deadline;) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_TRUE(returned.load()) << "Run() did not return within 10 s of Stop()";
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status;
  // A second Start() is refused.
  EXPECT_FALSE((*engine)->Start().ok());
}

TEST_P(ServerTest, NoDescriptorLeftAfterEngineIsDestroyed) {
  StopEngine();
  const int before = CountOpenFds();
  ASSERT_GT(before, 0);
  {
    // Created, never started.
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        ListenLocal(MakeApp(HttpOptions()), GetParam());
    ASSERT_TRUE(engine.ok()) << engine.status();
  }
  EXPECT_EQ(CountOpenFds(), before) << "after an engine that never started";
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        ListenLocal(MakeApp(HttpOptions()), GetParam());
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_TRUE((*engine)->Start().ok());
    port_ = (*engine)->port();
    // Served and closed by the client.
    for (int i = 0; i < 20; ++i) {
      std::optional<HttpResponse> response = Fetch(i % 2 == 0 ? Get("/") : PostEcho("x"));
      ASSERT_TRUE(response.has_value());
    }
    {
      Socket socket = Connect();
      std::string requests;
      for (int i = 0; i < 50; ++i) requests += Get("/");
      ASSERT_TRUE(SendAll(socket.fd(), requests));
      std::string buffer;
      for (int i = 0; i < 50; ++i) ASSERT_TRUE(ReadResponse(socket.fd(), buffer, kReadTimeout));
    }
    // Still open when the engine stops: idle, mid-request, and mid-body.
    std::vector<Socket> open;
    for (int i = 0; i < 6; ++i) {
      open.push_back(Connect());
      std::string buffer;
      ASSERT_TRUE(SendAll(open.back().fd(), Get("/")));
      ASSERT_TRUE(ReadResponse(open.back().fd(), buffer, kReadTimeout).has_value());
    }
    ASSERT_TRUE(SendAll(open[1].fd(), "GET / HTTP/1.1\r\nHo"));
    ASSERT_TRUE(
        SendAll(open[2].fd(), "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab"));
    // Make sure the server has accepted them all: each answered a request above.
    (*engine)->Stop();
    (*engine)->Wait();
    // The engine closed every connection it held.
    for (size_t i = 0; i < open.size(); ++i) {
      percore::testing::ReadToEndResult read = ReadToEnd(open[i].fd(), kReadTimeout);
      EXPECT_NE(read.end, StreamEnd::kTimeout) << "connection " << i << " left open by Stop()";
    }
    engine->reset();
  }
  EXPECT_EQ(CountOpenFds(), before);
}

// The bytes a server answers to `requests`, each conversation on its own connection, read to
// the server's close; Date lines (the only thing allowed to differ) blanked.
std::vector<std::string> Conversations(int port, const std::vector<std::string>& requests) {
  std::vector<std::string> answers;
  for (const std::string& request : requests) {
    Socket socket(ConnectLocal(port));
    EXPECT_TRUE(socket.ok() && SendAll(socket.fd(), request));
    std::string data = ReadToEnd(socket.fd(), kReadTimeout).data;
    for (size_t at = data.find("\r\nDate: "); at != std::string::npos;
         at = data.find("\r\nDate: ", at + 2)) {
      size_t end = data.find("\r\n", at + 2);
      for (size_t i = at + 8; i < end; ++i) data[i] = '#';
    }
    answers.push_back(std::move(data));
  }
  return answers;
}

// io_uring and epoll answer the same conversations with the same bytes.
TEST(BackendEquivalenceTest, BothBackendsAnswerByteForByteTheSame) {
  const std::string close = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  const std::vector<std::string> requests = {
      close,
      Get("/") + Get("/worker?x=1") + PostEcho("hello") + "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" +
          Get("/missing") + "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n" +
          "OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n" + close,
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" +
          close,
      "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc" +
          close,
      PostEcho(RandomBytes(300000, 7)) + close,
      "GET / HTTP/1.0\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + close,
      "GET / HTTP/1.1\r\n\r\n",                                             // 400: no Host
      "GET / HTTP/3.0\r\nHost: a\r\n\r\n",                                  // 505
      "GARBAGE\r\n\r\n",                                                    // 400
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",  // 413
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",  // 400 (RFC 9112 6.3)
  };
  std::vector<std::vector<std::string>> answers;
  for (BackendKind kind : {BackendKind::kIoUring, BackendKind::kEpoll}) {
    EngineOptions options;
    options.address = "127.0.0.1";
    options.threads = 1;
    options.backend = kind;
    absl::StatusOr<std::unique_ptr<Engine>> engine = MakeApp(HttpOptions()).Listen(options);
    if (!engine.ok() && kind == BackendKind::kIoUring) {
      GTEST_SKIP() << "this machine cannot run the io_uring backend: " << engine.status();
    }
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_TRUE((*engine)->Start().ok());
    answers.push_back(Conversations((*engine)->port(), requests));
    (*engine)->Stop();
    (*engine)->Wait();
  }
  ASSERT_EQ(answers[0].size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_FALSE(answers[0][i].empty()) << "conversation " << i;
    EXPECT_EQ(answers[0][i], answers[1][i]) << "conversation " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ServerTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
