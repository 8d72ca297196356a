// How hello_cores (a child process, hello_cores_suite.h) ends: SIGTERM and SIGINT drain and exit
// 0, behind a balancer, with answers that come later and open streams, a second SIGTERM stops at
// once; bad flags exit 1 with one line on stderr; --help lists the routes.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hello_cores_suite.h"
#include "percore/cpus.h"
#include "support/test_client.h"

namespace percore::testing::hello_cores_suite {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

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

INSTANTIATE_TEST_SUITE_P(Backends, RunningHelloCoresTest, ::testing::Values("io_uring", "epoll"),
                         BackendFlagName);

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
}  // namespace percore::testing::hello_cores_suite
