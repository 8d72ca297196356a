#include "percore/stats.h"

#include <algorithm>
#include <cstring>

namespace percore {

void LoopStats::SetActivity(std::string_view text) {
  // Only the words up to the text's NUL are stored: Activity() stops there.
  uint64_t words[8] = {};
  const size_t length = std::min(text.size(), sizeof(words) - 1);
  std::memcpy(words, text.data(), length);
  const uint32_t sequence = activity_sequence_.load(std::memory_order_relaxed);
  activity_sequence_.store(sequence + 1, std::memory_order_relaxed);  // odd: being written
  std::atomic_thread_fence(std::memory_order_release);
  for (size_t i = 0; i <= length / 8; ++i) activity_[i].store(words[i], std::memory_order_relaxed);
  activity_sequence_.store(sequence + 2, std::memory_order_release);
}

WorkerCounters EngineStats::Read(size_t id) const {
  const WorkerStats& w = workers_[id];
  WorkerCounters out;
  out.cpu = w.cpu;
  out.restarts = w.restarts.load(std::memory_order_relaxed);
  out.stalls = w.stalls.load(std::memory_order_relaxed);
  for (const LoopStats& l : w.instances) {
    out.accepted += l.accepted.load(std::memory_order_relaxed);
    out.active += l.active.load(std::memory_order_relaxed);
    out.bytes_in += l.bytes_in.load(std::memory_order_relaxed);
    out.bytes_out += l.bytes_out.load(std::memory_order_relaxed);
    out.lag_us = std::max(out.lag_us, l.lag_us.load(std::memory_order_relaxed));
    out.not_ready_answers += l.not_ready_answers.load(std::memory_order_relaxed);
    out.callback_failures += l.callback_failures.load(std::memory_order_relaxed);
    for (int i = 0; i < 5; ++i) out.responses[i] += l.responses[i].load(std::memory_order_relaxed);
    out.ws_open += l.ws_open.load(std::memory_order_relaxed);
    out.ws_messages_in += l.ws_messages_in.load(std::memory_order_relaxed);
    out.ws_messages_out += l.ws_messages_out.load(std::memory_order_relaxed);
    out.ws_bytes_in += l.ws_bytes_in.load(std::memory_order_relaxed);
    out.ws_bytes_out += l.ws_bytes_out.load(std::memory_order_relaxed);
    out.ws_dropped += l.ws_dropped.load(std::memory_order_relaxed);
    out.tls_handshakes += l.tls_handshakes.load(std::memory_order_relaxed);
    out.tls_resumed += l.tls_resumed.load(std::memory_order_relaxed);
    out.tls_failures += l.tls_failures.load(std::memory_order_relaxed);
    out.h2_streams += l.h2_streams.load(std::memory_order_relaxed);
    out.h2_resets += l.h2_resets.load(std::memory_order_relaxed);
    out.h2_goaways += l.h2_goaways.load(std::memory_order_relaxed);
    for (size_t i = 0; i < std::size(out.ws_closes); ++i) {
      out.ws_closes[i] += l.ws_closes[i].load(std::memory_order_relaxed);
    }
  }
  return out;
}

std::string LoopStats::Activity() const {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const uint32_t before = activity_sequence_.load(std::memory_order_acquire);
    if (before & 1) continue;
    char bytes[sizeof(activity_)];
    for (size_t i = 0; i < 8; ++i) {
      const uint64_t word = activity_[i].load(std::memory_order_relaxed);
      std::memcpy(bytes + i * 8, &word, 8);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (activity_sequence_.load(std::memory_order_relaxed) == before) {
      bytes[sizeof(bytes) - 1] = '\0';
      return std::string(bytes);
    }
  }
  return "?";
}

}  // namespace percore
