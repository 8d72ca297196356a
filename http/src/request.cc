#include "percore/http/request.h"

#include <nlohmann/json.hpp>

#include "ascii.h"
#include "codec.h"
#include "http_stream.h"
#include "percore/http/router.h"

namespace percore::http {

std::string_view Request::Header(std::string_view name) const {
  for (const HeaderField& field : headers_) {
    if (EqualsIgnoreCase(field.name, name)) return field.value;
  }
  return {};
}

bool Request::HasHeader(std::string_view name) const {
  for (const HeaderField& field : headers_) {
    if (EqualsIgnoreCase(field.name, name)) return true;
  }
  return false;
}

std::string_view Request::Decoded(std::string_view raw, bool plus_is_space) const {
  if (!NeedsDecoding(raw, plus_is_space)) return raw;
  std::string& copy = decoded_.emplace_front();
  // The session checked the encoding before any handler ran.
  PercentDecode(raw, plus_is_space, &copy);
  return copy;
}

std::string_view Request::Param(std::string_view name) const {
  for (const RouteParam& param : params_) {
    // RFC 3986: '+' is a plain sub-delim in a path; only a query gives it the form meaning.
    if (param.name == name) return Decoded(param.value, /*plus_is_space=*/false);
  }
  return {};
}

std::string_view Request::Query(std::string_view name) const {
  std::string_view rest = query_, key, value;
  while (NextQueryPair(&rest, &key, &value)) {
    if (Decoded(key, true) == name) return Decoded(value, true);
  }
  return {};
}

std::vector<std::string_view> Request::QueryAll(std::string_view name) const {
  std::vector<std::string_view> values;
  std::string_view rest = query_, key, value;
  while (NextQueryPair(&rest, &key, &value)) {
    if (Decoded(key, true) == name) values.push_back(Decoded(value, true));
  }
  return values;
}

std::string_view Request::Cookie(std::string_view name) const {
  // A client may split its cookies over several Cookie fields (HTTP/2 does; RFC 6265 says one).
  for (const HeaderField& field : headers_) {
    if (!EqualsIgnoreCase(field.name, "cookie")) continue;
    std::string_view value = FindCookie(field.value, name);
    if (!value.empty()) return value;
  }
  return {};
}

nlohmann::json Request::Json() const {
  std::string_view type = Header("content-type");
  type = TrimOws(type.substr(0, type.find(';')));
  const bool json = EqualsIgnoreCase(type, "application/json") ||
                    (type.size() > 5 && EqualsIgnoreCase(type.substr(type.size() - 5), "+json"));
  if (!json) throw HttpError(415, "the body must be application/json");
  nlohmann::json value = nlohmann::json::parse(body_, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) throw HttpError(400, "the body is not valid JSON");
  return value;
}

PeerAddress Request::client() const {
  PeerAddress from = conn_->client();
  return stream_ != nullptr ? stream_->Client(*this, std::move(from)) : from;
}

}  // namespace percore::http
