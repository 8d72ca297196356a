// Answers that come later (Response::Defer) and the loop services behind them (Worker::After,
// LoopRef::Post), in-process on 127.0.0.1, once per backend. Every wait has a deadline.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/http/task.h"
#include "percore/options.h"
#include "support/backends.h"
#include "support/test_client.h"

namespace percore {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using percore::http::App;
using percore::http::DeferredResponse;
using percore::http::OnThread;
using percore::http::Request;
using percore::http::Response;
using percore::http::Sleep;
using percore::http::Task;
using percore::testing::ConnectLocal;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::ReadResponse;
using percore::testing::ReadToEnd;
using percore::testing::ReadToEndResult;
using percore::testing::SendAll;
using percore::testing::Socket;
using percore::testing::StreamEnd;
using percore::testing::WaitUntil;

constexpr milliseconds kTimeout(10000);

int64_t MicrosNow() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

int QueryInt(const Request& req, std::string_view key) {
  return std::stoi(std::string(req.Query(key)));
}

class DeferredTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    App app;
    app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
    app.Get("/delay", [](const Request& req, Response& res) {
      const int ms = QueryInt(req, "ms");
      DeferredResponse later = res.Defer();
      req.worker().After(absl::Milliseconds(ms),
                         [later, ms]() mutable { later.Send("delayed " + std::to_string(ms)); });
    });
    app.Get("/abortable", [this](const Request& req, Response& res) {
      DeferredResponse later = res.Defer();
      later.OnAborted([this] { ++aborted_; });
      ++taken_;
      req.worker().After(absl::Milliseconds(QueryInt(req, "ms")), [this, later]() mutable {
        later.Send("too late");  // a no-op once aborted
        timer_ran_ = true;
      });
    });
    app.Get("/chunks", [](const Request& req, Response& res) {
      DeferredResponse later = res.Defer();
      later.Write("a");
      req.worker().After(absl::Milliseconds(20), [later]() mutable {
        later.Write("bc");
        later.End();
      });
    });
    app.Get("/watch", [](const Request& req, Response& res) {
      // A pipe another thread writes two bytes to; the watch reads one per call, so it must be
      // called again while the pipe stays readable (level-triggered), then unwatches.
      int fds[2];
      if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        res.Status(500).Send("pipe2 failed");
        return;
      }
      DeferredResponse later = res.Defer();
      Worker& worker = req.worker();
      auto got = std::make_shared<std::string>();
      auto id = std::make_shared<WatchId>(0);
      *id = worker.Watch(fds[0], kReadable, [&worker, fds, got, id, later](uint32_t ready) mutable {
        char c;
        if ((ready & kReadable) != 0 && read(fds[0], &c, 1) == 1) got->push_back(c);
        if (got->size() < 2) return;
        EXPECT_TRUE(worker.Unwatch(*id));
        EXPECT_FALSE(worker.Unwatch(*id));
        close(fds[0]);
        close(fds[1]);
        later.Send("watched " + *got);
      });
      if (*id == 0) {
        later.Status(500).Send("Watch refused the pipe");
        return;
      }
      std::thread([fd = fds[1]] { [[maybe_unused]] ssize_t n = write(fd, "ab", 2); }).detach();
    });
    app.Get("/co", percore::http::Async([](const Request& req, DeferredResponse res) -> Task {
              Worker& worker = req.worker();
              const int ms = QueryInt(req, "ms");
              co_await Sleep(worker, absl::Milliseconds(ms));
              const int value = co_await OnThread(
                  worker, [](std::function<void()> job) { std::thread(std::move(job)).detach(); },
                  [] { return 41 + 1; });
              res.Send("co " + std::to_string(ms) + " " + std::to_string(value));
            }));
    app.Get("/co-throw", percore::http::Async([](const Request& req, DeferredResponse) -> Task {
              co_await Sleep(req.worker(), absl::Milliseconds(1));
              throw std::runtime_error("from the coroutine");
            }));
    app.Get("/drop", [](const Request&, Response& res) {
      res.Set("X-Kept", "yes");
      DeferredResponse dropped = res.Defer();  // and never answered
    });
    app.Get("/thread", [](const Request&, Response& res) {
      DeferredResponse later = res.Defer();
      std::thread([later]() mutable {
        later.loop().Post([later]() mutable { later.Status(202).Send("from another thread"); });
      }).detach();
    });
    app.Get("/ref", [this](const Request& req, Response& res) {
      std::lock_guard<std::mutex> lock(mutex_);
      ref_ = req.worker().ref();
      res.Send("ok");
    });
    app.Get("/crash", [](const Request& req, Response& res) {
      req.worker().Crash("crash requested by /crash");
      res.Send("crashing");
    });
    app.Get("/timers", [this](const Request& req, Response& res) {
      // 50,000 timers over 0..199 ms (timer i waits i % 200 ms), every third cancelled. Each
      // that runs checks that it is not early, and that every timer armed before it with no
      // longer a delay has run (due no later; due alike, armed first).
      DeferredResponse later = res.Defer();
      Worker& worker = req.worker();
      auto state = std::make_shared<TimerState>();
      constexpr int kTimers = 50000;
      constexpr int kDelays = 200;
      for (int d = 0; d < kDelays; ++d) {
        int first = d;
        while (first % 3 == 0) first += kDelays;  // cancelled
        state->next.push_back(first);
      }
      std::vector<TimerId> ids;
      for (int i = 0; i < kTimers; ++i) {
        const int64_t due_us = MicrosNow() + (i % kDelays) * 1000;
        ids.push_back(
            worker.After(absl::Milliseconds(i % kDelays), [state, due_us, i, later]() mutable {
              const int d = i % kDelays;
              if (i % 3 == 0) ++state->cancelled_ran;
              if (MicrosNow() < due_us) ++state->early;
              bool in_order = state->next[d] == i;
              for (int e = 0; e < d; ++e) in_order = in_order && state->next[e] > i;
              if (!in_order) ++state->out_of_order;
              int next = i + kDelays;
              while (next % 3 == 0) next += kDelays;  // cancelled
              state->next[d] = next;
              if (++state->ran == kTimers - (kTimers + 2) / 3) {
                later.Send(std::to_string(state->ran) + " " + std::to_string(state->early) + " " +
                           std::to_string(state->out_of_order) + " " +
                           std::to_string(state->cancelled_ran));
              }
            }));
      }
      int cancelled = 0;
      for (int i = 0; i < kTimers; i += 3) cancelled += worker.Cancel(ids[i]) ? 1 : 0;
      if (cancelled != (kTimers + 2) / 3 || worker.Cancel(ids[0])) {
        later.Status(500).Send("Cancel returned the wrong value");
      }
    });
    EngineOptions options;
    options.address = "127.0.0.1";
    options.threads = 1;
    options.backend = GetParam();
    absl::StatusOr<std::unique_ptr<Engine>> engine = app.Listen(options);
    if (!engine.ok() && GetParam() == BackendKind::kIoUring &&
        engine.status().message().find("io_uring unavailable") != std::string_view::npos) {
      GTEST_SKIP() << engine.status();
    }
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    ASSERT_TRUE(engine_->Start().ok());
    port_ = engine_->port();
  }

  void TearDown() override {
    if (engine_ == nullptr) return;
    engine_->Stop();
    engine_->Wait();
  }

  Socket Connect() { return Socket(ConnectLocal(port_)); }

  struct TimerState {
    int ran = 0;
    int early = 0;
    int out_of_order = 0;
    int cancelled_ran = 0;
    std::vector<int> next;  // per delay, the index of the next timer to run
  };

  std::unique_ptr<Engine> engine_;
  int port_ = 0;
  std::atomic<int> aborted_{0};
  std::atomic<int> taken_{0};  // /abortable requests handled
  std::atomic<bool> timer_ran_{false};
  std::mutex mutex_;
  LoopRef ref_;
};

