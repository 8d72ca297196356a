// Where a request comes from, through percore::testing::TestClient and LoopHarness (app_suite.h):
// CORS (Cors()), and the client's address (trust_proxy, X-Forwarded-For, the PROXY protocol).
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "app_suite.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/options.h"
#include "percore/testing/client.h"
#include "percore/testing/harness.h"

namespace percore::http {
namespace {

using percore::testing::LoopHarness;
using percore::testing::ParseResponse;

// ---- Cors().

constexpr const char* kOrigin = "https://app.example";

App CorsApp(CorsOptions options) {
  App app;
  app.Use(Cors(std::move(options)));
  app.Get("/items", Text("items"));
  app.Post("/items", Text("made"));
  return app;
}

TEST(AppCorsTest, PreflightIsAnswered204WithTheAllowFields) {
  App app = CorsApp({.origins = {kOrigin}, .max_age = 600});
  TestResponse r =
      TestClient(app).Fetch("OPTIONS", "/items",
                            {{"Origin", kOrigin},
                             {"Access-Control-Request-Method", "POST"},
                             {"Access-Control-Request-Headers", "X-Token, Content-Type"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.Header("access-control-allow-origin"), kOrigin);
  EXPECT_EQ(r.Header("access-control-allow-methods"), "GET, HEAD, PUT, PATCH, POST, DELETE");
  EXPECT_EQ(r.Header("access-control-allow-headers"), "X-Token, Content-Type");
  EXPECT_EQ(r.Header("access-control-max-age"), "600");
  EXPECT_EQ(r.Headers("vary"),
            (std::vector<std::string>{"Origin, Access-Control-Request-Headers"}));
}

TEST(AppCorsTest, SimpleRequestFromAnAllowedOriginNamesIt) {
  App app = CorsApp({.origins = {"https://other.example", kOrigin},
                     .exposed_headers = "X-Total",
                     .credentials = true});
  TestResponse r = TestClient(app).Get("/items", {{"Origin", kOrigin}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "items");
  EXPECT_EQ(r.Header("access-control-allow-origin"), kOrigin);
  EXPECT_EQ(r.Header("access-control-allow-credentials"), "true");
  EXPECT_EQ(r.Header("access-control-expose-headers"), "X-Total");
  EXPECT_EQ(r.Header("vary"), "Origin");
  EXPECT_EQ(r.Header("access-control-allow-methods"), "");  // preflight only
}

TEST(AppCorsTest, DisallowedOriginGetsTheNormalAnswerWithoutCorsFields) {
  App app = CorsApp({.origins = {kOrigin}});
  TestClient client(app);
  for (const Fields& fields :
       {Fields{{"Origin", "https://evil.example"}},
        Fields{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}}}) {
    const bool preflight = fields.size() == 2;
    TestResponse r = client.Fetch(preflight ? "OPTIONS" : "GET", "/items", fields);
    EXPECT_EQ(r.status, preflight ? 204 : 200);  // the router's own OPTIONS answer
    EXPECT_EQ(r.body, preflight ? "" : "items");
    EXPECT_EQ(r.Header("access-control-allow-origin"), "");
    EXPECT_EQ(r.Header("access-control-allow-methods"), "");
    EXPECT_EQ(r.Header("vary"), "Origin");
  }
}

TEST(AppCorsTest, AnyOriginModeAnswersStar) {
  App app = CorsApp({});
  TestClient client(app);
  TestResponse simple = client.Get("/items", {{"Origin", kOrigin}});
  EXPECT_EQ(simple.Header("access-control-allow-origin"), "*");
  EXPECT_EQ(simple.Header("vary"), "");  // the same answer for every origin

  TestResponse preflight = client.Fetch(
      "OPTIONS", "/items", {{"Origin", kOrigin}, {"Access-Control-Request-Method", "PUT"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.Header("access-control-allow-origin"), "*");
  EXPECT_EQ(preflight.Header("access-control-max-age"), "");  // max_age -1: left out
}

TEST(AppCorsTest, CredentialsWithoutOriginsThrows) {
  EXPECT_THROW(Cors({.credentials = true}), std::invalid_argument);
}

// ---- Client address.

// An app whose /ip answers "<client ip>:<client port>".
App AddressApp(HttpOptions options) {
  App app(std::move(options));
  app.Get("/ip", [](const Request& req, Response& res) {
    const PeerAddress client = req.client();
    res.Send(client.ip + ":" + std::to_string(client.port));
  });
  return app;
}

HttpOptions TrustLoopback() {
  HttpOptions options;
  options.trust_proxy = {"127.0.0.1"};
  return options;
}

// The engine takes the PROXY header off (EngineOptions::proxy_protocol) and Request::client()
// starts from its source address: a harness with that option, and one connection over TCP.
class ProxyServer {
 public:
  explicit ProxyServer(const App& app) {
    EngineOptions options;
    options.proxy_protocol = true;
    harness_ = std::make_unique<LoopHarness>(*app.Factory(), options);
    conn_ = harness_->AcceptTcp();
  }
  ~ProxyServer() { harness_->Release(conn_); }
  LoopHarness& harness() { return *harness_; }
  Connection* conn() { return conn_; }
  // Sends `bytes` in one read and parses the one answer they get, if any.
  std::optional<TestResponse> Raw(std::string_view bytes) {
    harness_->Feed(conn_, bytes);
    const std::string out = harness_->TakeOutput(conn_);
    size_t consumed = 0;
    std::optional<TestResponse> r = ParseResponse(out, &consumed);
    if (r.has_value()) {
      EXPECT_EQ(consumed, out.size()) << out;
    }
    return r;
  }

 private:
  std::unique_ptr<LoopHarness> harness_;
  Connection* conn_ = nullptr;
};

constexpr std::string_view kForwarded = "198.51.100.1, 203.0.113.7";
constexpr std::string_view kIpRequest = "GET /ip HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(AppClientAddressTest, TrustedProxyGivesTheRightmostUntrustedForwardedFor) {
  App app = AddressApp(TrustLoopback());
  EXPECT_EQ(GetOnce(app, "/ip", {{"X-Forwarded-For", std::string(kForwarded)}}).body,
            "203.0.113.7:0");
}

TEST(AppClientAddressTest, ForwardedForIsIgnoredWithoutTrustProxy) {
  App app = AddressApp({});
  const std::string body = GetOnce(app, "/ip", {{"X-Forwarded-For", std::string(kForwarded)}}).body;
  EXPECT_EQ(body.substr(0, body.find(':')), "127.0.0.1") << body;
  EXPECT_NE(body, "127.0.0.1:0");  // the peer's own port
}

TEST(AppClientAddressTest, InvalidTrustProxyRangeMakesTheClientThrow) {
  HttpOptions options;
  options.trust_proxy = {"10.0.0.0/33"};
  App app = AddressApp(options);
  EXPECT_THROW(TestClient{app}, std::invalid_argument);
}

TEST(AppClientAddressTest, ProxyProtocolV1GivesTheSourceAddress) {
  ProxyServer server(AddressApp({}));
  std::optional<TestResponse> r =
      server.Raw("PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n" + std::string(kIpRequest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "192.0.2.9:5555");
}

TEST(AppClientAddressTest, ProxyProtocolSourceIsWhereForwardedForTrustStarts) {
  HttpOptions options;
  options.trust_proxy = {"192.0.2.9"};
  ProxyServer server(AddressApp(options));
  std::optional<TestResponse> r = server.Raw(
      "PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n"
      "GET /ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.4\r\n\r\n");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "198.51.100.4:0");
}

// A PROXY protocol v2 header for TCP over IPv4 (HAProxy's proxy-protocol.txt, 2.2).
std::string ProxyV2(const uint8_t (&src)[4], const uint8_t (&dst)[4], uint16_t src_port,
                    uint16_t dst_port) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += '\x21';                      // version 2, PROXY
  h += '\x11';                      // AF_INET, STREAM
  h += std::string("\x00\x0c", 2);  // 12 bytes of addresses follow
  h.append(reinterpret_cast<const char*>(src), 4);
  h.append(reinterpret_cast<const char*>(dst), 4);
  for (uint16_t port : {src_port, dst_port}) {
    h += static_cast<char>(port >> 8);
    h += static_cast<char>(port & 0xff);
  }
  return h;
}

TEST(AppClientAddressTest, ProxyProtocolV2GivesTheSourceAddress) {
  ProxyServer server(AddressApp({}));
  const std::string header = ProxyV2({192, 0, 2, 9}, {10, 0, 0, 1}, 5555, 80);
  ASSERT_EQ(header.size(), 28u);
  std::optional<TestResponse> r = server.Raw(header + std::string(kIpRequest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "192.0.2.9:5555");
}

TEST(AppClientAddressTest, ProxyProtocolConnectionWithoutTheHeaderIsClosedUnanswered) {
  ProxyServer server(AddressApp({}));
  EXPECT_FALSE(server.Raw(kIpRequest).has_value());
  EXPECT_TRUE(server.harness().Closing(server.conn()));
}

TEST(AppClientAddressTest, ProxyProtocolHeaderSplitOverTwoReads) {
  ProxyServer server(AddressApp({}));
  ASSERT_NE(server.conn(), nullptr);
  EXPECT_FALSE(server.Raw("PROXY TCP4 192.0.2.9 10.0.0.1 55").has_value());
  EXPECT_FALSE(server.harness().Closing(server.conn()));
  std::optional<TestResponse> r = server.Raw("55 80\r\n" + std::string(kIpRequest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "192.0.2.9:5555");
}

}  // namespace
}  // namespace percore::http
