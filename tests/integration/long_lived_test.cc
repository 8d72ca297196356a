// Long-lived answers: a stream whose client leaves after its first piece is aborted
// (Response::OnAborted registered after Write), and one that only ends when told the
// loop closes (OnClosing) lets a drain or a rolling restart finish well under the shutdown
// timeout. The event stream is docs/guide.md's example. In-process on 127.0.0.1, once per
// backend; every wait has a deadline.
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using percore::http::App;
using percore::http::Response;
using percore::http::Request;
using percore::testing::ConnectLocal;
using percore::testing::Get;
using percore::testing::ReadToEnd;
using percore::testing::ReadToEndResult;
using percore::testing::SendAll;
using percore::testing::Socket;
using percore::testing::StreamEnd;
using percore::testing::WaitUntil;

constexpr milliseconds kTimeout(10000);

// docs/guide.md, "Long-lived answers and the drain": an event stream that ends cleanly when the
// server closes.
void AddEventStream(App& app) {
  app.Get("/events", [](const Request&, Response& res) {
    Response events = res.Defer();
    events.Type("text/event-stream").Set("Cache-Control", "no-store");
    events.Write("retry: 1000\n\n");  // sends the head: chunked, as the stream has no length
    // ... move `events` where the publisher finds it (this loop's list of subscribers), and
    // drop it there from OnAborted: its client left.
    events.OnClosing([](Response& events) {  // the server drains: end; the client reconnects
      events.Write("event: bye\ndata: server closing\n\n");
      events.End();
    });
  });
}

// Reads from `fd` into `buffer` until it holds `needle`; false if the deadline passes first.
bool ReadUntil(int fd, std::string& buffer, std::string_view needle, milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (buffer.find(needle) == std::string::npos) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

class LongLivedTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    App app;
    AddEventStream(app);
    // A stream that registers OnAborted only after its first piece went out; the callback
    // notes what the answer then says of itself.
    app.Get("/late-abort", [this](const Request&, Response& res) {
      auto stream = std::make_shared<Response>(res.Defer());  // the callback looks at it
      stream->Write("first\n");
      stream->OnAborted([this, stream] {
        aborted_seen_ = stream->aborted();
        write_after_abort_ = stream->Write("more");
        ++aborted_;
      });
    });
    EngineOptions options;
    options.threads = 1;
    options.drain_delay = absl::ZeroDuration();
    // Longer than any wait below: a drain that runs this long is a drain the stream held up.
    options.shutdown_timeout = absl::Seconds(20);
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        percore::testing::ListenLocal(app, GetParam(), options);
    if (!engine.ok() && percore::testing::IoUringUnavailable(engine.status())) {
      GTEST_SKIP() << engine.status();
    }
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    // Start() and Wait() on one thread (Wait carries out drains and rolls); the test asks for
    // them from its own.
    std::atomic<int> port{-1};
    supervisor_ = std::thread([this, &port] {
      port.store(engine_->Start().ok() ? engine_->port() : 0);
      engine_->Wait();
      waited_ = true;
    });
    ASSERT_TRUE(WaitUntil([&] { return port.load() >= 0; }, kTimeout));
    port_ = port.load();
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    if (engine_ == nullptr) return;
    engine_->Stop();
    if (supervisor_.joinable()) supervisor_.join();
  }

  // An event stream with its first event read.
  Socket OpenEvents(std::string& buffer) {
    Socket client(ConnectLocal(port_));
    EXPECT_TRUE(SendAll(client.fd(), Get("/events")));
    EXPECT_TRUE(ReadUntil(client.fd(), buffer, "retry: 1000\n\n", kTimeout)) << buffer;
    return client;
  }

  std::unique_ptr<Engine> engine_;
  std::thread supervisor_;
  std::atomic<bool> waited_{false};
  int port_ = 0;
  std::atomic<int> aborted_{0};
  std::atomic<bool> aborted_seen_{false};
  std::atomic<bool> write_after_abort_{true};
};

TEST_P(LongLivedTest, OnAbortedRegisteredAfterTheFirstWriteRunsWhenTheClientLeaves) {
  {
    Socket client(ConnectLocal(port_));
    ASSERT_TRUE(SendAll(client.fd(), Get("/late-abort")));
    std::string buffer;
    ASSERT_TRUE(ReadUntil(client.fd(), buffer, "first\n", kTimeout)) << buffer;
  }  // the client leaves mid-stream
  ASSERT_TRUE(WaitUntil([&] { return aborted_.load() == 1; }, kTimeout));
  EXPECT_TRUE(aborted_seen_.load());
  EXPECT_FALSE(write_after_abort_.load());
}

TEST_P(LongLivedTest, DrainEndsAnEventStreamCleanlyWellUnderTheShutdownTimeout) {
  std::string buffer;
  Socket client = OpenEvents(buffer);
  const Clock::time_point start = Clock::now();
  engine_->Drain();
  ReadToEndResult rest = ReadToEnd(client.fd(), kTimeout);
  buffer += rest.data;
  EXPECT_EQ(rest.end, StreamEnd::kClosed);
  // The last event, then the last chunk: a complete answer, not a cut one.
  const std::string last = "event: bye\ndata: server closing\n\n\r\n0\r\n\r\n";
  ASSERT_GE(buffer.size(), last.size()) << buffer;
  EXPECT_EQ(buffer.substr(buffer.size() - last.size()), last) << buffer;
  ASSERT_TRUE(WaitUntil([&] { return waited_.load(); }, milliseconds(5000)))
      << "the drain did not end within 5 s";
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST_P(LongLivedTest, RollingRestartEndsAnEventStreamOfTheReplacedLoop) {
  std::string buffer;
  Socket client = OpenEvents(buffer);
  engine_->Reload();
  ReadToEndResult rest = ReadToEnd(client.fd(), milliseconds(5000));
  buffer += rest.data;
  EXPECT_EQ(rest.end, StreamEnd::kClosed) << buffer;
  EXPECT_NE(buffer.find("event: bye\n"), std::string::npos) << buffer;
  // The new loop serves.
  std::string again;
  Socket next = OpenEvents(again);
}

INSTANTIATE_TEST_SUITE_P(Backends, LongLivedTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
