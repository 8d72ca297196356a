// TlsOptions::kernel_tls over real sockets, once per backend: TLS 1.3 and 1.2 with the three
// ciphers the kernel knows, a 20 MB file byte for byte (sendfile or splice once the kernel
// seals), keep-alive requests after it, and the close_notify at the end. Where the kernel has
// TLS (`tls` in /proc/sys/net/ipv4/tcp_available_ulp, after the first connection may have
// loaded the module) Request::tls()->kernel must say so; where it has none, the same exchanges
// must pass in user space. This machine's kernel has none: see kernel_tls in README.
#include <openssl/ssl.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "integration/tls_suite.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "support/test_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::TlsSocket;
using std::chrono::milliseconds;

bool KernelHasTls() {
  std::ifstream ulps("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string ulp;
  while (ulps >> ulp) {
    if (ulp == "tls") return true;
  }
  return false;
}

class KernelTlsTest : public testing::TlsEngineTest {};

TEST_P(KernelTlsTest, FilesAndAnswersArriveWhoeverSealsThem) {
  std::string file(20u << 20, '\0');
  for (size_t i = 0; i < file.size(); ++i) file[i] = static_cast<char>((i * 131) ^ (i >> 16));
  std::ofstream(dir_ + "/big.bin", std::ios::binary)
      .write(file.data(), static_cast<std::streamsize>(file.size()));
  App app;
  app.Get("/kernel", [](const Request& req, Response& res) {
    res.Send(req.tls().has_value() && req.tls()->kernel ? "kernel" : "user");
  });
  app.Use("/files", http::Static(dir_));
  EngineOptions options;
  options.tls.kernel_tls = true;
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}, options));
  if (IsSkipped()) return;
  struct Case {
    int version;
    const char* ciphers;  // TLS 1.2's list, or TLS 1.3's suites
  };
  for (const Case& each : {Case{TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},
                           Case{TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384"},
                           Case{TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256"},
                           Case{TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
                           Case{TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"}}) {
    SCOPED_TRACE(each.ciphers);
    const bool v13 = each.version == TLS1_3_VERSION;
    TlsSocket client(port_, {.min_version = each.version,
                             .max_version = each.version,
                             .ciphers = v13 ? "" : each.ciphers,
                             .ciphersuites = v13 ? each.ciphers : ""});
    ASSERT_TRUE(client.Handshake()) << client.peer().error();
    std::optional<HttpResponse> got = client.Fetch(Get("/files/big.bin"), milliseconds(15000));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->status, 200);
    EXPECT_EQ(got->body.size(), file.size());
    EXPECT_TRUE(got->body == file) << "the file's bytes differ";
    for (int i = 0; i < 3; ++i) {  // keep-alive after it
      got = client.Fetch(Get("/kernel"));
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(got->body, KernelHasTls() ? "kernel" : "user");
    }
    got = client.Fetch("GET /kernel HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(client.WaitClosed());
    EXPECT_TRUE(client.peer().peer_closed()) << "no close_notify before the FIN";
  }
  if (!KernelHasTls()) {
    std::cerr << "[ note ] this kernel has no TLS (no `tls` in tcp_available_ulp): the exchanges "
                 "above ran in user space, the kernel's path was not exercised\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, KernelTlsTest, testing::AllBackends(), testing::BackendTestName);

}  // namespace
}  // namespace percore
