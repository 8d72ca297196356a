// hello_cores as a child process: its start-up lines, its routes, its exit status on SIGTERM and
// on bad flags. Every wait has a deadline; the child is always killed and reaped by its pid.
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
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/cpus.h"
#include "support/test_client.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using percore::testing::ConnectLocal;
using percore::testing::Fetch;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::LoadClient;
using percore::testing::ReadResponse;
using percore::testing::ReadToEnd;
using percore::testing::ReadToEndResult;
using percore::testing::ResidentKib;
using percore::testing::SendAll;
using percore::testing::Socket;
using percore::testing::StreamEnd;
using percore::testing::WaitUntil;

constexpr milliseconds kStartTimeout(20000);
constexpr milliseconds kExitTimeout(20000);
constexpr milliseconds kReadTimeout(10000);

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;  // no filter: the fallback tests skip
#endif

// Makes io_uring_setup, io_uring_enter and io_uring_register fail with EPERM in this process
// and what it executes, as Docker's default seccomp profile does. Async-signal-safe (it runs
// between fork and exec). False if the filter could not be installed.
bool BlockIoUring() {
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
  std::optional<std::string> WaitForLine(std::string_view prefix, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
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
  std::optional<int> WaitForExit(milliseconds timeout) {
    if (pid_ <= 0) return exit_status_;
    const auto deadline = Clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        exit_status_ = status;
        return status;
      }
      if (done < 0 && errno != EINTR) return std::nullopt;
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(10));  // polling the condition, bounded above
    }
  }

  // Everything left on stdout and stderr until both close (the child exited) or `timeout`.
  void DrainOutput(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (stdout_fd_ >= 0 && ReadInto(stdout_fd_, stdout_, deadline)) {
    }
    SplitLines();
    while (stderr_fd_ >= 0 && ReadInto(stderr_fd_, stderr_, deadline)) {
    }
  }
  const std::string& stderr_text() const { return stderr_; }

  // Reads stderr until it contains `text` or `timeout` passes.
  bool WaitForStderr(std::string_view text, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
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
  static bool ReadInto(int fd, std::string& text, Clock::time_point deadline) {
    if (fd < 0) return false;
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
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
std::string EchoHeadersExpectingContinue(size_t length) {
  return "POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
         "Content-Length: " +
         std::to_string(length) + "\r\n\r\n";
}

// Connects to 127.0.0.1:port until a connect is refused (the server closed its listeners) or
// `timeout` passes; whether it was refused. Accepted connects are closed at once.
bool WaitForRefusedConnect(int port, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
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
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));  // polling the condition, bounded above
  }
}

// Describes a wait status for a failure message.
std::string DescribeStatus(std::optional<int> status) {
  if (!status) return "still running";
  if (WIFEXITED(*status)) return "exit " + std::to_string(WEXITSTATUS(*status));
  if (WIFSIGNALED(*status)) return "killed by signal " + std::to_string(WTERMSIG(*status));
  return "status " + std::to_string(*status);
}

// Flags every run gets: traffic stays on 127.0.0.1, the port is any free one.
std::vector<std::string> Flags(std::vector<std::string> extra) {
  std::vector<std::string> flags = {"--address", "127.0.0.1", "--port", "0"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

// Marks the running test skipped (GTEST_SKIP returns from the function it is used in).
void Skip(const std::string& why) { GTEST_SKIP() << why; }

// Starts hello_cores and waits for its port. 0 if it did not come up: the test is then marked
// failed, or skipped if io_uring is unavailable here, and should return.
int StartServer(HelloCores& child, const std::vector<std::string>& flags) {
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

TEST_P(RunningHelloCoresTest, PrintsStartUpLines) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  EXPECT_GT(port, 0);
  EXPECT_LE(port, 65535);
  const std::vector<int> allowed = AllowedCpus();
  ASSERT_FALSE(allowed.empty());
  const std::vector<std::string> expected = {
      "Supervisor " + std::to_string(child.pid()) + " is running",
      "Worker 0 started on cpu " + std::to_string(allowed[0]) + " (" + GetParam() + ")",
      "Worker 1 started on cpu " + std::to_string(allowed[1 % allowed.size()]) + " (" + GetParam() +
          ")",
      "Listening on port " + std::to_string(port),
  };
  EXPECT_EQ(child.lines(), expected);
}

TEST_P(RunningHelloCoresTest, AnswersRootAndWorker) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  std::optional<HttpResponse> root = Fetch(port, Get("/"));
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->status, 200);
  EXPECT_EQ(root->body, "Hello World!");

  const std::vector<int> allowed = AllowedCpus();
  const std::regex pattern("Hello World from worker ([0-9]+) \\(cpu ([0-9]+), pid ([0-9]+)\\)\n");
  std::set<int> workers;
  for (int i = 0; i < 100 && workers.size() < 2; ++i) {  // fresh connections reach both loops
    std::optional<HttpResponse> response = Fetch(port, Get("/worker"));
    ASSERT_TRUE(response.has_value()) << "connection " << i;
    EXPECT_EQ(response->status, 200);
    std::smatch match;
    ASSERT_TRUE(std::regex_match(response->body, match, pattern)) << response->body;
    const int id = std::stoi(match[1]);
    ASSERT_TRUE(id == 0 || id == 1) << response->body;
    EXPECT_EQ(std::stoi(match[2]), allowed[static_cast<size_t>(id) % allowed.size()])
        << response->body;
    EXPECT_EQ(std::stoi(match[3]), child.pid()) << response->body;
    workers.insert(id);
  }
  EXPECT_EQ(workers, (std::set<int>{0, 1}));

  std::optional<HttpResponse> echo =
      Fetch(port,
            "PUT /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/x-test\r\n"
            "Content-Length: 11\r\n\r\nhello cores");
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->status, 200);
  EXPECT_EQ(echo->body, "hello cores");
  EXPECT_EQ(echo->Header("content-type"), "text/x-test");
}

