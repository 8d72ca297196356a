#include "client_address.h"

#include <algorithm>
#include <cstring>

#include "ascii.h"

namespace percore::http {
namespace {

bool IsTrusted(const IpAddress& address, std::span<const Cidr> trusted) {
  return std::any_of(trusted.begin(), trusted.end(),
                     [&](const Cidr& range) { return CidrContains(range, address); });
}

// One X-Forwarded-For entry: a plain address, "v4:port", "[v6]" or "[v6]:port". *text is the
// address part. A bracketed IPv4 is refused; so is a port on an unbracketed IPv6 address, since
// "2001:db8::1:80" reads as an address.
bool ParseForwardedEntry(std::string_view entry, std::string_view* text, IpAddress* address) {
  std::string_view host = entry;
  std::string_view port;
  bool bracketed = false;
  if (entry.front() == '[') {
    const size_t close = entry.find(']');
    if (close == std::string_view::npos) return false;
    host = entry.substr(1, close - 1);
    const std::string_view after = entry.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return false;
      port = after.substr(1);
      if (port.empty()) return false;
    }
    bracketed = true;
  } else if (const size_t colon = entry.find(':');
             colon != std::string_view::npos &&
             entry.find(':', colon + 1) == std::string_view::npos) {
    host = entry.substr(0, colon);  // exactly one ':': IPv4 with a port
    port = entry.substr(colon + 1);
    if (port.empty()) return false;
  }
  uint16_t port_number = 0;
  if (!port.empty() && !ParsePort(port, &port_number)) return false;
  if (bracketed && host.find(':') == std::string_view::npos) return false;
  if (!ParseIp(host, address)) return false;
  *text = host;
  return true;
}

}  // namespace

bool ParseCidr(std::string_view text, Cidr* out) {
  const size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  Cidr range;
  if (!ParseIp(address_text, &range.base)) return false;
  const bool mapped = range.base.v4 && address_text.find(':') != std::string_view::npos;
  range.prefix = range.base.v4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), IsDigit)) {
      return false;
    }
    int prefix = 0;
    for (char c : digits) prefix = prefix * 10 + (c - '0');
    if (mapped) {
      if (prefix < 96 || prefix > 128) return false;
      prefix -= 96;
    } else if (prefix > range.prefix) {
      return false;
    }
    range.prefix = prefix;
  }
  for (int i = 0; i < 16; ++i) {
    const int bits = std::clamp(range.prefix - 8 * i, 0, 8);
    range.base.bytes[i] &= static_cast<uint8_t>(0xff00 >> bits);
  }
  *out = range;
  return true;
}

bool CidrContains(const Cidr& range, const IpAddress& address) {
  if (range.base.v4 != address.v4) return false;
  const int full_bytes = range.prefix / 8;
  if (std::memcmp(range.base.bytes, address.bytes, static_cast<size_t>(full_bytes)) != 0) {
    return false;
  }
  const int rest_bits = range.prefix % 8;
  if (rest_bits == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest_bits);
  return (address.bytes[full_bytes] & mask) == range.base.bytes[full_bytes];
}

std::string_view ClientFromForwardedFor(std::span<const std::string_view> xff_values,
                                        std::span<const Cidr> trusted, std::string_view peer_ip) {
  IpAddress peer;
  if (!ParseIp(peer_ip, &peer) || !IsTrusted(peer, trusted)) return peer_ip;
  std::string_view last_trusted = peer_ip;
  for (size_t field = xff_values.size(); field-- > 0;) {
    std::string_view list = xff_values[field];
    while (!list.empty()) {
      const size_t comma = list.rfind(',');
      const std::string_view entry =
          TrimOws(comma == std::string_view::npos ? list : list.substr(comma + 1));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(0, comma);
      if (entry.empty()) continue;
      std::string_view text;
      IpAddress address;
      if (!ParseForwardedEntry(entry, &text, &address)) return last_trusted;
      if (!IsTrusted(address, trusted)) return text;
      last_trusted = text;
    }
  }
  return last_trusted;
}

}  // namespace percore::http
