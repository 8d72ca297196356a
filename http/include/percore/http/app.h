// percore/http/app.h — the Express-like facade.
//
//   #include "percore/http/app.h"
//
//   int main() {
//     percore::http::App app;
//     app.Get("/", [](const percore::http::Request&, percore::http::Response& res) {
//       res.Send("Hello World!");
//     });
//     percore::EngineOptions options;
//     options.port = 3000;
//     absl::Status status = app.Run(options);  // one loop per CPU, until SIGINT/SIGTERM
//     return status.ok() ? 0 : 1;
//   }
//
// Routes are added on one thread before Listen()/Run(); the engine gets a copy of them. Unlike
// Node's single thread, every loop then calls the same handlers, each on its own thread, at the
// same time: state a handler changes is atomic or locked, or kept per loop (router.h, Handler).
// Middleware runs before every route, whenever it was added, unless the App is made with
// Router::Order::kAsAdded: then, as in Express, middleware and routes run in the order they were
// added, and a middleware added after the routes only sees the requests they do not answer:
//
//   percore::http::App app({}, percore::http::Router::Order::kAsAdded);
//   app.Get("/api/users", list_users);                   // no file is looked up for it
//   app.Use(percore::http::Static("/srv/www"));          // the rest: a file, else the 404
#ifndef PERCORE_HTTP_APP_H_
#define PERCORE_HTTP_APP_H_

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "percore/engine.h"
#include "percore/http/middleware.h"
#include "percore/http/options.h"
#include "percore/http/request.h"
#include "percore/http/response.h"
#include "percore/http/router.h"
#include "percore/http/websocket.h"

namespace percore::http {

// An HTTP/1.1 application: routes plus limits. Not thread-safe while routes are added.
class App {
 public:
  // `order`: where middleware runs among the routes (Router::Order).
  explicit App(HttpOptions options = {}, Router::Order order = Router::Order::kMiddlewareFirst)
      : router_(order), options_(options), hub_(internal::NewWsHub()) {}

  // Adds a route for one method; see Router::Add. Returns *this for chaining.
  App& Get(std::string_view pattern, Handler handler, RouteOptions route = {}) {
    return Route("GET", pattern, std::move(handler), route);
  }
  App& Post(std::string_view pattern, Handler handler, RouteOptions route = {}) {
    return Route("POST", pattern, std::move(handler), route);
  }
  App& Put(std::string_view pattern, Handler handler, RouteOptions route = {}) {
    return Route("PUT", pattern, std::move(handler), route);
  }
  App& Delete(std::string_view pattern, Handler handler, RouteOptions route = {}) {
    return Route("DELETE", pattern, std::move(handler), route);
  }
  App& Patch(std::string_view pattern, Handler handler, RouteOptions route = {}) {
    return Route("PATCH", pattern, std::move(handler), route);
  }
  // Adds a route answering every method.
  App& All(std::string_view pattern, Handler handler, RouteOptions route = {}) {
    return Route("*", pattern, std::move(handler), route);
  }
  // Adds a route for `method` (a token, or "*" for any).
  App& Route(std::string_view method, std::string_view pattern, Handler handler,
             RouteOptions route = {}) {
    router_.Add(method, pattern, std::move(handler), route);
    return *this;
  }
  // Adds a middleware for every request, or for those under `prefix`; see Router::Use and, for
  // where it runs among the routes, Router::Order.
  App& Use(Middleware fn) {
    router_.Use(std::move(fn));
    return *this;
  }
  App& Use(std::string_view prefix, Middleware fn) {
    router_.Use(prefix, std::move(fn));
    return *this;
  }
  // Adds a WebSocket endpoint: a GET route for `pattern` whose requests upgrade (see
  // percore/http/websocket.h). `T` is the type of each connection's data.
  template <typename T = NoWsData>
  App& Ws(std::string_view pattern, WsBehavior<T> behavior) {
    return WsRoute(pattern, internal::EraseBehavior(std::move(behavior)));
  }
  // Sends `message` to every subscriber of `topic` (WebSocket::Subscribe) on every loop of every
  // engine serving this App (and its copies). Thread-safe: from any loop, any thread.
  void Publish(std::string_view topic, std::string_view message,
               WsOpcode opcode = WsOpcode::kText) const;

  // Adds the routes and middleware of `router` under `prefix`; see Router::Mount.
  App& Mount(std::string_view prefix, const Router& router) {
    router_.Mount(prefix, router);
    return *this;
  }
  // Sets the one error hook: it answers every 404 (no route has the path), 405 (a route has
  // it, not with this method; Allow is set already), 400 for bad percent-encoding, and every
  // exception a middleware or handler throws (HttpError's status, else 500), as well as a
  // chain that answered nothing (500). What it does not answer (and everything, without one)
  // gets the default: the status and its reason as text, and a line on stderr for a 5xx. For a
  // 4xx, the fields set before the error stay (a WWW-Authenticate with its 401); for a 5xx they
  // are dropped but for Retry-After (a 503's), so nothing half-made goes out. A deferred answer
  // whose handles are all dropped unanswered, or a coroutine that throws, gets a plain 500
  // without the hook: the request is gone by then. Parse errors (400, 413, 431...) are answered
  // before any route is known and do not come here.
  App& OnError(ErrorHandler fn) {
    on_error_ = fn ? std::make_shared<const ErrorHandler>(std::move(fn)) : nullptr;
    return *this;
  }

  // The protocol factory serving this app, for an embedder that creates the Engine itself.
  // Fails if the HTTP options are out of range.
  absl::StatusOr<ProtocolFactory> Factory() const;
  // Validates the options and binds the port; the returned engine is not started yet.
  absl::StatusOr<std::unique_ptr<Engine>> Listen(const EngineOptions& options) const;
  // Listen(), then Engine::Run(): serves until SIGINT, SIGTERM or Engine::Stop().
  absl::Status Run(const EngineOptions& options) const;

 private:
  App& WsRoute(std::string_view pattern, std::shared_ptr<const internal::WsEndpoint> endpoint);

  Router router_;
  std::shared_ptr<const ErrorHandler> on_error_;
  HttpOptions options_;
  std::shared_ptr<internal::WsHub> hub_;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_APP_H_