TEST_P(RunningHelloCoresTest, SigtermExitsWithStatusZero) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  // An open keep-alive connection must not hold the exit up.
  int idle = ConnectLocal(port);
  ASSERT_GE(idle, 0);
  std::string buffer;
  ASSERT_TRUE(SendAll(idle, Get("/")));
  ASSERT_TRUE(ReadResponse(idle, buffer, kReadTimeout).has_value());
  const pid_t pid = child.pid();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  close(idle);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  child.DrainOutput(kReadTimeout);
  EXPECT_EQ(child.stderr_text(), "");
  ASSERT_FALSE(child.lines().empty());
  EXPECT_EQ(child.lines().back(), "Supervisor " + std::to_string(pid) + " stopped");
}

// Behind a proxy that sends the PROXY protocol (HAProxy's send-proxy-v2), the proxy's idle
// keep-alive connections are closed by a drain too, so it ends without the shutdown timeout.
TEST_P(RunningHelloCoresTest, SigtermClosesIdleProxyProtocolConnections) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags({"--proxy_protocol", "--drain_delay=0"}));
  if (port == 0) return;
  int idle = ConnectLocal(port);
  ASSERT_GE(idle, 0);
  std::string buffer;
  ASSERT_TRUE(SendAll(idle, "PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n" + Get("/ip")));
  std::optional<HttpResponse> answer = ReadResponse(idle, buffer, kReadTimeout);
  ASSERT_TRUE(answer.has_value());
  EXPECT_NE(answer->body.find("\"client\":\"192.0.2.9\""), std::string::npos) << answer->body;
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  ReadToEndResult end = ReadToEnd(idle, kReadTimeout);
  close(idle);
  EXPECT_EQ(end.end, StreamEnd::kClosed) << "the idle connection was not closed by the drain";
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  child.DrainOutput(kReadTimeout);
  EXPECT_EQ(std::count(child.lines().begin(), child.lines().end(),
                       "Shutdown timeout: closing the connections left"),
            0);
}

TEST_P(RunningHelloCoresTest, SigintExitsWithStatusZero) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  ASSERT_EQ(kill(child.pid(), SIGINT), 0);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after SIGINT";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
}

TEST_P(RunningHelloCoresTest, LogRequestsPrintsOneLinePerRequest) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags({"--log_requests"}));
  if (port == 0) return;
  const std::vector<std::string> paths = {"/", "/worker", "/no-such-page"};
  for (const std::string& path : paths) ASSERT_TRUE(Fetch(port, Get(path)).has_value()) << path;
  // Lines are buffered per loop and flushed every tick.
  std::multiset<std::string> logged;
  const std::regex pattern("Request handled by worker [01]: GET (\\S+) ([0-9]{3})");
  for (size_t i = 0; i < paths.size(); ++i) {
    std::optional<std::string> line = child.WaitForLine("Request handled by worker", kReadTimeout);
    ASSERT_TRUE(line.has_value()) << "got " << i << " of " << paths.size() << " log lines";
    std::smatch match;
    ASSERT_TRUE(std::regex_match(*line, match, pattern)) << *line;
    logged.insert(match[1].str() + " " + match[2].str());
  }
  EXPECT_EQ(logged, (std::multiset<std::string>{"/ 200", "/worker 200", "/no-such-page 404"}));
}

TEST_P(RunningHelloCoresTest, SigtermFinishesHundredRequestsInFlight) {
  constexpr int kClients = 100;
  constexpr size_t kBodySize = 20;
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  // 100 requests in flight: each server loop holds a header section and asked for the body.
  ClientSockets clients;
  std::vector<std::string> buffers(kClients);
  for (int i = 0; i < kClients; ++i) {
    const int fd = ConnectLocal(port);
    ASSERT_GE(fd, 0) << "client " << i << ": " << strerror(errno);
    clients.fds.push_back(fd);
    ASSERT_TRUE(SendAll(fd, EchoHeadersExpectingContinue(kBodySize))) << "client " << i;
  }
  for (int i = 0; i < kClients; ++i) {
    std::optional<HttpResponse> go_on = ReadResponse(clients.fds[i], buffers[i], kReadTimeout);
    ASSERT_TRUE(go_on.has_value()) << "client " << i << " got no 100 Continue";
    ASSERT_EQ(go_on->status, 100) << "client " << i;
  }

  const pid_t pid = child.pid();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_TRUE(child.WaitForLine("Draining", kReadTimeout).has_value()) << "no \"Draining\" line";
  // Every loop has begun draining once the listeners are closed.
  ASSERT_TRUE(WaitForRefusedConnect(port, kReadTimeout)) << "still accepting while draining";

  for (int i = 0; i < kClients; ++i) {
    std::string body = "slow request " + std::to_string(i);
    body.resize(kBodySize, '.');
    ASSERT_TRUE(SendAll(clients.fds[i], body)) << "client " << i;
  }
  for (int i = 0; i < kClients; ++i) {
    std::string body = "slow request " + std::to_string(i);
    body.resize(kBodySize, '.');
    std::optional<HttpResponse> response = ReadResponse(clients.fds[i], buffers[i], kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "client " << i << " got no response";
    EXPECT_EQ(response->status, 200) << "client " << i;
    EXPECT_EQ(response->body, body) << "client " << i;
    EXPECT_EQ(response->Header("connection"), "close") << "client " << i;
    close(clients.fds[i]);
    clients.fds[i] = -1;
  }

  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after the drain";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  child.DrainOutput(kReadTimeout);
  EXPECT_EQ(child.stderr_text(), "");
  const std::vector<std::string>& lines = child.lines();
  // Nothing balances it and no request was answered during the drain: it stopped accepting
  // after --drain_idle (1 s) rather than --drain_delay (10 s).
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "Draining: not ready; serving until out of the load balancer (at most 10s)"),
            lines.end())
      << ::testing::PrintToString(lines);
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "No request for 1s and no readiness check: finishing the requests in flight"),
            lines.end())
      << ::testing::PrintToString(lines);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "Supervisor " + std::to_string(pid) + " stopped");
}

