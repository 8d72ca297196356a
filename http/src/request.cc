#include "percore/http/request.h"

#include "ascii.h"

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

std::string_view Request::Param(std::string_view name) const {
  for (const RouteParam& param : params_) {
    if (param.name == name) return param.value;
  }
  return {};
}

std::string_view Request::Query(std::string_view name) const {
  std::string_view rest = query_;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return {};
}

}  // namespace percore::http
