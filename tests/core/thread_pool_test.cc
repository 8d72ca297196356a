// percore::ThreadPool: bounded queue that refuses when full, order, Stop(), blocked signals, a
// job that throws.
#include "percore/thread_pool.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "gtest/gtest.h"

namespace percore {
namespace {

constexpr auto kTimeout = std::chrono::seconds(10);

TEST(ThreadPoolTest, RunsJobsInTheOrderSubmittedOnOneThread) {
  ThreadPool pool({.threads = 1, .max_queued = 100});
  std::vector<int> order;
  std::promise<void> done;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.Submit([&order, i] { order.push_back(i); }));
  ASSERT_TRUE(pool.Submit([&done] { done.set_value(); }));
  ASSERT_EQ(done.get_future().wait_for(kTimeout), std::future_status::ready);
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

TEST(ThreadPoolTest, AFullQueueRefusesAtOnce) {
  ThreadPool pool({.threads = 1, .max_queued = 2});
  std::promise<void> release, started;
  std::shared_future<void> gate = release.get_future().share();
  ASSERT_TRUE(pool.Submit([&started, gate] {
    started.set_value();
    gate.wait();
  }));
  ASSERT_EQ(started.get_future().wait_for(kTimeout), std::future_status::ready);
  std::atomic<int> ran{0};
  EXPECT_TRUE(pool.Submit([&ran] { ++ran; }));
  EXPECT_TRUE(pool.Submit([&ran] { ++ran; }));
  EXPECT_EQ(pool.queued(), 2u);
  auto refused = std::make_shared<int>(0);
  EXPECT_FALSE(pool.Submit([refused] { ++*refused; }));
  EXPECT_EQ(refused.use_count(), 1) << "a refused job is destroyed on the caller's thread";
  release.set_value();
  pool.Stop();
  EXPECT_EQ(ran.load(), 2);
}

TEST(ThreadPoolTest, StopRunsWhatIsQueuedThenRefuses) {
  ThreadPool pool({.threads = 2, .max_queued = 1000});
  std::atomic<int> ran{0};
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(pool.Submit([&ran] { ++ran; }));
  pool.Stop();
  EXPECT_EQ(ran.load(), 500);
  EXPECT_FALSE(pool.Submit([&ran] { ++ran; }));
  pool.Stop();  // idempotent
}

TEST(ThreadPoolTest, ItsThreadsBlockSignalsAndTheCallersMaskIsKept) {
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  ThreadPool pool({.threads = 1, .max_queued = 4});
  sigset_t after;
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  EXPECT_EQ(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
  std::promise<sigset_t> mask;
  ASSERT_TRUE(pool.Submit([&mask] {
    sigset_t m;
    pthread_sigmask(SIG_SETMASK, nullptr, &m);
    mask.set_value(m);
  }));
  std::future<sigset_t> got = mask.get_future();
  ASSERT_EQ(got.wait_for(kTimeout), std::future_status::ready);
  const sigset_t in_job = got.get();
  for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) {
    EXPECT_EQ(sigismember(&in_job, signal), 1) << "signal " << signal;
  }
}

TEST(ThreadPoolTest, AJobThatThrowsLeavesTheThreadServing) {
  ThreadPool pool({.threads = 1, .max_queued = 4});
  std::promise<void> done;
  ASSERT_TRUE(pool.Submit([] { throw std::runtime_error("job failed (expected by the test)"); }));
  ASSERT_TRUE(pool.Submit([&done] { done.set_value(); }));
  EXPECT_EQ(done.get_future().wait_for(kTimeout), std::future_status::ready);
}

}  // namespace
}  // namespace percore