// Behind a balancer that checks /readyz: SIGTERM fails the checks at once, but the host keeps
// accepting and serving while requests come, until the checks failed as often as the balancer's
// fall count (--drain_checks) and the requests stopped; then it stops accepting and exits.
TEST_P(RunningHelloCoresTest, SigtermServesUntilTheBalancerHasSeenEnoughFailedChecks) {
  HelloCores child;
  // A 2 s quiet time, so the requests sent below never leave a gap that long on a loaded machine.
  const int port = StartServer(child, ServerFlags({"--drain_idle=2s", "--drain_checks=3"}));
  if (port == 0) return;
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  ASSERT_TRUE(child.WaitForLine("Draining", kReadTimeout).has_value()) << "no \"Draining\" line";
  for (int check = 1; check <= 3; ++check) {
    // Each check on a new connection, as a balancer's are: still accepted.
    std::optional<HttpResponse> ready = Fetch(port, Get("/readyz"));
    ASSERT_TRUE(ready.has_value()) << "check " << check << " refused";
    EXPECT_EQ(ready->status, 503) << "check " << check;
    for (int i = 0; i < 5; ++i) {
      std::optional<HttpResponse> root = Fetch(port, Get("/"));
      ASSERT_TRUE(root.has_value()) << "check " << check << ", request " << i;
      EXPECT_EQ(root->status, 200);
    }
  }
  // The requests stop, as they do once the balancer marked the host down.
  std::optional<std::string> out = child.WaitForLine("Out of the load balancer", kExitTimeout);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out,
            "Out of the load balancer (3 readiness checks failed, no request for 2s): finishing "
            "the requests in flight");
  EXPECT_TRUE(WaitForRefusedConnect(port, kReadTimeout)) << "still accepting after the drain";
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after the drain";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
}

// Answers that come later: a drain waits for them, and they close their connection.
TEST_P(RunningHelloCoresTest, SigtermWaitsForDelayedAnswers) {
  constexpr int kClients = 20;
  HelloCores child;
  // No drain delay: the loops stop accepting at once, while the answers are still to come.
  const int port = StartServer(child, ServerFlags({"--drain_delay=0"}));
  if (port == 0) return;
  ClientSockets clients;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ConnectLocal(port);
    ASSERT_GE(fd, 0) << "client " << i << ": " << strerror(errno);
    clients.fds.push_back(fd);
  }
  // Known to be taken before SIGTERM: each connection first gets an immediate answer.
  std::vector<std::string> buffers(kClients);
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(SendAll(clients.fds[i], Get("/") + Get("/delay?ms=800")));
    ASSERT_TRUE(ReadResponse(clients.fds[i], buffers[i], kReadTimeout).has_value()) << i;
  }
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  for (int i = 0; i < kClients; ++i) {
    std::optional<HttpResponse> response = ReadResponse(clients.fds[i], buffers[i], kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "client " << i << " got no delayed answer";
    EXPECT_EQ(response->status, 200) << "client " << i;
    EXPECT_EQ(response->body, "delayed 800 ms") << "client " << i;
    EXPECT_EQ(response->Header("connection"), "close") << "client " << i;
  }
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after the drain";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
}

// An open /stream does not hold up SIGTERM's drain: told the loop closes (OnClosing), it ends
// its body early, and, its length declared, the connection closes after a short body.
TEST_P(RunningHelloCoresTest, SigtermEndsAnOpenStreamWithinSeconds) {
  constexpr size_t kBytes = size_t{1} << 30;
  HelloCores child;
  // No drain delay: only the stream could keep the process up (for the whole 30 s shutdown
  // timeout, were it not told).
  const int port = StartServer(child, ServerFlags({"--drain_delay=0"}));
  if (port == 0) return;
  Socket socket(ConnectLocal(port));
  ASSERT_TRUE(socket.ok());
  ASSERT_TRUE(SendAll(socket.fd(), Get("/stream?bytes=" + std::to_string(kBytes))));
  size_t received = 0;
  bool closed = false;
  bool signalled = false;
  Clock::time_point signalled_at;
  char buffer[16 * 1024];
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (!closed && Clock::now() < deadline) {
    pollfd p{socket.fd(), POLLIN, 0};
    if (poll(&p, 1, 1000) != 1) continue;
    const ssize_t n = recv(socket.fd(), buffer, sizeof(buffer), 0);
    if (n <= 0) {
      closed = true;
      break;
    }
    received += static_cast<size_t>(n);
    if (!signalled && received > (1 << 20)) {  // the stream is well under way
      ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
      signalled = true;
      signalled_at = Clock::now();
    }
    // A reader slower than the stream (16 MiB/s): 1 GiB would take a minute.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(signalled);
  EXPECT_TRUE(closed) << "the stream went on after SIGTERM (" << received << " bytes)";
  EXPECT_LT(received, kBytes);  // a short body: the client knows the download was cut
  std::optional<int> status = child.WaitForExit(milliseconds(5000));
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit within seconds of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  EXPECT_LT(Clock::now() - signalled_at, std::chrono::seconds(10));
}

TEST_P(RunningHelloCoresTest, DelayAndOffloadAnswerLaterAndCheckTheirInput) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  std::optional<HttpResponse> delayed = Fetch(port, Get("/delay?ms=20"));
  ASSERT_TRUE(delayed.has_value());
  EXPECT_EQ(delayed->status, 200);
  EXPECT_EQ(delayed->body, "delayed 20 ms");
  std::optional<HttpResponse> offloaded = Fetch(port, Get("/offload?ms=5"));
  ASSERT_TRUE(offloaded.has_value());
  EXPECT_EQ(offloaded->status, 200);
  EXPECT_TRUE(offloaded->body.starts_with("offloaded 5 ms (")) << offloaded->body;
  for (const char* bad :
       {"/delay?ms=-1", "/delay?ms=60001", "/delay?ms=x", "/delay", "/offload?ms=70000"}) {
    std::optional<HttpResponse> response = Fetch(port, Get(bad));
    ASSERT_TRUE(response.has_value()) << bad;
    EXPECT_EQ(response->status, 400) << bad;
  }
}

