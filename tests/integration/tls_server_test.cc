// TLS over real sockets on 127.0.0.1, once per backend: TLS 1.3 and 1.2 served and 1.1 and 1.0
// refused, SNI, a large file and a long stream received byte for byte, garbage and a client
// that never says hello closed while others are served, 200 handshakes at once, and wss://.
// Certificate reloads and resumption are in tls_reload_test.cc. Every wait has a deadline.
#include <openssl/ssl.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "integration/tls_suite.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "support/test_client.h"
#include "support/ws_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::TlsPeerOptions;
using percore::testing::TlsSocket;
using percore::testing::WaitUntil;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(10000);

// `size` bytes that differ from one offset to the next (a shifted or lost record shows).
std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131) ^ (i >> 16));
  return bytes;
}

// Streams `body` in 64 KiB pieces, chunked, writing again only once OnWritable() says so.
struct Streamer {
  Response response;
  std::shared_ptr<const std::string> body;
  size_t at = 0;

  static void Pump(const std::shared_ptr<Streamer>& self) {
    while (self->at < self->body->size()) {
      const std::string_view piece = std::string_view(*self->body).substr(self->at, 64 * 1024);
      self->at += piece.size();
      if (!self->response.Write(piece)) {
        if (self->response.aborted()) return;
        self->response.OnWritable([self](Response&) { Pump(self); });
        return;
      }
    }
    self->response.End();
  }
};

class TlsTest : public testing::TlsEngineTest {
 protected:
  uint64_t Failures() const { return Total(&WorkerCounters::tls_failures); }
  uint64_t Handshakes() const { return Total(&WorkerCounters::tls_handshakes); }
};

TEST_P(TlsTest, Tls13AndTls12AreServedAndTheRouteSeesWhatWasNegotiated) {
  App app;
  AddInfoRoute(app);
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello over TLS"); });
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}));
  if (IsSkipped()) return;
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SCOPED_TRACE(version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2");
    TlsSocket client(port_, {.server_name = "localhost",
                             .alpn = {"http/1.1", "x-unknown"},
                             .min_version = version,
                             .max_version = version});
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Handshake()) << client.peer().error();
    const std::string name = version == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2";
    EXPECT_EQ(client.peer().version(), name);
    EXPECT_EQ(client.peer().alpn(), "http/1.1") << "the one protocol both sides offer";
    std::optional<HttpResponse> hello = client.Fetch(Get("/"));
    ASSERT_TRUE(hello.has_value());
    EXPECT_EQ(hello->status, 200);
    EXPECT_EQ(hello->body, "Hello over TLS");
    std::optional<HttpResponse> info = client.Fetch(Get("/tls"));  // the same connection
    ASSERT_TRUE(info.has_value());
    const std::vector<std::string> fields = Fields(info->body);
    ASSERT_EQ(fields.size(), 6u) << info->body;
    EXPECT_EQ(fields[0], name);
    EXPECT_FALSE(fields[1].empty()) << "the cipher";
    if (version == TLS1_2_VERSION) {
      EXPECT_NE(fields[1].find("GCM"), std::string::npos) << "an intermediate cipher";
    }
    EXPECT_EQ(fields[2], "localhost");
    EXPECT_EQ(fields[3], "http/1.1");
    EXPECT_EQ(fields[4], "0") << "a full handshake";
  }
  EXPECT_TRUE(WaitUntil([&] { return Handshakes() == 2; }, kTimeout)) << Handshakes();
  EXPECT_EQ(Failures(), 0u);
}

// ALPN offers h2 first (App::Listen): a client that takes it and then says nothing is given
// the header timeout for its preface, as an HTTP/1.1 client is for its first request.
TEST_P(TlsTest, H2IsOfferedByAlpnAndASilentH2ClientIsClosed) {
  percore::http::HttpOptions http;
  http.header_timeout = absl::Milliseconds(200);
  App app(http);
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello"); });
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}));
  if (IsSkipped()) return;
  TlsSocket client(port_, {.server_name = "localhost", .alpn = {"h2", "http/1.1"}});
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Handshake()) << client.peer().error();
  EXPECT_EQ(client.peer().alpn(), "h2");
  EXPECT_TRUE(client.WaitClosed(kTimeout));
}

