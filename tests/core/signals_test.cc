// Signals taken with sigtimedwait (percore/signals.h), as the engine and the guard take theirs.
#include "percore/signals.h"

#include <pthread.h>
#include <signal.h>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace percore {
namespace {

bool Blocked(int signal) {
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  return sigismember(&mask, signal) == 1;
}

TEST(SignalsTest, BlockedSignalIsTakenNotDelivered) {
  ASSERT_FALSE(Blocked(SIGUSR1));
  {
    const BlockedSignals signals({SIGUSR1, SIGUSR2});
    EXPECT_TRUE(Blocked(SIGUSR1));
    EXPECT_TRUE(Blocked(SIGUSR2));
    EXPECT_EQ(signals.Wait(absl::ZeroDuration()), -1);  // none pending
    ASSERT_EQ(raise(SIGUSR2), 0);  // unblocked, its default action would end this process
    EXPECT_EQ(signals.Wait(absl::Seconds(5)), SIGUSR2);
    EXPECT_FALSE(sigismember(&signals.previous(), SIGUSR1));
  }
  EXPECT_FALSE(Blocked(SIGUSR1));
  EXPECT_FALSE(Blocked(SIGUSR2));
}

// One left pending is taken on the way out, not delivered (which would end the process).
TEST(SignalsTest, PendingSignalIsDiscardedWhenUnblocked) {
  {
    const BlockedSignals signals({SIGUSR1});
    ASSERT_EQ(raise(SIGUSR1), 0);
  }
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGUSR1));
  EXPECT_FALSE(Blocked(SIGUSR1));
}

}  // namespace
}  // namespace percore
