// Answers that come later (Response::Defer) and the loop services behind them (Worker::After,
// Worker::Watch, WorkerRef::Post), in-process on 127.0.0.1, once per backend (deferred_suite.h).
// Streamed request bodies and files are in deferred_body_test.cc.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "deferred_suite.h"
#include "gtest/gtest.h"
#include "support/backends.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

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
  WorkerRef ref;
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
          if (!ref.OnWorkerThread()) ++*off_loop;
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
  EXPECT_FALSE(ref.OnWorkerThread());
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

TEST_P(DeferredTest, RequestKnowsItsPeerAddress) {
  Socket s = Connect();
  sockaddr_in local{};
  socklen_t length = sizeof(local);
  ASSERT_EQ(getsockname(s.fd(), reinterpret_cast<sockaddr*>(&local), &length), 0);
  std::string buffer;
  ASSERT_TRUE(SendAll(s.fd(), Get("/peer")));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "127.0.0.1 " + std::to_string(ntohs(local.sin_port)));
}

INSTANTIATE_TEST_SUITE_P(Backends, DeferredTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore::testing
