// What the TLS integration suites (tls_server_test.cc, tls_reload_test.cc) share: an engine
// served on 127.0.0.1 with certificates made in a temporary directory (removed after the test),
// and a route that says what TLS negotiated.
#ifndef PERCORE_TESTS_INTEGRATION_TLS_SUITE_H_
#define PERCORE_TESTS_INTEGRATION_TLS_SUITE_H_

#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/tls_peer.h"
#include "support/tls_socket.h"

namespace percore::testing {

class TlsEngineTest : public EngineTest {
 protected:
  void SetUp() override {
    std::string dir = (std::filesystem::temp_directory_path() / "percore-tls-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    EngineTest::TearDown();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  TlsCertificate Certificate(const std::string& stem, const std::vector<std::string>& names) {
    return MakeCertificate(dir_, stem, names);
  }

  // Serves `app` (see EngineTest::Serve) speaking TLS with `certificates`.
  void ServeTls(const http::App& app, std::vector<TlsCertificate> certificates,
                EngineOptions options = {}) {
    options.tls.certificates = std::move(certificates);
    Serve(app, std::move(options));
  }

  // GET /tls answers "version|cipher|sni|alpn|resumed|worker" (resumed: 0 or 1), or "plain".
  static void AddInfoRoute(http::App& app) {
    app.Get("/tls", [](const http::Request& req, http::Response& res) {
      const std::optional<TlsInfo> tls = req.tls();
      if (!tls.has_value()) return res.Send("plain");
      std::string info;
      for (std::string_view part : {tls->version, tls->cipher, tls->server_name, tls->alpn}) {
        info.append(part).append("|");
      }
      res.Send(info + (tls->resumed ? "1|" : "0|") + std::to_string(req.worker_id()));
    });
  }

  // The fields of a GET /tls answer.
  static std::vector<std::string> Fields(const std::string& body) {
    std::vector<std::string> fields;
    size_t at = 0;
    while (true) {
      const size_t bar = body.find('|', at);
      fields.push_back(body.substr(at, bar == std::string::npos ? bar : bar - at));
      if (bar == std::string::npos) return fields;
      at = bar + 1;
    }
  }

  std::string dir_;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_INTEGRATION_TLS_SUITE_H_
