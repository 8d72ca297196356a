// The restart backoff the engine's supervisor and the guard share, in simulated time.
#include "backoff.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/options.h"

namespace percore {
namespace {

EngineOptions Options(absl::Duration first, absl::Duration max) {
  EngineOptions options;
  options.restart_backoff = first;
  options.max_restart_backoff = max;
  return options;
}

TEST(BackoffTest, QuickDeathsWaitOneAndAHalfTimesLongerEachUpToTheMaximum) {
  Backoff backoff(Options(absl::Milliseconds(100), absl::Milliseconds(300)));
  const absl::Duration quick = absl::Milliseconds(10);
  EXPECT_EQ(backoff.AfterDeath(quick), absl::Milliseconds(100));
  EXPECT_EQ(backoff.AfterDeath(quick), absl::Milliseconds(150));
  EXPECT_EQ(backoff.AfterDeath(quick), absl::Milliseconds(225));
  EXPECT_EQ(backoff.AfterDeath(quick), absl::Milliseconds(300));
  EXPECT_EQ(backoff.AfterDeath(quick), absl::Milliseconds(300));
}

TEST(BackoffTest, HealthyRunStartsOverFromTheFirstDelay) {
  Backoff backoff(Options(absl::Milliseconds(100), absl::Seconds(10)));
  backoff.AfterDeath(absl::ZeroDuration());
  backoff.AfterDeath(absl::ZeroDuration());
  EXPECT_EQ(backoff.AfterDeath(Backoff::kHealthyAfter - absl::Milliseconds(1)),
            absl::Milliseconds(225))
      << "just short of healthy: still backing off";
  EXPECT_EQ(backoff.AfterDeath(Backoff::kHealthyAfter), absl::Milliseconds(100));
  EXPECT_EQ(backoff.AfterDeath(absl::ZeroDuration()), absl::Milliseconds(150));
}

}  // namespace
}  // namespace percore
