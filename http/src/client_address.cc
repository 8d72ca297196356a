#include "client_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "ascii.h"

namespace percore::http {
namespace {

bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// ::ffff:a.b.c.d becomes a.b.c.d (RFC 4291 2.5.5.2); see IpAddress.
void UnmapV4(IpAddress* address) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (address->v4 || std::memcmp(address->bytes, kMappedPrefix, sizeof(kMappedPrefix)) != 0) {
    return;
  }
  std::memmove(address->bytes, address->bytes + 12, 4);
  std::memset(address->bytes + 4, 0, 12);
  address->v4 = true;
}

// inet_pton of one family. It wants a NUL-terminated string and would stop at an embedded NUL,
// accepting "1.2.3.4\0junk", so those are refused first.
bool ParseFamily(std::string_view text, bool v6, IpAddress* out) {
  char buffer[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buffer) || text.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress address;
  if (inet_pton(v6 ? AF_INET6 : AF_INET, buffer, address.bytes) != 1) return false;
  address.v4 = !v6;
  UnmapV4(&address);
  *out = address;
  return true;
}

// Decimal 0..65535 without leading zeros (so "0" but not "00" or "080").
bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  uint32_t value = 0;
  for (char c : text) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

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
  const bool v6_text = host.find(':') != std::string_view::npos;
  if (bracketed && !v6_text) return false;
  if (!ParseFamily(host, v6_text, address)) return false;
  *text = host;
  return true;
}

// ---- PROXY protocol version 1.

constexpr size_t kV1MaxLength = 107;  // "PROXY UNKNOWN <v6> <v6> 65535 65535\r\n"

bool IsPrefixOf(std::string_view prefix, std::string_view word) {
  return prefix.size() <= word.size() && word.substr(0, prefix.size()) == prefix;
}

enum class V1Family { kUnset, kTcp4, kTcp6 };

// Checks a v1 line without its CRLF. With `complete` false the line is what has arrived so far
// and its last field may still grow, so that field only has to be a plausible start; every
// field followed by a space is final and checked fully either way.
bool ParseV1Line(std::string_view line, bool complete, ProxyHeader* header) {
  // The spec allows no CR or LF but the final CRLF, not even for UNKNOWN.
  if (line.find_first_of("\r\n") != std::string_view::npos) return false;
  V1Family family = V1Family::kUnset;
  IpAddress address;
  std::string_view rest = line;
  for (int field = 0;; ++field) {
    const size_t space = rest.find(' ');
    const std::string_view text = rest.substr(0, space);
    const bool partial = space == std::string_view::npos && !complete;
    switch (field) {
      case 0:
        if (partial ? !IsPrefixOf(text, "PROXY") : text != "PROXY") return false;
        break;
      case 1:
        if (partial) {
          return IsPrefixOf(text, "TCP4") || IsPrefixOf(text, "TCP6") ||
                 IsPrefixOf(text, "UNKNOWN");
        }
        // "UNKNOWN": the receiver must ignore whatever precedes the CRLF.
        if (text == "UNKNOWN") {
          header->local = true;
          return true;
        }
        if (text == "TCP4") {
          family = V1Family::kTcp4;
        } else if (text == "TCP6") {
          family = V1Family::kTcp6;
        } else {
          return false;
        }
        break;
      case 2:
      case 3: {
        const bool v6 = family == V1Family::kTcp6;
        if (partial) {
          // "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is the longest IPv6 text.
          if (text.size() > (v6 ? 45u : 15u)) return false;
          for (char c : text) {
            if (!(IsDigit(c) || c == '.' || (v6 && (c == ':' || IsHexDigit(c))))) return false;
          }
          return true;
        }
        if (!ParseFamily(text, v6, &address)) return false;
        (field == 2 ? header->source_ip : header->dest_ip) = FormatIp(address);
        break;
      }
      case 4:
      case 5: {
        uint16_t port = 0;
        if (partial) return text.empty() || ParsePort(text, &port);
        if (!ParsePort(text, &port)) return false;
        (field == 4 ? header->source_port : header->dest_port) = port;
        break;
      }
      default:
        return false;  // a seventh field
    }
    if (space == std::string_view::npos) return !complete || field == 5;
    rest.remove_prefix(space + 1);
  }
}

ProxyParse ParseV1(std::string_view bytes, ProxyHeader* out, size_t* consumed) {
  const size_t end = bytes.substr(0, kV1MaxLength).find("\r\n");
  if (end == std::string_view::npos) {
    // Not complete yet: give up once the line cannot end within the limit, or as soon as
    // what is there cannot begin a header.
    if (bytes.size() >= kV1MaxLength) return ProxyParse::kBad;
    std::string_view line = bytes;
    if (line.back() == '\r') line.remove_suffix(1);
    ProxyHeader ignored;
    return ParseV1Line(line, /*complete=*/false, &ignored) ? ProxyParse::kMore : ProxyParse::kBad;
  }
  ProxyHeader header;
  if (!ParseV1Line(bytes.substr(0, end), /*complete=*/true, &header)) return ProxyParse::kBad;
  *out = std::move(header);
  *consumed = end + 2;
  return ProxyParse::kDone;
}

