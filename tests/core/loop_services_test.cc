// The loop's services through its harness: a callback that throws (a timer's, a posted job's;
// a watch's goes through the same Loop::Guarded) is counted and logged, and the loop and the
// callbacks after it go on. A callback may own move-only state.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "loop.h"
#include "percore/protocol.h"
#include "percore/stats.h"
#include "percore/testing/harness.h"

namespace percore {
namespace {

using percore::testing::LoopHarness;

class Nothing final : public Protocol {
 public:
  std::unique_ptr<Session> NewSession(Connection&) override { return nullptr; }
};

class LoopServicesTest : public ::testing::Test {
 protected:
  LoopServicesTest() : harness_([](Worker&) { return std::make_unique<Nothing>(); }, Logged()) {}

  EngineOptions Logged() {
    EngineOptions options;
    options.log = [this](std::string_view line) { lines_.emplace_back(line); };
    return options;
  }
  Worker& worker() { return harness_.loop().worker(); }
  uint64_t failures() { return worker().stats().callback_failures.load(); }

  std::vector<std::string> lines_;
  LoopHarness harness_;
};

TEST_F(LoopServicesTest, ATimerThatThrowsIsCountedAndTheNextOneRuns) {
  bool later_ran = false;
  worker().After(absl::ZeroDuration(), [] { throw std::runtime_error("oops in a timer"); });
  worker().After(absl::Milliseconds(1), [&] { later_ran = true; });
  ASSERT_TRUE(harness_.RunUntil([&] { return later_ran; }, absl::Seconds(5)));
  EXPECT_EQ(failures(), 1u);
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0], "percore: worker 0: a timer threw: oops in a timer");
}

TEST_F(LoopServicesTest, APostedJobThatThrowsIsCountedAndTheJobsAfterItRun) {
  int ran = 0;
  worker().ref().Post([] { throw 42; });
  worker().ref().Post([&] { ++ran; });
  ASSERT_TRUE(harness_.RunUntil([&] { return ran == 1; }, absl::Seconds(5)));
  EXPECT_EQ(failures(), 1u);
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0],
            "percore: worker 0: a posted job threw: an exception that is not a std::exception");
}

TEST_F(LoopServicesTest, FailuresAreLoggedAtMostOnceASecond) {
  int ran = 0;
  for (int i = 0; i < 5; ++i) worker().ref().Post([] { throw std::runtime_error("again"); });
  worker().ref().Post([&] { ++ran; });
  ASSERT_TRUE(harness_.RunUntil([&] { return ran == 1; }, absl::Seconds(5)));
  EXPECT_EQ(failures(), 5u);
  EXPECT_EQ(lines_.size(), 1u) << "the other four wait for the next line, a second later";
}

// Timers, posted jobs and watches store what they are given as a move-only callable: a lambda
// that owns something move-only (a unique_ptr here; a response handle, a connection of a
// client library) is taken, and destroyed once, after it ran.
TEST_F(LoopServicesTest, CallbacksThatOwnMoveOnlyStateAreTakenAndRunOnce) {
  auto owned = [](int value) { return std::make_unique<int>(value); };
  int sum = 0;
  worker().After(absl::ZeroDuration(), [p = owned(1), &sum] { sum += *p; });
  worker().ref().Post([p = owned(10), &sum] { sum += *p; });
  ASSERT_TRUE(harness_.RunUntil([&] { return sum == 11; }, absl::Seconds(5)));
  EXPECT_EQ(failures(), 0u);
}

}  // namespace
}  // namespace percore
