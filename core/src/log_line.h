// One place that writes the engine's and the guard's log lines.
#ifndef PERCORE_SRC_LOG_LINE_H_
#define PERCORE_SRC_LOG_LINE_H_

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>
#include <string_view>

#include "percore/options.h"

namespace percore {

// write() that cannot end the process through SIGPIPE, on any thread, whatever the process's
// disposition of SIGPIPE (an embedding application keeps its own). A write to a pipe or socket
// whose reader is gone makes the kernel send SIGPIPE to the calling thread: blocked, it stays
// pending on this thread, and is taken here unless it was pending already (then it is the
// application's, left as it was). Loop threads block SIGPIPE for good (Engine::RunInstance);
// this is for the threads percore borrows: the supervisor's and the guard's.
inline ssize_t WriteWithoutSigpipe(int fd, const void* data, size_t size) {
  sigset_t pipe_only, previous, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
  const ssize_t n = write(fd, data, size);
  const int error = errno;
  if (n < 0 && error == EPIPE && !was_pending) {
    const timespec now{0, 0};
    sigtimedwait(&pipe_only, nullptr, &now);
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  errno = error;
  return n;
}

// Hands `line` (no newline) to EngineOptions::log, or writes it to stderr with one write().
inline void LogLine(const EngineOptions& options, std::string_view line) {
  if (options.log) {
    options.log(line);
  } else {
    std::string text = std::string(line) + "\n";
    [[maybe_unused]] ssize_t n = WriteWithoutSigpipe(STDERR_FILENO, text.data(), text.size());
  }
}

}  // namespace percore

#endif  // PERCORE_SRC_LOG_LINE_H_
