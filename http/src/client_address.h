// Who the client is when the server sits behind proxies that add X-Forwarded-For: CIDR ranges,
// and the chain walked against a trusted-proxy list (addresses: percore/ip_address.h; the PROXY
// protocol header is the engine's, EngineOptions::proxy_protocol). Pure functions: no sockets,
// no state, no exceptions.
#ifndef PERCORE_HTTP_SRC_CLIENT_ADDRESS_H_
#define PERCORE_HTTP_SRC_CLIENT_ADDRESS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "percore/ip_address.h"

namespace percore::http {

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

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_CLIENT_ADDRESS_H_
