// percore/http/router.h — method and path to handler.
//
//   Router router;
//   router.Add("GET", "/", hello);
//   router.Add("GET", "/users/:id", show_user);   // req.Param("id")
//   router.Add("*", "/echo", echo);               // any method
//
// Exact paths are found by hash; patterns with `:param` segments are tried in the order added.
// The first route of the path that has the request's method answers (an exact path before the
// patterns); a path that routes know without that method gets 405 with Allow listing them all. One
// trailing slash is ignored ("/users/" is "/users"). HEAD uses the GET handler when there is no
// HEAD route. Add() is not thread-safe; Route() is, on a router no longer changed.
#ifndef PERCORE_HTTP_ROUTER_H_
#define PERCORE_HTTP_ROUTER_H_

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "percore/http/request.h"
#include "percore/http/response.h"

namespace percore::http {

// A request handler. Runs on the serving loop; must not block for long (it stalls every other
// connection of that loop). An exception it throws becomes a 500 for that request only.
using Handler = std::function<void(const Request&, Response&)>;

// How a route takes the request body.
struct RouteOptions {
  // The largest body this route accepts (413 beyond); 0 is HttpOptions::max_body_bytes.
  size_t max_body_bytes = 0;
  // The handler runs as soon as the header section is complete, with an empty body(): it may
  // answer at once (a 401 or a 413 before the body is sent), or Defer() and take the body piece
  // by piece with DeferredResponse::OnBody(). A body the answer came before is read and
  // discarded up to HttpOptions::max_discard_bytes; past that the connection closes after the
  // answer.
  bool stream_body = false;
};

// The routing table.
class Router {
 public:
  // What Route() found.
  struct Result {
    const Handler* handler = nullptr;       // null: see `path_known`
    const RouteOptions* options = nullptr;  // the handler's
    bool path_known = false;                // some route has this path (405 rather than 404)
  };

  // Adds a route. `method` is a method token ("GET") or "*" for any; `pattern` starts with '/'
  // and may have `:name` segments. Throws std::invalid_argument for a malformed pattern or a
  // duplicate (method, pattern).
  void Add(std::string_view method, std::string_view pattern, Handler handler,
           RouteOptions options = {});
  // Whether some route has RouteOptions other than the defaults: only then is a request with a
  // body routed as soon as its header section is complete.
  bool has_body_options() const { return has_body_options_; }

  // Finds the handler for `method` and `path`, filling `params` with the pattern's parameters.
  Result Route(std::string_view method, std::string_view path,
               std::vector<RouteParam>* params) const;

  // Appends the methods `path` answers to, comma-separated ("GET, HEAD, POST"), for Allow;
  // for "*" (OPTIONS *), the methods of every route.
  void AppendAllowed(std::string_view path, std::string* out) const;

 private:
  struct Target {
    Handler handler;
    RouteOptions options;
  };
  struct Entry {
    std::vector<std::pair<std::string, Target>> by_method;
    Target any;  // "*"
    bool has_any = false;
    const Target* Find(std::string_view method) const;
  };
  struct Pattern {
    std::vector<std::string> segments;  // ":name" for a parameter
    Entry entry;
  };
  static std::string_view Normalize(std::string_view path);
  static bool MatchPattern(const Pattern& p, std::string_view path,
                           std::vector<RouteParam>* params);
  // Calls visit(entry) for each route matching `path` (the exact one, then patterns in order,
  // with their parameters in `params`) until it returns true.
  template <typename Visit>
  void ForEachMatch(std::string_view path, std::vector<RouteParam>* params, Visit visit) const;

  struct StringHash {
    using is_transparent = void;  // lookup by string_view without building a std::string
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> exact_;
  std::vector<Pattern> patterns_;
  bool has_body_options_ = false;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_ROUTER_H_
