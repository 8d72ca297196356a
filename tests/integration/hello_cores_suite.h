// What the hello_cores suites (hello_cores_test.cc, hello_cores_exit_test.cc,
// hello_cores_routes_test.cc) share: hello_cores run as a child process (always killed and reaped
// by its pid), optionally under a seccomp filter that blocks io_uring as Docker does; its flags;
// and the suite of a running server, once per backend. Every wait has a deadline. In a namespace
// of its own: percore::testing::HelloCores is support/child_process.h's.
#ifndef PERCORE_TESTS_INTEGRATION_HELLO_CORES_SUITE_H_
#define PERCORE_TESTS_INTEGRATION_HELLO_CORES_SUITE_H_

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore::testing::hello_cores_suite {

inline constexpr std::chrono::milliseconds kStartTimeout(20000);
inline constexpr std::chrono::milliseconds kExitTimeout(20000);
inline constexpr std::chrono::milliseconds kReadTimeout(10000);

#if defined(__x86_64__)
inline constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
inline constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
inline constexpr uint32_t kAuditArch = 0;  // no filter: the fallback tests skip
#endif

// Makes io_uring_setup, io_uring_enter and io_uring_register fail with EPERM in this process
// and what it executes, as Docker's default seccomp profile does. Async-signal-safe (it runs
// between fork and exec). False if the filter could not be installed.
inline bool BlockIoUring() {
  if (kAuditArch == 0) return false;
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// One run of hello_cores with its stdout and stderr on pipes.
class HelloCores {
 public:
  HelloCores() = default;
  ~HelloCores() { Kill(); }
  HelloCores(const HelloCores&) = delete;
  HelloCores& operator=(const HelloCores&) = delete;

  // Runs the child under a seccomp filter that blocks io_uring (see BlockIoUring).
  void set_block_io_uring(bool block) { block_io_uring_ = block; }
  // Adds "NAME=value" to the child's environment.
  void add_environment(std::string entry) { environment_.push_back(std::move(entry)); }

  // Starts hello_cores with `flags`; false (with errno set) if it could not be started.
  bool Spawn(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {PERCORE_HELLO_CORES};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (char** entry = environ; *entry != nullptr; ++entry) envp.push_back(*entry);
    for (std::string& entry : environment_) envp.push_back(entry.data());
    envp.push_back(nullptr);

    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    if (pipe2(err, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return false;
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      for (int fd : {out[0], out[1], err[0], err[1]}) close(fd);
      return false;
    }
    if (pid == 0) {
      // Only async-signal-safe calls until exec. The child dies with the test.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null >= 0) dup2(null, STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      // A child killed by SIGSEGV or SIGABRT on purpose leaves no core file behind.
      const rlimit no_core{0, 0};
      setrlimit(RLIMIT_CORE, &no_core);
      if (block_io_uring_ && !BlockIoUring()) _exit(126);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    pid_ = pid;
    stdout_fd_ = out[0];
    stderr_fd_ = err[0];
    return true;
  }

  pid_t pid() const { return pid_; }

  // Reads stdout until a complete line starting with `prefix` appears after the lines already
  // returned by earlier calls, or `timeout` passes, or stdout closes.
  std::optional<std::string> WaitForLine(std::string_view prefix,
                                         std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      while (next_line_ < lines_.size()) {
        const std::string& line = lines_[next_line_++];
        if (line.compare(0, prefix.size(), prefix) == 0) return line;
      }
      if (!ReadInto(stdout_fd_, stdout_, deadline)) return std::nullopt;
      SplitLines();
    }
  }

  // Every complete stdout line read so far.
  const std::vector<std::string>& lines() const { return lines_; }

  // The port from "Listening on port N"; 0 if it did not appear in time.
  int WaitForPort() {
    std::optional<std::string> line = WaitForLine("Listening on port ", kStartTimeout);
    if (!line) return 0;
    return std::atoi(line->c_str() + strlen("Listening on port "));
  }

  // Waits for the child to exit; its wait status, or nullopt if it is still running.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return exit_status_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        exit_status_ = status;
        return status;
      }
      if (done < 0 && errno != EINTR) return std::nullopt;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      // Polling the condition, bounded above.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // Everything left on stdout and stderr until both close (the child exited) or `timeout`.
  void DrainOutput(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (stdout_fd_ >= 0 && ReadInto(stdout_fd_, stdout_, deadline)) {
    }
    SplitLines();
    while (stderr_fd_ >= 0 && ReadInto(stderr_fd_, stderr_, deadline)) {
    }
  }
  const std::string& stderr_text() const { return stderr_; }

  // Reads stderr until it contains `text` or `timeout` passes.
  bool WaitForStderr(std::string_view text, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (stderr_.find(text) == std::string::npos) {
      if (!ReadInto(stderr_fd_, stderr_, deadline)) return false;
    }
    return true;
  }

  // Kills the child (if still running), reaps it, closes the pipes.
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    for (int* fd : {&stdout_fd_, &stderr_fd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }

 private:
  // Appends what `fd` has within the deadline; false on EOF, error or timeout.
  static bool ReadInto(int fd, std::string& text, std::chrono::steady_clock::time_point deadline) {
    if (fd < 0) return false;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      int ready = poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      char chunk[4096];
      ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      text.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  void SplitLines() {
    size_t eol;
    while ((eol = stdout_.find('\n', split_offset_)) != std::string::npos) {
      lines_.push_back(stdout_.substr(split_offset_, eol - split_offset_));
      split_offset_ = eol + 1;
    }
  }

  bool block_io_uring_ = false;
  std::vector<std::string> environment_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  std::string stdout_;
  size_t split_offset_ = 0;
  std::vector<std::string> lines_;
  size_t next_line_ = 0;
  std::string stderr_;
};

// Closes client sockets when it goes out of scope.
struct ClientSockets {
  ~ClientSockets() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
  std::vector<int> fds;
};

// The header section of a POST /echo whose `length`-byte body the server must ask for
// ("100 Continue"), so the client knows the server holds the request.
inline std::string EchoHeadersExpectingContinue(size_t length) {
  return "POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
         "Content-Length: " +
         std::to_string(length) + "\r\n\r\n";
}

// Connects to 127.0.0.1:port until a connect is refused (the server closed its listeners) or
// `timeout` passes; whether it was refused. Accepted connects are closed at once.
inline bool WaitForRefusedConnect(int port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int error =
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno;
    close(fd);
    if (error == ECONNREFUSED) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    // Polling the condition, bounded above.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Describes a wait status for a failure message.
inline std::string DescribeStatus(std::optional<int> status) {
  if (!status) return "still running";
  if (WIFEXITED(*status)) return "exit " + std::to_string(WEXITSTATUS(*status));
  if (WIFSIGNALED(*status)) return "killed by signal " + std::to_string(WTERMSIG(*status));
  return "status " + std::to_string(*status);
}

// Flags every run gets: traffic stays on 127.0.0.1, the port is any free one.
inline std::vector<std::string> Flags(std::vector<std::string> extra) {
  std::vector<std::string> flags = {"--address", "127.0.0.1", "--port", "0"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

// Marks the running test skipped (GTEST_SKIP returns from the function it is used in).
inline void Skip(const std::string& why) { GTEST_SKIP() << why; }

// Starts hello_cores and waits for its port. 0 if it did not come up: the test is then marked
// failed, or skipped if io_uring is unavailable here, and should return.
inline int StartServer(HelloCores& child, const std::vector<std::string>& flags) {
  if (!child.Spawn(flags)) {
    ADD_FAILURE() << "cannot start " << PERCORE_HELLO_CORES << ": " << strerror(errno);
    return 0;
  }
  const int port = child.WaitForPort();
  if (port != 0) return port;
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  child.DrainOutput(kReadTimeout);
  if (child.stderr_text().find("io_uring unavailable") != std::string::npos) {
    Skip("io_uring is not available here: " + child.stderr_text());
    return 0;
  }
  ADD_FAILURE() << "no \"Listening on port\" line (" << DescribeStatus(status)
                << "); stderr: " << child.stderr_text();
  return 0;
}

// The tests of a running server, once per backend (the value of --backend).
class RunningHelloCoresTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Flags(extra) plus --threads 2 and this run's backend.
  static std::vector<std::string> ServerFlags(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--threads", "2", "--backend", GetParam()});
    return Flags(extra);
  }
};

// The test-name suffix of a --backend value: "IoUring" or "Epoll".
inline std::string BackendFlagName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param == "epoll" ? "Epoll" : "IoUring";
}

}  // namespace percore::testing::hello_cores_suite

#endif  // PERCORE_TESTS_INTEGRATION_HELLO_CORES_SUITE_H_
