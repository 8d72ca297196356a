// The engine's life around its connections, in-process on 127.0.0.1 (server_suite.h): accepts
// after running out of descriptors, a second engine on a port in use, Run() returning once
// stopped, no descriptor left after the engine, and both backends answering byte for byte alike.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/options.h"
#include "server_suite.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using http::HttpOptions;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

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
}  // namespace percore::testing
