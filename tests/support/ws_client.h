// A WebSocket client for the integration suites (RFC 6455 from the client's side): the opening
// handshake, masked frames built byte by byte (so that a test can also send what a real client
// never would), and frames read back with a deadline. Blocking, one connection per object.
#ifndef PERCORE_TESTS_SUPPORT_WS_CLIENT_H_
#define PERCORE_TESTS_SUPPORT_WS_CLIENT_H_

#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "support/test_client.h"

namespace percore::testing {

// One frame as the server sent it.
struct WsFrame {
  uint8_t opcode = 0;
  bool fin = false;
  bool rsv1 = false;
  std::string payload;
  // For a close frame: its code (1005 if it has none).
  uint16_t close_code() const;
};

// What goes into a frame the client sends.
struct WsFrameSpec {
  uint8_t opcode = 1;
  std::string_view payload;
  bool fin = true;
  bool rsv1 = false;
  bool rsv2 = false;
  bool masked = true;
};
// The bytes of a frame, masked with a fixed key unless `masked` is false.
std::string EncodeWsFrame(const WsFrameSpec& spec);
// A close frame's payload: the code, big-endian, then the reason.
std::string ClosePayload(uint16_t code, std::string_view reason = {});

// Raw deflate as a permessage-deflate client does it (RFC 7692 7.2.1): each message flushed
// (Z_SYNC_FLUSH) with the flush's last four bytes left off, the context kept from one message to
// the next; and the server's messages inflated back.
class ClientDeflate {
 public:
  ClientDeflate();
  ~ClientDeflate();
  ClientDeflate(const ClientDeflate&) = delete;
  ClientDeflate& operator=(const ClientDeflate&) = delete;
  std::string Compress(std::string_view message);
  std::string Inflate(std::string payload);

 private:
  z_stream out_{};
  z_stream in_{};
};

class WsClient {
 public:
  // Connects to 127.0.0.1:port and sends the opening handshake for `path` with `extra_fields`
  // (whole lines, each ending in CRLF), then `after` in the same write. Reads the answer's head.
  WsClient(int port, std::string_view path, std::string_view extra_fields = {},
           std::string_view after = {});
  // Whether the server answered 101 with the right Sec-WebSocket-Accept.
  bool upgraded() const { return upgraded_; }
  // The answer's status line and fields (up to the empty line).
  const std::string& head() const { return head_; }
  int fd() const { return socket_.fd(); }

  bool Send(const WsFrameSpec& spec) { return SendAll(socket_.fd(), EncodeWsFrame(spec)); }
  bool SendText(std::string_view text) { return Send({.opcode = 1, .payload = text}); }
  bool SendRaw(std::string_view bytes) { return SendAll(socket_.fd(), bytes); }
  // The next frame, or nullopt once the connection ends or `timeout` passes.
  std::optional<WsFrame> Read(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The next data frame's payload, answering nothing and skipping pings.
  std::optional<std::string> ReadMessage(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads up to a close frame and returns its code; nullopt if the connection ended (or the
  // timeout passed) without one. Data frames before it are skipped.
  std::optional<uint16_t> ReadClose(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Whether the server closed the TCP connection (EOF or reset) within `timeout`.
  bool WaitEnd(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  // Reads more bytes into buffer_; false on EOF, error or the deadline.
  bool Fill(std::chrono::steady_clock::time_point deadline);
  Socket socket_;
  std::string buffer_;
  std::string head_;
  bool upgraded_ = false;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_WS_CLIENT_H_