TEST_P(DeferredTest, AnswerFromATimerWhileTheLoopServesOthers) {
  Socket slow = Connect();
  Socket fast = Connect();
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(slow.fd(), Get("/delay?ms=300")));
  std::string fast_buffer;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(SendAll(fast.fd(), Get("/")));
    std::optional<HttpResponse> r = ReadResponse(fast.fd(), fast_buffer, kTimeout);
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->body, "Hello World!");
  }
  std::string slow_buffer;
  std::optional<HttpResponse> r = ReadResponse(slow.fd(), slow_buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "delayed 300");
  EXPECT_GE(Clock::now() - start, milliseconds(300));
  // The connection goes on.
  ASSERT_TRUE(SendAll(slow.fd(), Get("/")));
  r = ReadResponse(slow.fd(), slow_buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, PipelinedDeferredAndImmediateRequestsAreAnsweredInOrder) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), Get("/delay?ms=100") + Get("/") + Get("/delay?ms=10") + Get("/") +
                                  Get("/delay?ms=0")));
  std::string buffer;
  const std::vector<std::string> expected = {"delayed 100", "Hello World!", "delayed 10",
                                             "Hello World!", "delayed 0"};
  for (const std::string& body : expected) {
    std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
    ASSERT_TRUE(r.has_value()) << body;
    EXPECT_EQ(r->body, body);
  }
}

