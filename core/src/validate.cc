#include "validate.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "listener.h"

namespace percore {
namespace {

bool IsPowerOfTwo(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

}  // namespace

absl::Status ValidateOptions(const EngineOptions& o, const std::vector<int>& allowed) {
  if (o.port < 0 || o.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", o.port, " is out of range 0-65535"));
  }
  if (o.threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", o.threads, " must be >= 1"));
  }
  for (int cpu : o.cpus) {
    if (!std::binary_search(allowed.begin(), allowed.end(), cpu)) {
      return absl::InvalidArgumentError(absl::StrCat("cpu ", cpu,
                                                     " is not in this process's allowed set (",
                                                     absl::StrJoin(allowed, ","), ")"));
    }
  }
  if (o.backlog < 1) return absl::InvalidArgumentError("backlog must be >= 1");
  if (o.ring_entries < 8 || o.ring_entries > 32768 || !IsPowerOfTwo(o.ring_entries)) {
    return absl::InvalidArgumentError("ring_entries must be a power of two in 8..32768");
  }
  if (o.recv_buffers < 8 || o.recv_buffers > 32768 || !IsPowerOfTwo(o.recv_buffers)) {
    return absl::InvalidArgumentError("recv_buffers must be a power of two in 8..32768");
  }
  if (o.recv_buffer_size < 512 || o.recv_buffer_size > (1u << 20)) {
    return absl::InvalidArgumentError("recv_buffer_size must be in 512..1048576");
  }
  if (o.max_pending_output == 0)
    return absl::InvalidArgumentError("max_pending_output must be > 0");
  // Durations: each named with its value when out of range.
  auto bad = [](const char* name, absl::Duration value, const std::string& rule) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " ", absl::FormatDuration(value), " must be ", rule));
  };
  for (const auto& [name, value] : {std::pair{"tick_interval", o.tick_interval},
                                    {"send_timeout", o.send_timeout},
                                    {"shutdown_timeout", o.shutdown_timeout},
                                    {"restart_backoff", o.restart_backoff},
                                    {"stall_timeout", o.stall_timeout},
                                    {"crash_loop_window", o.crash_loop_window}}) {
    if (value <= absl::ZeroDuration()) return bad(name, value, "> 0");
  }
  for (const auto& [name, value] : {std::pair{"linger_timeout", o.linger_timeout},
                                    {"drain_delay", o.drain_delay},
                                    {"drain_idle", o.drain_idle}}) {
    if (value < absl::ZeroDuration()) return bad(name, value, ">= 0");
  }
  if (o.max_restart_backoff < o.restart_backoff) {
    return bad("restart_backoff", o.restart_backoff,
               absl::StrCat("at most max_restart_backoff (",
                            absl::FormatDuration(o.max_restart_backoff), ")"));
  }
  if (o.stuck_timeout <= o.stall_timeout) {
    return bad(
        "stuck_timeout", o.stuck_timeout,
        absl::StrCat("longer than stall_timeout (", absl::FormatDuration(o.stall_timeout), ")"));
  }
  if (o.drain_checks < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("drain_checks ", o.drain_checks, " must be >= 0"));
  }
  if (o.crash_loop_deaths < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("crash_loop_deaths ", o.crash_loop_deaths, " must be >= 1"));
  }
  if (!o.listen_fds.empty() && o.threads != 0 &&
      static_cast<size_t>(o.threads) != o.listen_fds.size()) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", o.threads, " differs from the ",
                                                   o.listen_fds.size(), " listen_fds given"));
  }
  for (int fd : o.listen_fds) {
    if (BoundPort(fd) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("listen_fds: ", fd, " is not a bound socket"));
    }
  }
  return absl::OkStatus();
}

}  // namespace percore
