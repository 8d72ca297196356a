// Backoff: how long to wait before restarting something that died (a loop, the guard's worker
// process). The first restart waits EngineOptions::restart_backoff, each quick death after it
// 1.5 times longer, up to max_restart_backoff; one that ran kHealthyAfter before dying starts
// over from the first delay. Plain arithmetic on the durations it is given, so its rule is
// tested without waiting.
#ifndef PERCORE_SRC_BACKOFF_H_
#define PERCORE_SRC_BACKOFF_H_

#include <algorithm>

#include "absl/time/time.h"
#include "percore/options.h"

namespace percore {

class Backoff {
 public:
  // Running this long before dying counts as healthy.
  static constexpr absl::Duration kHealthyAfter = absl::Seconds(30);

  explicit Backoff(const EngineOptions& options)
      : first_(options.restart_backoff), max_(options.max_restart_backoff), next_(first_) {}

  // It died after running for `ran`: the delay before it starts again.
  absl::Duration AfterDeath(absl::Duration ran) {
    if (ran >= kHealthyAfter) next_ = first_;
    const absl::Duration delay = next_;
    next_ = std::min(next_ * 1.5, max_);
    return delay;
  }

 private:
  absl::Duration first_;
  absl::Duration max_;
  absl::Duration next_;
};

}  // namespace percore

#endif  // PERCORE_SRC_BACKOFF_H_
