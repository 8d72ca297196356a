#include "ws_handshake.h"

#include <algorithm>
#include <functional>

#include "absl/strings/escaping.h"
#include "ascii.h"

namespace percore::http::ws {
namespace {

uint32_t RotateLeft(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

// One 64-byte block into the state (RFC 3174 6.1).
void Sha1Block(const unsigned char* block, uint32_t h[5]) {
  uint32_t w[80];
  for (int t = 0; t < 16; ++t) {
    w[t] = (uint32_t{block[4 * t]} << 24) | (uint32_t{block[4 * t + 1]} << 16) |
           (uint32_t{block[4 * t + 2]} << 8) | uint32_t{block[4 * t + 3]};
  }
  for (int t = 16; t < 80; ++t) w[t] = RotateLeft(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int t = 0; t < 80; ++t) {
    uint32_t f, k;
    if (t < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (t < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    const uint32_t temp = RotateLeft(a, 5) + f + e + w[t] + k;
    e = d;
    d = c;
    c = RotateLeft(b, 30);
    b = a;
    a = temp;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

// Calls `fn` with each token of every line of the field `name`, a comma-separated list.
void ForEachToken(std::span<const HeaderField> fields, std::string_view name,
                  const std::function<void(std::string_view)>& fn) {
  for (const HeaderField& field : fields) {
    if (!EqualsIgnoreCase(field.name, name)) continue;
    std::string_view rest = field.value;
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view token = TrimOws(rest.substr(0, comma));
      if (!token.empty()) fn(token);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
}

bool HasToken(std::span<const HeaderField> fields, std::string_view name, std::string_view want) {
  bool found = false;
  ForEachToken(fields, name,
               [&](std::string_view token) { found = found || EqualsIgnoreCase(token, want); });
  return found;
}

// The value of the field `name` if it appears exactly once, else empty.
std::string_view OnlyValue(std::span<const HeaderField> fields, std::string_view name) {
  std::string_view value;
  int seen = 0;
  for (const HeaderField& field : fields) {
    if (EqualsIgnoreCase(field.name, name)) {
      value = field.value;
      ++seen;
    }
  }
  return seen == 1 ? TrimOws(value) : std::string_view();
}

Handshake Refuse(int status, std::string_view why) {
  Handshake h;
  h.status = status;
  h.error = why;
  return h;
}

}  // namespace

std::array<uint8_t, 20> Sha1(std::string_view data) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t left = data.size();
  for (; left >= 64; left -= 64, p += 64) Sha1Block(p, h);
  // The last block(s): the rest, a 1 bit, zeros, and the length in bits (6.1's padding).
  unsigned char tail[128] = {};
  std::copy(p, p + left, tail);
  tail[left] = 0x80;
  const size_t tail_size = left < 56 ? 64 : 128;
  const uint64_t bits = uint64_t{data.size()} * 8;
  for (int i = 0; i < 8; ++i) tail[tail_size - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  for (size_t at = 0; at < tail_size; at += 64) Sha1Block(tail + at, h);
  std::array<uint8_t, 20> digest;
  for (int i = 0; i < 20; ++i) digest[i] = static_cast<uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
  return digest;
}

std::string AcceptKey(std::string_view client_key) {
  std::string keyed(client_key);
  keyed.append("258EAFA5-E914-47DA-95CA-C5AB0DC85B11");  // RFC 6455 1.3's GUID
  const std::array<uint8_t, 20> digest = Sha1(keyed);
  // Debian's Abseil has a string_view of its own.
  return absl::Base64Escape(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

Handshake CheckHandshake(std::string_view method, int minor_version,
                         std::span<const HeaderField> fields,
                         std::span<const std::string> protocols) {
  if (method != "GET" || minor_version < 1) {
    return Refuse(400, "a WebSocket handshake is a GET in HTTP/1.1");
  }
  if (!HasToken(fields, "upgrade", "websocket") || !HasToken(fields, "connection", "upgrade")) {
    return Refuse(400, "a WebSocket handshake says Upgrade: websocket and Connection: Upgrade");
  }
  if (OnlyValue(fields, "sec-websocket-version") != "13") {
    return Refuse(426, "this server speaks WebSocket version 13");
  }
  const std::string_view key = OnlyValue(fields, "sec-websocket-key");
  std::string nonce;
  if (key.size() != 24 ||
      !absl::Base64Unescape(absl::string_view(key.data(), key.size()), &nonce) ||
      nonce.size() != 16) {
    return Refuse(400, "Sec-WebSocket-Key is not the base64 of 16 bytes");
  }
  Handshake h;
  h.status = 101;
  h.accept = AcceptKey(key);
  ForEachToken(fields, "sec-websocket-protocol", [&](std::string_view offered) {
    if (!h.protocol.empty()) return;
    for (const std::string& ours : protocols) {
      if (offered == ours) {
        h.protocol = ours;
        return;
      }
    }
  });
  return h;
}

namespace {

// One extension parameter's value: a token, or a quoted-string unquoted (RFC 6455 9.1); false for
// neither.
bool ParamValue(std::string_view raw, std::string* value) {
  value->clear();
  if (raw.size() >= 2 && raw.front() == '"' && raw.back() == '"') {
    for (size_t i = 1; i + 1 < raw.size(); ++i) {
      if (raw[i] == '\\' && i + 2 < raw.size()) ++i;
      value->push_back(raw[i]);
    }
  } else {
    value->assign(raw);
  }
  if (value->empty()) return false;
  for (char c : *value) {
    if (!In(kToken, c)) return false;
  }
  return true;
}

// Window bits 8..15, in the fewest digits (no sign, no leading zero).
int WindowBits(std::string_view v) {
  if (v.size() == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
  return 0;
}

// One offer ("permessage-deflate; a; b=1", the extension's name already taken off) against the
// server's mode: the agreement, or nothing if the offer is invalid or cannot be honoured.
std::optional<Deflate> Agree(std::string_view params, WsCompression mode) {
  bool server_no_takeover = false, client_no_takeover = false;
  bool seen_server_bits = false, seen_client_bits = false;
  int server_bits = 15;
  std::string value;
  while (!params.empty()) {
    const size_t semi = params.find(';');
    const std::string_view param = TrimOws(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    const size_t eq = param.find('=');
    const std::string_view name = TrimOws(param.substr(0, eq));
    const bool has_value = eq != std::string_view::npos;
    if (has_value && !ParamValue(TrimOws(param.substr(eq + 1)), &value)) return std::nullopt;
    if (EqualsIgnoreCase(name, "server_no_context_takeover") && !has_value && !server_no_takeover) {
      server_no_takeover = true;
    } else if (EqualsIgnoreCase(name, "client_no_context_takeover") && !has_value &&
               !client_no_takeover) {
      client_no_takeover = true;
    } else if (EqualsIgnoreCase(name, "server_max_window_bits") && has_value && !seen_server_bits &&
               WindowBits(value) != 0) {
      seen_server_bits = true;
      server_bits = WindowBits(value);
    } else if (EqualsIgnoreCase(name, "client_max_window_bits") && !seen_client_bits &&
               (!has_value || WindowBits(value) != 0)) {
      seen_client_bits = true;  // we inflate with the largest window: any of the client's fits
    } else {
      return std::nullopt;
    }
  }
  if (server_bits < 9) return std::nullopt;
  Deflate d;
  d.server_max_window_bits = server_bits;
  // Shared: both sides start every message afresh, so one deflater and inflater serve a loop.
  d.server_no_context_takeover = server_no_takeover || mode == WsCompression::kShared;
  d.client_no_context_takeover = client_no_takeover || mode == WsCompression::kShared;
  d.response = "permessage-deflate";
  if (d.server_no_context_takeover) d.response += "; server_no_context_takeover";
  if (d.client_no_context_takeover) d.response += "; client_no_context_takeover";
  if (seen_server_bits) d.response += "; server_max_window_bits=" + std::to_string(server_bits);
  return d;
}

}  // namespace

std::optional<Deflate> NegotiateDeflate(std::span<const HeaderField> fields, WsCompression mode) {
  if (mode == WsCompression::kOff) return std::nullopt;
  std::optional<Deflate> agreed;
  ForEachToken(fields, "sec-websocket-extensions", [&](std::string_view extension) {
    if (agreed.has_value()) return;
    const size_t semi = extension.find(';');
    if (!EqualsIgnoreCase(TrimOws(extension.substr(0, semi)), "permessage-deflate")) return;
    agreed = Agree(semi == std::string_view::npos ? std::string_view() : extension.substr(semi + 1),
                   mode);
  });
  return agreed;
}

}  // namespace percore::http::ws
