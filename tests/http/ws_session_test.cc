// The WebSocket session on one loop without a kernel (LoopHarness): what depends on several
// connections sharing the loop's state, which the socket suites cannot place on one loop at will.
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "support/ws_client.h"

namespace percore::http {
namespace {

using percore::testing::EncodeWsFrame;
using percore::testing::LoopHarness;

class WsSessionTest : public ::testing::Test {
 protected:
  WsSessionTest() : harness_(Factory()) {}
  static ProtocolFactory Factory() {
    App app;
    WsOptions options;
    options.compression = WsCompression::kShared;
    options.min_compress_bytes = 1 << 20;  // echoes go uncompressed: easy to compare
    app.Ws("/shared", {.message = [](WebSocket& ws, std::string_view message,
                                     WsOpcode opcode) { ws.Send(message, opcode); },
                       .options = options});
    return *app.Factory();
  }
  // A connection upgraded with permessage-deflate, its 101 taken.
  Connection* Open() {
    Connection* c = harness_.Accept();
    harness_.Feed(c,
                  "GET /shared HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    harness_.RunUntil([] { return true; }, absl::Seconds(1));  // the WebSocket takes over
    EXPECT_TRUE(harness_.TakeOutput(c).starts_with("HTTP/1.1 101 "));
    return c;
  }
  LoopHarness harness_;
};

TEST_F(WsSessionTest, CompressedMessagesOfTwoConnectionsInterleavedOnTheLoopsSharedInflater) {
  Connection* a = Open();
  Connection* b = Open();
  const std::string one = percore::testing::ClientDeflate().Compress("first connection's message");
  const std::string two = percore::testing::ClientDeflate().Compress("second connection's message");
  // Each message's first fragment, then each one's last: the loop's one inflater must not be
  // left half-way through a's message when b's begins.
  harness_.Feed(
      a, EncodeWsFrame({.opcode = 1, .payload = one.substr(0, 5), .fin = false, .rsv1 = true}));
  harness_.Feed(
      b, EncodeWsFrame({.opcode = 1, .payload = two.substr(0, 5), .fin = false, .rsv1 = true}));
  harness_.Feed(a, EncodeWsFrame({.opcode = 0, .payload = one.substr(5)}));
  harness_.Feed(b, EncodeWsFrame({.opcode = 0, .payload = two.substr(5)}));
  EXPECT_EQ(harness_.TakeOutput(a).substr(2), "first connection's message");
  EXPECT_EQ(harness_.TakeOutput(b).substr(2), "second connection's message");
}

}  // namespace
}  // namespace percore::http
