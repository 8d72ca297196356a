// When a draining host counts as out of its load balancer, in simulated time.
#include "drain_watch.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/options.h"

namespace percore {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

absl::Time At(int ms) { return kStart + absl::Milliseconds(ms); }

EngineOptions Options() {
  EngineOptions options;
  options.drain_delay = absl::Seconds(10);
  options.drain_checks = 3;
  options.drain_idle = absl::Seconds(1);
  return options;
}

TEST(DrainWatchTest, NothingBalancingAnIdleHostStopsAfterTheIdleTime) {
  const EngineOptions options = Options();
  DrainWatch watch(options, kStart, 50, 0);
  EXPECT_FALSE(watch.Over(At(999), 50, 0));
  std::optional<std::string> why = watch.Over(At(1000), 50, 0);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "No request for 1s and no readiness check");
}

TEST(DrainWatchTest, RequestsKeepTheHostServingUntilTheDrainDelay) {
  const EngineOptions options = Options();
  DrainWatch watch(options, kStart, 0, 0);
  uint64_t answered = 0;
  for (int ms = 100; ms < 10000; ms += 100) {
    answered += 5;
    ASSERT_FALSE(watch.Over(At(ms), answered, 0)) << "at " << ms << " ms";
  }
  std::optional<std::string> why = watch.Over(At(10000), answered + 5, 0);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "Drain delay 10s passed");
}

// A balancer checking every 2 s with fall 3 while clients keep sending: the host keeps serving
// through the failed checks and stops once they are enough and the requests have stopped.
TEST(DrainWatchTest, BalancedHostWaitsForTheFallCountThenForTheRequestsToStop) {
  const EngineOptions options = Options();
  DrainWatch watch(options, kStart, 1000, 4);  // 4 "not ready" answers from before the drain
  uint64_t answered = 1000, not_ready = 4;
  for (int ms = 20; ms <= 6000; ms += 20) {
    if (ms % 2000 == 0) {  // a failed check, counted as "not ready" before it is answered
      ++not_ready;
      ASSERT_FALSE(watch.Over(At(ms), answered, not_ready)) << "at " << ms << " ms";
      ++answered;
    }
    if (ms < 6000) answered += 3;  // clients' requests, until the third failed check
    ASSERT_FALSE(watch.Over(At(ms), answered, not_ready)) << "at " << ms << " ms";
  }
  // The last client request was answered at 5980 ms.
  EXPECT_FALSE(watch.Over(At(6979), answered, not_ready));
  std::optional<std::string> why = watch.Over(At(6980), answered, not_ready);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "Out of the load balancer (3 readiness checks failed, no request for 1s)");
}

// Sparse traffic behind a checking balancer: a quiet second alone is not enough once a check
// has come, because the balancer has not marked the host down yet.
TEST(DrainWatchTest, QuietIsNotEnoughOnceAReadinessCheckCame) {
  const EngineOptions options = Options();
  DrainWatch watch(options, kStart, 0, 0);
  EXPECT_FALSE(watch.Over(At(500), 1, 1));
  EXPECT_FALSE(watch.Over(At(3000), 2, 2));
  EXPECT_FALSE(watch.Over(At(5000), 2, 2));
  std::optional<std::string> why = watch.Over(At(5500), 3, 3);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "Out of the load balancer (3 readiness checks failed, no request for 1s)");
}

TEST(DrainWatchTest, NoDrainDelayStopsAtOnce) {
  EngineOptions options = Options();
  options.drain_delay = absl::ZeroDuration();
  DrainWatch watch(options, kStart, 7, 0);
  EXPECT_TRUE(watch.Over(kStart, 9, 0));
}

}  // namespace
}  // namespace percore
