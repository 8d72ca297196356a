// DrainWatch: when a draining host is out of its load balancer's rotation, so it can stop
// accepting without a balancer still sending it requests (the rule is EngineOptions::
// drain_delay's). A balancer that checks readiness keeps sending requests until it has seen
// its fall count of failed checks; one that does not check stops only once the listener
// refuses. So the watch waits for both signs a balancer gives (enough failed checks, then the
// requests stopping) and falls back on the quiet alone when no check comes. Plain arithmetic on
// the times and counters it is given, so its rule is tested without waiting.
#ifndef PERCORE_SRC_DRAIN_WATCH_H_
#define PERCORE_SRC_DRAIN_WATCH_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "percore/options.h"

namespace percore {

class DrainWatch {
 public:
  // Counters are totals since the engine started: responses sent, and readiness checks
  // answered "not ready" (a subset of them).
  DrainWatch(const EngineOptions& options, absl::Time start, uint64_t answered, uint64_t not_ready)
      : options_(options),
        start_(start),
        last_request_(start),
        others_(Others(answered, not_ready)),
        not_ready_at_start_(not_ready) {}

  // Why the wait is over, or nothing while it goes on.
  std::optional<std::string> Over(absl::Time now, uint64_t answered, uint64_t not_ready) {
    // The two counters are read one after the other while loops write them: a check counted
    // as "not ready" and not yet as answered makes the difference dip, never rise.
    const int64_t others = Others(answered, not_ready);
    if (others > others_) {
      others_ = others;
      last_request_ = now;
    }
    const uint64_t checks = not_ready - not_ready_at_start_;
    const bool quiet = now - last_request_ >= options_.drain_idle;
    if (now - start_ >= options_.drain_delay) {
      return absl::StrCat("Drain delay ", absl::FormatDuration(options_.drain_delay), " passed");
    }
    if (quiet && checks == 0) {
      return absl::StrCat("No request for ", absl::FormatDuration(options_.drain_idle),
                          " and no readiness check");
    }
    if (quiet && checks >= static_cast<uint64_t>(options_.drain_checks)) {
      return absl::StrCat("Out of the load balancer (", checks, " readiness checks failed, no ",
                          "request for ", absl::FormatDuration(options_.drain_idle), ")");
    }
    return std::nullopt;
  }

 private:
  static int64_t Others(uint64_t answered, uint64_t not_ready) {
    return static_cast<int64_t>(answered - not_ready);
  }

  const EngineOptions& options_;
  const absl::Time start_;
  absl::Time last_request_;
  int64_t others_;
  const uint64_t not_ready_at_start_;
};

}  // namespace percore

#endif  // PERCORE_SRC_DRAIN_WATCH_H_
