#include "percore/http/router.h"

#include <algorithm>
#include <stdexcept>

#include "ascii.h"

namespace percore::http {
namespace {

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlnum(char c) {
  return IsAsciiDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c <= ' ' || c >= 127 || std::string_view("\"(),/:;<=>?@[\\]{}").find(c) != s.npos) {
      return false;
    }
  }
  return true;
}

// A method is a few bytes, compared on every request: inline, not through a call of memcmp.
bool SameMethod(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Of the length and the first and last eight bytes (fewer of a short path): paths that differ
// only in their middle share a probe chain, which costs a comparison, never a wrong answer.
uint64_t PathHash(std::string_view s) {
  const char* p = s.data();
  const size_t n = s.size();
  uint64_t a = 0;
  uint64_t b = 0;
  if (n >= 8) {
    a = Load64(p);
    b = Load64(p + n - 8);
  } else if (n >= 4) {
    a = Load32(p);
    b = Load32(p + n - 4);
  } else if (n > 0) {
    a = static_cast<unsigned char>(p[0]) | static_cast<unsigned char>(p[n / 2]) << 8;
    b = static_cast<unsigned char>(p[n - 1]);
  }
  const uint64_t h = a * 0x9e3779b97f4a7c15 ^ (b + n) * 0xbf58476d1ce4e5b9;
  return h ^ h >> 32;
}

}  // namespace

inline uint32_t Router::ExactSlot(std::string_view path, uint64_t hash) const {
  const size_t mask = exact_index_.size() - 1;  // never empty once a path is in
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t slot = exact_index_[i];
    if (slot == 0) return 0;
    const Exact& e = exact_[slot - 1];
    if (e.hash == hash && e.path == path) return slot;
  }
}

Router::Entry& Router::ExactEntry(std::string_view path) {
  const uint64_t hash = PathHash(path);
  if (!exact_.empty()) {
    if (const uint32_t slot = ExactSlot(path, hash)) return exact_[slot - 1].entry;
  }
  exact_.push_back(Exact{std::string(path), hash, Entry{}});
  auto place = [this](uint32_t k) {
    const size_t mask = exact_index_.size() - 1;
    size_t i = exact_[k].hash & mask;
    while (exact_index_[i] != 0) i = (i + 1) & mask;
    exact_index_[i] = k + 1;
  };
  if (exact_index_.size() >= 2 * exact_.size()) {
    place(static_cast<uint32_t>(exact_.size() - 1));
  } else {  // twice the slots, and every path placed again
    exact_index_.assign(std::max<size_t>(16, 2 * exact_index_.size()), 0);
    for (uint32_t k = 0; k < exact_.size(); ++k) place(k);
  }
  return exact_.back().entry;
}

inline const Router::Target* Router::Entry::Find(std::string_view method) const {
  for (const auto& [m, h] : by_method) {
    if (SameMethod(m, method)) return &h;
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

std::vector<Router::Segment> Router::ParsePattern(std::string_view pattern) {
  auto bad = [&](std::string_view why) {
    return std::invalid_argument("route \"" + std::string(pattern) + "\": " + std::string(why));
  };
  std::vector<Segment> segments;
  std::string_view rest = pattern.substr(1);
  while (true) {
    const size_t slash = rest.find('/');
    std::string_view text = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    Segment s;
    if (text == "*") {
      if (!last) throw bad("'*' must be the last segment");
      s.kind = Segment::kRest;
      s.text = "*";
    } else if (!text.empty() && text[0] == ':') {
      s.kind = Segment::kParam;
      text.remove_prefix(1);
      if (!text.empty() && text.back() == '?') {
        if (!last) throw bad("only the last parameter may be optional");
        s.optional = true;
        text.remove_suffix(1);
      }
      if (const size_t paren = text.find('('); paren != std::string_view::npos) {
        // The one Express constraint that needs no regular expressions.
        if (text.substr(paren) != "(\\d+)") throw bad("the only constraint is (\\d+)");
        s.digits = true;
        text = text.substr(0, paren);
      }
      if (text.empty()) throw bad("a parameter needs a name");
      for (char c : text) {
        if (!IsAsciiAlnum(c) && c != '_') throw bad("bad parameter name");
      }
      s.text = std::string(text);
    } else {
      if (text.find('*') != std::string_view::npos) throw bad("'*' must be a whole segment");
      s.text = std::string(text);
    }
    segments.push_back(std::move(s));
    if (last) return segments;
    rest.remove_prefix(slash + 1);
  }
}

void Router::Add(std::string_view method, std::string_view pattern, Handler handler,
                 RouteOptions options) {
  if (!handler) throw std::invalid_argument("route \"" + std::string(pattern) + "\": no handler");
  AddShared(method, pattern, std::make_shared<const Handler>(std::move(handler)), options);
}

void Router::AddShared(std::string_view method, std::string_view pattern,
                       std::shared_ptr<const Handler> handler, RouteOptions options) {
  if (method != "*" && !IsToken(method)) {
    throw std::invalid_argument("invalid method \"" + std::string(method) + "\"");
  }
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route \"" + std::string(pattern) + "\" must start with '/'");
  }
  pattern = Normalize(pattern);
  if (!options.stream_body && options.max_body_bytes > (size_t{1} << 30)) {
    // A body that is not streamed is held whole in memory.
    throw std::invalid_argument("route \"" + std::string(pattern) +
                                "\": max_body_bytes over 1 GiB needs stream_body");
  }
  Target target{std::move(handler), options, added_++};
  has_routes_ = true;
  if (pattern.find("/:") == std::string_view::npos && pattern.find('*') == std::string_view::npos) {
    AddTarget(ExactEntry(pattern), method, pattern, std::move(target));
    return;
  }
  std::vector<Segment> segments = ParsePattern(pattern);
  for (Pattern& p : patterns_) {
    if (p.segments == segments) {
      AddTarget(p.entry, method, pattern, std::move(target));
      return;
    }
  }
  patterns_.push_back(Pattern{std::string(pattern), std::move(segments), Entry{}});
  AddTarget(patterns_.back().entry, method, pattern, std::move(target));
}