TEST_P(TlsTest, Tls11AndTls10AreRefusedAndCounted) {
  App app;
  app.Get("/", [](const Request&, Response& res) { res.Send("no"); });
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}));
  if (IsSkipped()) return;
  int refused = 0;
  for (const int version : {TLS1_1_VERSION, TLS1_VERSION}) {
    TlsSocket client(
        port_, {.min_version = version, .max_version = version, .ciphers = "DEFAULT:@SECLEVEL=0"});
    ASSERT_TRUE(client.connected());
    EXPECT_FALSE(client.Handshake()) << "version " << version << " was accepted";
    EXPECT_TRUE(client.peer().failed() || client.closed());
    EXPECT_FALSE(client.peer().established());
    ++refused;
    EXPECT_TRUE(WaitUntil([&] { return Failures() == static_cast<uint64_t>(refused); }, kTimeout))
        << "tls_failures: " << Failures();
  }
  EXPECT_EQ(Handshakes(), 0u);
}

TEST_P(TlsTest, SniChoosesAmongTwoCertificates) {
  App app;
  AddInfoRoute(app);
  ASSERT_NO_FATAL_FAILURE(
      ServeTls(app, {Certificate("a", {"a.test"}), Certificate("b", {"b.test", "*.b.test"})}));
  if (IsSkipped()) return;
  for (const auto& [sni, cn] :
       std::vector<std::pair<std::string, std::string>>{{"a.test", "a.test"},
                                                        {"b.test", "b.test"},
                                                        {"www.b.test", "b.test"},
                                                        {"", "a.test"},
                                                        {"unknown.test", "a.test"}}) {
    SCOPED_TRACE("SNI \"" + sni + "\"");
    TlsSocket client(port_, {.server_name = sni});
    ASSERT_TRUE(client.Handshake()) << client.peer().error();
    EXPECT_EQ(client.peer().peer_common_name(), cn);
    std::optional<HttpResponse> info = client.Fetch(Get("/tls"));
    ASSERT_TRUE(info.has_value());
    const std::vector<std::string> fields = Fields(info->body);
    ASSERT_EQ(fields.size(), 6u) << info->body;
    EXPECT_EQ(fields[2], sni);
  }
}

TEST_P(TlsTest, A20MbFileAndA50MbStreamArriveByteForByte) {
  const std::string file = Pattern(20u << 20);
  std::ofstream(dir_ + "/big.bin", std::ios::binary)
      .write(file.data(), static_cast<std::streamsize>(file.size()));
  auto stream = std::make_shared<const std::string>(Pattern((50u << 20) + 7));
  App app;
  app.Get("/stream", [stream](const Request&, Response& res) {
    auto streamer = std::make_shared<Streamer>(Streamer{res.Defer(), stream});
    Streamer::Pump(streamer);
  });
  app.Use("/files", http::Static(dir_));
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}));
  if (IsSkipped()) return;
  TlsSocket client(port_);
  ASSERT_TRUE(client.Handshake()) << client.peer().error();
  std::optional<HttpResponse> got = client.Fetch(Get("/files/big.bin"), milliseconds(15000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body.size(), file.size());
  EXPECT_TRUE(got->body == file) << "the file's bytes differ";
  got = client.Fetch(Get("/stream"), milliseconds(15000));  // on the same connection
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->Header("transfer-encoding"), "chunked");
  EXPECT_EQ(got->body.size(), stream->size());
  EXPECT_TRUE(got->body == *stream) << "the stream's bytes differ";
}

