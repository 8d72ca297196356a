// Serving, with the engine in-process on 127.0.0.1 (server_suite.h), once per backend:
// keep-alive, pipelining, many connections, clients that leave mid-request or mid-response,
// bodies, HTTP/1.0. Closes and timeouts are in server_close_test.cc, the engine's life around
// its connections in server_lifecycle_test.cc.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "percore/options.h"
#include "server_suite.h"
#include "support/backends.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using std::chrono::milliseconds;

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

INSTANTIATE_TEST_SUITE_P(Backends, ServerTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore::testing
