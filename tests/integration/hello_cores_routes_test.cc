// hello_cores (a child process, hello_cores_suite.h) from outside: its start-up lines, its routes
// (workers, logs, answers that come later, a slow reader, the fault routes) on each backend, and
// the application layer (JSON, the client's address, static files).
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hello_cores_suite.h"
#include "percore/cpus.h"
#include "support/test_client.h"

namespace percore::testing::hello_cores_suite {
namespace {

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

INSTANTIATE_TEST_SUITE_P(Backends, RunningHelloCoresTest, ::testing::Values("io_uring", "epoll"),
                         BackendFlagName);

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

}  // namespace
}  // namespace percore::testing::hello_cores_suite
