// The one check of EngineOptions (Engine::Create, RunGuarded): every bad field is refused with
// a message that names it and its value.
#include "validate.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/options.h"

namespace percore {
namespace {

const std::vector<int> kAllowed = {0, 1};

TEST(ValidateOptionsTest, TheDefaultsPass) {
  EXPECT_TRUE(ValidateOptions(EngineOptions(), kAllowed).ok());
}

TEST(ValidateOptionsTest, EachBadFieldIsNamedWithItsValue) {
  struct Case {
    std::function<void(EngineOptions&)> set;
    std::string message;
  };
  const Case cases[] = {
      {[](EngineOptions& o) { o.port = 70000; }, "port 70000 is out of range 0-65535"},
      {[](EngineOptions& o) { o.threads = -1; }, "threads -1 must be >= 1"},
      {[](EngineOptions& o) { o.cpus = {7}; }, "cpu 7 is not in this process's allowed set (0,1)"},
      {[](EngineOptions& o) { o.backlog = 0; }, "backlog must be >= 1"},
      {[](EngineOptions& o) { o.ring_entries = 100; },
       "ring_entries must be a power of two in 8..32768"},
      {[](EngineOptions& o) { o.recv_buffers = 4; },
       "recv_buffers must be a power of two in 8..32768"},
      {[](EngineOptions& o) { o.recv_buffer_size = 100; },
       "recv_buffer_size must be in 512..1048576"},
      {[](EngineOptions& o) { o.max_pending_output = 0; }, "max_pending_output must be > 0"},
      {[](EngineOptions& o) { o.tick_interval = absl::ZeroDuration(); },
       "tick_interval 0 must be > 0"},
      {[](EngineOptions& o) { o.send_timeout = -absl::Seconds(1); },
       "send_timeout -1s must be > 0"},
      {[](EngineOptions& o) { o.shutdown_timeout = absl::ZeroDuration(); },
       "shutdown_timeout 0 must be > 0"},
      {[](EngineOptions& o) { o.linger_timeout = -absl::Milliseconds(5); },
       "linger_timeout -5ms must be >= 0"},
      {[](EngineOptions& o) { o.drain_delay = -absl::Seconds(2); }, "drain_delay -2s must be >= 0"},
      {[](EngineOptions& o) { o.drain_idle = -absl::Seconds(1); }, "drain_idle -1s must be >= 0"},
      {[](EngineOptions& o) { o.drain_checks = -1; }, "drain_checks -1 must be >= 0"},
      {[](EngineOptions& o) { o.restart_backoff = absl::ZeroDuration(); },
       "restart_backoff 0 must be > 0"},
      {[](EngineOptions& o) { o.restart_backoff = absl::Seconds(60); },
       "restart_backoff 1m must be at most max_restart_backoff (15s)"},
      {[](EngineOptions& o) { o.stall_timeout = absl::ZeroDuration(); },
       "stall_timeout 0 must be > 0"},
      {[](EngineOptions& o) { o.stuck_timeout = absl::Milliseconds(500); },
       "stuck_timeout 500ms must be longer than stall_timeout (1s)"},
      {[](EngineOptions& o) { o.crash_loop_deaths = 0; }, "crash_loop_deaths 0 must be >= 1"},
      {[](EngineOptions& o) { o.crash_loop_window = absl::ZeroDuration(); },
       "crash_loop_window 0 must be > 0"},
      {[](EngineOptions& o) { o.listen_fds = {-1}; }, "listen_fds: -1 is not a bound socket"},
      {[](EngineOptions& o) {
         o.listen_fds = {-1};
         o.threads = 2;
       },
       "threads 2 differs from the 1 listen_fds given"},
  };
  for (const Case& c : cases) {
    EngineOptions options;
    c.set(options);
    EXPECT_EQ(ValidateOptions(options, kAllowed), absl::InvalidArgumentError(c.message));
  }
}

TEST(ValidateOptionsTest, AStuckTimeoutOfInfinityNeverReplaces) {
  EngineOptions options;
  options.stuck_timeout = absl::InfiniteDuration();
  EXPECT_TRUE(ValidateOptions(options, kAllowed).ok());
}

}  // namespace
}  // namespace percore
