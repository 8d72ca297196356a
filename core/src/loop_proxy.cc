// EngineOptions::proxy_protocol: the PROXY header each connection starts with, taken off by the
// loop before anything else reads a byte. It has to be here, below TLS and the session: a proxy
// passing TLS through (HAProxy's `send-proxy-v2` on a `mode tcp` backend) sends the header
// first and the client's ClientHello after it, in the same read or not.
#include "loop.h"
#include "proxy_header.h"

namespace percore {

bool Loop::TakeProxyHeader(ConnectionState* c, std::string_view& bytes) {
  ProxyState& p = *c->proxy;
  // A header nearly always comes whole in the first read, and is parsed where it lies; only
  // one cut across reads is copied.
  const size_t before = p.held.size();
  if (before != 0) p.held.append(bytes);
  ProxyHeader header;
  size_t consumed = 0;
  switch (ParseProxyHeader(before != 0 ? std::string_view(p.held) : bytes, &header, &consumed)) {
    case ProxyParse::kMore:
      if (before == 0) p.held.assign(bytes);
      return false;
    case ProxyParse::kBad:
      // Not from the proxy (or a broken one): nothing it sent can be trusted or answered.
      RequestClose(c, true);
      return false;
    case ProxyParse::kDone:
      break;
  }
  p.done = true;
  if (!header.local) p.source = PeerAddress{std::move(header.source_ip), header.source_port};
  std::string().swap(p.held);
  // `before` bytes of the header came earlier, and what was there then was not all of it.
  bytes.remove_prefix(consumed - before);
  return !bytes.empty();
}

}  // namespace percore