TEST_P(DeferredTest, ClientLeavingBeforeTheAnswerAbortsItOnce) {
  {
    Socket c = Connect();
    ASSERT_TRUE(SendAll(c.fd(), Get("/abortable?ms=300")));
    ASSERT_TRUE(WaitUntil([this] { return taken_.load() == 1; }, kTimeout));
    c.Reset();
  }
  EXPECT_TRUE(WaitUntil([this] { return aborted_.load() == 1; }, kTimeout)) << aborted_.load();
  EXPECT_TRUE(WaitUntil([this] { return timer_ran_.load(); }, kTimeout));
  EXPECT_EQ(aborted_.load(), 1);
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/"), kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_P(DeferredTest, StreamedPiecesGoOutChunkedAndTheConnectionGoesOn) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), Get("/chunks") + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("transfer-encoding"), "chunked");
  EXPECT_EQ(r->body, "abc");
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, StreamedPiecesToHttp10EndWithTheConnection) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), "GET /chunks HTTP/1.0\r\n\r\n"));
  ReadToEndResult all = ReadToEnd(c.fd(), kTimeout);
  EXPECT_EQ(all.end, StreamEnd::kClosed);
  EXPECT_EQ(all.data.find("Transfer-Encoding"), std::string::npos) << all.data;
  EXPECT_NE(all.data.find("Connection: close\r\n"), std::string::npos) << all.data;
  EXPECT_TRUE(all.data.ends_with("\r\n\r\nabc")) << all.data;
}

TEST_P(DeferredTest, DroppedDeferredResponseAnswers500AndTheConnectionGoesOn) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), Get("/drop") + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->Header("x-kept"), "");
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, WatchedPipeIsReportedUntilUnwatched) {
  for (int i = 0; i < 3; ++i) {  // watches come and go on one loop
    std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/watch"), kTimeout);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "watched ab");
  }
}

TEST_P(DeferredTest, CoroutineHandlerAwaitsATimerAndAnotherThread) {
  Socket c = Connect();
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(c.fd(), Get("/co?ms=30") + Get("/co-throw") + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "co 30 42");
  EXPECT_GE(Clock::now() - start, milliseconds(30));
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, AnswerPostedFromAnotherThread) {
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/thread"), kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "from another thread");
}

TEST_P(DeferredTest, PostsFromEightThreadsRunOnceEachOnTheLoopAndAreRefusedAfterIt) {
  ASSERT_TRUE(percore::testing::Fetch(port_, Get("/ref"), kTimeout).has_value());
  LoopRef ref;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ref = ref_;
  }
  constexpr int kThreads = 8;
  constexpr int kJobs = 5000;
  auto counts = std::make_shared<std::vector<int>>(kThreads * kJobs, 0);  // loop thread only
  auto off_loop = std::make_shared<std::atomic<int>>(0);
  auto done = std::make_shared<std::atomic<int>>(0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([=] {
      for (int j = 0; j < kJobs; ++j) {
        const bool posted = ref.Post([=] {
          if (!ref.OnLoopThread()) ++*off_loop;
          ++(*counts)[t * kJobs + j];
          ++*done;
        });
        if (!posted) return;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(WaitUntil([&] { return done->load() == kThreads * kJobs; }, kTimeout))
      << done->load();
  EXPECT_EQ(off_loop->load(), 0);
  EXPECT_EQ(std::count(counts->begin(), counts->end(), 1), kThreads * kJobs);
  EXPECT_FALSE(ref.OnLoopThread());
  engine_->Stop();
  engine_->Wait();
  EXPECT_FALSE(ref.Post([] {})) << "a post to a loop that exited";
}

TEST_P(DeferredTest, FiftyThousandTimersRunInOrderAndCancelledOnesNever) {
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/timers"), kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  // ran, early, out of order, cancelled that ran
  EXPECT_EQ(r->body, "33333 0 0 0");
}

TEST_P(DeferredTest, LoopDeathClosesAConnectionWaitingForItsAnswerAndAbortsIt) {
  Socket waiting = Connect();
  ASSERT_TRUE(SendAll(waiting.fd(), Get("/abortable?ms=5000")));
  ASSERT_TRUE(WaitUntil([this] { return taken_.load() == 1; }, kTimeout));
  Socket crasher = Connect();
  ASSERT_TRUE(SendAll(crasher.fd(), Get("/crash")));
  ReadToEndResult end = ReadToEnd(waiting.fd(), kTimeout);
  EXPECT_NE(end.end, StreamEnd::kTimeout) << "the waiting connection stayed open";
  EXPECT_EQ(end.data, "");
  EXPECT_TRUE(WaitUntil([this] { return aborted_.load() == 1; }, kTimeout)) << aborted_.load();
}

INSTANTIATE_TEST_SUITE_P(Backends, DeferredTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
