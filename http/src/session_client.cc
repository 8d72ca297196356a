// Who the client of a connection is: the PROXY protocol header a proxy put before its first
// request (HttpOptions::proxy_protocol), and X-Forwarded-For from proxies that are trusted.
#include "absl/container/inlined_vector.h"
#include "ascii.h"
#include "session.h"

namespace percore::http {

PeerAddress HttpSession::Client(const Request& req) const {
  PeerAddress from;
  const ProxyState* proxy = nullptr;
  if (protocol_.proxy_protocol_) {
    auto it = protocol_.proxies_.find(this);
    if (it != protocol_.proxies_.end()) proxy = &it->second;
  }
  if (proxy != nullptr && !proxy->header.local) {
    from.ip = proxy->header.source_ip;
    from.port = proxy->header.source_port;
  } else {
    from = req.peer();
  }
  const std::vector<Cidr>& trusted = protocol_.config_->trusted;
  if (trusted.empty()) return from;
  absl::InlinedVector<std::string_view, 2> forwarded;
  for (const HeaderField& field : req.headers()) {
    if (EqualsIgnoreCase(field.name, "x-forwarded-for")) forwarded.push_back(field.value);
  }
  if (forwarded.empty()) return from;
  const std::string_view client = ClientFromForwardedFor(forwarded, trusted, from.ip);
  if (client == from.ip) return from;
  return PeerAddress{std::string(client), 0};
}

size_t HttpSession::TakeProxyHeader(ProxyState& p, Connection& conn, std::string_view bytes) {
  const size_t before = p.held.size();  // header bytes of earlier reads
  if (before != 0) p.held.append(bytes);
  size_t consumed = 0;
  switch (ParseProxyHeader(before != 0 ? std::string_view(p.held) : bytes, &p.header, &consumed)) {
    case ProxyParse::kMore:
      if (before == 0) p.held.assign(bytes);
      return bytes.size();
    case ProxyParse::kBad:
      // Not from the proxy (or a broken one): nothing it sent can be trusted or answered.
      conn.Close();
      return bytes.size();
    case ProxyParse::kDone:
      break;
  }
  p.done = true;
  std::string().swap(p.held);
  return consumed - before;
}

}  // namespace percore::http
