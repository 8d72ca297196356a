// Supervisor: the engine's rules for its loop instances, one look at a time.
//
// Words: a worker is a loop id (0..threads-1, its CPU and listening socket, kept across
// restarts); an instance is one run of a worker's loop on its own thread. A worker has one
// serving instance, and for a while two: while one is replaced (a rolling restart, a stuck
// loop) the old one drains beside the new one. So each worker has two instance places, and
// the serving one is `WorkerState::serving`.
//
// Step(now) is one look: restart the dead instances that are due (with Backoff), report not
// ready while a worker crash-loops, log a stalled instance and replace a stuck one, carry a
// rolling restart forward, and move a drain on (DrainWatch, then stop accepting, close the
// listeners, finish). It runs nothing itself: instances are started and woken through an
// InstanceRunner, and time is what the caller says it is. The engine runs real threads and
// reads the monotonic clock; the unit tests play the instances' part and step time by hand.
#ifndef PERCORE_SRC_SUPERVISOR_H_
#define PERCORE_SRC_SUPERVISOR_H_

#include <atomic>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "backoff.h"
#include "control.h"
#include "drain_watch.h"
#include "percore/options.h"
#include "percore/stats.h"

namespace percore {

// One run of a worker's loop. The instance's own thread writes `exit_status` and `orphans`,
// then sets `exited`; the supervisor owns the rest.
struct Instance {
  LoopControl control;  // this instance's orders
  absl::Status exit_status;
  std::atomic<bool> exited{false};
  // The idle connections of an instance that died, for the next one in this place: written by
  // the dying thread before `exited`, taken by the next one (Loop::TakeOrphans, Loop::Adopt).
  std::vector<int> orphans;
  std::thread thread;  // the engine's; none in the unit tests
  // The supervisor's own:
  bool running = false;                         // started, not reaped yet
  absl::Time stop_at = absl::InfiniteFuture();  // a retiring instance is stopped then
  bool stuck = false;  // replaced while stuck in a request: serves nothing, may never return
  // Holds nothing up: not running, exited, or stuck (it may never return, and accepts nothing).
  bool serves_nothing() const {
    return !running || exited.load(std::memory_order_acquire) || stuck;
  }
};

// What the supervisor asks of whoever runs the instances.
class InstanceRunner {
 public:
  virtual ~InstanceRunner() = default;
  // Starts `instance` (the supervisor has reset it) of worker `id` in place `place` (0 or 1);
  // the future tells its set-up result once it serves or has failed. On failure the instance
  // has exited or is about to (`exited` is set soon after).
  virtual std::future<absl::Status> Start(int id, int place, Instance& instance) = 0;
  // Makes the instance in `place` of worker `id` look at its orders now. Async-signal-safe.
  virtual void Wake(int id, int place) = 0;
  // Closes every worker's listening socket: every loop has stopped accepting, and new
  // connections must be refused rather than queue where no loop will accept them.
  virtual void CloseListeners() = 0;
};

class Supervisor {
 public:
  // `stats` (one WorkerStats per worker) and `runner` outlive the supervisor.
  Supervisor(const EngineOptions& options, EngineStats& stats, InstanceRunner& runner);
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts one instance per worker, all at once, and waits for their set-up results: the first
  // error names its worker, and then every instance is stopped (Stop()) for the caller to reap.
  absl::Status Start(absl::Time now);

  struct Look {
    absl::Duration wait;       // how long the caller may wait before the next Step()
    bool done = false;         // stopped, or the drain finished (or timed out): stop the loops
    bool drain_began = false;  // this look started the drain
    // No worker down or crash-looping (before a drain, also: ready): systemd's watchdog.
    bool healthy = false;
  };
  // One look at the instances at `now` (the monotonic clock, as clock.h's MonotonicTime()).
  Look Step(absl::Time now);

  // Orders from any thread, async-signal-safe; the next Step() acts on them. Stop() also
  // wakes every instance, which exits at once.
  void Stop();
  void Drain();
  void Reload() { reload_requested_.store(true); }

  // After Stop(): whether every instance serves nothing, and then the reaping of those that
  // exited (joined); a stuck one is logged and left running.
  bool AllServeNothing() const;
  void ReapAll();
  // Joins every thread, stuck ones included (blocks until they return): the engine's end.
  void JoinAll();

  // Whether a drain has begun (a Step() saw Drain()).
  bool draining() const { return watch_.has_value(); }
  // The orders every instance reads besides its own.
  const LoopControl& all() const { return all_; }
  Instance& instance(int id, int place) { return workers_[id].places[place]; }

 private:
  struct WorkerState {
    Instance places[2];
    int serving = 0;    // the place of the serving instance
    bool down = false;  // its serving instance died; restarts at `restart_at`
    absl::Time restart_at;
    absl::Time running_since;
    std::optional<Backoff> backoff;  // the delay before the next restart
    std::deque<absl::Time> deaths;   // within options_.crash_loop_window
    int64_t stall_logged_for = 0;    // the busy_since_ms of the stall already logged
    int64_t stuck_handled_for = 0;   // the busy_since_ms of the stall already replaced
    int64_t stuck_logged_for = 0;    // the busy_since_ms of a stall that could not be replaced
  };

  // Resets and starts the instance in `place` of worker `id`; its set-up result to come.
  std::future<absl::Status> StartInstance(int id, int place);
  // Joins the instance if it exited; true if it is not running (any more).
  static bool Reap(Instance& instance);
  // Waits for the instance's thread, if it has one, and marks it not running.
  static void Join(Instance& instance);
  // Starts a new instance of worker `id` in its free place and retires the serving one. False
  // if the free place is still busy or the new instance failed to start (logged).
  bool Replace(int id, absl::Time now);
  // Tells the instance in `place` to drain, and when to stop it if it has not finished.
  void Retire(int id, int place, absl::Time now);
  // Restarts, crash-loop readiness and stalls, for every worker; the longest wait it allows.
  absl::Duration Supervise(absl::Time now);
  // Logs a stall once, replaces an instance stuck past stuck_timeout.
  void CheckStall(int id, absl::Time now);
  // One step of a rolling restart, if one is under way.
  void AdvanceRoll(absl::Time now);
  // The drain's steps; true once it is over.
  bool AdvanceDrain(absl::Time now, Look& look);
  // Responses sent and readiness checks answered "not ready", over every instance.
  std::pair<uint64_t, uint64_t> Answered() const;
  bool All(bool (*predicate)(const Instance&)) const;
  void WakeAll();
  void Log(std::string_view line) const;

  const EngineOptions& options_;
  EngineStats& stats_;
  InstanceRunner& runner_;
  std::unique_ptr<WorkerState[]> workers_;
  const int count_;
  LoopControl all_;
  std::atomic<bool> reload_requested_{false};
  // A rolling restart: the worker it is at (-1: none), and whether its new instance started.
  int roll_id_ = -1;
  bool roll_replaced_ = false;
  // A drain: from its start, the watch, then when accepting ended and the listeners closed.
  std::optional<DrainWatch> watch_;
  absl::Time accepting_ended_ = absl::InfiniteFuture();
  bool listeners_closed_ = false;
};

}  // namespace percore

#endif  // PERCORE_SRC_SUPERVISOR_H_