void Router::AddTarget(Entry& entry, std::string_view method, std::string_view pattern,
                       Target target) {
  if (target.options.stream_body || target.options.max_body_bytes != 0) has_body_options_ = true;
  if (method == "*") {
    any_method_ = true;
    if (entry.has_any) throw std::invalid_argument("duplicate route * " + std::string(pattern));
    entry.any = std::move(target);
    entry.has_any = true;
    return;
  }
  for (const auto& existing : entry.by_method) {
    if (existing.first == method) {
      throw std::invalid_argument("duplicate route " + std::string(method) + " " +
                                  std::string(pattern));
    }
  }
  entry.by_method.emplace_back(std::string(method), std::move(target));
  if (std::find(methods_.begin(), methods_.end(), method) == methods_.end()) {
    methods_.emplace_back(method);
  }
}

bool Router::Recognizes(std::string_view method) const {
  return any_method_ || std::find(methods_.begin(), methods_.end(), method) != methods_.end();
}

void Router::Use(std::string_view prefix, Middleware fn) {
  if (prefix.empty() || prefix.front() != '/') {
    throw std::invalid_argument("middleware prefix \"" + std::string(prefix) +
                                "\" must start with '/'");
  }
  if (!fn) throw std::invalid_argument("middleware for \"" + std::string(prefix) + "\": null");
  prefix = Normalize(prefix);
  AddLayer(prefix == "/" ? std::string() : std::string(prefix),
           std::make_shared<const Middleware>(std::move(fn)));
}

void Router::AddLayer(std::string prefix, std::shared_ptr<const Middleware> fn) {
  const bool after_route = order_ == Order::kAsAdded && has_routes_;
  middleware_.push_back(Layer{std::move(prefix), std::move(fn), added_++, after_route});
}

void Router::Mount(std::string_view prefix, const Router& other) {
  if (&other == this) throw std::invalid_argument("a router cannot be mounted on itself");
  if (prefix.empty() || prefix.front() != '/') {
    throw std::invalid_argument("mount prefix \"" + std::string(prefix) + "\" must start with '/'");
  }
  prefix = Normalize(prefix);
  const std::string base = prefix == "/" ? std::string() : std::string(prefix);
  // Added again in the order `other` runs them: its own order, its middleware first unless it
  // takes turns with its routes.
  struct Item {
    uint64_t key;
    std::string_view method;  // a route's
    std::string_view pattern;
    const Target* target;  // null for a middleware
    const Layer* layer;
  };
  std::vector<Item> items;
  const uint64_t route_key = other.order_ == Order::kAsAdded ? 0 : uint64_t{1} << 32;
  auto add_entry = [&](std::string_view pattern, const Entry& entry) {
    for (const auto& [method, target] : entry.by_method) {
      items.push_back(Item{route_key + target.order, method, pattern, &target, nullptr});
    }
    if (entry.has_any) {
      items.push_back(Item{route_key + entry.any.order, "*", pattern, &entry.any, nullptr});
    }
  };
  for (const Exact& e : other.exact_) add_entry(e.path, e.entry);
  for (const Pattern& p : other.patterns_) add_entry(p.source, p.entry);
  for (const Layer& layer : other.middleware_) {
    items.push_back(Item{layer.order, {}, {}, nullptr, &layer});
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.key < b.key; });
  for (const Item& item : items) {
    if (item.layer != nullptr) {
      AddLayer(base + item.layer->prefix, item.layer->fn);
    } else {
      AddShared(item.method, base + std::string(item.pattern), item.target->handler,
                item.target->options);
    }
  }
}