// 100 MB to a client that reads 64 KiB a millisecond: the server streams with backpressure, so
// its memory stays near max_pending_output (1 MiB) however far behind the reader is.
TEST_P(RunningHelloCoresTest, StreamsAHundredMegabytesToASlowReaderInBoundedMemory) {
  constexpr size_t kBytes = 100 << 20;
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  const long before = ResidentKib(child.pid());
  Socket socket(ConnectLocal(port));
  ASSERT_TRUE(socket.ok());
  ASSERT_TRUE(SendAll(socket.fd(), Get("/stream?bytes=" + std::to_string(kBytes))));
  std::string head;
  size_t body = 0;
  bool all_x = true;
  long peak = before;
  char buffer[64 * 1024];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (body < kBytes && std::chrono::steady_clock::now() < deadline) {
    pollfd p{socket.fd(), POLLIN, 0};
    if (poll(&p, 1, 1000) != 1) continue;
    const ssize_t n = recv(socket.fd(), buffer, sizeof(buffer), 0);
    ASSERT_GT(n, 0) << "the stream ended after " << body << " bytes";
    std::string_view got(buffer, static_cast<size_t>(n));
    if (head.find("\r\n\r\n") == std::string::npos) {
      head.append(got);
      const size_t end = head.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      got = std::string_view(head).substr(end + 4);
      body += got.size();
      all_x = all_x && got.find_first_not_of('x') == std::string_view::npos;
      head.resize(end + 4);
      continue;
    }
    body += got.size();
    all_x = all_x && got.find_first_not_of('x') == std::string_view::npos;
    if (body % (8 << 20) < sizeof(buffer)) peak = std::max(peak, ResidentKib(child.pid()));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the slow reader's pace
  }
  EXPECT_EQ(body, kBytes);
  EXPECT_TRUE(all_x);
  EXPECT_NE(head.find("Content-Length: " + std::to_string(kBytes)), std::string::npos) << head;
  EXPECT_LT(peak - before, 16 * 1024)
      << "resident memory grew from " << before << " to " << peak << " KiB";
  // The connection goes on.
  ASSERT_TRUE(SendAll(socket.fd(), Get("/")));
  std::string rest;
  std::optional<HttpResponse> next = ReadResponse(socket.fd(), rest, kReadTimeout);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->body, "Hello World!");
}

TEST_P(RunningHelloCoresTest, SecondSigtermStopsAtOnce) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags({"--shutdown_timeout", "30s"}));
  if (port == 0) return;
  // A request in flight that would hold the drain up for the whole shutdown timeout.
  const int fd = ConnectLocal(port);
  ASSERT_GE(fd, 0) << strerror(errno);
  ClientSockets client{{fd}};
  std::string buffer;
  ASSERT_TRUE(SendAll(fd, EchoHeadersExpectingContinue(20)));
  std::optional<HttpResponse> go_on = ReadResponse(fd, buffer, kReadTimeout);
  ASSERT_TRUE(go_on.has_value());
  ASSERT_EQ(go_on->status, 100);

  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  // The first signal is taken (two pending ones would merge into one).
  ASSERT_TRUE(child.WaitForLine("Draining", kReadTimeout).has_value()) << "no \"Draining\" line";
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  // Well before the 30 s shutdown timeout.
  std::optional<int> status = child.WaitForExit(milliseconds(10000));
  ASSERT_TRUE(status.has_value()) << "hello_cores still running 10 s after a second SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  ReadToEndResult end = ReadToEnd(fd, kReadTimeout);
  EXPECT_NE(end.end, StreamEnd::kTimeout) << "the request in flight was left open";
  EXPECT_EQ(end.data.find("HTTP/1.1 200"), std::string::npos) << end.data;
  child.DrainOutput(kReadTimeout);
  const std::vector<std::string>& lines = child.lines();
  EXPECT_NE(std::find(lines.begin(), lines.end(), "Second signal: stopping now"), lines.end())
      << ::testing::PrintToString(lines);
}

TEST_P(RunningHelloCoresTest, FaultRouteCrashRestartsTheLoop) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags({"--enable_fault_routes"}));
  if (port == 0) return;
  // Which loop serves this connection, then crash it from the same connection.
  const int fd = ConnectLocal(port);
  ASSERT_GE(fd, 0) << strerror(errno);
  ClientSockets client{{fd}};
  std::string buffer;
  ASSERT_TRUE(SendAll(fd, Get("/worker")));
  std::optional<HttpResponse> worker = ReadResponse(fd, buffer, kReadTimeout);
  ASSERT_TRUE(worker.has_value());
  std::smatch match;
  ASSERT_TRUE(
      std::regex_search(worker->body, match, std::regex("^Hello World from worker ([01]) ")))
      << worker->body;
  const std::string id = match[1];
  ASSERT_TRUE(SendAll(fd, Get("/crash")));

  std::optional<std::string> died = child.WaitForLine("Worker " + id + " died", kReadTimeout);
  ASSERT_TRUE(died.has_value()) << ::testing::PrintToString(child.lines());
  EXPECT_EQ(*died, "Worker " + id + " died (crash requested by /crash); restarting in 100ms");
  // The crashed loop closed the connection.
  EXPECT_NE(ReadToEnd(fd, kReadTimeout).end, StreamEnd::kTimeout);

  // Serving goes on; fresh connections reach both loops, the restarted one included (one that
  // lands on it before the restart waits in its listener's queue).
  std::set<std::string> workers;
  for (int i = 0; i < 100 && workers.size() < 2; ++i) {
    std::optional<HttpResponse> root = Fetch(port, Get("/"));
    ASSERT_TRUE(root.has_value()) << "connection " << i;
    EXPECT_EQ(root->status, 200);
    EXPECT_EQ(root->body, "Hello World!");
    std::optional<HttpResponse> response = Fetch(port, Get("/worker"));
    ASSERT_TRUE(response.has_value()) << "connection " << i;
    workers.insert(response->body.substr(0, std::string_view("Hello World from worker 0").size()));
  }
  EXPECT_EQ(workers,
            (std::set<std::string>{"Hello World from worker 0", "Hello World from worker 1"}));

  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
}

