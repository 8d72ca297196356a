// The supervisor's rules in simulated time: the test plays the loop instances (they die, stall,
// stop accepting, exit when told) and steps the clock by hand, to the millisecond. What only
// real threads show stays in tests/integration/supervisor_test.cc and supervisor_drain_test.cc.
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "percore/options.h"
#include "percore/stats.h"
#include "supervisor.h"

namespace percore {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

// Starts nothing: records what the supervisor asked for.
class FakeRunner : public InstanceRunner {
 public:
  std::future<absl::Status> Start(int id, int place, Instance& instance) override {
    starts.emplace_back(id, place);
    std::promise<absl::Status> started;
    if (!fail_next_start.ok()) {
      instance.exit_status = std::exchange(fail_next_start, absl::OkStatus());
      instance.exited.store(true);
    }
    started.set_value(instance.exit_status);
    return started.get_future();
  }
  void Wake(int, int) override { ++wakes; }
  void CloseListeners() override { ++listener_closes; }

  std::vector<std::pair<int, int>> starts;  // (worker, place)
  absl::Status fail_next_start;
  int wakes = 0;
  int listener_closes = 0;
};

class SupervisorStepTest : public ::testing::Test {
 protected:
  SupervisorStepTest() {
    options_.restart_backoff = absl::Milliseconds(100);
    options_.max_restart_backoff = absl::Seconds(1);
    options_.crash_loop_deaths = 3;
    options_.crash_loop_window = absl::Seconds(10);
    options_.stall_timeout = absl::Seconds(1);
    options_.stuck_timeout = absl::Seconds(3);
    options_.shutdown_timeout = absl::Seconds(5);
    options_.drain_delay = absl::Seconds(10);
    options_.drain_checks = 3;
    options_.drain_idle = absl::Seconds(1);
    options_.log = [this](std::string_view line) { log_.emplace_back(line); };
    for (size_t id = 0; id < stats_.size(); ++id) stats_.worker(id).cpu = static_cast<int>(id) + 4;
  }

  // Starts the supervisor at t0 with both workers up.
  void StartAll() {
    ASSERT_TRUE(supervisor_.Start(t0_).ok());
    ASSERT_THAT(runner_.starts, ElementsAre(Pair(0, 0), Pair(1, 0)));
    runner_.starts.clear();
  }
  Supervisor::Look StepAt(absl::Duration since_t0) { return supervisor_.Step(t0_ + since_t0); }
  // The instance in `place` of worker `id` ends on its own with `why`.
  void Die(int id, int place, const char* why) {
    Instance& instance = supervisor_.instance(id, place);
    instance.exit_status = absl::InternalError(why);
    instance.exited.store(true);
  }
  void Exit(int id, int place) { supervisor_.instance(id, place).exited.store(true); }
  std::vector<std::string> TakeLog() { return std::exchange(log_, {}); }

