// percore/http/router.h — method and path to handler, and the middleware around it.
//
//   Router router;
//   router.Add("GET", "/", hello);
//   router.Add("GET", "/users/:id", show_user);        // req.Param("id"), percent-decoded
//   router.Add("GET", "/posts/:id(\\d+)", show_post);  // digits only
//   router.Add("GET", "/list/:page?", list);           // "/list" and "/list/2"
//   router.Add("GET", "/files/*", file);               // req.Param("*"): "a/b.txt"
//   router.Add("*", "/echo", echo);                    // any method
//   router.Use([](const Request& req, Response& res, const Next& next) {
//     res.Set("X-Served-By", "percore");
//     next();                                          // the rest of the chain, then the route
//   });
//
// Exact paths are found by hash; patterns are tried in the order added. The first route of the
// path that has the request's method answers (an exact path before the patterns); a path that
// routes know without that method gets 405 with Allow listing them all. One trailing slash is
// ignored ("/users/" is "/users"). HEAD uses the GET handler when there is no HEAD route.
// Middleware runs for the requests whose path is under its prefix, in the order added. Where
// it runs among the routes is the router's Order: by default every middleware runs before the
// route (or the 404, 405 or OPTIONS answer), whatever order routes were added in; with
// Order::kAsAdded, Express's rule, middleware and routes take turns in the order they were
// added, so a middleware added after a route never runs for a request that route answers:
//
//   Router app(Router::Order::kAsAdded);
//   app.Use(Compress());                    // runs for every request
//   app.Add("GET", "/api/users", list);     // GET /api/users: answered here, no file looked up
//   app.Use(Static("/srv/www"));            // every other path: a file, if there is one
//                                           // then a 404, or a 405 for POST /api/users
// Add() and Use() are not thread-safe; Route() and Run() are, on a router no longer changed.
#ifndef PERCORE_HTTP_ROUTER_H_
#define PERCORE_HTTP_ROUTER_H_

#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "percore/http/request.h"
#include "percore/http/response.h"

namespace percore::http {

// A request handler. Runs on the serving loop; must not block for long (it stalls every other
// connection of that loop). An exception it throws goes to the error hook (App::OnError): by
// default a 500 for that request only, and a line on stderr.
// One handler object serves every loop, and the loops are threads: it is called on several
// threads at once. What it captures and changes is either shared across loops, and then atomic
// or behind a lock, or kept per loop (an array indexed by Request::worker_id(), which each loop
// alone touches, or an object a loop makes for itself), which needs neither. Stored once (what
// it captures may be move-only) and called through a const reference: a `mutable` lambda, whose
// captures every loop would change at once, does not compile.
using Handler = absl::AnyInvocable<void(const Request&, Response&) const>;

class Router;

// The rest of a middleware chain, handed to each middleware. Calling it runs the next
// middleware that applies, then the route, and returns when they return: code after it runs
// once the handler has answered or deferred (to run code once a deferred answer is sent, use
// Response::OnFinish). Call it before the middleware returns, at most once; a second call, or
// one after the response was answered, does nothing.
class Next {
 public:
  void operator()() const;

