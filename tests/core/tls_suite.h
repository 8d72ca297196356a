// What the loop-level TLS suites (tls_test.cc, tls_hostile_test.cc) share: a harness whose
// connections speak TLS to an echo session that records what each session saw of TLS, and
// certificates made once per suite.
#ifndef PERCORE_TESTS_CORE_TLS_SUITE_H_
#define PERCORE_TESTS_CORE_TLS_SUITE_H_

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connection_state.h"
#include "gtest/gtest.h"
#include "loop.h"
#include "percore/protocol.h"
#include "percore/stats.h"
#include "percore/testing/harness.h"
#include "support/tls_peer.h"

namespace percore::testing {

// What each session saw of TLS when it was made.
struct Seen {
  std::vector<std::optional<TlsInfo>> infos;
  std::vector<std::string> alpn, server_name;  // copies: the views die with the connection
  int peer_closed = 0;
};

// Echoes bytes; "file:<path>\n" sends that file instead; "bye\n" closes.
class Echo final : public Session {
 public:
  explicit Echo(Seen* seen) : seen_(seen) {}
  size_t OnData(Connection& c, std::string_view bytes) override {
    if (bytes.starts_with("file:")) {
      const std::string path(bytes.substr(5, bytes.size() - 6));
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      c.SendFile(fd, 0, static_cast<uint64_t>(lseek(fd, 0, SEEK_END)));
    } else if (bytes == "bye\n") {
      c.output().append("bye\n");
      c.Close();
    } else {
      c.output().append(bytes);
    }
    return bytes.size();
  }
  void OnDeadline(Connection& c) override { c.Close(); }
  void OnPeerClosed(Connection& c) override {
    ++seen_->peer_closed;
    c.Close();
  }

 private:
  Seen* seen_;
};

class EchoProtocol final : public Protocol {
 public:
  explicit EchoProtocol(Seen* seen) : seen_(seen) {}
  std::unique_ptr<Session> NewSession(Connection& c) override {
    std::optional<TlsInfo> info = c.tls();
    seen_->infos.push_back(info);
    seen_->alpn.emplace_back(info ? info->alpn : "");
    seen_->server_name.emplace_back(info ? info->server_name : "");
    return std::make_unique<Echo>(seen_);
  }

 private:
  Seen* seen_;
};

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/tls_test_XXXXXX");
    ASSERT_NE(mkdtemp(dir_->data()), nullptr);
    ec_ = new TlsCertificate(MakeCertificate(*dir_, "ec", {"localhost", "www.example.test"}));
    rsa_ = new TlsCertificate(
        MakeCertificate(*dir_, "rsa", {"localhost", "www.example.test"}, KeyType::kRsa2048));
    other_ = new TlsCertificate(MakeCertificate(*dir_, "other", {"other.test", "*.other.test"}));
  }

  // A harness whose connections speak TLS with `certificates` (the EC one by default).
  void Start(std::vector<TlsCertificate> certificates = {},
             std::vector<std::string> alpn = {"http/1.1"}) {
    EngineOptions options;
    options.tls.certificates = certificates.empty() ? std::vector{*ec_} : certificates;
    options.tls.alpn = alpn;
    harness_ = std::make_unique<LoopHarness>(
        [this](Worker&) { return std::make_unique<EchoProtocol>(&seen_); }, options);
  }

  void Exchange(Connection* c, TlsPeer& peer, bool bytewise = false) {
    EXPECT_TRUE(testing::Exchange(*harness_, c, peer, bytewise)) << "the exchange did not settle";
  }

  // Connects `peer`, sends `plain` once established, and returns what comes back.
  std::string RoundTrip(Connection* c, TlsPeer& peer, std::string_view plain) {
    Exchange(c, peer);
    peer.Write(plain);
    Exchange(c, peer);
    return peer.TakePlaintext();
  }

  const LoopStats& stats() { return harness_->loop().worker().stats(); }

  inline static std::string* dir_;
  inline static TlsCertificate *ec_, *rsa_, *other_;
  Seen seen_;
  std::unique_ptr<LoopHarness> harness_;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_CORE_TLS_SUITE_H_
