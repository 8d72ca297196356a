// percore/buffers.h — the one rule for buffers a loop reuses from one message to the next (a
// pooled output, a protocol's pooled message state, a compressor's output): keep a small one,
// whose pages the next message writes into at no cost; give back one that grew for a single
// large message, so a loop's memory follows its usual traffic rather than its largest message.
#ifndef PERCORE_BUFFERS_H_
#define PERCORE_BUFFERS_H_

#include <cstddef>
#include <string>

namespace percore {

// The largest capacity a reused buffer keeps.
inline constexpr size_t kMaxKeptCapacity = 64 * 1024;

// Frees `s` if it is larger than kMaxKeptCapacity; the capacity given back, or 0. Swapped, not
// assigned: libstdc++ keeps its buffer when a string is cleared or assigned a short one.
inline size_t KeepSmall(std::string& s) {
  const size_t capacity = s.capacity();
  if (capacity <= kMaxKeptCapacity) return 0;
  std::string().swap(s);
  return capacity;
}

}  // namespace percore

#endif  // PERCORE_BUFFERS_H_
