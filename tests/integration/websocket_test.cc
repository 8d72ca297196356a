// WebSocket endpoints (App::Ws) from outside, beyond the frame table of rfc6455_test.cc: the
// handshake and its refusals, the connection's data, subprotocols, permessage-deflate both ways,
// handles once closed, the idle timeout, a callback that throws, and the metrics. In-process
// on 127.0.0.1, once per backend; every wait has a deadline, and nothing is timed.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/health.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"
#include "support/ws_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::HttpError;
using percore::http::Request;
using percore::http::Response;
using percore::http::WebSocket;
using percore::http::WsCompression;
using percore::http::WsOpcode;
using percore::http::WsSendStatus;
using percore::testing::Fetch;
using percore::testing::WaitUntil;
using percore::testing::WsClient;
using percore::testing::WsFrame;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(10000);

struct Member {
  std::string name;
  int loop = -1;
};

std::string Upgrade(std::string_view path, std::string_view fields) {
  return "GET " + std::string(path) +
         " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
         std::string(fields) + "\r\n";
}

class WebSocketTest : public percore::testing::EngineTest {
 protected:
  // /echo echoes ("throw" throws, "who" answers the member's name and the subprotocol);
  // /private needs "Authorization: yes" (a middleware) and a name (`upgrade`); /deflate and
  // /shared compress; /idle pings after 100 ms of silence.
  void ServeWs(http::WsOptions options = {}) {
    App app;
    app.Use("/private", [](const Request& req, Response& res, const http::Next& next) {
      if (req.Header("authorization") != "yes") return res.Status(401).Send("who are you?");
      next();
    });
    auto echo = [this](WebSocket& ws, std::string_view message, WsOpcode opcode) {
      if (message == "throw") throw std::runtime_error("asked to");
      if (message == "who") {
        ws.Send(ws.data<Member>()->name + "/" + std::string(ws.protocol()));
        return;
      }
      if (message == "keep") {
        std::lock_guard<std::mutex> lock(mu_);
        kept_ = ws;
      }
      ws.Send(message, opcode);
    };
    auto close = [this](WebSocket&, uint16_t code, std::string_view) { last_close_ = code; };
    auto member = [](const Request& req, Member& m) {
      m.name = std::string(req.Query("name"));
      if (m.name.empty()) throw HttpError(403, "a name, please");
      m.loop = req.worker_id();
    };
    options.protocols = {"chat.v2", "chat.v1"};
    app.Ws<Member>("/echo",
                   {.upgrade = member, .message = echo, .close = close, .options = options});
    app.Ws<Member>("/private", {.upgrade = member, .message = echo, .options = options});
    http::WsOptions deflate = options;
    deflate.compression = WsCompression::kDedicated;
    deflate.max_message_bytes = 100000;
    app.Ws<Member>("/deflate",
                   {.upgrade = member, .message = echo, .close = close, .options = deflate});
    deflate.compression = WsCompression::kShared;
    app.Ws<Member>("/shared", {.upgrade = member, .message = echo, .options = deflate});
    http::WsOptions idle = options;
    idle.idle_timeout = absl::Milliseconds(200);
    app.Ws<Member>("/idle", {.upgrade = member, .message = echo, .close = close, .options = idle});
    http::MountHealthRoutes(app);
    ASSERT_NO_FATAL_FAILURE(Serve(app));
  }

  std::optional<testing::HttpResponse> Refused(std::string_view path, std::string_view fields) {
    return Fetch(port_, Upgrade(path, fields), kTimeout);
  }

  std::mutex mu_;
  WebSocket kept_;
  std::atomic<int> last_close_{0};
};

TEST_P(WebSocketTest, TheHandshakeKeepsTheBytesSentRightAfterItAndTheDataFromUpgrade) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  // The first message leaves in the same write as the handshake: it must not be lost.
  WsClient client(port_, "/echo?name=ada", "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n",
                  testing::EncodeWsFrame({.opcode = 1, .payload = "early"}));
  ASSERT_TRUE(client.upgraded()) << client.head();
  EXPECT_NE(client.head().find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(client.head().find("\r\nSec-WebSocket-Protocol: chat.v1\r\n"), std::string::npos)
      << "the first the client offers that the server speaks";
  EXPECT_EQ(client.ReadMessage(), "early");
  ASSERT_TRUE(client.SendText("who"));
  EXPECT_EQ(client.ReadMessage(), "ada/chat.v1");
}

