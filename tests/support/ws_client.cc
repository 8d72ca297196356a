#include "support/ws_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

namespace percore::testing {
namespace {

// RFC 6455's own example key and the Sec-WebSocket-Accept it must get (1.3).
constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
constexpr unsigned char kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

uint64_t BigEndian(const std::string& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

}  // namespace

uint16_t WsFrame::close_code() const {
  if (payload.size() < 2) return 1005;
  return static_cast<uint16_t>(BigEndian(payload, 0, 2));
}

std::string EncodeWsFrame(const WsFrameSpec& spec) {
  std::string out;
  out.push_back(static_cast<char>((spec.fin ? 0x80 : 0) | (spec.rsv1 ? 0x40 : 0) |
                                  (spec.rsv2 ? 0x20 : 0) | (spec.opcode & 0x0F)));
  const uint64_t n = spec.payload.size();
  const char mask_bit = spec.masked ? static_cast<char>(0x80) : 0;
  if (n < 126) {
    out.push_back(static_cast<char>(mask_bit | static_cast<char>(n)));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    for (int shift = 8; shift >= 0; shift -= 8) out.push_back(static_cast<char>(n >> shift));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(n >> shift));
  }
  if (!spec.masked) return out.append(spec.payload);
  out.append(reinterpret_cast<const char*>(kMask), 4);
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(spec.payload[i] ^ kMask[i % 4]));
  return out;
}

std::string ClosePayload(uint16_t code, std::string_view reason) {
  std::string out;
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code & 0xFF));
  return out.append(reason);
}

ClientDeflate::ClientDeflate() {
  deflateInit2(&out_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  inflateInit2(&in_, -15);
}

ClientDeflate::~ClientDeflate() {
  deflateEnd(&out_);
  inflateEnd(&in_);
}

std::string ClientDeflate::Compress(std::string_view message) {
  std::string out(message.size() + 1024, '\0');
  out_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  out_.avail_in = static_cast<uInt>(message.size());
  out_.next_out = reinterpret_cast<Bytef*>(out.data());
  out_.avail_out = static_cast<uInt>(out.size());
  deflate(&out_, Z_SYNC_FLUSH);
  out.resize(out.size() - out_.avail_out - 4);
  return out;
}

std::string ClientDeflate::Inflate(std::string payload) {
  payload.append("\x00\x00\xFF\xFF", 4);
  std::string out;
  in_.next_in = reinterpret_cast<Bytef*>(payload.data());
  in_.avail_in = static_cast<uInt>(payload.size());
  do {
    const size_t used = out.size();
    out.resize(used + (1 << 20));
    in_.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    in_.avail_out = 1 << 20;
    const int rc = inflate(&in_, Z_SYNC_FLUSH);
    out.resize(out.size() - in_.avail_out);
    if (rc != Z_OK) break;
  } while (in_.avail_in > 0 || in_.avail_out == 0);
  return out;
}

WsClient::WsClient(int port, std::string_view path, std::string_view extra_fields,
                   std::string_view after)
    : socket_(ConnectLocal(port)) {
  if (!socket_.ok()) return;
  std::string request = "GET " + std::string(path) +
                        " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: " +
                        std::string(kKey) + "\r\nSec-WebSocket-Version: 13\r\n";
  request.append(extra_fields).append("\r\n").append(after);
  if (!SendAll(socket_.fd(), request)) return;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill(deadline)) return;
  }
  head_ = buffer_.substr(0, end + 2);
  buffer_.erase(0, end + 4);
  upgraded_ =
      head_.starts_with("HTTP/1.1 101 ") &&
      head_.find("\r\nSec-WebSocket-Accept: " + std::string(kAccept) + "\r\n") != std::string::npos;
}

bool WsClient::Fill(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{socket_.fd(), POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char chunk[65536];
  const ssize_t n = recv(socket_.fd(), chunk, sizeof(chunk), 0);
  if (n <= 0) return false;
  buffer_.append(chunk, static_cast<size_t>(n));
  return true;
}

std::optional<WsFrame> WsClient::Read(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (buffer_.size() >= 2) {
      const size_t length7 = static_cast<unsigned char>(buffer_[1]) & 0x7F;
      const size_t header = length7 == 126 ? 4 : length7 == 127 ? 10 : 2;
      if (buffer_.size() >= header) {
        const uint64_t length = header == 2 ? length7 : BigEndian(buffer_, 2, header - 2);
        if (buffer_.size() >= header + length) {
          WsFrame frame;
          const auto first = static_cast<unsigned char>(buffer_[0]);
          frame.fin = (first & 0x80) != 0;
          frame.rsv1 = (first & 0x40) != 0;
          frame.opcode = first & 0x0F;
          frame.payload = buffer_.substr(header, length);
          buffer_.erase(0, header + length);
          return frame;
        }
      }
    }
    if (!Fill(deadline)) return std::nullopt;
  }
}

std::optional<std::string> WsClient::ReadMessage(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    std::optional<WsFrame> frame = Read(left);
    if (!frame.has_value() || frame->opcode == 8) return std::nullopt;
    if (frame->opcode == 1 || frame->opcode == 2) return frame->payload;
  }
}

std::optional<uint16_t> WsClient::ReadClose(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    std::optional<WsFrame> frame = Read(left);
    if (!frame.has_value()) return std::nullopt;
    if (frame->opcode == 8) return frame->close_code();
  }
}

bool WsClient::WaitEnd(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{socket_.fd(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) <= 0) continue;
    char chunk[4096];
    const ssize_t n = recv(socket_.fd(), chunk, sizeof(chunk), 0);
    if (n <= 0) return true;  // EOF or reset
    buffer_.append(chunk, static_cast<size_t>(n));
  }
  return false;
}

}  // namespace percore::testing
