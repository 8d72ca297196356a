// ws_fuzzer: the frames a WebSocket client sends, through the whole path (the HTTP upgrade, the
// hand-over to the WebSocket session, the frame reader, permessage-deflate, the close
// handshake), fed to one connection in a single read and to another in pieces whose sizes the
// input chooses: both must send the same bytes back and end in the same state. One loop serves
// every input, as a real loop serves many connections (ASan and UBSan watch memory).
//
// Input: a byte of options (bit 0: the bytes are frame specs to encode, else raw bytes after
// the handshake; bit 1: offer permessage-deflate), 4 bytes that seed the split sizes, then the
// bytes. Raw bytes mostly test refusals (a client's frames are masked, random ones rarely
// are); encoded frames get past them: each spec is a byte of flags and opcode, a byte of
// length (0..255, or the rest of the input for 255), then the payload, masked as a client does.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>

#include "alike.h"
#include "percore/http/app.h"
#include "percore/http/websocket.h"
#include "percore/testing/harness.h"

namespace {

using percore::Connection;
using percore::http::App;
using percore::http::WebSocket;
using percore::http::WsOpcode;
using percore::testing::LoopHarness;

LoopHarness& Harness() {
  static LoopHarness* harness = [] {
    App app;
    percore::http::WsOptions options;
    options.max_message_bytes = 512;  // small, so that short inputs reach it
    options.min_compress_bytes = 8;
    options.compression = percore::http::WsCompression::kDedicated;
    auto echo = [](WebSocket& ws, std::string_view message, WsOpcode opcode) {
      if (message == "close") return ws.Close(4000, "asked");
      if (message == "end") return ws.End();
      ws.Send(message, opcode);
    };
    app.Ws("/d", {.message = echo, .options = options});
    options.compression = percore::http::WsCompression::kShared;
    app.Ws("/s", {.message = echo, .options = options});
    return new LoopHarness(*app.Factory());
  }();
  return *harness;
}

std::string Handshake(bool deflate, bool shared) {
  std::string h = shared ? "GET /s" : "GET /d";
  h += " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  if (deflate) h += "Sec-WebSocket-Extensions: permessage-deflate\r\n";
  return h + "\r\n";
}

// Frame specs to frames a client would send (but for what the flags make of them).
std::string Encode(FuzzedDataProvider& in) {
  std::string out;
  while (in.remaining_bytes() > 0) {
    const uint8_t flags = in.ConsumeIntegral<uint8_t>();  // FIN RSV1 RSV2 RSV3 opcode
    size_t length = in.ConsumeIntegral<uint8_t>();
    if (length == 255) length = in.remaining_bytes();
    const std::string payload = in.ConsumeBytesAsString(length);
    out.push_back(static_cast<char>(flags));
    if (payload.size() < 126) {
      out.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
      out.push_back(static_cast<char>(0x80 | 126));
      out.push_back(static_cast<char>(payload.size() >> 8));
      out.push_back(static_cast<char>(payload.size() & 0xFF));
    }
    const char mask[4] = {0x11, 0x22, 0x33, 0x44};
    out.append(mask, 4);
    for (size_t i = 0; i < payload.size(); ++i) out.push_back(payload[i] ^ mask[i % 4]);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  const uint8_t options = provider.ConsumeIntegral<uint8_t>();
  std::mt19937 sizes(provider.ConsumeIntegral<uint32_t>());
  const std::string stream =
      (options & 1) != 0 ? Encode(provider) : provider.ConsumeRemainingBytesAsString();
  const std::string handshake = Handshake((options & 2) != 0, (options & 4) != 0);
  LoopHarness& harness = Harness();
  Connection* whole = harness.Accept();
  Connection* split = harness.Accept();
  if (whole == nullptr || split == nullptr) std::abort();

  // The handshake and the first frames in one read: the bytes after it must reach the
  // WebSocket, which takes over at the loop's next turn.
  harness.Feed(whole, handshake + stream);
  harness.RunUntil([] { return true; }, absl::Seconds(1));
  harness.Feed(split, handshake);
  harness.RunUntil([] { return true; }, absl::Seconds(1));
  percore::testing::FeedSplitAndCompare(harness, whole, split, stream, sizes, 24, /*turn=*/true,
                                        {});
  return 0;
}
