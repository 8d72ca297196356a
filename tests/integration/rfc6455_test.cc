// RFC 6455 (WebSocket) conformance as seen from outside, frame by frame: the engine in-process
// on 127.0.0.1 with two loops, once per backend, the test thread a client on a real socket.
// Each row: the frames a client sends on a fresh connection to an echo endpoint (as exact
// bytes, so that rows can send what no real client would), the frames the server sends back,
// and how the connection ends: open (a text message sent after the row is echoed), or closed
// with the close code the RFC names, then the TCP close. Each row is sent twice: as one write,
// and one byte per write, since a frame's handling must not depend on how reads split it.
//
// Where the RFC leaves a choice, percore decided:
// - A violation is answered with a close frame carrying the code and no reason, then the TCP
//   close (7.1.7 "_Fail the WebSocket Connection_"; sending the close frame is a SHOULD).
// - Text that is not UTF-8 fails as soon as a byte cannot begin or continue a character, without
//   waiting for the message's end (8.1: "fail fast").
// - The client's close code is echoed (5.5.1), without its reason; a close without a code is
//   answered with one without a code.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/ws_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::WebSocket;
using percore::http::WsOpcode;
using percore::testing::EncodeWsFrame;
using percore::testing::WsClient;
using percore::testing::WsFrame;
using percore::testing::WsFrameSpec;

constexpr size_t kMaxMessage = 100000;
constexpr uint8_t kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;

// A frame the server is expected to send: its opcode and payload.
struct Out {
  uint8_t opcode;
  std::string payload;
};

struct Row {
  const char* name;
  std::string in;        // the bytes sent
  std::vector<Out> out;  // the frames expected back, in order (a close frame last)
  uint16_t close = 0;    // the close frame's code expected (0: the connection stays open)
};

std::string Frame(uint8_t opcode, std::string_view payload, bool fin = true) {
  return EncodeWsFrame({.opcode = opcode, .payload = payload, .fin = fin});
}

std::string CloseCode(uint16_t code, std::string_view reason = {}) {
  return percore::testing::ClosePayload(code, reason);
}

std::vector<Row> Rows() {
  const std::string big125(125, 'a'), big126(126, 'b'), big65535(65535, 'c'), big65536(65536, 'd');
  std::string non_minimal16 = "\x81\xFE";  // 16-bit length form for a length of 100
  non_minimal16 += std::string("\x00\x64", 2) + "MASK" + std::string(100, 'x');
  std::string top_bit64 = "\x82\xFF";  // 64-bit length with its top bit set (5.2)
  top_bit64 += std::string("\x80\x00\x00\x00\x00\x00\x00\x01", 8) + "MASK";
  return {
      // 5.6 data frames, each length form (5.2), both kinds.
      {"text", Frame(kText, "hello"), {{kText, "hello"}}},
      {"binary", Frame(kBinary, std::string("\0\1\2", 3)), {{kBinary, std::string("\0\1\2", 3)}}},
      {"empty text", Frame(kText, ""), {{kText, ""}}},
      {"length 125, 7-bit form", Frame(kBinary, big125), {{kBinary, big125}}},
      {"length 126, 16-bit form", Frame(kBinary, big126), {{kBinary, big126}}},
      {"length 65535", Frame(kBinary, big65535), {{kBinary, big65535}}},
      {"length 65536, 64-bit form", Frame(kBinary, big65536), {{kBinary, big65536}}},
      // 5.4 fragmentation, with control frames between fragments.
      {"three fragments",
       Frame(kText, "He", false) + Frame(0, "ll", false) + Frame(0, "o"),
       {{kText, "Hello"}}},
      {"a ping between fragments is answered before the message ends",
       Frame(kText, "He", false) + Frame(kPing, "p") + Frame(0, "llo"),
       {{kPong, "p"}, {kText, "Hello"}}},
      {"UTF-8 split between fragments",
       Frame(kText, "\xE2\x82", false) + Frame(0, "\xAC"),
       {{kText, "\xE2\x82\xAC"}}},
      // 5.5.2, 5.5.3 ping and pong.
      {"ping answered with its payload", Frame(kPing, "stay"), {{kPong, "stay"}}},
      {"an unsolicited pong is ignored", Frame(kPong, "x") + Frame(kText, "t"), {{kText, "t"}}},
      // 5.1, 5.2, 5.5: refused with 1002.
      {"unmasked frame",
       EncodeWsFrame({.opcode = kText, .payload = "x", .masked = false}),
       {},
       1002},
      {"RSV1 without an extension",
       EncodeWsFrame({.opcode = kText, .payload = "x", .rsv1 = true}),
       {},
       1002},
      {"RSV2", EncodeWsFrame({.opcode = kText, .payload = "x", .rsv2 = true}), {}, 1002},
      {"reserved data opcode 3", Frame(3, "x"), {}, 1002},
      {"reserved control opcode 0xB", Frame(0xB, ""), {}, 1002},
      {"ping of 126 bytes", Frame(kPing, big126), {}, 1002},
      {"fragmented ping", Frame(kPing, "p", false), {}, 1002},
      {"continuation with no message", Frame(0, "x"), {}, 1002},
      {"a new message inside a fragmented one",
       Frame(kText, "a", false) + Frame(kText, "b"),
       {},
       1002},
      {"length not in its shortest form", non_minimal16, {}, 1002},
      {"64-bit length with the top bit set", top_bit64, {}, 1002},
      // 8.1 UTF-8, failing fast.
      {"text that is not UTF-8", Frame(kText, "ok\xFF"), {}, 1007},
      {"an invalid byte fails the message before it ends", Frame(kText, "\xC0", false), {}, 1007},
      {"text ending mid-character", Frame(kText, "\xE2\x82"), {}, 1007},
      {"surrogate half", Frame(kText, "\xED\xA0\x80"), {}, 1007},
      // 10.4: a message past the endpoint's limit.
      {"message over max_message_bytes",
       Frame(kBinary, std::string(kMaxMessage + 1, 'z')),
       {},
       1009},
      {"fragments adding up past the limit",
       Frame(kBinary, std::string(kMaxMessage, 'z'), false) + Frame(0, "z"),
       {},
       1009},
      // 5.5.1, 7.4 the closing handshake.
      {"close 1000 is echoed",
       Frame(kClose, CloseCode(1000, "bye")),
       {{kClose, CloseCode(1000)}},
       1000},
      {"close 4000, an application's code",
       Frame(kClose, CloseCode(4000)),
       {{kClose, CloseCode(4000)}},
       4000},
      {"close without a code", Frame(kClose, ""), {{kClose, ""}}, 1005},
      {"close with 1005, never sent", Frame(kClose, CloseCode(1005)), {}, 1002},
      {"close with 999", Frame(kClose, CloseCode(999)), {}, 1002},
      {"close with a one-byte payload", Frame(kClose, "\x03"), {}, 1002},
      {"close reason not UTF-8", Frame(kClose, CloseCode(1000, "\xFF")), {}, 1002},
      {"data after the client's close is not read",
       Frame(kClose, CloseCode(1000)) + Frame(kText, "late"),
       {{kClose, CloseCode(1000)}},
       1000},
  };
}

