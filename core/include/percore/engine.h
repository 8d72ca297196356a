// percore/engine.h — one event loop per CPU, all serving one port.
//
// The Engine owns what must outlive a loop: one SO_REUSEPORT listening socket per loop (created
// by Create(), before any loop runs), the CPU list and the loop threads. Each loop runs on its own
// pinned thread with its own ring, connections and buffers; nothing on the request path is
// shared between loops.
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
  // Blocks until every loop has exited. Call from the thread that called Start().
  void Wait();
  // Start(), then supervise until the engine is stopped: restarts a loop that dies (with
  // backoff), drains gracefully on the first SIGINT/SIGTERM or Drain(), exits at once on a
  // second signal or Stop(). The signals are blocked in the engine's threads and taken here, so
  // no handler runs on a loop. OK after a graceful or requested stop.
  absl::Status Run();
  // Whether every loop serves, none is crash-looping and no drain has begun: the answer of a
  // readiness probe. Thread-safe.
  bool ready() const { return stats_.ready(); }
  // Every loop's counters. Thread-safe.
  const EngineStats& stats() const { return stats_; }
  // How many times loops were restarted after dying. Thread-safe.
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

 private:
  struct LoopSlot;
  Engine(const EngineOptions& options, ProtocolFactory factory, size_t loops);
  void RunLoop(LoopSlot* slot);
  // Starts (or restarts) the loop of `slot` on a new thread; the future tells its set-up result.
  std::future<absl::Status> StartLoop(LoopSlot* slot);
  // One look at the loops from Run(): restarts the dead ones that are due. Returns how long
  // Run() may wait before looking again.
  absl::Duration Supervise(absl::Time now);
  void Log(std::string_view line) const;
  // Logs a loop busy past EngineOptions::stall_timeout, once per stall, and counts it.
  void CheckStall(LoopSlot& slot);

  const EngineOptions options_;
  const ProtocolFactory factory_;
  int port_ = 0;
  BackendKind backend_ = BackendKind::kIoUring;  // resolved: never kAuto
  std::string backend_note_;
  std::vector<WorkerInfo> workers_;
  std::vector<int> listen_fds_;  // one per loop, index = loop id; owned here
  std::vector<int> wake_fds_;    // eventfd per loop, owned here so Stop() never races a close
  std::vector<std::unique_ptr<LoopSlot>> slots_;
  std::unique_ptr<LoopControl> control_;
  EngineStats stats_;
  std::atomic<bool> drain_requested_{false};
  bool started_ = false;
};

}  // namespace percore

#endif  // PERCORE_ENGINE_H_