TEST_P(WebSocketTest, HandshakesThatCannotBeAnsweredGetAnHttpError) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  auto version8 = Refused("/echo?name=a", "Sec-WebSocket-Version: 8\r\n");
  ASSERT_TRUE(version8.has_value());
  EXPECT_EQ(version8->status, 426);
  EXPECT_EQ(version8->Header("sec-websocket-version"), "13");
  auto no_name = Refused("/echo", "Sec-WebSocket-Version: 13\r\n");
  ASSERT_TRUE(no_name.has_value());
  EXPECT_EQ(no_name->status, 403) << "upgrade threw HttpError(403)";
  auto no_auth = Refused("/private?name=a", "Sec-WebSocket-Version: 13\r\n");
  ASSERT_TRUE(no_auth.has_value());
  EXPECT_EQ(no_auth->status, 401) << "the middleware ran before the handshake";
  auto body = Fetch(
      port_, Upgrade("/echo?name=a", "Sec-WebSocket-Version: 13\r\nContent-Length: 2\r\n") + "ab",
      kTimeout);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(body->status, 400);
  auto plain = Fetch(port_, "GET /echo?name=a HTTP/1.1\r\nHost: x\r\n\r\n", kTimeout);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->status, 400);
  auto post = Fetch(port_, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", kTimeout);
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->status, 405);
  WsClient authorized(port_, "/private?name=a", "Authorization: yes\r\n");
  EXPECT_TRUE(authorized.upgraded()) << authorized.head();
}

TEST_P(WebSocketTest, DeflatedMessagesBothWaysWithTheContextKept) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  WsClient client(port_, "/deflate?name=a",
                  "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
  ASSERT_TRUE(client.upgraded()) << client.head();
  EXPECT_NE(client.head().find("\r\nSec-WebSocket-Extensions: permessage-deflate"),
            std::string::npos);
  testing::ClientDeflate z;
  const std::string text(3000, 'w');
  for (int i = 0; i < 3; ++i) {  // the second and third lean on the first's window
    const std::string message = text + std::to_string(i);
    ASSERT_TRUE(client.Send({.opcode = 1, .payload = z.Compress(message), .rsv1 = true}));
    std::optional<WsFrame> echo = client.Read();
    ASSERT_TRUE(echo.has_value());
    EXPECT_TRUE(echo->rsv1) << "compressed back";
    EXPECT_LT(echo->payload.size(), 200u);
    EXPECT_EQ(z.Inflate(echo->payload), message);
  }
  ASSERT_TRUE(client.SendText("short"));  // uncompressed, and under min_compress_bytes
  std::optional<WsFrame> echo = client.Read();
  ASSERT_TRUE(echo.has_value());
  EXPECT_FALSE(echo->rsv1);
  EXPECT_EQ(echo->payload, "short");
}

TEST_P(WebSocketTest, AMessageThatInflatesPastTheLimitIsRefusedWith1009) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  WsClient client(port_, "/shared?name=a", "Sec-WebSocket-Extensions: permessage-deflate\r\n");
  ASSERT_TRUE(client.upgraded()) << client.head();
  testing::ClientDeflate z;
  const std::string bomb = z.Compress(std::string(50 << 20, '\0'));  // 50 MiB in ~50 KiB
  ASSERT_LT(bomb.size(), 100000u);
  ASSERT_TRUE(client.Send({.opcode = 2, .payload = bomb, .rsv1 = true}));
  EXPECT_EQ(client.ReadClose(), 1009);
  EXPECT_TRUE(client.WaitEnd());
}

TEST_P(WebSocketTest, AHandleKeptPastTheCloseOrUsedOffItsLoopDoesNothing) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  WebSocket kept;
  {
    WsClient client(port_, "/echo?name=a");
    ASSERT_TRUE(client.upgraded());
    ASSERT_TRUE(client.SendText("keep"));
    ASSERT_EQ(client.ReadMessage(), "keep");
    std::lock_guard<std::mutex> lock(mu_);
    kept = kept_;
    EXPECT_EQ(kept.Send("from the test thread"), WsSendStatus::kClosed) << "not its loop";
    EXPECT_EQ(kept.data<Member>(), nullptr);
    EXPECT_FALSE(kept.open());
  }  // the client goes
  ASSERT_TRUE(WaitUntil([&] { return last_close_.load() == 1006; }, kTimeout));
  std::atomic<int> result{-1};
  ASSERT_TRUE(kept.worker().Post([&] {
    result = static_cast<int>(kept.Send("late"));
    if (kept.data<Member>() != nullptr || kept.open() || kept.Subscribe("t")) result = 99;
  }));
  ASSERT_TRUE(WaitUntil([&] { return result.load() >= 0; }, kTimeout));
  EXPECT_EQ(result.load(), static_cast<int>(WsSendStatus::kClosed));
}

TEST_P(WebSocketTest, AnIdleClientIsPingedThenCutOffIfItStaysSilent) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  WsClient answering(port_, "/idle?name=a");
  ASSERT_TRUE(answering.upgraded());
  for (int i = 0; i < 3; ++i) {  // a client that answers each ping stays
    std::optional<WsFrame> ping = answering.Read();
    ASSERT_TRUE(ping.has_value());
    ASSERT_EQ(ping->opcode, 9);
    ASSERT_TRUE(answering.Send({.opcode = 10, .payload = ping->payload}));
  }
  ASSERT_TRUE(answering.SendText("still here"));
  EXPECT_EQ(answering.ReadMessage(), "still here");
  WsClient silent(port_, "/idle?name=b");
  ASSERT_TRUE(silent.upgraded());
  std::optional<WsFrame> ping = silent.Read();
  ASSERT_TRUE(ping.has_value());
  EXPECT_EQ(ping->opcode, 9);
  EXPECT_TRUE(silent.WaitEnd()) << "no pong: cut off";
  EXPECT_TRUE(WaitUntil([&] { return last_close_.load() == 1006; }, kTimeout));
}