  EngineOptions options_;
  EngineStats stats_{2};
  FakeRunner runner_;
  std::vector<std::string> log_;
  // Any reading of the monotonic clock: only differences matter.
  const absl::Time t0_ = FromMonotonicMs(5'000'000);
  Supervisor supervisor_{options_, stats_, runner_};
};

TEST_F(SupervisorStepTest, StartsOneInstancePerWorkerAndReportsReady) {
  EXPECT_FALSE(stats_.ready());
  StartAll();
  EXPECT_TRUE(stats_.ready());
  const Supervisor::Look look = StepAt(absl::Milliseconds(1));
  EXPECT_FALSE(look.done);
  EXPECT_TRUE(look.healthy);
  EXPECT_EQ(look.wait, absl::Milliseconds(100));
  EXPECT_THAT(TakeLog(), IsEmpty());
}

TEST_F(SupervisorStepTest, AFailedStartNamesItsWorkerAndStopsTheOthers) {
  // The first worker starts; the second fails.
  struct SecondFails : FakeRunner {
    std::future<absl::Status> Start(int id, int place, Instance& instance) override {
      if (id == 1) fail_next_start = absl::ResourceExhaustedError("no ring");
      return FakeRunner::Start(id, place, instance);
    }
  } runner;
  Supervisor supervisor(options_, stats_, runner);
  const absl::Status status = supervisor.Start(t0_);
  EXPECT_EQ(status, absl::ResourceExhaustedError("worker 1: no ring"));
  EXPECT_TRUE(supervisor.all().stop.load());
  EXPECT_FALSE(stats_.ready());
  EXPECT_TRUE(supervisor.Step(t0_).done);
}

TEST_F(SupervisorStepTest, ADeadInstanceRestartsInPlaceAfterTheBackoffToTheMillisecond) {
  StartAll();
  Die(0, 0, "boom");
  Supervisor::Look look = StepAt(absl::Milliseconds(500));
  EXPECT_THAT(TakeLog(), ElementsAre("Worker 0 died (boom); restarting in 100ms"));
  EXPECT_FALSE(stats_.ready());
  EXPECT_FALSE(look.healthy);
  EXPECT_EQ(look.wait, absl::Milliseconds(100));

  look = StepAt(absl::Milliseconds(599));
  EXPECT_THAT(runner_.starts, IsEmpty());
  EXPECT_EQ(look.wait, absl::Milliseconds(1));

  StepAt(absl::Milliseconds(600));
  EXPECT_THAT(runner_.starts, ElementsAre(Pair(0, 0)));
  EXPECT_EQ(stats_.Read(0).restarts, 1u);
  EXPECT_FALSE(supervisor_.instance(0, 0).exited.load()) << "reset before the start";
  StepAt(absl::Milliseconds(601));
  EXPECT_TRUE(stats_.ready());
}

TEST_F(SupervisorStepTest, QuickDeathsWaitLongerAndAHealthyRunStartsOver) {
  StartAll();
  absl::Duration at = absl::Milliseconds(10);
  auto die_and_restart = [&](absl::Duration ran) -> std::string {
    at += ran;
    Die(1, 0, "boom");
    StepAt(at);
    std::vector<std::string> lines = TakeLog();
    at += absl::Seconds(1);  // past any backoff
    StepAt(at);
    return lines.empty() ? "" : lines[0];
  };
  EXPECT_EQ(die_and_restart(absl::Milliseconds(1)), "Worker 1 died (boom); restarting in 100ms");
  EXPECT_EQ(die_and_restart(absl::Milliseconds(1)), "Worker 1 died (boom); restarting in 150ms");
  EXPECT_EQ(die_and_restart(absl::Milliseconds(1)), "Worker 1 died (boom); restarting in 225ms");
  EXPECT_EQ(die_and_restart(absl::Seconds(30)), "Worker 1 died (boom); restarting in 100ms");
}

TEST_F(SupervisorStepTest, ACrashLoopReportsNotReadyUntilItsDeathsAreOlderThanTheWindow) {
  StartAll();
  for (int i = 0; i < 3; ++i) {
    Die(0, 0, "boom");
    StepAt(absl::Seconds(i));
    StepAt(absl::Seconds(i) + absl::Milliseconds(500));  // restarted
  }
  EXPECT_THAT(TakeLog(), Contains("Worker 0 died 3 times in 10s; reporting not ready"));
  StepAt(absl::Seconds(9));
  EXPECT_FALSE(stats_.ready()) << "up, but crash-looping";
  // The first death (at 0 s) leaves the window after 10 s.
  StepAt(absl::Seconds(10) + absl::Milliseconds(1));
  EXPECT_TRUE(stats_.ready());
}

TEST_F(SupervisorStepTest, AStallIsLoggedOnceAndAStuckInstanceIsReplacedOnItsListener) {
  StartAll();
  LoopStats& busy = stats_.worker(1).instances[0];
  busy.SetActivity("GET /slow");
  busy.busy_since_ms.store(absl::ToUnixMillis(t0_));
  StepAt(absl::Milliseconds(999));
  EXPECT_THAT(TakeLog(), IsEmpty());
  StepAt(absl::Seconds(1));
  EXPECT_THAT(TakeLog(), ElementsAre("Worker 1 stalled for 1000ms in GET /slow"));
  StepAt(absl::Seconds(2));
  EXPECT_THAT(TakeLog(), IsEmpty()) << "once per stall";
  EXPECT_EQ(stats_.Read(1).stalls, 1u);

  StepAt(absl::Seconds(3));
  EXPECT_THAT(
      TakeLog(),
      ElementsAre("Worker 1 stuck for 3000ms in GET /slow; replaced by a new loop on cpu 5"));
  EXPECT_THAT(runner_.starts, ElementsAre(Pair(1, 1)));
  EXPECT_EQ(stats_.Read(1).restarts, 1u);
  Instance& stuck = supervisor_.instance(1, 0);
  EXPECT_TRUE(stuck.stuck);
  EXPECT_TRUE(stuck.control.draining.load()) << "retired: drains if it ever returns";
  EXPECT_TRUE(stuck.serves_nothing());

  // Still stuck at its stop time: told to stop, and the worker serves from the new instance.
  StepAt(absl::Seconds(8) - absl::Milliseconds(1));
  EXPECT_FALSE(stuck.control.stop.load());
  StepAt(absl::Seconds(8));
  EXPECT_TRUE(stuck.control.stop.load());
  EXPECT_TRUE(stats_.ready());
  EXPECT_THAT(TakeLog(), IsEmpty()) << "the new instance's counters show no stall";
}

TEST_F(SupervisorStepTest, ARollingRestartReplacesOneWorkerAtATime) {
  StartAll();
  supervisor_.Reload();
  absl::Duration at = absl::Milliseconds(1);
  StepAt(at);
  EXPECT_THAT(TakeLog(), ElementsAre("Rolling restart: replacing the workers one at a time",
                                     "Worker 0 restarted on cpu 4; the old loop is draining"));
  EXPECT_THAT(runner_.starts, ElementsAre(Pair(0, 1)));
  EXPECT_TRUE(supervisor_.instance(0, 0).control.draining.load());
  EXPECT_LE(StepAt(at).wait, absl::Milliseconds(20)) << "a roll looks often";

  // Worker 1 waits for worker 0's old instance to finish.
  for (int i = 0; i < 5; ++i) StepAt(at += absl::Milliseconds(20));
  EXPECT_THAT(runner_.starts, ElementsAre(Pair(0, 1)));
  Exit(0, 0);
  for (int i = 0; i < 5 && runner_.starts.size() < 2; ++i) StepAt(at += absl::Milliseconds(20));
  EXPECT_THAT(runner_.starts, ElementsAre(Pair(0, 1), Pair(1, 1)));
  Exit(1, 0);
  for (int i = 0; i < 5; ++i) StepAt(at += absl::Milliseconds(20));
  EXPECT_THAT(TakeLog(), ElementsAre("Worker 0's replaced loop finished its connections and exited",
                                     "Worker 1 restarted on cpu 5; the old loop is draining",
                                     "Worker 1's replaced loop finished its connections and exited",
                                     "Rolling restart done"));
  EXPECT_TRUE(stats_.ready());
}

TEST_F(SupervisorStepTest, AnOldInstanceThatOutlivesItsStopTimeIsStopped) {
  StartAll();
  supervisor_.Reload();
  StepAt(absl::ZeroDuration());
  StepAt(absl::Seconds(5) - absl::Milliseconds(1));
  EXPECT_FALSE(supervisor_.instance(0, 0).control.stop.load());
  StepAt(absl::Seconds(5));
  EXPECT_TRUE(supervisor_.instance(0, 0).control.stop.load());
}

TEST_F(SupervisorStepTest, ADrainWaitsForTheBalancerThenStopsAcceptingAndFinishes) {
  StartAll();
  supervisor_.Drain();
  EXPECT_FALSE(stats_.ready()) << "not ready the moment a drain is asked for";
  Supervisor::Look look = StepAt(absl::ZeroDuration());
  EXPECT_TRUE(look.drain_began);
  EXPECT_TRUE(supervisor_.draining());
  EXPECT_THAT(TakeLog(), ElementsAre("Draining: not ready; serving until out of the load "
                                     "balancer (at most 10s)"));
  // The balancer's three failed checks, answered by the loops.
  LoopStats& loop = stats_.worker(0).instances[0];
  LoopStats::Add(loop.not_ready_answers, 3);
  LoopStats::Add(loop.responses[4], 3);
  EXPECT_FALSE(StepAt(absl::Milliseconds(999)).drain_began);
  EXPECT_FALSE(supervisor_.all().draining.load()) << "still serving";
  StepAt(absl::Seconds(1));
  EXPECT_THAT(TakeLog(), ElementsAre("Out of the load balancer (3 readiness checks failed, no "
                                     "request for 1s): finishing the requests in flight"));
  EXPECT_TRUE(supervisor_.all().draining.load());

  // The listeners close once every instance stopped accepting; the drain ends once all exited.
  supervisor_.instance(0, 0).control.stopped_accepting.store(true);
  StepAt(absl::Seconds(2));
  EXPECT_EQ(runner_.listener_closes, 0);
  supervisor_.instance(1, 0).control.stopped_accepting.store(true);
  EXPECT_FALSE(StepAt(absl::Seconds(2)).done);
  EXPECT_EQ(runner_.listener_closes, 1);
  Exit(0, 0);
  EXPECT_FALSE(StepAt(absl::Seconds(2)).done);
  Exit(1, 0);
  EXPECT_TRUE(StepAt(absl::Seconds(2)).done);
  EXPECT_EQ(runner_.listener_closes, 1);
  EXPECT_THAT(runner_.starts, IsEmpty()) << "nothing restarted to be drained";
}

TEST_F(SupervisorStepTest, ADrainEndsAtTheShutdownTimeoutAndRestartsNothing) {
  options_.drain_delay = absl::ZeroDuration();
  StartAll();
  supervisor_.Drain();
  StepAt(absl::ZeroDuration());
  EXPECT_THAT(TakeLog(), ElementsAre("Draining: not ready; finishing the requests in flight"));
  EXPECT_TRUE(supervisor_.all().draining.load()) << "no balancer to wait for";
  Die(1, 0, "boom");
  EXPECT_FALSE(StepAt(absl::Seconds(5) - absl::Milliseconds(1)).done);
  EXPECT_THAT(runner_.starts, IsEmpty());
  EXPECT_TRUE(StepAt(absl::Seconds(5)).done);
  EXPECT_THAT(TakeLog(), ElementsAre("Shutdown timeout: closing the connections left"));
}

TEST_F(SupervisorStepTest, AStuckInstanceHoldsUpNeitherTheListenersNorTheDrain) {
  options_.drain_delay = absl::ZeroDuration();
  StartAll();
  stats_.worker(0).instances[0].busy_since_ms.store(absl::ToUnixMillis(t0_));
  StepAt(absl::Seconds(3));
  ASSERT_TRUE(supervisor_.instance(0, 0).stuck);
  supervisor_.Drain();
  StepAt(absl::Seconds(3));
  for (std::pair<int, int> serving : {std::pair(0, 1), std::pair(1, 0)}) {
    supervisor_.instance(serving.first, serving.second).control.stopped_accepting.store(true);
  }
  StepAt(absl::Seconds(3));
  EXPECT_EQ(runner_.listener_closes, 1);
  Exit(0, 1);
  Exit(1, 0);
  EXPECT_TRUE(StepAt(absl::Seconds(3)).done);
  EXPECT_TRUE(supervisor_.AllServeNothing());
}

TEST_F(SupervisorStepTest, AStopEndsTheNextLookAndWakesEveryInstance) {
  StartAll();
  supervisor_.Stop();
  EXPECT_FALSE(stats_.ready());
  EXPECT_TRUE(supervisor_.all().stop.load());
  EXPECT_EQ(runner_.wakes, 4) << "both places of both workers";
  EXPECT_TRUE(StepAt(absl::Milliseconds(1)).done);
}

}  // namespace
}  // namespace percore
