#include "percore/http/router.h"

#include <algorithm>
#include <stdexcept>

namespace percore::http {
namespace {

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c <= ' ' || c >= 127 || std::string_view("\"(),/:;<=>?@[\\]{}").find(c) != s.npos) {
      return false;
    }
  }
  return true;
}

}  // namespace

const Router::Target* Router::Entry::Find(std::string_view method) const {
  for (const auto& [m, h] : by_method) {
    if (m == method) return &h;
  }
  if (method == "HEAD") {
    for (const auto& [m, h] : by_method) {
      if (m == "GET") return &h;
    }
  }
  return has_any ? &any : nullptr;
}

std::string_view Router::Normalize(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

void Router::Add(std::string_view method, std::string_view pattern, Handler handler,
                 RouteOptions options) {
  if (method != "*" && !IsToken(method)) {
    throw std::invalid_argument("invalid method \"" + std::string(method) + "\"");
  }
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route \"" + std::string(pattern) + "\" must start with '/'");
  }
  if (!handler) throw std::invalid_argument("route \"" + std::string(pattern) + "\": no handler");
  pattern = Normalize(pattern);
  if (!options.stream_body && options.max_body_bytes > (size_t{1} << 30)) {
    // A body that is not streamed is held whole in memory.
    throw std::invalid_argument("route \"" + std::string(pattern) +
                                "\": max_body_bytes over 1 GiB needs stream_body");
  }
  if (options.stream_body || options.max_body_bytes != 0) has_body_options_ = true;
  Target target{std::move(handler), options};
  Entry* entry = nullptr;
  if (pattern.find("/:") == std::string_view::npos) {
    entry = &exact_[std::string(pattern)];
  } else {
    std::vector<std::string> segments;
    std::string_view rest = pattern.substr(1);
    while (true) {
      size_t slash = rest.find('/');
      std::string_view segment = rest.substr(0, slash);
      if (segment == ":" || (segment.size() > 1 && segment[0] == ':' &&
                             segment.find(':', 1) != std::string_view::npos)) {
        throw std::invalid_argument("route \"" + std::string(pattern) + "\": bad parameter");
      }
      segments.emplace_back(segment);
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    for (Pattern& p : patterns_) {
      if (p.segments == segments) entry = &p.entry;
    }
    if (entry == nullptr) {
      patterns_.push_back(Pattern{std::move(segments), Entry{}});
      entry = &patterns_.back().entry;
    }
  }
  if (method == "*") {
    if (entry->has_any) throw std::invalid_argument("duplicate route * " + std::string(pattern));
    entry->any = std::move(target);
    entry->has_any = true;
    return;
  }
  for (const auto& existing : entry->by_method) {
    if (existing.first == method) {
      throw std::invalid_argument("duplicate route " + std::string(method) + " " +
                                  std::string(pattern));
    }
  }
  entry->by_method.emplace_back(std::string(method), std::move(target));
}

bool Router::MatchPattern(const Pattern& p, std::string_view path,
                          std::vector<RouteParam>* params) {
  // Patterns start with '/'; "", "*" (OPTIONS) or "host:443" (CONNECT) match none.
  if (path.empty() || path.front() != '/') return false;
  const size_t first_param = params->size();
  std::string_view rest = path.substr(1);
  for (size_t i = 0; i < p.segments.size(); ++i) {
    size_t slash = rest.find('/');
    const bool last = i + 1 == p.segments.size();
    if (last != (slash == std::string_view::npos)) break;
    std::string_view segment = rest.substr(0, slash);
    const std::string& want = p.segments[i];
    if (!want.empty() && want[0] == ':') {
      if (segment.empty()) break;
      params->push_back(RouteParam{std::string_view(want).substr(1), segment});
    } else if (segment != want) {
      break;
    }
    if (last) return true;
    rest.remove_prefix(slash + 1);
  }
  params->resize(first_param);
  return false;
}

template <typename Visit>
void Router::ForEachMatch(std::string_view path, std::vector<RouteParam>* params,
                          Visit visit) const {
  path = Normalize(path);
  auto it = exact_.find(path);
  if (it != exact_.end() && visit(it->second)) return;
  for (const Pattern& p : patterns_) {
    const size_t first_param = params->size();
    if (!MatchPattern(p, path, params)) continue;
    if (visit(p.entry)) return;
    params->resize(first_param);  // not this one: its parameters go
  }
}

Router::Result Router::Route(std::string_view method, std::string_view path,
                             std::vector<RouteParam>* params) const {
  // The first route for this path that has the method answers, as in Express: "/users/:id" for
  // GET and "/users/:name" for POST both serve.
  Result result;
  ForEachMatch(path, params, [&](const Entry& entry) {
    result.path_known = true;
    const Target* target = entry.Find(method);
    if (target == nullptr) return false;
    result.handler = &target->handler;
    result.options = &target->options;
    return true;
  });
  return result;
}

void Router::AppendAllowed(std::string_view path, std::string* out) const {
  std::vector<RouteParam> ignored;
  std::vector<std::string_view> methods;
  auto add = [&](const Entry& entry) {
    for (const auto& [m, h] : entry.by_method) {
      if (std::find(methods.begin(), methods.end(), m) == methods.end()) methods.push_back(m);
    }
    return false;  // every route of the path counts
  };
  if (path == "*") {  // OPTIONS *: the server as a whole
    for (const auto& [p, entry] : exact_) add(entry);
    for (const Pattern& p : patterns_) add(p.entry);
  } else {
    ForEachMatch(path, &ignored, add);
  }
  if (std::find(methods.begin(), methods.end(), "GET") != methods.end() &&
      std::find(methods.begin(), methods.end(), "HEAD") == methods.end()) {
    methods.push_back("HEAD");
  }
  bool first = true;  // `out` may already hold text: append to it
  for (std::string_view m : methods) {
    if (!first) out->append(", ");
    first = false;
    out->append(m);
  }
}

}  // namespace percore::http