TEST_P(RunningHelloCoresTest, FaultRoutesAreNotServedWithoutTheFlag) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  for (const char* path : {"/crash", "/stall?ms=1", "/abort"}) {
    std::optional<HttpResponse> response = Fetch(port, Get(path));
    ASSERT_TRUE(response.has_value()) << path;
    EXPECT_EQ(response->status, 404) << path;
  }
  std::optional<HttpResponse> root = Fetch(port, Get("/"));
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->body, "Hello World!");
  for (const std::string& line : child.lines()) {
    EXPECT_EQ(line.find(" died "), std::string::npos) << line;
  }
}

TEST(HelloCoresTest, DefaultBackendIsIoUringUnlessItSaysWhyNot) {
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "2"}));
  if (port == 0) return;
  const std::vector<std::string>& lines = child.lines();
  ASSERT_EQ(lines.size(), 4u + (lines.size() == 5 ? 1 : 0)) << ::testing::PrintToString(lines);
  std::string backend = "io_uring";
  if (lines.size() == 5) {  // the fallback names its reason on its own line
    EXPECT_EQ(lines[1].rfind("io_uring unavailable (", 0), 0u) << lines[1];
    EXPECT_NE(lines[1].find("); using epoll"), std::string::npos) << lines[1];
    backend = "epoll";
  }
  EXPECT_NE(lines[lines.size() - 3].find("(" + backend + ")"), std::string::npos);
  EXPECT_NE(lines[lines.size() - 2].find("(" + backend + ")"), std::string::npos);
  std::optional<HttpResponse> root = Fetch(port, Get("/"));
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->body, "Hello World!");
}

// SIGHUP: a rolling restart under load, with no failed request.
TEST_P(RunningHelloCoresTest, SighupRollsTheLoopsWithoutFailingARequest) {
  HelloCores child;
  const int port = StartServer(child, ServerFlags());
  if (port == 0) return;
  LoadClient load({.port = port, .threads = 4});
  ASSERT_TRUE(WaitUntil([&] { return load.responses() >= 200; }, kReadTimeout));
  ASSERT_EQ(kill(child.pid(), SIGHUP), 0);
  ASSERT_TRUE(child.WaitForLine("Rolling restart done", kReadTimeout).has_value())
      << ::testing::PrintToString(child.lines());
  const int64_t at_done = load.responses();
  EXPECT_TRUE(WaitUntil([&] { return load.responses() >= at_done + 200; }, kReadTimeout));
  load.Stop();
  EXPECT_EQ(load.failures(), 0) << ::testing::PrintToString(load.errors());
  const std::vector<std::string>& lines = child.lines();
  for (const char* expected : {"Rolling restart: replacing the workers one at a time",
                               "Worker 0 restarted on cpu", "Worker 1 restarted on cpu"}) {
    EXPECT_TRUE(std::any_of(lines.begin(), lines.end(),
                            [&](const std::string& line) { return line.find(expected) == 0; }))
        << expected << " in " << ::testing::PrintToString(lines);
  }
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
}

// The pid in the last "Supervisor <pid> is running" line so far; 0 if none.
pid_t EnginePid(const std::vector<std::string>& lines) {
  pid_t pid = 0;
  for (const std::string& line : lines) {
    if (line.rfind("Supervisor ", 0) == 0 && line.find(" is running") != std::string::npos) {
      pid = std::atoi(line.c_str() + strlen("Supervisor "));
    }
  }
  return pid;
}

// --guard: the engine process killed by SIGSEGV under load is restarted; connections made while
// no engine process runs wait in the guard's sockets and are served; none is refused. /abort
// (SIGABRT) is survived the same way.
TEST_P(RunningHelloCoresTest, GuardRestartsAnEngineKilledBySigsegvAndRefusesNothing) {
  HelloCores child;
  // Under AddressSanitizer a SIGSEGV would be caught, reported and turned into exit 1; the
  // signal sent on purpose must kill the process, as it does in production builds.
  child.add_environment("ASAN_OPTIONS=handle_segv=0");
  const int port = StartServer(
      child, ServerFlags({"--guard", "--restart_backoff", "1s", "--enable_fault_routes"}));
  if (port == 0) return;
  ASSERT_FALSE(child.lines().empty());
  EXPECT_EQ(child.lines().front(), "Guard " + std::to_string(child.pid()) + " holds port " +
                                       std::to_string(port) +
                                       "; the engine runs in a worker process");
  const pid_t engine = EnginePid(child.lines());
  ASSERT_GT(engine, 0);
  ASSERT_NE(engine, child.pid());

  LoadClient load({.port = port, .threads = 2, .connection_per_request = true});
  ASSERT_TRUE(WaitUntil([&] { return load.responses() >= 100; }, kReadTimeout));
  ASSERT_EQ(kill(engine, SIGSEGV), 0);
  const std::string died =
      "Worker process " + std::to_string(engine) + " died (signal 11); restarting in 1s";
  ASSERT_TRUE(child.WaitForLine(died, kReadTimeout).has_value())
      << ::testing::PrintToString(child.lines());
  // No engine process runs for the next second: these connect to the guard's sockets.
  std::vector<std::optional<HttpResponse>> during(5);
  std::vector<std::thread> clients;
  for (auto& response : during) {
    clients.emplace_back([&response, port] { response = Fetch(port, Get("/worker")); });
  }
  ASSERT_TRUE(child.WaitForLine("Listening on port", kStartTimeout).has_value());
  const pid_t second = EnginePid(child.lines());
  EXPECT_NE(second, engine);
  for (std::thread& client : clients) client.join();
  for (size_t i = 0; i < during.size(); ++i) {
    ASSERT_TRUE(during[i].has_value()) << "connection " << i << " made during the restart";
    EXPECT_EQ(during[i]->status, 200);
    EXPECT_NE(during[i]->body.find("pid " + std::to_string(second) + ")"), std::string::npos)
        << during[i]->body;
  }
  const int64_t at_restart = load.responses();
  EXPECT_TRUE(WaitUntil([&] { return load.responses() >= at_restart + 100; }, kReadTimeout));
  load.Stop();
  EXPECT_EQ(load.refused(), 0) << ::testing::PrintToString(load.errors());
  // Only a request in flight inside the killed process can fail: one per load thread.
  EXPECT_LE(load.failures(), 2) << ::testing::PrintToString(load.errors());

  // SIGABRT, from /abort: the next backoff is 1.5x.
  EXPECT_FALSE(Fetch(port, Get("/abort")).has_value());
  ASSERT_TRUE(child
                  .WaitForLine("Worker process " + std::to_string(second) +
                                   " died (signal 6); restarting in 1.5s",
                               kReadTimeout)
                  .has_value())
      << ::testing::PrintToString(child.lines());
  std::optional<HttpResponse> after = Fetch(port, Get("/"));
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->status, 200);

  // SIGTERM to the guard: passed on, the engine drains, both exit 0.
  ASSERT_TRUE(child.WaitForLine("Listening on port", kStartTimeout).has_value());
  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  child.DrainOutput(kReadTimeout);
  EXPECT_EQ(child.lines().back(),
            "Supervisor " + std::to_string(EnginePid(child.lines())) + " stopped");
}

