// percore/stats.h — per-loop counters, written by their loop and readable from any thread.
//
//   const percore::EngineStats& stats = req.worker().engine_stats();
//   for (size_t i = 0; i < stats.size(); ++i) total += stats.loop(i).accepted.load();
//
// Each counter has one writer (its loop, or the supervisor for `restarts`), so an update is a
// relaxed load and store, with no locked instruction on the request path; a reader sees a value
// at most an instant old.
#ifndef PERCORE_STATS_H_
#define PERCORE_STATS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace percore {

// The counters of one loop; they survive the loop's restarts.
struct alignas(64) LoopStats {
  // Adds `n` to a counter this thread is the only writer of.
  static void Add(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  int cpu = 0;
  std::atomic<uint64_t> accepted{0};   // connections accepted
  std::atomic<uint64_t> active{0};     // connections open now
  std::atomic<uint64_t> bytes_in{0};   // bytes received
  std::atomic<uint64_t> bytes_out{0};  // bytes sent
  std::atomic<uint64_t> restarts{0};   // times the loop died and was replaced (supervisor)
  std::atomic<uint64_t> lag_us{0};     // how late the loop's last periodic tick ran, in µs
  // Responses by class, counted by the protocol (HTTP: 1xx .. 5xx at index 0 .. 4).
  std::atomic<uint64_t> responses[5] = {};
};

// Every loop's counters and the engine's readiness. Owned by the Engine.
class EngineStats {
 public:
  explicit EngineStats(size_t loops) : loops_(new LoopStats[loops]), size_(loops) {}
  // Number of loops. Thread-safe.
  size_t size() const { return size_; }
  // The counters of loop `id`. Thread-safe.
  LoopStats& loop(size_t id) { return loops_[id]; }
  const LoopStats& loop(size_t id) const { return loops_[id]; }
  // Whether every loop serves, none is crash-looping and no drain has begun (Engine::ready()).
  bool ready() const { return ready_.load(std::memory_order_relaxed); }

 private:
  friend class Engine;
  std::unique_ptr<LoopStats[]> loops_;
  size_t size_;
  std::atomic<bool> ready_{false};
};

}  // namespace percore

#endif  // PERCORE_STATS_H_
