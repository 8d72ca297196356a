// Router::Order: where middleware runs among the routes. kAsAdded is Express's rule (Static at
// "/" after the API routes costs the API nothing and serves files for the rest); the default,
// kMiddlewareFirst, runs every middleware before the route whenever it was added.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"

namespace percore::http {
namespace {

using percore::testing::TestClient;
using percore::testing::TestResponse;

// A fresh directory with one file, removed with the test.
class Root {
 public:
  Root() {
    char pattern[] = "/tmp/percore_route_order_XXXXXX";
    path_ = mkdtemp(pattern);
    std::ofstream(path_ + "/page.html") << "<p>a file</p>\n";
  }
  ~Root() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Static(root), counting the requests it is asked to look up (each one an openat2).
Middleware CountingStatic(const std::string& root, int* lookups) {
  return [files = Static(root), lookups](const Request& req, Response& res, const Next& next) {
    ++*lookups;
    files(req, res, next);
  };
}

// The middleware that ran, in order, as the answer's X-Ran field.
Middleware Mark(std::string name, std::vector<std::string>* ran) {
  return [name, ran](const Request&, Response& res, const Next& next) {
    ran->push_back(name);
    next();
  };
}

Handler Text(std::string body) {
  return [body](const Request&, Response& res) { res.Send(body); };
}

TEST(RouteOrderTest, StaticAfterTheRoutesServesTheApiWithoutLookingForFiles) {
  Root root;
  int lookups = 0;
  App app({}, Router::Order::kAsAdded);
  app.Get("/", Text("home"));
  app.Get("/api/users/:id", Text("user"));
  app.Post("/api/users", Text("created"));
  app.Use(CountingStatic(root.path(), &lookups));
  TestClient client(app);

  EXPECT_EQ(client.Get("/").body, "home");
  EXPECT_EQ(client.Get("/api/users/7").body, "user");
  EXPECT_EQ(client.Fetch("HEAD", "/api/users/7").status, 200);  // HEAD takes the GET route
  EXPECT_EQ(client.Fetch("POST", "/api/users", {}, "{}").body, "created");
  EXPECT_EQ(lookups, 0);

  // Everything the routes do not answer falls back to the files.
  TestResponse file = client.Get("/page.html");
  EXPECT_EQ(file.status, 200);
  EXPECT_EQ(file.body, "<p>a file</p>\n");
  EXPECT_EQ(client.Get("/nothing.html").status, 404);
  // A path the routes know without this method: the files first, as Express, then the 405.
  TestResponse wrong_method = client.Get("/api/users");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.Header("allow"), "POST");
  EXPECT_EQ(lookups, 3);
}

TEST(RouteOrderTest, MiddlewareAndRoutesTakeTurnsInTheOrderAdded) {
  std::vector<std::string> ran;
  App app({}, Router::Order::kAsAdded);
  app.Use(Mark("first", &ran));
  app.Get("/a", Text("a"));
  app.Use("/b", Mark("b-only", &ran));
  app.Use(Mark("second", &ran));
  app.Get("/b", Text("b"));
  app.Use(Mark("last", &ran));
  TestClient client(app);

  EXPECT_EQ(client.Get("/a").body, "a");
  EXPECT_EQ(ran, (std::vector<std::string>{"first"}));
  ran.clear();
  EXPECT_EQ(client.Get("/b").body, "b");
  EXPECT_EQ(ran, (std::vector<std::string>{"first", "b-only", "second"}));
  ran.clear();
  EXPECT_EQ(client.Get("/c").status, 404);
  EXPECT_EQ(ran, (std::vector<std::string>{"first", "second", "last"}));
}

TEST(RouteOrderTest, MountKeepsTheMountedRoutersOrder) {
  std::vector<std::string> ran;
  Router api(Router::Order::kAsAdded);
  api.Add("GET", "/users", Text("users"));
  api.Use(Mark("api-after", &ran));
  Router old_style;  // its middleware runs before its routes, whenever it was added
  old_style.Add("GET", "/x", Text("x"));
  old_style.Use(Mark("old-before", &ran));

  App app({}, Router::Order::kAsAdded);
  app.Mount("/api", api);
  app.Mount("/old", old_style);
  TestClient client(app);

  EXPECT_EQ(client.Get("/api/users").body, "users");
  EXPECT_EQ(client.Get("/old/x").body, "x");
  EXPECT_EQ(ran, (std::vector<std::string>{"old-before"}));
  ran.clear();
  EXPECT_EQ(client.Get("/api/other").status, 404);
  EXPECT_EQ(ran, (std::vector<std::string>{"api-after"}));
}

// Handlers, middleware and the error hook are stored once and shared, so what they capture may
// be move-only; a mounted router's are shared with it, not copied.
TEST(RouteOrderTest, HandlersMiddlewareAndTheErrorHookMayOwnMoveOnlyState) {
  Router api;
  api.Add("GET", "/n", [n = std::make_unique<int>(7)](const Request&, Response& res) {
    res.Send(std::to_string(*n));
  });
  api.Use([tag = std::make_unique<std::string>("x-tag")](const Request&, Response& res,
                                                         const Next& next) {
    res.Set(*tag, "1");
    next();
  });
  App app;
  app.Mount("/api", api);
  app.OnError([prefix = std::make_unique<std::string>("no: ")](const Request& req, Response& res,
                                                               const Error&) {
    res.Send(*prefix + std::string(req.path()));
  });
  TestClient client(app);
  TestResponse r = client.Get("/api/n");
  EXPECT_EQ(r.body, "7");
  EXPECT_EQ(r.Header("x-tag"), "1");
  EXPECT_EQ(client.Get("/api/none").body, "no: /api/none");
}

// Apps written before Router::Order: a middleware added after the routes still runs first.
TEST(RouteOrderTest, TheDefaultRunsEveryMiddlewareBeforeTheRoute) {
  Root root;
  int lookups = 0;
  std::vector<std::string> ran;
  App app;
  app.Get("/api", Text("api"));
  app.Use(Mark("after", &ran));
  app.Use(CountingStatic(root.path(), &lookups));
  TestClient client(app);

  EXPECT_EQ(client.Get("/api").body, "api");
  EXPECT_EQ(ran, (std::vector<std::string>{"after"}));
  EXPECT_EQ(lookups, 1);
  EXPECT_EQ(client.Get("/page.html").body, "<p>a file</p>\n");
}

}  // namespace
}  // namespace percore::http
