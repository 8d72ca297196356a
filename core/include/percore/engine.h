// percore/engine.h — one event loop per CPU, all serving one port.
//
// The Engine owns what must outlive a loop: one SO_REUSEPORT listening socket per loop (created
// by Create(), before any loop runs), the CPU list and the loop threads. Each loop runs on its own
// pinned thread with its own ring, connections and buffers; nothing on the request path is
// shared between loops. A worker (loop id) runs one loop instance, and two for a while when one
// is being replaced: a rolling restart, or a loop stuck in a request.
//
//   percore::EngineOptions options;
//   options.port = 3000;
//   auto engine = percore::Engine::Create(options, factory);   // binds the port
//   if (!engine.ok()) return Fail(engine.status());
//   absl::Status served = (*engine)->Run();   // until SIGINT/SIGTERM or Stop()
//
// Thread-safety is stated per method.
#ifndef PERCORE_ENGINE_H_
#define PERCORE_ENGINE_H_

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "percore/options.h"
#include "percore/protocol.h"
#include "percore/stats.h"

namespace percore {

// What a caller may know about one loop.
struct WorkerInfo {
  int id;   // 0..threads-1
  int cpu;  // the CPU it is pinned to
};

class Loop;
struct LoopControl;

// The thread-per-core server engine.
class Engine {
 public:
  // Validates `options` (an error names the bad field), raises RLIMIT_NOFILE to its hard limit
  // and binds the listening sockets (an error if the port is in use). Starts no thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                        ProtocolFactory factory);
  // Stops the loops and waits for them.
  ~Engine();
  // How many loops an engine made with `options` runs: one per listen_fds entry if given, else
  // `threads`, else one per CPU in `cpus`, else DefaultLoopCount() (percore/cpus.h): one per CPU
  // in the process's affinity mask, capped by its cgroup's CPU quota.
  static int LoopCount(const EngineOptions& options);

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts one pinned thread per loop and returns once every loop serves, or the first loop's
  // set-up error (the others are then stopped). Call once; not thread-safe.
  absl::Status Start();
  // Asks every loop to exit now: each closes its connections and frees its ring and buffers.
  // Thread-safe and async-signal-safe; returns at once.
  void Stop();
  // Starts a graceful shutdown (see EngineOptions::drain_delay); Run() returns when it is done.
  // Thread-safe and async-signal-safe; returns at once.
  void Drain();
  // Starts a rolling restart, carried out by Run(): one worker at a time, a new loop starts on
  // the worker's CPU and listening socket and serves, then the old one stops accepting and
  // drains (bounded by EngineOptions::shutdown_timeout). Asked during a restart, another follows
  // it. Thread-safe and async-signal-safe; returns at once.
  void Reload();
  // Blocks until every loop has exited. Call from the thread that called Start().
  void Wait();
  // Start(), then supervise until the engine is stopped: restarts a loop that dies (with
  // backoff), replaces a stuck one, rolls on SIGHUP or Reload(), drains gracefully on the first
  // SIGINT/SIGTERM or Drain(), exits at once on a second signal or Stop(). The signals are
  // blocked in the engine's threads and taken here, so no handler runs on a loop. OK after a
  // graceful or requested stop. A loop thread still stuck in a request when Run() returns is
  // left running (the destructor waits for it).
  absl::Status Run();
  // Whether every loop serves, none is crash-looping and no drain has begun: the answer of a
  // readiness probe. Thread-safe.
  bool ready() const { return stats_.ready(); }
  // Every loop's counters. Thread-safe.
  const EngineStats& stats() const { return stats_; }
  // How many times loops were replaced after dying or being stuck. Thread-safe.
  int restarts() const;

  // The bound port (useful when options.port was 0). Thread-safe.
  int port() const { return port_; }
  // One entry per loop, by id. Thread-safe.
  const std::vector<WorkerInfo>& workers() const { return workers_; }
  // The I/O backend the loops use: "io_uring" or "epoll". Thread-safe.
  std::string_view backend_name() const {
    return backend_ == BackendKind::kEpoll ? "epoll" : "io_uring";
  }
  // Why BackendKind::kAuto fell back to epoll ("io_uring unavailable (io_uring_setup: Operation
  // not permitted); using epoll"); empty if it did not. Thread-safe.
  const std::string& backend_note() const { return backend_note_; }
  // Why there are fewer loops than allowed CPUs when the cgroup CPU quota decided ("cgroup CPU
  // quota 1.0 of 2 CPUs"); empty otherwise. Thread-safe.
  const std::string& loops_note() const { return loops_note_; }

 private:
  struct Instance;
  struct LoopSlot;
  Engine(const EngineOptions& options, ProtocolFactory factory, size_t loops);
  void RunLoop(LoopSlot* slot, int lane);
  // Starts a loop for `slot` in `lane` on a new thread; the future tells its set-up result.
  std::future<absl::Status> StartLoop(LoopSlot* slot, int lane);
  // Starts a new instance of `slot` in its free lane and retires the serving one. False if the
  // free lane is still busy or the new instance failed to start (logged).
  bool Replace(LoopSlot& slot, absl::Time now);
  // Tells the instance in `lane` to drain, and when to stop it if it has not finished.
  void Retire(LoopSlot& slot, int lane, absl::Time now);
  void Wake(int id, int lane);
  // Wakes every lane of every worker, so each loop looks at its orders at once.
  void WakeAll();
  // One look at the loops from Run(): restarts the dead ones that are due, replaces stuck ones,
  // finishes retired ones. Returns how long Run() may wait before looking again.
  absl::Duration Supervise(absl::Time now);
  // One step of a rolling restart, if one is under way.
  void AdvanceRoll(absl::Time now);
  // Joins the instance if its thread has exited; true if it is not running (any more).
  bool Reap(Instance& instance);
  void Log(std::string_view line) const;
  // Responses sent and readiness checks answered "not ready", over every loop.
  std::pair<uint64_t, uint64_t> Answered() const;
  // Logs a loop busy past EngineOptions::stall_timeout, once per stall, and counts it; replaces
  // one busy past EngineOptions::stuck_timeout.
  void CheckStall(LoopSlot& slot, absl::Time now);

  const EngineOptions options_;
  const ProtocolFactory factory_;
  int port_ = 0;
  BackendKind backend_ = BackendKind::kIoUring;  // resolved: never kAuto
  std::string backend_note_;
  std::string loops_note_;
  std::vector<WorkerInfo> workers_;
  // The listener of each worker, index = loop id, shared by its instances; owned here.
  std::vector<int> listen_fds_;
  // An eventfd per worker and lane (index 2 * id + lane), owned here so Stop() never races a
  // close.
  std::vector<int> wake_fds_;
  std::vector<std::unique_ptr<LoopSlot>> slots_;
  std::unique_ptr<LoopControl> control_;
  EngineStats stats_;
  std::atomic<bool> reload_requested_{false};
  bool started_ = false;
  // Run()'s own: the worker a rolling restart is at (-1: none), and whether its new loop started.
  int roll_id_ = -1;
  bool roll_replaced_ = false;
};

}  // namespace percore

#endif  // PERCORE_ENGINE_H_
