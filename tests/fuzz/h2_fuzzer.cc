// h2_fuzzer: what an HTTP/2 client sends after its preface, through the whole path (the plain
// port's hand-over from HTTP/1.1 at the preface, nghttp2's framing and HPACK, the streams routed
// through the App, answers whole, deferred and streamed, request bodies kept or streamed to a
// reader), fed to a connection in pieces whose sizes the input chooses. One loop serves every
// input, as a real loop serves many connections (ASan and UBSan watch memory).
//
// HTTP/2 interleaves streams as their requests arrive, so the same bytes fed at once or in
// pieces may be answered in another order: instead of comparing the two, every byte the
// server sends must parse as HTTP/2 frames a server may send (RFC 9113 4.1, 5.1.1, 6), and
// nothing may be sent after a GOAWAY but frames of streams it let finish.
//
// Input: a byte of options (bit 0: the bytes are frame specs to encode, else raw frames), 4
// bytes that seed the split sizes, then the bytes. A frame spec is a byte of type (0xf0..0xf3:
// a canned request's HEADERS: GET /, POST /echo, POST /read (a streaming route), GET /stream),
// a byte of flags, a byte of stream id, a byte of length (255: the rest), then the payload.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace {

using percore::Connection;
using percore::http::App;
using percore::http::HttpOptions;
using percore::http::Request;
using percore::http::Response;
using percore::testing::LoopHarness;

LoopHarness& Harness() {
  static LoopHarness* harness = [] {
    HttpOptions http;
    http.max_body_bytes = 4096;  // small, so that short inputs reach it
    http.max_header_bytes = 1024;
    http.max_target_bytes = 512;
    http.stream_buffer_bytes = 1024;
    App app(http);
    app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
    app.Post("/echo", [](const Request& req, Response& res) { res.Send(req.body()); });
    app.Post(
        "/read",
        [](const Request&, Response& res) {
          auto total = std::make_shared<size_t>(0);
          res.Defer().OnBody([total](Response& r, std::string_view chunk, bool last) {
            *total += chunk.size();
            if (*total > 100 && *total < 200) r.PauseBody();  // never resumed: a stuck reader
            if (last) r.Send(std::to_string(*total));
          });
        },
        {.stream_body = true});
    app.Get("/stream", [](const Request&, Response& res) {
      Response later = res.Defer();
      for (int i = 0; i < 8 && later.Write(std::string(700, 's')); ++i) {
      }
      later.End();
    });
    return new LoopHarness(*app.Factory());
  }();
  return *harness;
}

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void AppendFrame(std::string& out, uint8_t type, uint8_t flags, uint32_t stream,
                 std::string_view payload) {
  const size_t n = payload.size();
  const char head[9] = {static_cast<char>(n >> 16),     static_cast<char>(n >> 8),
                        static_cast<char>(n),           static_cast<char>(type),
                        static_cast<char>(flags),       static_cast<char>(stream >> 24),
                        static_cast<char>(stream >> 16), static_cast<char>(stream >> 8),
                        static_cast<char>(stream)};
  out.append(head, 9);
  out.append(payload);
}

// HPACK blocks of the static table's entries and literals: :method, :scheme http, :path,
// :authority "x".
std::string_view Canned(uint8_t which) {
  static const std::string blocks[] = {
      std::string("\x82\x86\x84\x41\x01x", 6),
      std::string("\x83\x86\x44\x05/echo\x41\x01x", 12),
      std::string("\x83\x86\x44\x05/read\x41\x01x", 12),
      std::string("\x82\x86\x44\x07/stream\x41\x01x", 14),
  };
  return blocks[which & 3];
}

std::string Encode(FuzzedDataProvider& in) {
  std::string out;
  while (in.remaining_bytes() > 0) {
    uint8_t type = in.ConsumeIntegral<uint8_t>();
    const uint8_t flags = in.ConsumeIntegral<uint8_t>();
    const uint32_t stream = in.ConsumeIntegral<uint8_t>();
    size_t length = in.ConsumeIntegral<uint8_t>();
    if (length == 255) length = in.remaining_bytes();
    std::string payload = in.ConsumeBytesAsString(length);
    if (type >= 0xf0) {
      payload = std::string(Canned(type)) + payload;
      type = 1;  // HEADERS
    }
    AppendFrame(out, type, flags, stream, payload);
  }
  return out;
}

// Aborts unless `out` is whole frames a server may send, none but a stream's after GOAWAY.
void CheckFrames(std::string_view out, bool* goaway) {
  while (!out.empty()) {
    if (out.size() < 9) std::abort();
    const size_t length = (static_cast<uint8_t>(out[0]) << 16) |
                          (static_cast<uint8_t>(out[1]) << 8) | static_cast<uint8_t>(out[2]);
    const uint8_t type = static_cast<uint8_t>(out[3]);
    const uint32_t stream = ((static_cast<uint8_t>(out[5]) & 0x7fu) << 24) |
                            (static_cast<uint8_t>(out[6]) << 16) |
                            (static_cast<uint8_t>(out[7]) << 8) | static_cast<uint8_t>(out[8]);
    if (out.size() < 9 + length || length > 16384) std::abort();
    const bool on_stream = type == 0 || type == 1 || type == 3 || type == 9;
    const bool on_connection = type == 4 || type == 6 || type == 7;
    if (type == 5 || type > 9) std::abort();  // no PUSH_PROMISE, no unknown type
    if (on_stream && (stream == 0 || stream % 2 == 0)) std::abort();
    if (on_connection && stream != 0) std::abort();
    if (*goaway && type != 0 && type != 1 && type != 3 && type != 8) std::abort();
    if (type == 7) *goaway = true;
    out.remove_prefix(9 + length);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  const uint8_t options = provider.ConsumeIntegral<uint8_t>();
  std::mt19937 sizes(provider.ConsumeIntegral<uint32_t>());
  std::string stream(kPreface);
  AppendFrame(stream, 4, 0, 0, {});  // SETTINGS
  stream += (options & 1) != 0 ? Encode(provider) : provider.ConsumeRemainingBytesAsString();
  LoopHarness& harness = Harness();
  Connection* c = harness.Accept();
  if (c == nullptr) std::abort();
  std::string out;
  for (size_t at = 0; at < stream.size() && !harness.Closing(c);) {
    const size_t n = std::uniform_int_distribution<size_t>(1, 64)(sizes);
    // A copy each time, as a receive buffer would be: no view may outlive its read.
    harness.Feed(c, std::string(stream.substr(at, n)));
    harness.RunUntil([] { return true; }, absl::Seconds(1));
    out += harness.TakeOutput(c);
    at += n;
  }
  if (!harness.Closing(c)) {
    harness.ExpireDeadline(c);
    out += harness.TakeOutput(c);
  }
  bool goaway = false;
  CheckFrames(out, &goaway);
  harness.Release(c);
  return 0;
}
