// percore/engine.h — one event loop per CPU, all serving one port.
//
// The Engine owns what must outlive a loop: one SO_REUSEPORT listening socket per loop (created
// by Create(), before any loop runs), the CPU list and the loop threads. Each loop runs on its own
// pinned thread with its own ring, connections and buffers; nothing on the request path is
// shared between loops. A worker (a loop id, with its CPU and listening socket) runs one loop
// instance (a thread), and two for a while when one is being replaced: a rolling restart, or a
// loop stuck in a request. The supervisor restarts the instances that die, replaces stuck ones,
// rolls and drains; it runs in Run(), or in Wait() for an application that keeps its signals.
//
//   percore::EngineOptions options;
//   options.port = 3000;
//   auto engine = percore::Engine::Create(options, factory);   // binds the port
//   if (!engine.ok()) return Fail(engine.status());
//   absl::Status served = (*engine)->Run();   // until SIGINT/SIGTERM or Stop()
//
// or, to keep the process's signals: (*engine)->Start(); ... (*engine)->Wait();  // Drain()/Stop()
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

// What a caller may know about one worker (a loop id; see Engine).
struct WorkerInfo {
  int id;   // 0..threads-1
  int cpu;  // the CPU its loop is pinned to
};

class BlockedSignals;
class Supervisor;
class TlsSource;
struct Instance;

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
  // Starts a graceful shutdown (see EngineOptions::drain_delay); Run() or Wait() returns when it
  // is done.
  // Thread-safe and async-signal-safe; returns at once.
  void Drain();
  // Starts a rolling restart, carried out by Run() or Wait(): one worker at a time, a new loop
  // starts on the worker's CPU and listening socket and serves, then the old one stops accepting
  // and drains (bounded by EngineOptions::shutdown_timeout). Asked during a restart, another
  // follows it. Thread-safe and async-signal-safe; returns at once.
  void Reload();
  // Reads the TLS certificates and keys again (EngineOptions::tls): new handshakes use them,
  // open connections keep the ones they began with. On an error (a missing file, a key that
  // does not match) the current ones stay, and the error says why; either way a line is
  // logged. Run() does this on SIGHUP, before the rolling restart. Thread-safe.
  absl::Status ReloadTls();
  // After Start(): supervises until the engine is stopped (Stop()) or a drain (Drain()) is
  // over, then stops the loops and returns once they have exited: restarts a loop that dies
  // (with backoff), replaces a stuck one, rolls on Reload(). Takes no signal: for an
  // application that keeps its own. A loop thread still stuck in a request is left running
  // (the destructor waits for it). Call from the thread that called Start().
  void Wait();
  // Start(), on_started, then what Wait() does, with the signals taken here: SIGHUP rolls
  // (reloading the TLS certificates first), the first SIGINT/SIGTERM drains, a second one stops
  // at once. The signals are blocked in the engine's threads, so no handler runs on a loop. OK
  // after a graceful or requested stop.
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
  // One entry per worker, by id. Thread-safe.
  std::vector<WorkerInfo> workers() const;
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
  struct Runner;
  Engine(const EngineOptions& options, ProtocolFactory factory, const std::vector<int>& cpus);
  // The thread of worker `id`'s instance in `place`: pins itself, runs a Loop, records how it
  // ended. Its set-up result goes to `started`.
  void RunInstance(int id, int place, Instance* self,
                   std::shared_ptr<std::promise<absl::Status>> started);
  // Wait()'s and Run()'s supervision until done, then the loops' end; `signals` is Run()'s.
  void Supervise(const BlockedSignals* signals);
  // Ends Wait()'s wait for the next look.
  void Notice();
  void Log(std::string_view line) const;

  const EngineOptions options_;
  const ProtocolFactory factory_;
  int port_ = 0;
  BackendKind backend_ = BackendKind::kIoUring;  // resolved: never kAuto
  std::string backend_note_;
  std::string loops_note_;
  EngineStats stats_;  // also the owner of each worker's CPU
  // The listener of each worker, index = loop id, shared by its instances; owned here.
  std::vector<int> listen_fds_;
  // An eventfd per worker and instance place (index 2 * id + place), owned here so Stop()
  // never races a close.
  std::vector<int> wake_fds_;
  // Written by Stop(), Drain() and Reload(): Wait()'s supervision looks at once.
  int notice_fd_ = -1;
  std::unique_ptr<TlsSource> tls_;  // null: plain TCP
  std::unique_ptr<Runner> runner_;
  std::unique_ptr<Supervisor> supervisor_;
  bool started_ = false;
  bool supervised_ = false;  // Wait() or Run() supervised (once)
};

}  // namespace percore

#endif  // PERCORE_ENGINE_H_