// A guard whose engine cannot start does not retry: it exits with the engine's status.
TEST(HelloCoresTest, GuardExitsWithTheEnginesStatusWhenItCannotStart) {
  HelloCores child;
  // The guard binds the port; the engine process then rejects the CPU.
  const std::vector<int> allowed = AllowedCpus();
  int cpu = 99;
  while (std::find(allowed.begin(), allowed.end(), cpu) != allowed.end()) ++cpu;
  const std::string cpu_text = std::to_string(cpu);
  ASSERT_TRUE(child.Spawn(Flags({"--guard", "--cpus", cpu_text})));
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeStatus(status);
  child.DrainOutput(kReadTimeout);
  EXPECT_NE(child.stderr_text().find("cpu " + cpu_text + " is not in this process's allowed set"),
            std::string::npos)
      << child.stderr_text();
  for (const std::string& line : child.lines()) {
    EXPECT_EQ(line.find("died"), std::string::npos) << line;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, RunningHelloCoresTest, ::testing::Values("io_uring", "epoll"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "epoll" ? "Epoll" : "IoUring";
                         });

// Runs hello_cores with bad `flags`; expects exit status 1 and one line on stderr containing
// every string of `mentions`.
void ExpectStartUpFailure(const std::vector<std::string>& flags,
                          const std::vector<std::string>& mentions) {
  HelloCores child;
  ASSERT_TRUE(child.Spawn(flags)) << strerror(errno);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "hello_cores kept running with bad flags";
  child.DrainOutput(kReadTimeout);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeStatus(status);
  const std::string& err = child.stderr_text();
  ASSERT_FALSE(err.empty());
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "stderr: " << err;
  EXPECT_EQ(err.back(), '\n') << "stderr: " << err;
  for (const std::string& mention : mentions) {
    EXPECT_NE(err.find(mention), std::string::npos)
        << "stderr \"" << err << "\" lacks \"" << mention << "\"";
  }
  for (const std::string& line : child.lines()) {
    EXPECT_EQ(line.find("Listening"), std::string::npos) << line;
  }
}

// Where io_uring is blocked the way Docker blocks it, the default backend falls back to epoll,
// says why in one line, and serves exactly what the io_uring backend serves.
TEST(BackendFallbackTest, BlockedIoUringFallsBackToEpollAndSaysWhy) {
  if (kAuditArch == 0) GTEST_SKIP() << "no seccomp filter for this architecture";
  HelloCores child;
  child.set_block_io_uring(true);
  const int port = StartServer(child, Flags({"--threads", "2"}));
  ASSERT_NE(port, 0);
  const std::vector<std::string>& lines = child.lines();
  EXPECT_NE(
      std::find(lines.begin(), lines.end(),
                "io_uring unavailable (io_uring_setup: Operation not permitted); using epoll"),
      lines.end())
      << ::testing::PrintToString(lines);
  for (int id = 0; id < 2; ++id) {
    const std::string prefix = "Worker " + std::to_string(id) + " started on cpu ";
    auto line = std::find_if(lines.begin(), lines.end(),
                             [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
    ASSERT_NE(line, lines.end()) << ::testing::PrintToString(lines);
    EXPECT_TRUE(line->size() > 8 && line->substr(line->size() - 7) == "(epoll)") << *line;
  }
  std::optional<HttpResponse> root = Fetch(port, Get("/"));
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->status, 200);
  EXPECT_EQ(root->body, "Hello World!");
  const std::string body(100000, 'x');
  std::optional<HttpResponse> echo = Fetch(
      port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body);
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->body, body);
  kill(child.pid(), SIGTERM);
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
}

// Asking for io_uring where it cannot work is an error, not a silent fallback.
TEST(BackendFallbackTest, BlockedIoUringAskedForExplicitlyIsAnError) {
  if (kAuditArch == 0) GTEST_SKIP() << "no seccomp filter for this architecture";
  HelloCores child;
  child.set_block_io_uring(true);
  ASSERT_TRUE(child.Spawn(Flags({"--backend", "io_uring"})));
  std::optional<int> status = child.WaitForExit(kExitTimeout);
  child.DrainOutput(kReadTimeout);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << DescribeStatus(status);
  EXPECT_EQ(child.stderr_text(),
            "hello_cores: io_uring unavailable (io_uring_setup: Operation not permitted)\n");
}

// With NOTIFY_SOCKET set (systemd Type=notify), READY=1 once serving, WATCHDOG=1 while healthy
// (WATCHDOG_USEC asked for), STOPPING=1 when SIGTERM starts the drain.
TEST(HelloCoresTest, NotifiesSystemdReadyWatchdogAndStopping) {
  const std::string path = "/tmp/percore-notify-" + std::to_string(getpid());
  unlink(path.c_str());
  int listener = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  // Read by the child at exec; this test process has no other thread reading the environment.
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "200000", 1);
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "2"}));
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  // The next datagram, or "" once `timeout` passes.
  auto next = [&](milliseconds timeout) {
    pollfd p{listener, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::string();
    char text[256];
    ssize_t n = recv(listener, text, sizeof(text), 0);
    return n > 0 ? std::string(text, static_cast<size_t>(n)) : std::string();
  };
  // Waits for `state`, skipping others; false if it does not come within the deadline.
  auto await = [&](const std::string& state) {
    const auto deadline = Clock::now() + kReadTimeout;
    while (Clock::now() < deadline) {
      if (next(milliseconds(500)) == state) return true;
    }
    return false;
  };
  if (port != 0) {
    EXPECT_TRUE(await("READY=1"));
    EXPECT_TRUE(await("WATCHDOG=1"));
    kill(child.pid(), SIGTERM);
    EXPECT_TRUE(await("STOPPING=1"));
    std::optional<int> status = child.WaitForExit(kExitTimeout);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status);
  }
  close(listener);
  unlink(path.c_str());
}

