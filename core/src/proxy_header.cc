#include "proxy_header.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "percore/ip_address.h"

namespace percore {
namespace {

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
            if (!(absl::ascii_isdigit(c) || c == '.' ||
                  (v6 && (c == ':' || absl::ascii_isxdigit(c)))))
              return false;
          }
          return true;
        }
        // Of the announced family: an IPv6 literal always has a ':', an IPv4 one never.
        if ((text.find(':') != std::string_view::npos) != v6 || !ParseIp(text, &address)) {
          return false;
        }
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
      return FormatIp(IpFromBytes(reinterpret_cast<const uint8_t*>(block + offset), v6));
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

ProxyParse ParseProxyHeader(std::string_view bytes, ProxyHeader* out, size_t* consumed) {
  if (bytes.empty()) return ProxyParse::kMore;
  // The two versions differ from the first byte: 'P' of "PROXY" or CR of the v2 signature.
  if (bytes.front() == 'P') return ParseV1(bytes, out, consumed);
  if (bytes.front() == '\r') return ParseV2(bytes, out, consumed);
  return ProxyParse::kBad;
}

}  // namespace percore
