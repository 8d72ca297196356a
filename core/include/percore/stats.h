// percore/stats.h — per-loop counters, written by their loop and readable from any thread.
//
//   const percore::EngineStats& stats = req.worker().engine_stats();
//   for (size_t i = 0; i < stats.size(); ++i) total += stats.Read(i).accepted;
//
// Each counter has one writer (its loop instance, or the supervisor for restarts and stalls), so
// an update is a relaxed load and store, with no locked instruction on the request path; a
// reader sees a value at most an instant old. A worker can run two loop instances at once (the
// new and the old one during a rolling restart, or a stuck loop and its replacement), so each
// worker has two sets of loop counters, one per instance, and readers see their sum.
#ifndef PERCORE_STATS_H_
#define PERCORE_STATS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace percore {

// The WebSocket close codes LoopStats::ws_closes counts one by one: normal, going away, protocol
// error, none given, gone without a close frame, invalid data, too big, server error.
inline constexpr uint16_t kWsCloseCodes[8] = {1000, 1001, 1002, 1005, 1006, 1007, 1009, 1011};

// The counters of one loop instance (see above); they survive the loop's restarts.
struct alignas(64) LoopStats {
  // Adds `n` to a counter this thread is the only writer of.
  static void Add(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::atomic<uint64_t> accepted{0};   // connections accepted
  std::atomic<uint64_t> active{0};     // connections open now
  std::atomic<uint64_t> bytes_in{0};   // bytes received
  std::atomic<uint64_t> bytes_out{0};  // bytes sent
  std::atomic<uint64_t> lag_us{0};     // how late the loop's last periodic tick ran, in µs; 0
                                       // once the instance exited
  // Responses by class, counted by the protocol (HTTP: 1xx .. 5xx at index 0 .. 4).
  std::atomic<uint64_t> responses[5] = {};
  // Readiness checks answered "not ready" (also counted in `responses`): a draining engine
  // counts them to know when its load balancer has seen enough to take it out.
  std::atomic<uint64_t> not_ready_answers{0};
  // Timer, posted-job and watch callbacks that threw (Worker::After, WorkerRef::Post,
  // Worker::Watch): each was logged (at most a line a second) and the loop went on.
  std::atomic<uint64_t> callback_failures{0};
  // WebSocket, counted by the protocol: connections open now; messages and their payload bytes
  // received and sent (a published message counts once per subscriber it reached); messages
  // dropped over a slow client's backpressure bound; closes by code (kWsCloseCodes, then any
  // other).
  std::atomic<uint64_t> ws_open{0};
  std::atomic<uint64_t> ws_messages_in{0}, ws_messages_out{0};
  std::atomic<uint64_t> ws_bytes_in{0}, ws_bytes_out{0};
  std::atomic<uint64_t> ws_dropped{0};
  std::atomic<uint64_t> ws_closes[9] = {};
  // TLS (percore/tls.h): handshakes completed, how many of them resumed from a ticket, and
  // handshakes that failed (a refused version or cipher, garbage, the handshake timeout).
  std::atomic<uint64_t> tls_handshakes{0}, tls_resumed{0}, tls_failures{0};
  // HTTP/2, counted by the protocol: streams begun; streams reset (by either side, or closed
  // with an error); GOAWAYs sent to end a connection (drain, idle, flood, protocol error).
  std::atomic<uint64_t> h2_streams{0}, h2_resets{0}, h2_goaways{0};
  // Monotonic ms since which the loop has been busy handling completions; 0 while it waits for
  // the kernel. The supervisor reads it to find a loop stuck in one request.
  std::atomic<int64_t> busy_since_ms{0};

  // What the loop is doing ("GET /stall?ms=3000"), for the stall log line. Written by the loop
  // before each request is handled, read by the supervisor while the loop may be writing: a
  // sequence count tells a torn read from a whole one (words, so every access is atomic).
  // Records `text` (a request line's method and target), truncated to 63 bytes.
  void SetActivity(std::string_view text);
  std::string Activity() const;

 private:
  std::atomic<uint32_t> activity_sequence_{0};
  std::atomic<uint64_t> activity_[8] = {};  // up to 63 bytes, NUL-padded
};

// One worker (loop id): the counters of its loop instances and the supervisor's.
struct WorkerStats {
  int cpu = 0;  // the CPU its loop is pinned to: set before any loop starts, then read-only
  std::atomic<uint64_t> restarts{0};  // loops that died or were stuck and were replaced
  std::atomic<uint64_t> stalls{0};    // times the loop was seen stuck past stall_timeout
  LoopStats instances[2];             // one per loop instance that may run at once
};

// A snapshot of one worker: its supervisor counters plus the sum over its loop instances
// (lag_us: the larger).
struct WorkerCounters {
  int cpu = 0;
  uint64_t accepted = 0, active = 0, bytes_in = 0, bytes_out = 0, restarts = 0, stalls = 0,
           lag_us = 0, not_ready_answers = 0, callback_failures = 0;
  uint64_t responses[5] = {};
  uint64_t ws_open = 0, ws_messages_in = 0, ws_messages_out = 0, ws_bytes_in = 0,
           ws_bytes_out = 0, ws_dropped = 0;
  uint64_t ws_closes[9] = {};
  uint64_t tls_handshakes = 0, tls_resumed = 0, tls_failures = 0;
  uint64_t h2_streams = 0, h2_resets = 0, h2_goaways = 0;
  uint64_t requests() const {
    return responses[0] + responses[1] + responses[2] + responses[3] + responses[4];
  }
};

// Every worker's counters and the engine's readiness. Owned by the Engine.
class EngineStats {
 public:
  explicit EngineStats(size_t workers) : workers_(new WorkerStats[workers]), size_(workers) {}
  // Number of workers (loop ids). Thread-safe.
  size_t size() const { return size_; }
  // The counters of worker `id`, summed over its loop instances. Thread-safe.
  WorkerCounters Read(size_t id) const;
  // Worker `id`'s counter blocks, for their writers. Thread-safe.
  WorkerStats& worker(size_t id) { return workers_[id]; }
  const WorkerStats& worker(size_t id) const { return workers_[id]; }
  // Whether every loop serves, none is crash-looping and no drain has begun (Engine::ready()):
  // computed here, from the supervisor's view of the loops and the drain request. Thread-safe.
  bool ready() const {
    return serving_.load(std::memory_order_relaxed) && !draining_.load(std::memory_order_relaxed);
  }

 private:
  friend class Supervisor;
  std::unique_ptr<WorkerStats[]> workers_;
  size_t size_;
  // Every loop up and none crash-looping, as the supervisor last saw them (false before the
  // engine started and after it stopped).
  std::atomic<bool> serving_{false};
  // A drain was asked for (Engine::Drain(), SIGTERM): from then on, never ready again.
  std::atomic<bool> draining_{false};
};

}  // namespace percore

#endif  // PERCORE_STATS_H_