class Rfc6455Test : public percore::testing::EngineTest {
 protected:
  void SetUp() override {
    App app;
    http::WsOptions options;
    options.max_message_bytes = kMaxMessage;
    app.Ws("/echo", {.message = [](WebSocket& ws, std::string_view message,
                                   WsOpcode opcode) { ws.Send(message, opcode); },
                     .close =
                         [this](WebSocket&, uint16_t code, std::string_view) {
                           std::lock_guard<std::mutex> lock(mu_);
                           closes_.push_back(code);
                         },
                     .options = options});
    ASSERT_NO_FATAL_FAILURE(Serve(app));
  }

  // The server's close callbacks so far.
  std::vector<uint16_t> Closes() {
    std::lock_guard<std::mutex> lock(mu_);
    return closes_;
  }

  // Sends a row (whole, or a byte per write) and checks what comes back, and the code the
  // server's close callback got: the row's, or 1006 for a connection the client just drops.
  void Check(const Row& row, bool bytewise) {
    SCOPED_TRACE(std::string(row.name) + (bytewise ? ", a byte per write" : ", one write"));
    const size_t closes_before = Closes().size();
    {
      WsClient client(port_, "/echo");
      ASSERT_TRUE(client.upgraded()) << client.head();
      ASSERT_NO_FATAL_FAILURE(Exchange(client, row, bytewise));
    }
    const uint16_t code = row.close != 0 ? row.close : 1006;
    EXPECT_TRUE(percore::testing::WaitUntil(
        [&] { return Closes().size() == closes_before + 1 && Closes().back() == code; },
        std::chrono::seconds(10)))
        << "the close callback did not get " << code;
  }

  void Exchange(WsClient& client, const Row& row, bool bytewise) {
    if (bytewise) {
      for (char c : row.in) ASSERT_TRUE(client.SendRaw(std::string_view(&c, 1)));
    } else {
      ASSERT_TRUE(client.SendRaw(row.in));
    }
    std::vector<Out> expected = row.out;
    if (row.close != 0 && (expected.empty() || expected.back().opcode != kClose)) {
      expected.push_back({kClose, CloseCode(row.close)});  // a violation's own close frame
    }
    for (const Out& out : expected) {
      std::optional<WsFrame> frame = client.Read();
      ASSERT_TRUE(frame.has_value()) << "expected opcode " << int(out.opcode);
      EXPECT_EQ(frame->opcode, out.opcode);
      EXPECT_TRUE(frame->fin);
      EXPECT_FALSE(frame->rsv1);
      EXPECT_EQ(frame->payload.size(), out.payload.size());
      EXPECT_TRUE(frame->payload == out.payload) << "payloads differ";
    }
    if (row.close == 0) {
      ASSERT_TRUE(client.SendText("still open"));
      std::optional<WsFrame> frame = client.Read();
      ASSERT_TRUE(frame.has_value());
      EXPECT_EQ(frame->payload, "still open");
    } else {
      EXPECT_TRUE(client.WaitEnd()) << "the server closes the TCP connection after its close";
    }
  }

  std::mutex mu_;
  std::vector<uint16_t> closes_;
};

TEST_P(Rfc6455Test, EachRowWholeAndSplitIntoSingleBytes) {
  if (IsSkipped()) return;
  for (const Row& row : Rows()) {
    Check(row, /*bytewise=*/false);
    // A byte per write makes 65,536 sends of a long row: the short rows say as much.
    if (row.in.size() < 1024) Check(row, /*bytewise=*/true);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Rfc6455Test, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
