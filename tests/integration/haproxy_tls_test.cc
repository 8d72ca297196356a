// deploy/haproxy/haproxy-tls-passthrough.cfg run for real on 127.0.0.1: HAProxy in TCP mode in
// front of hello_cores serving TLS with --proxy_protocol. HAProxy's checks (TLS, PROXY header,
// GET /readyz) mark the host UP, and a TLS client through HAProxy is served by the host, which
// sees the client's own address and port (from the PROXY v2 header that precedes the
// ClientHello), not HAProxy's. Skipped where haproxy is not installed. Both children are killed
// and reaped by their pids, the temporary directory removed; every wait has a deadline.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "support/test_client.h"
#include "support/tls_peer.h"
#include "support/tls_socket.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

namespace fs = std::filesystem;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::MakeCertificate;
using percore::testing::TlsSocket;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kTimeout(10000);

fs::path Root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

bool HaproxyInstalled() { return std::system("command -v haproxy >/dev/null 2>&1") == 0; }

// Repeats `condition` every 20 ms until it holds or `timeout` passed.
template <typename Condition>
bool Eventually(Condition condition, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// A port of 127.0.0.1 that was free a moment ago (HAProxy binds it itself).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

// A child process: `args`, its stdout on a pipe (`capture`) or appended to `log` with its
// stderr. Killed (SIGKILL) and reaped by its pid when destroyed.
class Child {
 public:
  Child(std::vector<std::string> args, const fs::path& log, bool capture) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int out[2] = {-1, -1};
    if (capture && pipe2(out, O_CLOEXEC) != 0) return;
    const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // the child dies with the test
      const int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, STDIN_FILENO);
      dup2(capture ? out[1] : log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    if (log_fd >= 0) close(log_fd);
    if (capture) {
      close(out[1]);
      stdout_ = out[0];
    }
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

  // The port of the child's "Listening on port N" line, or 0 (EOF or the deadline).
  int ListeningPort(milliseconds timeout) {
    const std::regex line("Listening on port ([0-9]+)\n");
    const auto deadline = Clock::now() + timeout;
    std::smatch match;
    while (!std::regex_search(text_, match, line)) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      pollfd p{stdout_, POLLIN, 0};
      if (stdout_ < 0 || left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return 0;
      char chunk[4096];
      const ssize_t n = read(stdout_, chunk, sizeof(chunk));
      if (n <= 0) return 0;
      text_.append(chunk, static_cast<size_t>(n));
    }
    return std::stoi(match[1]);
  }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string text_;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The passthrough config on 127.0.0.1 as scripts/cluster adapts haproxy.cfg: HAProxy's bind
// address, one server line for `host_port`, the stats socket in `dir`; checks every 200 ms
// instead of 2 s, so the test waits less. Empty if a line to replace is missing.
std::string AdaptConfig(int port, int host_port, const fs::path& socket) {
  std::string text = ReadFile(Root() / "deploy/haproxy/haproxy-tls-passthrough.cfg");
  const auto replace = [&](const std::string& pattern, const std::string& with) {
    const std::regex re(pattern, std::regex::multiline);
    if (!std::regex_search(text, re)) return false;
    text = std::regex_replace(text, re, with, std::regex_constants::format_first_only);
    return true;
  };
  const std::string server = "    server h1 127.0.0.1:" + std::to_string(host_port) + "\n";
  if (!replace(R"(^(\s*bind )\S+)", "$01127.0.0.1:" + std::to_string(port)) ||
      !replace(R"(^(\s*stats socket )\S+)", "$01" + socket.string()) ||
      !replace(R"((^\s*server .*\n)+)", server) || !replace(R"( inter 2s )", " inter 200ms ")) {
    return "";
  }
  return text;
}

// `show stat` on HAProxy's stats socket: {"proxy/server": {column: value}}; empty if the
// socket does not answer.
std::map<std::string, std::map<std::string, std::string>> ShowStat(const fs::path& path) {
  std::map<std::string, std::map<std::string, std::string>> rows;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  std::string answer;
  const std::string_view command = "show stat\n";
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      write(fd, command.data(), command.size()) == static_cast<ssize_t>(command.size())) {
    const auto deadline = Clock::now() + milliseconds(2000);
    for (pollfd p{fd, POLLIN, 0}; Clock::now() < deadline && poll(&p, 1, 100) >= 0;) {
      char chunk[4096];
      if (!(p.revents & (POLLIN | POLLHUP))) continue;
      const ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n <= 0) break;
      answer.append(chunk, static_cast<size_t>(n));
    }
  }
  close(fd);
  const auto split = [](const std::string& line) {
    std::vector<std::string> fields;
    std::stringstream in(line);
    for (std::string field; std::getline(in, field, ',');) fields.push_back(field);
    return fields;
  };
  std::istringstream lines(answer);
  std::vector<std::string> header;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# ", 0) == 0) {
      header = split(line.substr(2));
      continue;
    }
    const std::vector<std::string> fields = split(line);
    if (header.empty() || fields.size() < 2) continue;
    auto& row = rows[fields[0] + "/" + fields[1]];
    for (size_t i = 0; i < fields.size() && i < header.size(); ++i) row[header[i]] = fields[i];
  }
  return rows;
}