 private:
  friend class Router;
  using Last = void (*)(void* context);
  Next(const Router& router, size_t index, const Request& req, Response& res, Last last,
       void* context, uint32_t route_order)
      : router_(&router),
        index_(index),
        req_(&req),
        res_(&res),
        last_(last),
        context_(context),
        route_order_(route_order) {}
  const Router* router_;
  size_t index_;
  const Request* req_;
  Response* res_;
  Last last_;
  void* context_;
  uint32_t route_order_;  // Router::RunFrom's
  mutable bool called_ = false;
};

// A middleware: may answer (and not call next), set response fields and call next, or both
// call next and then look at the outcome.
// Stored and called as a Handler is.
using Middleware = absl::AnyInvocable<void(const Request&, Response&, const Next&) const>;

// An error with its HTTP status, for a handler or middleware to throw: the error hook gets the
// status and the message (400 for a bad id, 403, 409...).
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// What went wrong with a request, for the error hook.
struct Error {
  // 404 (no route has the path), 405 (Allow is set already), 400 (bad percent-encoding in the
  // path's parameters or the query), an HttpError's status, or 500 (any other exception, or
  // nothing answered).
  int status = 500;
  std::string_view message;      // the exception's what(), or the status's reason phrase
  std::exception_ptr exception;  // the exception thrown, if one was
};

// Writes the answer for an error (App::OnError); the response's status is the error's already.
// If it throws or does not answer, the default answer goes out: the status and its reason
// phrase as text.
using ErrorHandler = absl::AnyInvocable<void(const Request&, Response&, const Error&) const>;

// How a route takes the request body.
struct RouteOptions {
  // The largest body this route accepts (413 beyond); 0 is HttpOptions::max_body_bytes.
  size_t max_body_bytes = 0;
  // The handler runs as soon as the header section is complete, with an empty body(): it may
  // answer at once (a 401 or a 413 before the body is sent), or Defer() and take the body piece
  // by piece with Response::OnBody(). A body the answer came before is read and
  // discarded up to HttpOptions::max_discard_bytes; past that the connection closes after the
  // answer.
  bool stream_body = false;
};

// The routing table and the middleware chain.
class Router {
 public:
  // What Route() found.
  struct Result {
    const Handler* handler = nullptr;       // null: see `path_known`
    const RouteOptions* options = nullptr;  // the handler's
    bool path_known = false;                // some route has this path (405 rather than 404)
  };
  // Where middleware runs among the routes.
  enum class Order {
    kMiddlewareFirst,  // every middleware before the route, whenever it was added
    // Express's rule: each middleware runs only for the requests that no route added before it
    // answers (a route that has the path but not the method answers nothing, as in Express; its
    // 405 comes after every middleware). A middleware added after a route costs a second route
    // look-up for the requests under its prefix, none for the others.
    kAsAdded,
  };

  Router() = default;
  explicit Router(Order order) : order_(order) {}

  // Adds a route. `method` is a method token ("GET") or "*" for any; `pattern` starts with '/'
  // and its segments are literals, `:name` parameters (a name of letters, digits and '_'), or,
  // like Express: `:name(\d+)` for digits only, `:name?` as the last segment for an optional
  // one, `*` as the last segment for the rest of the path (Param("*"), possibly empty or with
  // slashes). Throws std::invalid_argument for a malformed pattern or a duplicate (method,
  // pattern).
  void Add(std::string_view method, std::string_view pattern, Handler handler,
           RouteOptions options = {});
  // Adds a middleware for every request.
  void Use(Middleware fn) { Use("/", std::move(fn)); }
  // Adds a middleware for the requests whose path is `prefix` or under it ("/api" runs for
  // "/api" and "/api/users", not "/apis"); Request::base_path() is `prefix` while it runs.
  void Use(std::string_view prefix, Middleware fn);
  // Adds every route and middleware of `other` under `prefix` ("/api" + "/users/:id"), after
  // those already here, in the order `other` runs them. Throws as Add() does.
  void Mount(std::string_view prefix, const Router& other);
  // Whether some route has RouteOptions other than the defaults: only then is a request with a
  // body routed as soon as its header section is complete.
  bool has_body_options() const { return has_body_options_; }
  // Whether a route answers `method`: one added for it, or for any method ("*"). A request
  // whose method is neither this nor one of RFC 9110's (or PATCH) gets 501 Not Implemented;
  // middleware does not make a method known.
  bool Recognizes(std::string_view method) const;

  // Finds the handler for `method` and `path`, filling `params` with the pattern's parameters.
  Result Route(std::string_view method, std::string_view path,
               std::vector<RouteParam>* params) const;
  // Runs the middleware that applies to req.path(), then last(context).
  void Run(const Request& req, Response& res, Next::Last last, void* context) const {
    if (middleware_.empty()) {  // no call out of line for the common case
      last(context);
      return;
    }
    RunFrom(0, req, res, last, context, kNotLookedUp);
  }

