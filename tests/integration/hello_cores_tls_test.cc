// hello_cores over TLS, as users run it, once per backend: two --tls_cert/--tls_key pairs chosen
// by SNI (GET /tls says what was negotiated), and SIGHUP after the files were replaced: new
// connections get the new certificate and the process goes on serving. The child is killed and
// reaped by its pid; every wait has a deadline.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "support/backends.h"
#include "support/child_process.h"
#include "support/test_client.h"
#include "support/tls_peer.h"
#include "support/tls_socket.h"

#ifndef PERCORE_HELLO_CORES
#error "PERCORE_HELLO_CORES must name the hello_cores binary"
#endif

namespace percore {
namespace {

using percore::testing::Get;
using percore::testing::HelloCores;
using percore::testing::HttpResponse;
using percore::testing::MakeCertificate;
using percore::testing::TlsSocket;
using percore::testing::WaitUntil;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(15000);

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
    child_.emplace(PERCORE_HELLO_CORES,
                   std::vector<std::string>{"--threads", "2", "--backend", backend, "--tls_cert",
                                            a_.cert_file, "--tls_key", a_.key_file, "--tls_cert",
                                            b_.cert_file, "--tls_key", b_.key_file},
                   kTimeout);
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
  std::optional<HelloCores> child_;
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
