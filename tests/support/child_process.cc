#include "support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

namespace percore::testing {
namespace {

using std::chrono::milliseconds;

// Appends what `fd` gives to `text` until it contains `wanted` at `from` or after; false at EOF
// or the deadline.
bool ReadUntil(int fd, std::string& text, std::string_view wanted,
               ChildProcess::Clock::time_point deadline, size_t from = 0) {
  while (text.find(wanted, from) == std::string::npos) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - ChildProcess::Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (fd < 0 || left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char chunk[4096];
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    text.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> args, ChildOptions options)
    : own_group_(options.own_group) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  int log = -1;
  if (options.log.empty()) {
    if (pipe2(out, O_CLOEXEC) != 0) return;
    if (pipe2(err, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return;
    }
  } else {
    log = open(options.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) return;
  }
  pid_ = fork();
  if (pid_ == 0) {
    if (own_group_) setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // the child dies with the test
    const int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, STDIN_FILENO);
    dup2(log >= 0 ? log : out[1], STDOUT_FILENO);
    dup2(log >= 0 ? log : err[1], STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (log >= 0) {
    close(log);
    return;
  }
  close(out[1]);
  close(err[1]);
  stdout_ = out[0];
  stderr_ = err[0];
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !status_.has_value()) {
    kill(own_group_ ? -pid_ : pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  for (int fd : {stdout_, stderr_}) {
    if (fd >= 0) close(fd);
  }
}

bool ChildProcess::running() { return pid_ > 0 && !Wait(Clock::now()).has_value(); }

std::optional<int> ChildProcess::Wait(Clock::time_point deadline) {
  if (pid_ <= 0 || status_.has_value()) return status_;
  // A pidfd becomes readable when the process exits.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  pollfd p{pidfd, POLLIN, 0};
  if (pidfd >= 0) poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0)));
  if (pidfd >= 0) close(pidfd);
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = status;
    if (own_group_) kill(-pid_, SIGKILL);  // what it forked goes with it
  }
  return status_;
}

bool ChildProcess::Says(std::string_view text, milliseconds timeout) {
  return ReadUntil(stdout_, out_text_, text, Clock::now() + timeout);
}

bool ChildProcess::StderrSays(std::string_view text, milliseconds timeout) {
  return ReadUntil(stderr_, err_text_, text, Clock::now() + timeout);
}

int ChildProcess::ListeningPort(milliseconds timeout) {
  const std::string_view line = "Listening on port ";
  const auto deadline = Clock::now() + timeout;
  if (!ReadUntil(stdout_, out_text_, line, deadline)) return 0;
  const size_t at = out_text_.find(line) + line.size();
  if (!ReadUntil(stdout_, out_text_, "\n", deadline, at)) return 0;
  return std::atoi(out_text_.c_str() + at);
}

HelloCores::HelloCores(const std::string& binary, std::vector<std::string> flags,
                       milliseconds timeout)
    : ChildProcess([&] {
        std::vector<std::string> args = {binary, "--address", "127.0.0.1", "--port", "0"};
        args.insert(args.end(), flags.begin(), flags.end());
        return args;
      }()) {
  port_ = ListeningPort(timeout);
}

}  // namespace percore::testing