  // Appends the methods `path` answers to, comma-separated ("GET, HEAD, POST"), for Allow;
  // for "*" (OPTIONS *), the methods of every route.
  void AppendAllowed(std::string_view path, std::string* out) const;

 private:
  friend class Next;
  // Handlers and middleware are shared by the copies of a router (App::Factory's, Mount's).
  struct Target {
    std::shared_ptr<const Handler> handler;
    RouteOptions options;
    uint32_t order = 0;  // its place among the routes and middleware added
  };
  struct Entry {
    std::vector<std::pair<std::string, Target>> by_method;
    Target any;  // "*"
    bool has_any = false;
    const Target* Find(std::string_view method) const;
  };
  struct Segment {
    enum Kind : uint8_t { kLiteral, kParam, kRest };
    Kind kind = kLiteral;
    bool digits = false;    // :name(\d+)
    bool optional = false;  // :name?
    std::string text;       // the literal, or the parameter's name
    bool operator==(const Segment&) const = default;
  };
  struct Pattern {
    std::string source;  // as added, for Mount()
    std::vector<Segment> segments;
    Entry entry;
  };
  struct Layer {
    std::string prefix;  // "" for every path
    std::shared_ptr<const Middleware> fn;
    uint32_t order = 0;        // its place among the routes and middleware added
    bool after_route = false;  // Order::kAsAdded, and a route was added before it
    bool Applies(std::string_view path) const;
  };
  // RunFrom's `route_order`: the order of the route that answers the request, once looked up.
  static constexpr uint32_t kNotLookedUp = UINT32_MAX;
  static constexpr uint32_t kNoRoute = UINT32_MAX - 1;  // after every middleware
  static std::string_view Normalize(std::string_view path);
  static std::vector<Segment> ParsePattern(std::string_view pattern);
  static bool MatchPattern(const Pattern& p, std::string_view path,
                           std::vector<RouteParam>* params);
  void AddTarget(Entry& entry, std::string_view method, std::string_view pattern, Target target);
  void AddShared(std::string_view method, std::string_view pattern,
                 std::shared_ptr<const Handler> handler, RouteOptions options);
  void AddLayer(std::string prefix, std::shared_ptr<const Middleware> fn);
  // Runs the middleware from `index` on that applies, then last(context). `route_order` is the
  // answering route's order, or kNotLookedUp until a layer needed it.
  void RunFrom(size_t index, const Request& req, Response& res, Next::Last last, void* context,
               uint32_t route_order) const;
  // The order of the route that answers `method` and `path`, or kNoRoute: Route() without
  // parameters, so without allocation.
  uint32_t AnsweringOrder(std::string_view method, std::string_view path) const;
  // Calls visit(entry) for each route matching `path` (the exact one, then patterns in order,
  // with their parameters in `params`, if not null) until it returns true.
  template <typename Visit>
  void ForEachMatch(std::string_view path, std::vector<RouteParam>* params, Visit visit) const;

  // Exact paths in the order added, found through an open-addressed index: a power of two
  // slots, at most half of them used, probed from a hash of the path's first and last bytes.
  // A lookup is a few loads and one comparison, where std::unordered_map hashes every byte,
  // divides by a prime and follows a node.
  struct Exact {
    std::string path;
    uint64_t hash;
    Entry entry;
  };
  uint32_t ExactSlot(std::string_view path, uint64_t hash) const;  // 1 + its place, or 0
  Entry& ExactEntry(std::string_view path);                         // made if new
  std::vector<Exact> exact_;
  std::vector<uint32_t> exact_index_;  // 1 + a place in exact_, or 0: an empty slot
  std::vector<Pattern> patterns_;
  std::vector<Layer> middleware_;
  bool has_body_options_ = false;
  std::vector<std::string> methods_;  // of the routes, for Recognizes()
  bool any_method_ = false;
  Order order_ = Order::kMiddlewareFirst;
  uint32_t added_ = 0;       // routes and middleware added so far
  bool has_routes_ = false;  // a route was added
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_ROUTER_H_
