// Who the client of a request is: the connection's client (the PROXY header's source, if the
// engine reads one: EngineOptions::proxy_protocol), and X-Forwarded-For from proxies that are
// trusted.
#include "absl/container/inlined_vector.h"
#include "ascii.h"
#include "session.h"

namespace percore::http {

PeerAddress HttpProtocol::Client(const Request& req, PeerAddress from) const {
  const std::vector<Cidr>& trusted = config_->trusted;
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

}  // namespace percore::http
