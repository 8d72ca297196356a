// percore/ip_address.h — IPv4 and IPv6 addresses as values: parsed from text, printed in their
// canonical form, compared. Pure functions: no sockets, no state, no exceptions. The engine
// reads the PROXY protocol header with them (EngineOptions::proxy_protocol); percore::http
// matches X-Forwarded-For against trusted ranges with them.
//
//   percore::IpAddress a;
//   if (percore::ParseIp("::ffff:192.0.2.1", &a)) {
//     std::string text = percore::FormatIp(a);  // "192.0.2.1"
//   }
//
// Everything here is thread-safe.
#ifndef PERCORE_IP_ADDRESS_H_
#define PERCORE_IP_ADDRESS_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace percore {

// An IPv4 or IPv6 address in network byte order. An IPv4 address uses bytes[0..3] and leaves
// the rest zero. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291 2.5.5.2) are stored as
// the IPv4 address they map: a dual-stack socket reports IPv4 clients that way, and a trust
// list written as "10.0.0.0/8" must still match them.
struct IpAddress {
  uint8_t bytes[16] = {};
  bool v4 = false;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// Parses a plain IPv4 ("192.0.2.1", four decimal parts without leading zeros) or IPv6
// ("2001:db8::1", "::ffff:192.0.2.1") literal with inet_pton. No brackets, ports, zone ids
// ("fe80::1%eth0") or surrounding whitespace. *out is written only on success.
bool ParseIp(std::string_view text, IpAddress* out);

// The canonical text form (RFC 5952 for IPv6; a mapped address prints as plain IPv4).
std::string FormatIp(const IpAddress& address);

// The address of 4 (IPv4) or 16 (IPv6) bytes in network byte order, as sockets and the PROXY
// protocol v2 carry it; an IPv4-mapped IPv6 address becomes the IPv4 address it maps.
IpAddress IpFromBytes(const uint8_t* bytes, bool v6);

// Parses a TCP port, 0..65535 in decimal without leading zeros ("0", but not "00" or "080"), as
// the PROXY protocol v1 requires (to avoid octal confusion) and proxies write X-Forwarded-For
// entries. *port is written only on success.
bool ParsePort(std::string_view text, uint16_t* port);

}  // namespace percore

#endif  // PERCORE_IP_ADDRESS_H_
