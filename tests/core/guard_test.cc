// The guard (RunGuarded, core/src/guard.cc) with real child processes: each test's `serve` runs
// in the forked child and reports through memory shared across the fork. Each test runs in its
// own process (gtest_discover_tests), with no other thread, as RunGuarded requires.
#include "percore/guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "listener.h"
#include "percore/options.h"

namespace percore {
namespace {

using ::testing::ElementsAre;
using ::testing::MatchesRegex;

// Counters the children write and the test reads, in a shared anonymous mapping.
struct Shared {
  std::atomic<int> runs{0};
  std::atomic<int> port{-1};  // the port the child's listen_fds[0] is bound to
  std::atomic<int> listen_fds{0};
};

class GuardTest : public ::testing::Test {
 protected:
  GuardTest() {
    void* memory =
        mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    shared_ = new (memory) Shared();
    options_.address = "127.0.0.1";
    options_.port = 0;
    options_.threads = 2;
    options_.restart_backoff = absl::Milliseconds(20);
    options_.log = [this](std::string_view line) { log_.emplace_back(line); };
  }
  ~GuardTest() override { munmap(shared_, sizeof(Shared)); }

  Shared* shared_;
  EngineOptions options_;
  std::vector<std::string> log_;
};

TEST_F(GuardTest, TheChildServesOnTheGuardsSocketsAndItsExitCodeIsReturned) {
  Shared* shared = shared_;
  absl::StatusOr<int> code = RunGuarded(options_, [shared](const EngineOptions& options) {
    shared->runs.fetch_add(1);
    shared->listen_fds.store(static_cast<int>(options.listen_fds.size()));
    shared->port.store(BoundPort(options.listen_fds[0]));
    return 3;
  });
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 3) << "an exit of its own is not retried";
  EXPECT_EQ(shared_->runs.load(), 1);
  EXPECT_EQ(shared_->listen_fds.load(), 2) << "one listener per loop";
  EXPECT_GT(shared_->port.load(), 0);
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_THAT(log_[0], MatchesRegex("Guard [0-9]+ holds port [0-9]+; the engine runs in a worker "
                                    "process"));
}

TEST_F(GuardTest, AChildKilledByASignalIsRestartedWithBackoff) {
  Shared* shared = shared_;
  absl::StatusOr<int> code = RunGuarded(options_, [shared](const EngineOptions&) {
    if (shared->runs.fetch_add(1) < 2) raise(SIGKILL);  // the first two die, as a crash would
    return 0;
  });
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(shared_->runs.load(), 3);
  ASSERT_EQ(log_.size(), 3u);
  EXPECT_THAT(log_[1],
              MatchesRegex("Worker process [0-9]+ died \\(signal 9\\); restarting in 20ms"));
  EXPECT_THAT(log_[2],
              MatchesRegex("Worker process [0-9]+ died \\(signal 9\\); restarting in 30ms"));
}

TEST_F(GuardTest, SigtermIsPassedToTheChildAndNothingIsRestartedAfterIt) {
  Shared* shared = shared_;
  absl::StatusOr<int> code = RunGuarded(options_, [shared](const EngineOptions&) {
    shared->runs.fetch_add(1);
    // The child keeps SIGTERM blocked (for Engine::Run() to take): wait for the guard's copy.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    kill(getppid(), SIGTERM);  // as systemd or a terminal would signal the guard
    int signal = 0;
    sigwait(&set, &signal);
    if (signal == SIGTERM) raise(SIGKILL);  // dies after the stop: not restarted
    return 1;
  });
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_EQ(shared_->runs.load(), 1);
}

TEST_F(GuardTest, BadOptionsAreRefusedBeforeAnythingIsBoundOrForked) {
  options_.stall_timeout = absl::ZeroDuration();
  Shared* shared = shared_;
  absl::StatusOr<int> code = RunGuarded(options_, [shared](const EngineOptions&) {
    shared->runs.fetch_add(1);
    return 0;
  });
  EXPECT_EQ(code.status(), absl::InvalidArgumentError("stall_timeout 0 must be > 0"));
  EXPECT_EQ(shared_->runs.load(), 0);
  EXPECT_THAT(log_, ElementsAre());
}

}  // namespace
}  // namespace percore