TEST_P(WebSocketTest, ACallbackThatThrowsClosesItsConnectionWith1011) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  WsClient client(port_, "/echo?name=a");
  ASSERT_TRUE(client.upgraded());
  ASSERT_TRUE(client.SendText("throw"));
  EXPECT_EQ(client.ReadClose(), 1011);
  EXPECT_TRUE(client.WaitEnd());
  WsClient next(port_, "/echo?name=b");  // the loop goes on
  ASSERT_TRUE(next.upgraded());
  ASSERT_TRUE(next.SendText("fine"));
  EXPECT_EQ(next.ReadMessage(), "fine");
}

TEST_P(WebSocketTest, AClientThatSendsAndNeverReadsIsNoLongerReadPastTheBound) {
  http::WsOptions options;
  options.max_backpressure_bytes = 64 * 1024;
  ASSERT_NO_FATAL_FAILURE(ServeWs(options));
  if (IsSkipped()) return;
  WsClient client(port_, "/echo?name=a");
  ASSERT_TRUE(client.upgraded());
  ASSERT_TRUE(testing::SetNonBlocking(client.fd()));
  // Sends until the socket stays full for a while: the server stopped reading (otherwise it
  // would read on and drop the echoes, and 64 MiB would go).
  const std::string frame =
      testing::EncodeWsFrame({.opcode = 2, .payload = std::string(1024, 'e')});
  size_t sent = 0, messages = 0;
  std::string pending;
  while (sent < (64u << 20)) {
    if (pending.empty()) pending = frame;
    const ssize_t n = send(client.fd(), pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      pending.erase(0, static_cast<size_t>(n));
      if (pending.empty()) ++messages;
      continue;
    }
    pollfd p{client.fd(), POLLOUT, 0};
    if (poll(&p, 1, 500) == 0) break;  // full for half a second
  }
  EXPECT_LT(sent, 64u << 20) << "the server read everything";
  EXPECT_EQ(Total(&WorkerCounters::ws_dropped), 0u) << "it stopped reading, not sending";
  // It reads now: every whole message sent is echoed, none lost; then the server reads on.
  for (size_t i = 0; i < messages; ++i) {
    ASSERT_EQ(client.ReadMessage(kTimeout), std::string(1024, 'e')) << i << " of " << messages;
  }
  fcntl(client.fd(), F_SETFL, fcntl(client.fd(), F_GETFL) & ~O_NONBLOCK);
  ASSERT_TRUE(testing::SendAll(client.fd(), pending + frame));  // a message's end, and one more
  for (size_t i = pending.empty() ? 1 : 2; i > 0; --i) {
    EXPECT_EQ(client.ReadMessage(kTimeout), std::string(1024, 'e'));
  }
}

// The sum over the loops of the samples of `family` whose labels contain `label`.
uint64_t Sum(const std::string& metrics, std::string_view family, std::string_view label) {
  uint64_t sum = 0;
  size_t at = 0;
  const std::string start = std::string(family) + "{";
  while ((at = metrics.find(start, at)) != std::string::npos) {
    const size_t end = metrics.find('\n', at);
    const std::string line = metrics.substr(at, end - at);
    if (line.find(label) != std::string::npos) sum += std::stoull(line.substr(line.rfind(' ')));
    at = end;
  }
  return sum;
}

TEST_P(WebSocketTest, MetricsCountConnectionsMessagesAndCloses) {
  ASSERT_NO_FATAL_FAILURE(ServeWs());
  if (IsSkipped()) return;
  {
    WsClient client(port_, "/echo?name=a");
    ASSERT_TRUE(client.upgraded());
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(client.SendText("hello"));
      ASSERT_EQ(client.ReadMessage(), "hello");
    }
    auto m = Fetch(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", kTimeout);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(Sum(m->body, "percore_websockets_open", ""), 1u) << m->body;
    EXPECT_EQ(Sum(m->body, "percore_websocket_messages_total", "direction=\"in\""), 5u);
    EXPECT_EQ(Sum(m->body, "percore_websocket_messages_total", "direction=\"out\""), 5u);
    EXPECT_EQ(Sum(m->body, "percore_websocket_payload_bytes_total", "direction=\"in\""), 25u);
    ASSERT_TRUE(client.Send({.opcode = 8, .payload = testing::ClosePayload(1000)}));
    EXPECT_EQ(client.ReadClose(), 1000);
  }
  std::string body;
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto m = Fetch(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", kTimeout);
        body = m.has_value() ? m->body : "";
        return Sum(body, "percore_websocket_closes_total", "code=\"1000\"") == 1 &&
               Sum(body, "percore_websockets_open", "") == 0;
      },
      kTimeout))
      << body;
}

INSTANTIATE_TEST_SUITE_P(Backends, WebSocketTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
