// hello_cores as a child process (hello_cores_suite.h), supervising its engine: SIGTERM with
// 100 requests in flight, SIGHUP under load, --guard with the engine process killed, a stalled
// and stuck loop, systemd notifications, --stats, and the default backend with its fallback to
// epoll where io_uring is blocked. Its exits and flags are in hello_cores_exit_test.cc, its
// routes in hello_cores_routes_test.cc.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hello_cores_suite.h"
#include "percore/cpus.h"
#include "support/test_client.h"

namespace percore::testing::hello_cores_suite {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

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
                         BackendFlagName);

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
// The stall: 3 s in one request. Logged with the route past --stall_ms; past --stuck_ms
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

}  // namespace
}  // namespace percore::testing::hello_cores_suite
