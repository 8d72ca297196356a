// The HAProxy PROXY protocol header (doc/proxy-protocol.txt), versions 1 and 2: what a proxy
// that passes TCP through (TLS included) sends first on each connection to say whom it is from
// (EngineOptions::proxy_protocol). A pure parser, and the per-connection state the loop keeps
// while it reads the header (loop_proxy.cc).
#ifndef PERCORE_SRC_PROXY_HEADER_H_
#define PERCORE_SRC_PROXY_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "percore/protocol.h"

namespace percore {

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
// the caller buffers the whole header before it can parse a byte of what follows, so a peer
// must not be able to make that buffer large (HAProxy bounds it by its own buffer size too).
ProxyParse ParseProxyHeader(std::string_view bytes, ProxyHeader* out, size_t* consumed);

// A connection's PROXY state (ConnectionState::proxy), from its accept to its release: kept
// after the header for Connection::client(), and as the mark of a connection whose header was
// read (a loop that dies must not hand it over: the successor would wait for another).
struct ProxyState {
  std::string held;    // the header's bytes so far, while it spans reads
  PeerAddress source;  // once done: the header's source, or an empty ip for LOCAL/UNKNOWN
  bool done = false;
};

}  // namespace percore

#endif  // PERCORE_SRC_PROXY_HEADER_H_
