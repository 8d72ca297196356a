// percore/guard.h — keep serving when the whole engine process dies.
//
// A loop that dies of an exception is restarted by the engine's supervisor thread, but a signal
// (SIGSEGV, SIGABRT, SIGKILL from the OOM killer) ends the whole process. RunGuarded() puts a
// small guard process in front: it binds the listening sockets and holds them, runs the engine
// in a child process on those sockets, and starts a new child when one dies by a signal. Since
// the sockets never close, connections that arrive while no child runs wait in their accept
// queues and are served by the next child instead of being refused.
//
//   int main(int argc, char** argv) {
//     ...build the app and the options; start no thread before this...
//     absl::StatusOr<int> exit_code = percore::RunGuarded(options, [&](const EngineOptions& o) {
//       return Serve(app, o);   // Engine::Create(o) ... Run(); returns the process exit code
//     });
//   }
#ifndef PERCORE_GUARD_H_
#define PERCORE_GUARD_H_

#include <functional>

#include "absl/status/statusor.h"
#include "percore/options.h"

namespace percore {

// Checks `options` as Engine::Create() does (an error names the bad field) and binds one
// listening socket per loop as it would (an error if the port is in use), then forks a child that
// runs `serve` with a copy of `options` whose listen_fds are those sockets, and exits with what
// `serve` returns. The guard:
//  - forwards SIGTERM, SIGINT and SIGHUP to the child (drain, rolling restart) and, after a
//    SIGTERM or SIGINT, restarts nothing;
//  - restarts a child that died by a signal after options.restart_backoff, growing 1.5x per death
//    up to options.max_restart_backoff and starting over after 30 s healthy, logging
//    "Worker process <pid> died (signal <n>); restarting in <backoff>" through options.log;
//  - returns the exit status of a child that exited on its own (0 after a drain; an error at
//    start-up is not retried), or 128 + n for one killed by signal n after a stop was asked.
// The child dies with the guard (PR_SET_PDEATHSIG). Call it before the process starts any thread:
// it forks.
absl::StatusOr<int> RunGuarded(const EngineOptions& options,
                               const std::function<int(const EngineOptions&)>& serve);

}  // namespace percore

#endif  // PERCORE_GUARD_H_