TEST_P(TlsTest, GarbageAndASilentClientAreClosedWhileOthersAreServed) {
  App app;
  app.Get("/", [](const Request&, Response& res) { res.Send("served"); });
  EngineOptions options;
  options.tls.handshake_timeout = absl::Milliseconds(500);
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}, options));
  if (IsSkipped()) return;
  const auto connected = std::chrono::steady_clock::now();
  testing::Socket silent(testing::ConnectLocal(port_));
  testing::Socket garbage(testing::ConnectLocal(port_));
  ASSERT_TRUE(silent.ok() && garbage.ok());
  ASSERT_TRUE(testing::SendAll(garbage.fd(), Get("/")));  // plain HTTP on the TLS port
  EXPECT_NE(testing::ReadToEnd(garbage.fd(), kTimeout).end, testing::StreamEnd::kTimeout);

  TlsSocket client(port_);  // meanwhile, served as usual
  ASSERT_TRUE(client.Handshake()) << client.peer().error();
  std::optional<HttpResponse> served = client.Fetch(Get("/"));
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(served->body, "served");

  const testing::ReadToEndResult end = testing::ReadToEnd(silent.fd(), kTimeout);
  EXPECT_NE(end.end, testing::StreamEnd::kTimeout) << "the handshake timeout did not close it";
  EXPECT_TRUE(end.data.empty());
  EXPECT_GE(std::chrono::steady_clock::now() - connected, milliseconds(400))
      << "closed before its handshake timeout";
  EXPECT_TRUE(WaitUntil([&] { return Failures() == 2; }, kTimeout)) << Failures();
  std::optional<HttpResponse> again = client.Fetch(Get("/"));
  ASSERT_TRUE(again.has_value()) << "the served client outlived the handshake timeout";
  EXPECT_EQ(again->body, "served");
}

TEST_P(TlsTest, TwoHundredConcurrentHandshakesAreAllAnswered) {
  constexpr int kClients = 200;
  testing::RaiseFdLimit(4 * kClients + 256);
  App app;
  app.Get("/", [](const Request& req, Response& res) { res.Send(std::string(req.Query("n"))); });
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}));
  if (IsSkipped()) return;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(15000);
  auto left = [&] {
    return std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(
                                         deadline - std::chrono::steady_clock::now()));
  };
  // Every ClientHello goes out before any handshake is finished: the server has all of them
  // in flight at once.
  std::vector<std::unique_ptr<TlsSocket>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<TlsSocket>(port_));
    ASSERT_TRUE(clients.back()->connected()) << i;
    ASSERT_TRUE(clients.back()->Send({}, left())) << i;
  }
  int answered = 0;
  for (int i = 0; i < kClients; ++i) {
    TlsSocket& client = *clients[static_cast<size_t>(i)];
    ASSERT_TRUE(client.Handshake(left())) << i << ": " << client.peer().error();
    ASSERT_TRUE(client.Send(Get("/?n=" + std::to_string(i)), left())) << i;
  }
  for (int i = 0; i < kClients; ++i) {
    std::optional<HttpResponse> got = clients[static_cast<size_t>(i)]->ReadResponse(left());
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(got->body, std::to_string(i));
    answered += got->status == 200;
  }
  EXPECT_EQ(answered, kClients);
  EXPECT_TRUE(WaitUntil([&] { return Handshakes() == kClients; }, kTimeout)) << Handshakes();
  EXPECT_EQ(Failures(), 0u);
}

TEST_P(TlsTest, AWebSocketEchoesOverTls) {
  App app;
  app.Ws("/echo", {.message = [](http::WebSocket& ws, std::string_view message,
                                 http::WsOpcode opcode) { ws.Send(message, opcode); }});
  ASSERT_NO_FATAL_FAILURE(ServeTls(app, {Certificate("site", {"localhost"})}));
  if (IsSkipped()) return;
  TlsSocket client(port_);
  ASSERT_TRUE(client.Handshake()) << client.peer().error();
  std::optional<HttpResponse> upgraded = client.Fetch(
      "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  ASSERT_TRUE(upgraded.has_value());
  ASSERT_EQ(upgraded->status, 101);
  EXPECT_EQ(upgraded->Header("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const std::string message = "hello over wss";
  ASSERT_TRUE(client.Send(testing::EncodeWsFrame({.opcode = 1, .payload = message})));
  std::optional<std::string> frame = client.ReadAtLeast(2 + message.size());
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(*frame, std::string("\x81") + static_cast<char>(message.size()) + message)
      << "one unmasked text frame echoing the message";
}

INSTANTIATE_TEST_SUITE_P(Backends, TlsTest, testing::AllBackends(), testing::BackendTestName);

}  // namespace
}  // namespace percore