bool Router::Layer::Applies(std::string_view path) const {
  if (prefix.empty()) return true;
  return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
}

void Router::RunFrom(size_t index, const Request& req, Response& res, Next::Last last,
                     void* context, uint32_t route_order) const {
  for (; index < middleware_.size(); ++index) {
    const Layer& layer = middleware_[index];
    if (!layer.Applies(req.path())) continue;
    if (layer.after_route) {
      // The session routed the request already, but Run() is not told what it found: routing
      // again is the price of this layer alone, paid once per request.
      if (route_order == kNotLookedUp) route_order = AnsweringOrder(req.method(), req.path());
      if (route_order < layer.order) continue;  // a route added before it answers
    }
    Next next(*this, index + 1, req, res, last, context, route_order);
    req.base_path_ = layer.prefix;
    (*layer.fn)(req, res, next);
    return;
  }
  req.base_path_ = {};
  last(context);
}

void Next::operator()() const {
  if (called_ || res_->sent() || res_->deferred()) return;
  called_ = true;
  const std::string_view base = req_->base_path_;
  router_->RunFrom(index_, *req_, *res_, last_, context_, route_order_);
  req_->base_path_ = base;  // the caller's again
}

bool Router::MatchPattern(const Pattern& p, std::string_view path,
                          std::vector<RouteParam>* params) {
  // Patterns start with '/'; "", "*" (OPTIONS) or "host:443" (CONNECT) match none.
  if (path.empty() || path.front() != '/') return false;
  const size_t first_param = params != nullptr ? params->size() : 0;
  auto match = [&] {
    std::string_view rest = path.substr(1);
    bool more = true;  // a path segment is left, possibly empty
    for (const Segment& s : p.segments) {
      if (s.kind == Segment::kRest) {  // always the last
        if (params != nullptr)
          params->push_back(RouteParam{s.text, more ? rest : std::string_view()});
        return true;
      }
      if (!more) return s.optional;  // an optional one is always the last
      const size_t slash = rest.find('/');
      const std::string_view segment = rest.substr(0, slash);
      more = slash != std::string_view::npos;
      rest = more ? rest.substr(slash + 1) : std::string_view();
      if (s.kind == Segment::kLiteral) {
        if (segment != s.text) return false;
      } else if (segment.empty()) {
        return s.optional && !more;
      } else if (s.digits && !std::all_of(segment.begin(), segment.end(), IsAsciiDigit)) {
        return false;
      } else if (params != nullptr) {
        params->push_back(RouteParam{s.text, segment});
      }
    }
    return !more;
  };
  if (match()) return true;
  if (params != nullptr) params->resize(first_param);
  return false;
}

template <typename Visit>
void Router::ForEachMatch(std::string_view path, std::vector<RouteParam>* params,
                          Visit visit) const {
  path = Normalize(path);
  if (!exact_.empty()) {
    const uint32_t slot = ExactSlot(path, PathHash(path));
    if (slot != 0 && visit(exact_[slot - 1].entry)) return;
  }
  for (const Pattern& p : patterns_) {
    const size_t first_param = params != nullptr ? params->size() : 0;
    if (!MatchPattern(p, path, params)) continue;
    if (visit(p.entry)) return;
    if (params != nullptr) params->resize(first_param);  // not this one: its parameters go
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
    result.handler = target->handler.get();
    result.options = &target->options;
    return true;
  });
  return result;
}

uint32_t Router::AnsweringOrder(std::string_view method, std::string_view path) const {
  uint32_t order = kNoRoute;
  ForEachMatch(path, nullptr, [&](const Entry& entry) {
    const Target* target = entry.Find(method);
    if (target != nullptr) order = target->order;
    return target != nullptr;
  });
  return order;
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
    for (const Exact& e : exact_) add(e.entry);
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
