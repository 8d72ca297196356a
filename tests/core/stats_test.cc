// The counters loops write and any thread reads: a worker's sum over its loop instances, and
// the activity words a reader must never see torn while the loop rewrites them.
#include "percore/stats.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace percore {
namespace {

TEST(StatsTest, ActivityKeepsSixtyThreeBytes) {
  LoopStats stats;
  EXPECT_EQ(stats.Activity(), "");
  stats.SetActivity("GET /stall?ms=3000");
  EXPECT_EQ(stats.Activity(), "GET /stall?ms=3000");
  const std::string long_target(100, 'x');
  stats.SetActivity("POST " + long_target);
  EXPECT_EQ(stats.Activity(), "POST " + std::string(58, 'x'));
  stats.SetActivity("GET /");
  EXPECT_EQ(stats.Activity(), "GET /");  // no bytes left over from the longer one
}

// The loop rewrites its activity while the supervisor reads it: every read is one of the
// values written, whole, or "?" when the writer kept it busy for every attempt.
TEST(StatsTest, ActivityIsNeverSeenTornUnderAConcurrentWriter) {
  LoopStats stats;
  const std::string a = "GET /" + std::string(50, 'a');
  const std::string b = "PUT /" + std::string(20, 'b');
  stats.SetActivity(a);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      if (i % 2 == 0) {
        stats.SetActivity(b);
      } else {
        stats.SetActivity(a);
      }
      // A writer that never pauses can keep every read busy ("?") on a loaded machine: the
      // loop it stands for pauses at least between requests.
      if (i % 64 == 0) std::this_thread::yield();
    }
  });
  int whole = 0;
  // 200,000 reads, and on until one is whole (bounded: a deadline stops a reader that never
  // gets one, and the test then fails).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < 200000 || (whole == 0 && std::chrono::steady_clock::now() < deadline);
       ++i) {
    const std::string seen = stats.Activity();
    if (seen == "?") continue;
    ASSERT_TRUE(seen == a || seen == b) << "torn read: \"" << seen << "\"";
    ++whole;
  }
  stop.store(true);
  writer.join();
  EXPECT_GT(whole, 0);
}

TEST(StatsTest, WorkerCountersSumTheLoopInstancesAndTakeTheLargerLag) {
  EngineStats engine(2);
  WorkerStats& worker = engine.worker(1);
  worker.cpu = 3;
  worker.restarts.store(2);
  worker.stalls.store(1);
  LoopStats::Add(worker.instances[0].accepted, 5);
  LoopStats::Add(worker.instances[1].accepted, 7);
  LoopStats::Add(worker.instances[0].responses[1], 10);  // 2xx
  LoopStats::Add(worker.instances[1].responses[4], 3);   // 5xx
  LoopStats::Add(worker.instances[1].not_ready_answers, 3);
  worker.instances[0].lag_us.store(400);
  worker.instances[1].lag_us.store(90);
  const WorkerCounters counters = engine.Read(1);
  EXPECT_EQ(counters.cpu, 3);
  EXPECT_EQ(counters.accepted, 12u);
  EXPECT_EQ(counters.responses[1], 10u);
  EXPECT_EQ(counters.responses[4], 3u);
  EXPECT_EQ(counters.requests(), 13u);
  EXPECT_EQ(counters.not_ready_answers, 3u);
  EXPECT_EQ(counters.lag_us, 400u);
  EXPECT_EQ(counters.restarts, 2u);
  EXPECT_EQ(counters.stalls, 1u);
  EXPECT_EQ(engine.Read(0).requests(), 0u);  // the other worker's own
}

}  // namespace
}  // namespace percore
