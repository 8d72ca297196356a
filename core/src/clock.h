// The monotonic clock, as the loops and the engine read it: one definition, since a loop's
// LoopStats::busy_since_ms is compared with the engine's own reading of it.
#ifndef PERCORE_SRC_CLOCK_H_
#define PERCORE_SRC_CLOCK_H_

#include <time.h>

#include <cstdint>

#include "absl/time/time.h"

namespace percore {

inline int64_t MonotonicUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

inline int64_t MonotonicMs() { return MonotonicUs() / 1000; }

// The same clock as an absl::Time, for the supervisor's arithmetic: counted from the Unix epoch,
// so only differences between its readings mean anything.
inline absl::Time FromMonotonicMs(int64_t ms) { return absl::UnixEpoch() + absl::Milliseconds(ms); }
inline absl::Time MonotonicTime() { return absl::UnixEpoch() + absl::Microseconds(MonotonicUs()); }

}  // namespace percore

#endif  // PERCORE_SRC_CLOCK_H_
