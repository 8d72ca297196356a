#include "percore/guard.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "backoff.h"
#include "listener.h"
#include "log_line.h"
#include "percore/cpus.h"
#include "percore/engine.h"
#include "percore/signals.h"
#include "validate.h"

namespace percore {
namespace {

// Forks the child that runs `serve`; its pid, or -1.
pid_t StartChild(const EngineOptions& options, const sigset_t& child_mask,
                 const std::function<int(const EngineOptions&)>& serve) {
  const pid_t guard = getpid();
  fflush(nullptr);  // or the child would write the guard's buffered output again
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // The child: dies with the guard (the check after prctl closes the race with a guard that died
  // before it) and serves. Its own process group: a terminal's Ctrl-C reaches the guard only,
  // which passes it on once (the child taking it twice would stop at once instead of draining).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != guard) _exit(1);
  setpgid(0, 0);
  sigprocmask(SIG_SETMASK, &child_mask, nullptr);
  int code = 1;
  try {
    code = serve(options);
  } catch (...) {
    // Never unwind into the guard's caller in the child.
  }
  fflush(nullptr);
  _exit(code);
}

// Follows `child` until it ends, passing SIGTERM, SIGINT and SIGHUP on. The first SIGTERM or
// SIGINT sets `stopping` and closes the guard's copies of the listeners: the child closes its
// own as it drains, and these would keep them in the SO_REUSEPORT group, queueing connections
// nobody will accept. The child's wait status, or nullopt if it can no longer be waited for.
std::optional<int> FollowChild(pid_t child, const BlockedSignals& signals,
                               const EngineOptions& options, bool* stopping,
                               std::vector<int>* listen_fds) {
  while (true) {
    const int signal = signals.Wait(absl::Seconds(1));
    if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) {
      kill(child, signal);
      if (signal != SIGHUP && !*stopping) {
        *stopping = true;
        for (int& fd : *listen_fds) {
          close(fd);
          fd = -1;
        }
      }
    }
    // SIGCHLD, or a look every second in case one was merged with an earlier one.
    int status = 0;
    const pid_t done = waitpid(child, &status, WNOHANG);
    if (done == child) return status;
    if (done < 0 && errno != EINTR) {
      LogLine(options, absl::StrCat("Guard: waitpid: ", strerror(errno)));
      return std::nullopt;
    }
  }
}

}  // namespace

absl::StatusOr<int> RunGuarded(const EngineOptions& options,
                               const std::function<int(const EngineOptions&)>& serve) {
  absl::Status valid = ValidateOptions(options, AllowedCpus());
  if (!valid.ok()) return valid;
  EngineOptions child_options = options;
  if (child_options.listen_fds.empty()) {
    absl::StatusOr<ListenerGroup> group =
        BindListeners(options.address, options.port, Engine::LoopCount(options), options.backlog);
    if (!group.ok()) return group.status();
    child_options.listen_fds = std::move(group->fds);
  }
  LogLine(options,
          absl::StrCat("Guard ", getpid(), " holds port ", BoundPort(child_options.listen_fds[0]),
                       "; the engine runs in a worker process"));

  // The signals are taken with sigtimedwait, so none interrupts the guard between its checks.
  const BlockedSignals signals({SIGINT, SIGTERM, SIGHUP, SIGCHLD});
  // An ignored SIGCHLD (inherited through exec) would make the kernel reap children itself.
  signal(SIGCHLD, SIG_DFL);
  // The child keeps the stop and reload signals blocked: Engine::Run() takes them when it
  // serves, and before that they stay pending instead of killing it.
  sigset_t child_mask = signals.previous();
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&child_mask, signal);

  Backoff backoff(options);
  bool stopping = false;  // a SIGTERM or SIGINT was passed on: restart nothing
  int exit_code = 0;
  while (true) {
    const absl::Time started = absl::Now();
    const pid_t child = StartChild(child_options, child_mask, serve);
    std::string why;  // why a new child is needed
    if (child < 0) {
      why = absl::StrCat("Guard: cannot start a worker process (fork: ", strerror(errno), ")");
    } else {
      const std::optional<int> status =
          FollowChild(child, signals, options, &stopping, &child_options.listen_fds);
      if (!status.has_value()) {
        exit_code = 1;
        break;
      }
      if (WIFEXITED(*status)) {
        exit_code = WEXITSTATUS(*status);  // the engine stopped on its own, or could not start
        break;
      }
      const int signal = WTERMSIG(*status);
      if (stopping) {
        exit_code = 128 + signal;
        break;
      }
      why = absl::StrCat("Worker process ", child, " died (signal ", signal, ")");
    }
    const absl::Time now = absl::Now();
    const absl::Duration delay = backoff.AfterDeath(now - started);
    LogLine(options, absl::StrCat(why, "; restarting in ", absl::FormatDuration(delay)));
    // Wait out the backoff, still taking the stop signals: with no child, a stop is immediate.
    const absl::Time restart_at = now + delay;
    while (!stopping && absl::Now() < restart_at) {
      const int taken = signals.Wait(restart_at - absl::Now());
      stopping = taken == SIGINT || taken == SIGTERM;
    }
    if (stopping) break;
  }
  for (int fd : child_options.listen_fds) {
    if (fd >= 0) close(fd);
  }
  return exit_code;
}

}  // namespace percore