// ---- PROXY protocol version 2.

constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr size_t kV2FixedLength = 16;  // signature, version/command, family, length
constexpr size_t kV2MaxAddressLength = 2048;

ProxyParse ParseV2(std::string_view bytes, ProxyHeader* out, size_t* consumed) {
  const size_t signature_seen = std::min(bytes.size(), sizeof(kV2Signature));
  if (std::memcmp(bytes.data(), kV2Signature, signature_seen) != 0) return ProxyParse::kBad;
  if (bytes.size() < 13) return ProxyParse::kMore;

  // High nibble: version, which must be 2. Low nibble: 0 LOCAL, 1 PROXY; others are unassigned
  // and must be dropped.
  const uint8_t version_command = static_cast<uint8_t>(bytes[12]);
  if (version_command != 0x20 && version_command != 0x21) return ProxyParse::kBad;
  const bool local = version_command == 0x20;
  if (bytes.size() < 14) return ProxyParse::kMore;

  // High nibble: address family (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX); low nibble: transport
  // (0 UNSPEC, 1 STREAM, 2 DGRAM). For LOCAL the spec says to ignore it altogether.
  const uint8_t family = static_cast<uint8_t>(bytes[13]);
  size_t address_block = 0;
  bool tcp = false;
  if (!local) {
    switch (family) {
      case 0x11:  // TCP over IPv4: two addresses and two ports
        address_block = 4 + 4 + 2 + 2;
        tcp = true;
        break;
      case 0x21:  // TCP over IPv6
        address_block = 16 + 16 + 2 + 2;
        tcp = true;
        break;
      case 0x00:  // UNSPEC
      case 0x12:  // UDP over IPv4
      case 0x22:  // UDP over IPv6
      case 0x31:  // UNIX stream
      case 0x32:  // UNIX datagram
        break;
      default:
        return ProxyParse::kBad;
    }
  }
  if (bytes.size() < kV2FixedLength) return ProxyParse::kMore;

  const size_t length =
      static_cast<size_t>(static_cast<uint8_t>(bytes[14])) << 8 | static_cast<uint8_t>(bytes[15]);
  if (length > kV2MaxAddressLength || length < address_block) return ProxyParse::kBad;
  if (bytes.size() < kV2FixedLength + length) return ProxyParse::kMore;

  ProxyHeader header;
  if (tcp) {
    const bool v6 = family == 0x21;
    const size_t address_size = v6 ? 16 : 4;
    const char* block = bytes.data() + kV2FixedLength;
    const auto address_at = [&](size_t offset) {
      IpAddress address;
      std::memcpy(address.bytes, block + offset, address_size);
      address.v4 = !v6;
      UnmapV4(&address);
      return FormatIp(address);
    };
    const auto port_at = [&](size_t offset) {
      return static_cast<uint16_t>(static_cast<uint8_t>(block[offset]) << 8 |
                                   static_cast<uint8_t>(block[offset + 1]));
    };
    header.source_ip = address_at(0);
    header.dest_ip = address_at(address_size);
    header.source_port = port_at(2 * address_size);
    header.dest_port = port_at(2 * address_size + 2);
  } else {
    header.local = true;
  }
  *out = std::move(header);
  *consumed = kV2FixedLength + length;  // TLVs, if any, are skipped with the addresses
  return ProxyParse::kDone;
}

}  // namespace

bool ParseIp(std::string_view text, IpAddress* out) {
  return ParseFamily(text, text.find(':') != std::string_view::npos, out);
}

std::string FormatIp(const IpAddress& address) {
  char buffer[INET6_ADDRSTRLEN];
  if (inet_ntop(address.v4 ? AF_INET : AF_INET6, address.bytes, buffer, sizeof(buffer)) ==
      nullptr) {
    return std::string();  // cannot happen with this buffer size
  }
  return std::string(buffer);
}

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

ProxyParse ParseProxyHeader(std::string_view bytes, ProxyHeader* out, size_t* consumed) {
  if (bytes.empty()) return ProxyParse::kMore;
  // The two versions differ from the first byte: 'P' of "PROXY" or CR of the v2 signature.
  if (bytes.front() == 'P') return ParseV1(bytes, out, consumed);
  if (bytes.front() == '\r') return ParseV2(bytes, out, consumed);
  return ProxyParse::kBad;
}

}  // namespace percore::http
