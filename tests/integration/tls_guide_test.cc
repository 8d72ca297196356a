// docs/tls.md and the example of percore/tls.h, as written there (with the names they leave to
// the reader defined here): an App served over TLS with two certificates chosen by SNI, whose
// route says what was negotiated. In-process on 127.0.0.1.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "percore/tls.h"
#include "support/tls_peer.h"
#include "support/tls_socket.h"

namespace {

using percore::testing::MakeCertificate;
using percore::testing::TlsSocket;

class TlsGuideTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/tls_guide_XXXXXX";
    ASSERT_NE(mkdtemp(dir_.data()), nullptr);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(TlsGuideTest, AnAppOverTlsWithTwoCertificates) {
  const percore::TlsCertificate site = MakeCertificate(dir_, "site", {"localhost"});
  const percore::TlsCertificate other = MakeCertificate(dir_, "other", {"other.test"});
  const std::string &site_pem = site.cert_file, &site_key = site.key_file;
  const std::string &other_pem = other.cert_file, &other_key = other.key_file;
  const int port = 0;

  // docs/tls.md "Serving HTTPS".
  percore::http::App app;
  app.Get("/", [](const percore::http::Request& req, percore::http::Response& res) {
    const std::optional<percore::TlsInfo> tls = req.tls();
    res.Send(tls ? "hello over " + std::string(tls->version) : std::string("hello"));
  });
  percore::EngineOptions options;
  options.port = port;
  options.tls.certificates = {{site_pem, site_key},     // the default
                              {other_pem, other_key}};  // for the names it was issued for
  absl::StatusOr<std::unique_ptr<percore::Engine>> engine = app.Listen(options);

  ASSERT_TRUE(engine.ok()) << engine.status();
  const absl::Status started = (*engine)->Start();
  ASSERT_TRUE(started.ok()) << started;
  for (const auto& [name, common_name] :
       {std::pair{"localhost", "localhost"}, {"other.test", "other.test"}}) {
    TlsSocket client((*engine)->port(), {.server_name = name});
    std::optional<percore::testing::HttpResponse> answer =
        client.Fetch("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(answer.has_value()) << name << ": " << client.peer().error();
    EXPECT_EQ(answer->body, "hello over TLSv1.3");
    EXPECT_EQ(client.peer().peer_common_name(), common_name);
  }
  (*engine)->Stop();
  (*engine)->Wait();
}

TEST_F(TlsGuideTest, TheHeadersExampleNamesAMissingFile) {
  percore::http::App app;
  absl::StatusOr<percore::ProtocolFactory> factory = app.Factory();
  ASSERT_TRUE(factory.ok());

  // percore/tls.h's example.
  percore::EngineOptions options;
  options.port = 8443;
  options.tls.certificates = {{"/etc/percore/site.pem", "/etc/percore/site.key"}};
  auto engine = percore::Engine::Create(options, *factory);  // an error names a bad file

  ASSERT_FALSE(engine.ok());  // no such file here
  EXPECT_NE(engine.status().message().find("/etc/percore/site.pem"), std::string::npos)
      << engine.status();
}

}  // namespace