// A worker stuck in one request past --stall_ms is logged with the request; fresh connections
// keep being answered meanwhile (by the other loop, or by this one once it returns).
// The issue's stall: 3 s in one request. Logged with the route past --stall_ms; past --stuck_ms
// the loop is replaced, and new connections are served while the old loop is still stuck.
TEST(HelloCoresTest, StallIsLoggedAndTheStuckLoopReplaced) {
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "2", "--enable_fault_routes",
                                             "--stall_ms", "200", "--stuck_ms", "1000"}));
  ASSERT_NE(port, 0);
  std::optional<HttpResponse> stalled;
  std::atomic<bool> stall_answered{false};
  std::thread slow([&] {
    stalled = Fetch(port, Get("/stall?ms=3000"));
    stall_answered.store(true);
  });
  std::optional<std::string> line = child.WaitForLine("Worker ", kReadTimeout);
  while (line && line->find(" stalled for ") == std::string::npos) {
    line = child.WaitForLine("Worker ", kReadTimeout);
  }
  ASSERT_TRUE(line.has_value()) << "no stall line";
  EXPECT_TRUE(std::regex_match(*line, std::regex("Worker [01] stalled for [0-9]+ms in "
                                                 "GET /stall\\?ms=3000")))
      << *line;
  line = child.WaitForLine("Worker ", kReadTimeout);
  ASSERT_TRUE(line.has_value()) << "no replacement line";
  EXPECT_TRUE(std::regex_match(*line, std::regex("Worker [01] stuck for [0-9]+ms in GET "
                                                 "/stall\\?ms=3000; replaced by a new loop on "
                                                 "cpu [0-9]+")))
      << *line;
  // 20 new connections, at once. The stuck loop's armed accepts (4 on io_uring) may still take
  // a few, which wait for it; every other one is served at once by the new loop.
  std::vector<std::optional<HttpResponse>> fresh(20);
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (auto& response : fresh) {
    clients.emplace_back([&response, &answered, port] {
      response = Fetch(port, Get("/"));
      answered.fetch_add(1);
    });
  }
  EXPECT_TRUE(WaitUntil([&] { return answered.load() >= 16; }, kReadTimeout));
  EXPECT_FALSE(stall_answered.load()) << "the stall ended before the checks, proving nothing";
  for (std::thread& client : clients) client.join();
  for (size_t i = 0; i < fresh.size(); ++i) {
    ASSERT_TRUE(fresh[i].has_value()) << "fresh connection " << i;
    EXPECT_EQ(fresh[i]->status, 200);
  }
  slow.join();
  ASSERT_TRUE(stalled.has_value());
  EXPECT_EQ(stalled->status, 200);
  std::optional<HttpResponse> metrics = Fetch(port, Get("/metrics"));
  ASSERT_TRUE(metrics.has_value());
  for (const char* family : {"percore_loop_stalls_total", "percore_loop_restarts_total"}) {
    EXPECT_TRUE(std::regex_search(
        metrics->body,
        std::regex(std::string(family) + "\\{worker=\"[01]\",cpu=\"[0-9]+\"\\} 1\n")))
        << family << " in " << metrics->body;
  }
}

// --stats prints a per-worker table on stderr every second.
TEST(HelloCoresTest, StatsPrintsAPerWorkerTable) {
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "2", "--stats"}));
  ASSERT_NE(port, 0);
  std::optional<HttpResponse> root = Fetch(port, Get("/"));
  ASSERT_TRUE(root.has_value());
  ASSERT_TRUE(child.WaitForStderr("\nready\n", kReadTimeout)) << child.stderr_text();
  const std::string& text = child.stderr_text();
  EXPECT_NE(text.find("worker  cpu   requests/s  connections  restarts\n"), std::string::npos);
  EXPECT_TRUE(std::regex_search(text, std::regex("\n +0 +[0-9]+ +[0-9]+ +[0-9]+ +0\n"))) << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("\n +1 +[0-9]+ +[0-9]+ +[0-9]+ +0\n"))) << text;
}

// The application layer from outside: one loop, the default backend.
TEST(HelloCoresAppTest, JsonIpAndAJson404) {
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "1"}));
  if (port == 0) return;
  std::optional<HttpResponse> json = Fetch(port, Get("/json"));
  ASSERT_TRUE(json.has_value());
  EXPECT_EQ(json->Header("content-type"), "application/json");
  EXPECT_EQ(json->body, R"({"message":"Hello, World!"})");
  std::optional<HttpResponse> missing = Fetch(port, Get("/no/such/page"));
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, R"({"error":"not found","path":"/no/such/page"})");
  // Without --trust_proxy, X-Forwarded-For is anybody's word: the peer is the client.
  std::optional<HttpResponse> ip =
      Fetch(port, "GET /ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
  ASSERT_TRUE(ip.has_value());
  EXPECT_NE(ip->body.find(R"("client":"127.0.0.1")"), std::string::npos) << ip->body;
}

TEST(HelloCoresAppTest, TrustedProxyNamesTheClient) {
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "1", "--trust_proxy", "127.0.0.1/32"}));
  if (port == 0) return;
  std::optional<HttpResponse> ip = Fetch(
      port, "GET /ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n\r\n");
  ASSERT_TRUE(ip.has_value());
  EXPECT_NE(ip->body.find(R"("client":"203.0.113.9")"), std::string::npos) << ip->body;
  EXPECT_NE(ip->body.find(R"("peer":"127.0.0.1")"), std::string::npos) << ip->body;
}

