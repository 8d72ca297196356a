// hello_cores over TLS, as users run it, once per backend: two --tls_cert/--tls_key pairs chosen
// by SNI (GET /tls says what was negotiated), and SIGHUP after the files were replaced: new
// connections get the new certificate and the process goes on serving. The child is killed and
// reaped by its pid; every wait has a deadline.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "support/backends.h"
#include "support/test_client.h"
#include "support/tls_peer.h"
#include "support/tls_socket.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::MakeCertificate;
using percore::testing::TlsSocket;
using percore::testing::WaitUntil;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kTimeout(15000);

// Appends what `fd` gives to `text` until it contains `wanted` at `from` or after; false at EOF
// or the deadline.
bool ReadUntil(int fd, std::string& text, std::string_view wanted, Clock::time_point deadline,
               size_t from = 0) {
  while (text.find(wanted, from) == std::string::npos) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char chunk[4096];
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    text.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

// hello_cores on 127.0.0.1, any free port, two loops, with `flags` and stdout and stderr on
// pipes.
class Child {
 public:
  explicit Child(std::vector<std::string> flags) {
    std::vector<std::string> args = {PERCORE_HELLO_CORES, "--address", "127.0.0.1", "--port", "0",
                                     "--threads",         "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    if (pipe2(err, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // the child dies with the test
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    stdout_ = out[0];
    stderr_ = err[0];
    if (pid_ < 0) return;
    const std::string_view line = "Listening on port ";
    const auto deadline = Clock::now() + kTimeout;
    if (!ReadUntil(stdout_, out_text_, line, deadline)) return;
    const size_t at = out_text_.find(line) + line.size();
    if (!ReadUntil(stdout_, out_text_, "\n", deadline, at)) return;
    port_ = std::atoi(out_text_.c_str() + at);
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {stdout_, stderr_}) {
      if (fd >= 0) close(fd);
    }
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }
  // Whether stdout (the engine's lines) or stderr said `text`, now or within `timeout`.
  bool Says(std::string_view text, milliseconds timeout) {
    return ReadUntil(stdout_, out_text_, text, Clock::now() + timeout);
  }
  bool StderrSays(std::string_view text, milliseconds timeout) {
    return ReadUntil(stderr_, err_text_, text, Clock::now() + timeout);
  }
  const std::string& stdout_text() const { return out_text_; }
  const std::string& stderr_text() const { return err_text_; }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1, stderr_ = -1;
  int port_ = 0;
  std::string out_text_, err_text_;
};

class HelloCoresTlsTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  void SetUp() override {
    std::string dir = (std::filesystem::temp_directory_path() / "percore-tls-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    a_ = MakeCertificate(dir_, "a", {"a.test"});
    b_ = MakeCertificate(dir_, "b", {"b.test"});
  }
  void TearDown() override {
    child_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Starts hello_cores with both certificates; skips where io_uring cannot run.
  void Start() {
    const std::string backend = GetParam() == BackendKind::kEpoll ? "epoll" : "io_uring";
    child_.emplace(std::vector<std::string>{"--backend", backend, "--tls_cert", a_.cert_file,
                                            "--tls_key", a_.key_file, "--tls_cert", b_.cert_file,
                                            "--tls_key", b_.key_file});
    if (child_->port() == 0 && child_->StderrSays("io_uring unavailable", milliseconds(2000))) {
      GTEST_SKIP() << "this machine cannot run the io_uring backend";
    }
    ASSERT_NE(child_->port(), 0) << "hello_cores did not start: " << child_->stderr_text();
  }

  // A new connection naming `sni`: the CN of the certificate it got and GET /tls's answer.
  struct Seen {
    std::string cn;
    std::optional<HttpResponse> tls;
  };
  Seen Connect(const std::string& sni) {
    TlsSocket client(child_->port(), {.server_name = sni, .alpn = {"http/1.1"}});
    if (!client.Handshake()) return {};
    return {client.peer().peer_common_name(), client.Fetch(Get("/tls"))};
  }

  std::string dir_;
  TlsCertificate a_, b_;
  std::optional<Child> child_;
};

TEST_P(HelloCoresTlsTest, EachSniNameGetsItsCertificate) {
  ASSERT_NO_FATAL_FAILURE(Start());
  if (IsSkipped()) return;
  for (const std::string name : {"a.test", "b.test"}) {
    const Seen seen = Connect(name);
    EXPECT_EQ(seen.cn, name);
    ASSERT_TRUE(seen.tls.has_value()) << name;
    EXPECT_EQ(seen.tls->status, 200);
    const std::string& body = seen.tls->body;
    EXPECT_NE(body.find("\"sni\":\"" + name + "\""), std::string::npos) << body;
    EXPECT_NE(body.find("\"version\":\"TLSv1.3\""), std::string::npos) << body;
    EXPECT_NE(body.find("\"alpn\":\"http/1.1\""), std::string::npos) << body;
    EXPECT_NE(body.find("\"resumed\":false"), std::string::npos) << body;
  }
}

TEST_P(HelloCoresTlsTest, SighupMakesNewConnectionsSeeTheReplacedCertificate) {
  ASSERT_NO_FATAL_FAILURE(Start());
  if (IsSkipped()) return;
  ASSERT_EQ(Connect("a.test").cn, "a.test");
  // For the same name, with another CN, in place of a's files.
  const TlsCertificate next = MakeCertificate(dir_, "next", {"a2.test", "a.test"});
  ASSERT_EQ(std::rename(next.cert_file.c_str(), a_.cert_file.c_str()), 0);
  ASSERT_EQ(std::rename(next.key_file.c_str(), a_.key_file.c_str()), 0);
  EXPECT_EQ(Connect("a.test").cn, "a.test") << "nothing changes before the signal";
  ASSERT_EQ(kill(child_->pid(), SIGHUP), 0);
  EXPECT_TRUE(WaitUntil([&] { return Connect("a.test").cn == "a2.test"; }, kTimeout));
  EXPECT_TRUE(child_->Says("TLS certificates reloaded", kTimeout)) << child_->stdout_text();
  // The loops roll after the reload; then the process goes on serving, both names.
  EXPECT_TRUE(child_->Says("Rolling restart done", kTimeout)) << child_->stdout_text();
  for (int i = 0; i < 10; ++i) {
    const Seen a = Connect("a.test");
    EXPECT_EQ(a.cn, "a2.test") << i;
    ASSERT_TRUE(a.tls.has_value()) << i;
    EXPECT_EQ(a.tls->status, 200);
    const Seen b = Connect("b.test");
    EXPECT_EQ(b.cn, "b.test") << i;
    ASSERT_TRUE(b.tls.has_value()) << i;
  }
  EXPECT_TRUE(child_->running());
}

INSTANTIATE_TEST_SUITE_P(Backends, HelloCoresTlsTest, testing::AllBackends(),
                         testing::BackendTestName);

}  // namespace
}  // namespace percore