// The value of "key": in a flat JSON object (a string or a number), or "" if absent.
std::string JsonField(const std::string& json, const std::string& key) {
  std::smatch match;
  if (!std::regex_search(json, match, std::regex("\"" + key + "\":(\"([^\"]*)\"|([0-9]+))"))) {
    return "";
  }
  return match[2].matched ? match[2].str() : match[3].str();
}

class HaproxyTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaproxyInstalled()) GTEST_SKIP() << "haproxy is not installed";
    std::string dir = (fs::temp_directory_path() / "percore-haproxy-tls-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    haproxy_.reset();
    host_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string Logs() {
    return "\nhello_cores:\n" + ReadFile(dir_ / "hello_cores.log") + "\nhaproxy:\n" +
           ReadFile(dir_ / "haproxy.log");
  }

  fs::path dir_;
  std::optional<Child> host_, haproxy_;
};

TEST_F(HaproxyTlsTest, ChecksPassAndTheHostSeesTheClientThroughTlsPassthrough) {
  const TlsCertificate cert = MakeCertificate(dir_.string(), "site", {"percore.test"});
  host_.emplace(std::vector<std::string>{PERCORE_HELLO_CORES, "--address", "127.0.0.1", "--port",
                                         "0", "--threads", "2", "--tls_cert", cert.cert_file,
                                         "--tls_key", cert.key_file, "--proxy_protocol"},
                dir_ / "hello_cores.log", /*capture=*/true);
  const int host_port = host_->ListeningPort(kTimeout);
  ASSERT_NE(host_port, 0) << "hello_cores did not start" << Logs();

  const int port = FreePort();
  ASSERT_NE(port, 0);
  const fs::path socket = dir_ / "haproxy.sock";
  const std::string config = AdaptConfig(port, host_port, socket);
  ASSERT_FALSE(config.empty()) << "a line to replace is missing from the config";
  std::ofstream(dir_ / "haproxy.cfg") << config;
  haproxy_.emplace(std::vector<std::string>{"haproxy", "-db", "-f", (dir_ / "haproxy.cfg")},
                   dir_ / "haproxy.log", /*capture=*/false);

  // HAProxy counts a server UP from the start; L7OK says a check really went through: TLS, the
  // PROXY header, GET /readyz answered 200.
  std::map<std::string, std::string> server;
  const bool up = Eventually(
      [&] {
        if (!haproxy_->running()) return true;  // fails below, with the log
        server = ShowStat(socket)["percore_tls/h1"];
        return server["status"] == "UP" && server["check_status"] == "L7OK";
      },
      kTimeout);
  ASSERT_TRUE(haproxy_->running()) << "haproxy exited" << Logs();
  ASSERT_TRUE(up) << "status " << server["status"] << ", check " << server["check_status"] << " "
                  << server["last_chk"] << Logs();

  // A TLS client through HAProxy. The first connection may come before HAProxy accepts on its
  // port (the stats socket answers first): connect again until one is served.
  std::optional<TlsSocket> client;
  std::optional<HttpResponse> tls;
  Eventually(
      [&] {
        client.emplace(port, percore::testing::TlsPeerOptions{.server_name = "percore.test",
                                                              .alpn = {"http/1.1"}});
        if (!client->connected() || !client->Handshake(milliseconds(2000))) return false;
        tls = client->Fetch(Get("/tls"));
        return tls.has_value();
      },
      kTimeout);
  ASSERT_TRUE(tls.has_value()) << client->peer().error() << Logs();
  EXPECT_EQ(tls->status, 200);
  EXPECT_EQ(JsonField(tls->body, "version"), "TLSv1.3") << tls->body;
  EXPECT_EQ(JsonField(tls->body, "sni"), "percore.test") << tls->body;
  EXPECT_EQ(JsonField(tls->body, "alpn"), "http/1.1") << tls->body;
  EXPECT_EQ(client->peer().peer_common_name(), "percore.test");

  // The client's own address and port, as its socket has them, came in the PROXY header.
  sockaddr_in local{};
  socklen_t length = sizeof(local);
  ASSERT_EQ(getsockname(client->fd(), reinterpret_cast<sockaddr*>(&local), &length), 0);
  const std::optional<HttpResponse> ip = client->Fetch(Get("/ip"));
  ASSERT_TRUE(ip.has_value()) << Logs();
  EXPECT_EQ(ip->status, 200);
  EXPECT_EQ(JsonField(ip->body, "client"), "127.0.0.1") << ip->body;
  EXPECT_EQ(JsonField(ip->body, "port"), std::to_string(ntohs(local.sin_port))) << ip->body;
  EXPECT_EQ(JsonField(ip->body, "peer"), "127.0.0.1") << ip->body;  // HAProxy's connection

  // Another connection gets a new source port, and the host sees that one too.
  TlsSocket second(port, {.server_name = "percore.test"});
  ASSERT_TRUE(second.Handshake()) << second.peer().error();
  ASSERT_EQ(getsockname(second.fd(), reinterpret_cast<sockaddr*>(&local), &length), 0);
  const std::optional<HttpResponse> again = second.Fetch(Get("/ip"));
  ASSERT_TRUE(again.has_value()) << Logs();
  EXPECT_EQ(JsonField(again->body, "port"), std::to_string(ntohs(local.sin_port))) << again->body;
  EXPECT_TRUE(host_->running());
}

}  // namespace
}  // namespace percore