TEST(HelloCoresAppTest, ProxyProtocolNamesTheClientAndIsRequired) {
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "1", "--proxy_protocol"}));
  if (port == 0) return;
  std::optional<HttpResponse> ip = Fetch(port,
                                         "PROXY TCP4 198.51.100.4 127.0.0.1 4000 80\r\n"
                                         "GET /ip HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(ip.has_value());
  EXPECT_EQ(ip->body, R"({"client":"198.51.100.4","peer":"127.0.0.1","port":4000})");
  // A connection that does not start with the header is closed unanswered.
  Socket plain(ConnectLocal(port));
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(SendAll(plain.fd(), Get("/")));
  EXPECT_EQ(percore::testing::ReadUntilClose(plain.fd(), kReadTimeout), "");
}

TEST(HelloCoresAppTest, StaticFilesAreServedAndCompressed) {
  char dir[] = "/tmp/percore-hello-static-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/page.txt";
  std::string text;
  for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i) + " of a page of text\n";
  {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
  }
  HelloCores child;
  const int port = StartServer(child, Flags({"--threads", "1", "--static", dir}));
  if (port != 0) {
    std::optional<HttpResponse> plain = Fetch(port, Get("/files/page.txt"));
    ASSERT_TRUE(plain.has_value());
    EXPECT_EQ(plain->status, 200);
    EXPECT_EQ(plain->body, text);
    EXPECT_EQ(plain->Header("content-type"), "text/plain; charset=utf-8");
    EXPECT_EQ(plain->Header("vary"), "Accept-Encoding");
    std::optional<HttpResponse> zipped =
        Fetch(port, "GET /files/page.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    ASSERT_TRUE(zipped.has_value());
    EXPECT_EQ(zipped->Header("content-encoding"), "gzip");
    EXPECT_LT(zipped->body.size(), text.size() / 2);
    EXPECT_TRUE(zipped->body.starts_with("\x1f\x8b")) << "a gzip member";
    std::optional<HttpResponse> out = Fetch(port, Get("/files/%2e%2e/%2e%2e/etc/passwd"));
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ(out->status, 403);
  }
  unlink(path.c_str());
  rmdir(dir);
}

TEST(HelloCoresTest, MissingStaticDirectoryIsRejected) {
  ExpectStartUpFailure(Flags({"--static", "/nonexistent-percore-dir"}),
                       {"static", "/nonexistent-percore-dir"});
}

TEST(HelloCoresTest, BadTrustedProxyIsRejected) {
  ExpectStartUpFailure(Flags({"--trust_proxy", "10.0.0.0/99"}), {"trust_proxy", "10.0.0.0/99"});
}

// --help names every route, one line each, then the flags.
TEST(HelloCoresTest, HelpListsEveryRoute) {
  HelloCores child;
  ASSERT_TRUE(child.Spawn({"--help"})) << strerror(errno);
  ASSERT_TRUE(child.WaitForExit(kExitTimeout).has_value());
  child.DrainOutput(kReadTimeout);
  std::string help;
  for (const std::string& line : child.lines()) help += line + "\n";
  for (const char* route :
       {"GET /  ", "GET /worker ", "GET /json ", "GET /ip ", "ANY /echo ", "GET /delay?ms=N ",
        "GET /stream?bytes=N ", "GET /offload?ms=N ", "GET /files/", "GET /healthz ",
        "GET /readyz ", "GET /metrics ", "GET /crash ", "GET /stall?ms=N ", "GET /abort "}) {
    EXPECT_NE(help.find(std::string("\n  ") + route), std::string::npos) << route << "\n" << help;
  }
  EXPECT_NE(help.find("--port"), std::string::npos) << help;  // and the flags
  EXPECT_NE(help.find("Flags from hello_cores:"), std::string::npos) << help;
  EXPECT_EQ(help.find("apps/hello_cores.cc"), std::string::npos) << "the build's path: " << help;
}

TEST(HelloCoresTest, ZeroThreadsIsRejected) {
  ExpectStartUpFailure(Flags({"--threads", "0"}), {"threads"});
}

// The engine checks the options once (Engine::Create, and RunGuarded before it binds or forks):
// the message names the field and the value.
TEST(HelloCoresTest, StuckNotLongerThanStallIsRejected) {
  ExpectStartUpFailure(Flags({"--stall_ms", "1000", "--stuck_ms", "500"}),
                       {"stuck_timeout 500ms", "stall_timeout (1s)"});
}

TEST(HelloCoresTest, GuardRejectsBadOptionsBeforeItForks) {
  ExpectStartUpFailure(Flags({"--guard", "--restart_backoff", "0s"}), {"restart_backoff 0"});
}

TEST(HelloCoresTest, UnknownBackendIsRejected) {
  ExpectStartUpFailure(Flags({"--backend", "kqueue"}), {"backend", "kqueue"});
}

TEST(HelloCoresTest, PortOutOfRangeIsRejected) {
  ExpectStartUpFailure({"--address", "127.0.0.1", "--port", "70000"}, {"port", "70000"});
}

TEST(HelloCoresTest, CpuOutsideAllowedSetIsRejected) {
  const std::vector<int> allowed = AllowedCpus();
  int cpu = 99;
  while (std::find(allowed.begin(), allowed.end(), cpu) != allowed.end()) ++cpu;
  ExpectStartUpFailure(Flags({"--cpus", std::to_string(cpu)}), {"cpu", std::to_string(cpu)});
}

TEST(HelloCoresTest, PortInUseIsRejected) {
  // A plain listener (no SO_REUSEPORT) holds the port.
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
  ASSERT_EQ(listen(holder, 16), 0);
  socklen_t length = sizeof(addr);
  ASSERT_EQ(getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &length), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  ExpectStartUpFailure({"--address", "127.0.0.1", "--port", port}, {port, "in use"});
  close(holder);
}

}  // namespace
}  // namespace percore
