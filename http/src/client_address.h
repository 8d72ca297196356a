// Who the client is when the server sits behind proxies: IP addresses and CIDR ranges, the
// X-Forwarded-For chain walked against a trusted-proxy list, and the HAProxy PROXY protocol
// header (versions 1 and 2). Pure functions: no sockets, no state, no exceptions.
#ifndef PERCORE_HTTP_SRC_CLIENT_ADDRESS_H_
#define PERCORE_HTTP_SRC_CLIENT_ADDRESS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace percore::http {

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

struct Cidr {
  IpAddress base;  // host bits cleared
  int prefix = 0;  // 0..32 for IPv4, 0..128 for IPv6
};

// Parses "10.0.0.0/8", "2001:db8::/32", or a bare address meaning /32 or /128. Host bits set
// in the address ("10.1.2.3/8") are accepted and cleared. The prefix is 1 to 3 decimal digits
// and at most 32 (IPv4) or 128 (IPv6). An IPv4-mapped base ("::ffff:10.0.0.0/104") becomes
// the IPv4 range (10.0.0.0/8); with a prefix under 96 it would span non-mapped IPv6 space,
// which this representation cannot hold, so it is rejected.
bool ParseCidr(std::string_view text, Cidr* out);

// Whether `address` is in `range`. IPv4 addresses (mapped ones included) never match IPv6
// ranges, not even ::/0, and IPv6 addresses never match IPv4 ranges.
bool CidrContains(const Cidr& range, const IpAddress& address);

// The client address for a request received from `peer_ip`, given the X-Forwarded-For field
// values in the order they arrived (a client may send several fields; they form one list,
// RFC 9110 5.3) and the proxies to trust, like Express's "trust proxy" with a subnet list:
//  - an untrusted (or unparsable) peer gets no say: the answer is peer_ip;
//  - otherwise the list is walked from the right (the last field's last entry, added by the
//    nearest proxy), skipping trusted entries, and the first untrusted entry is the client;
//    everything to its left was written by the client itself and may be forged;
//  - if every entry is trusted, the leftmost one;
//  - an entry that is not an address stops the walk and is not returned (it cannot be used as
//    an address): the answer is the last trusted hop seen, the entry to its right or the peer.
// Empty entries ("a,,b", a trailing comma) carry nothing and are skipped. Entries are trimmed
// of OWS and may carry a port the way some proxies write them: "192.0.2.1:8080",
// "[2001:db8::1]" and "[2001:db8::1]:8080" yield just the address. The result is a view into
// xff_values or peer_ip.
std::string_view ClientFromForwardedFor(std::span<const std::string_view> xff_values,
                                        std::span<const Cidr> trusted, std::string_view peer_ip);

// ---------------------------------------------------------------------------------------------
// PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions 1 and 2.

// Addresses are in FormatIp's canonical form (so an IPv4-mapped source reads "192.0.2.1").
struct ProxyHeader {
  bool local = false;  // v2 LOCAL or v1 UNKNOWN (and v2 non-TCP families): use the socket's peer
  std::string source_ip;
  uint16_t source_port = 0;
  std::string dest_ip;
  uint16_t dest_port = 0;
};

enum class ProxyParse { kMore, kDone, kBad };

// Parses the PROXY header at the start of a connection from the bytes received so far (the
// caller accumulates them and calls again after each read). kMore: what is there is a prefix
// of a valid header, read more. kDone: *out is filled and *consumed is the header's length;
// the application protocol starts right after. kBad: not a PROXY header (a plain
// "GET / HTTP/1.1" is kBad by its first byte), close the connection. *out and *consumed are
// written only for kDone.
//
// Version 1 is parsed strictly: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" with single
// spaces, addresses of the announced family, ports in 0..65535 written without leading zeros
// (as the spec requires, to avoid octal confusion), at most 107 bytes with the CRLF, and no CR
// or LF but the final CRLF. "PROXY UNKNOWN" followed by anything up to the CRLF is local.
// Version 2: command LOCAL (any family, ignored) is local; PROXY with TCP over IPv4 or IPv6
// fills the addresses; PROXY with UNSPEC, UDP or AF_UNIX is local, the fallback the spec
// allows for families a receiver does not implement (none of them can carry HTTP here). Other
// version, command or family values are kBad, as is an address length shorter than the
// family's address block. TLVs after the addresses are skipped. A length above 2048 is kBad:
// the caller buffers the whole header before it can parse a byte of HTTP, so a peer must not
// be able to make that buffer large (HAProxy bounds it by its own buffer size too).
ProxyParse ParseProxyHeader(std::string_view bytes, ProxyHeader* out, size_t* consumed);

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_CLIENT_ADDRESS_H_
