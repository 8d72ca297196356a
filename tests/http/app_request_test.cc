// The application layer end to end through percore::testing::TestClient (app_suite.h): routing,
// what a Request gives a handler, and what a Response writes.
#include <time.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

#include "app_suite.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"

namespace percore::http {
namespace {

// A handler that answers with the (decoded) route parameter `name`.
Handler EchoParam(std::string name) {
  return [name](const Request& req, Response& res) { res.Send(req.Param(name)); };
}

// The Unix time of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or -1.
int64_t ParseHttpDate(const std::string& text) {
  struct tm tm = {};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return -1;
  return timegm(&tm);
}

// ---- Routing.

TEST(AppRoutingTest, WildcardTakesTheRestOfThePath) {
  App app;
  app.Get("/files/*", EchoParam("*"));
  TestClient client(app);
  EXPECT_EQ(client.Get("/files/a/b/c.txt").body, "a/b/c.txt");
  TestResponse bare = client.Get("/files");
  EXPECT_EQ(bare.status, 200);
  EXPECT_EQ(bare.body, "");
}

TEST(AppRoutingTest, OptionalParamMatchesWithAndWithoutIt) {
  App app;
  app.Get("/list/:page?", [](const Request& req, Response& res) {
    res.Send("page=" + std::string(req.Param("page")));
  });
  TestClient client(app);
  EXPECT_EQ(client.Get("/list").body, "page=");
  EXPECT_EQ(client.Get("/list/2").body, "page=2");
  EXPECT_EQ(client.Get("/list/2/3").status, 404);
}

TEST(AppRoutingTest, DigitsConstraintRefusesOtherSegments) {
  App app;
  app.Get("/posts/:id(\\d+)", EchoParam("id"));
  TestClient client(app);
  EXPECT_EQ(client.Get("/posts/42").body, "42");
  EXPECT_EQ(client.Get("/posts/abc").status, 404);
  EXPECT_EQ(client.Get("/posts/4x").status, 404);
}

TEST(AppRoutingTest, MountedRoutersMiddlewareAppliesOnlyUnderItsPrefix) {
  Log log;
  Router api;
  api.Use([&](const Request& req, Response&, const Next& next) {
    log.push_back("api mw at " + std::string(req.base_path()));
    next();
  });
  api.Add("GET", "/users/:id", EchoParam("id"));
  App app;
  app.Get("/users/:id", Text("outer"));
  app.Mount("/api", api);
  TestClient client(app);

  EXPECT_EQ(client.Get("/api/users/7").body, "7");
  EXPECT_EQ(log, (Log{"api mw at /api"}));
  EXPECT_EQ(client.Get("/users/7").body, "outer");
  EXPECT_EQ(log.size(), 1u);
}

TEST(AppRoutingTest, HeadIsAnsweredFromGetWithoutTheBody) {
  App app;
  app.Get("/page", Text("hello world"));
  TestClient client(app);
  TestResponse head = client.Fetch("HEAD", "/page");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-length"), "11");
  EXPECT_EQ(head.body, "");
  // A body sent after all would be read as the next answer.
  TestResponse next = client.Get("/page");
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, "hello world");
}

TEST(AppRoutingTest, InvalidPatternsThrow) {
  for (const char* pattern : {"/a/*/b", "/:", "/:id(\\w+)", "/x/:a?/y"}) {
    App app;
    EXPECT_THROW(app.Get(pattern, Text("x")), std::invalid_argument) << pattern;
  }
}

// ---- Requests.

TEST(AppRequestTest, ParamIsPercentDecodedAndPlusStaysPlus) {
  App app;
  app.Get("/users/:name", EchoParam("name"));
  TestClient client(app);
  EXPECT_EQ(client.Get("/users/J%C3%B6rg").body, "Jörg");
  EXPECT_EQ(client.Get("/users/a+b").body, "a+b");
  EXPECT_EQ(client.Get("/users/a%20b").body, "a b");
}

TEST(AppRequestTest, QueryIsDecodedWithPlusAsSpace) {
  App app;
  app.Get("/search", [](const Request& req, Response& res) {
    res.Send(std::string(req.Query("q")) + "|" + std::string(req.Query("missing")) + "|" +
             std::string(req.Query("a b")));
  });
  EXPECT_EQ(GetOnce(app, "/search?q=caf%C3%A9+au+lait&a+b=key").body, "café au lait||key");
}

TEST(AppRequestTest, QueryAllGivesEveryValueInOrder) {
  App app;
  app.Get("/ids", [](const Request& req, Response& res) {
    std::string out;
    for (std::string_view id : req.QueryAll("id")) out.append(id).append(";");
    res.Send(out + "first=" + std::string(req.Query("id")));
  });
  EXPECT_EQ(GetOnce(app, "/ids?id=1&id=2&other=x&id=3").body, "1;2;3;first=1");
}

TEST(AppRequestTest, BadPercentEncodingIs400WithoutReachingTheHandler) {
  Log log;
  App app;
  app.Get("/users/:name", LoggedRoute(&log));
  TestClient client(app);
  for (const char* target : {"/users/%zz", "/users/bob?q=%4", "/users/bob?q=%G0"}) {
    TestResponse r = client.Get(target);
    EXPECT_EQ(r.status, 400) << target;
    EXPECT_EQ(r.body, "Bad Request\n") << target;
  }
  EXPECT_TRUE(log.empty());
}

TEST(AppRequestTest, BadPercentEncodingGoesThroughTheHook) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Get("/users/:name", EchoParam("name"));
  TestResponse r = GetOnce(app, "/users/%E2%8");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(seen.status, 400);
}

TEST(AppRequestTest, CookieFindsTheNamedOneAmongSeveralAndUnquotes) {
  App app;
  app.Get("/", [](const Request& req, Response& res) {
    res.Send(std::string(req.Cookie("sid")) + "|" + std::string(req.Cookie("theme")) + "|" +
             std::string(req.Cookie("lang")) + "|" + std::string(req.Cookie("none")));
  });
  EXPECT_EQ(
      GetOnce(app, "/", {{"Cookie", "theme=dark; sid=\"abc123\"; sidx=no"}, {"Cookie", "lang=fr"}})
          .body,
      "abc123|dark|fr|");
}

TEST(AppRequestTest, JsonParsesAJsonBodyAndRefusesOthers) {
  App app;
  app.Post("/echo", [](const Request& req, Response& res) { res.Send(req.Json().dump()); });
  TestClient client(app);
  auto post = [&](std::string type, std::string body) {
    return client.Fetch("POST", "/echo", {{"Content-Type", type}}, body);
  };

  TestResponse ok = post("application/json; charset=utf-8", R"({ "n" : [1, 2] })");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, R"({"n":[1,2]})");
  EXPECT_EQ(post("application/problem+json", "true").body, "true");

  TestResponse text = post("text/plain", "{}");
  EXPECT_EQ(text.status, 415);
  EXPECT_EQ(text.body, "Unsupported Media Type\n");

  TestResponse bad = post("application/json", "{bad");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body, "Bad Request\n");
}

// ---- Responses.

TEST(AppResponseTest, JsonSetsTheTypeAndSerialisesCompactly) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Json({{"name", "Jörg"}, {"ids", {1, 2}}, {"ok", true}, {"none", nullptr}});
  });
  TestResponse r = GetOnce(app, "/");
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.body, R"({"ids":[1,2],"name":"Jörg","none":null,"ok":true})");
}

TEST(AppResponseTest, CookieWritesEveryAttribute) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Cookie("sid", "abc123",
               {.path = "/app",
                .domain = "example.com",
                .max_age = 3600,
                .secure = true,
                .http_only = true,
                .same_site = CookieOptions::SameSite::kStrict});
    res.Send("");
  });
  const int64_t now = time(nullptr);
  const std::string cookie = GetOnce(app, "/").Header("set-cookie");
  const size_t at = cookie.find("; Expires=");
  ASSERT_NE(at, std::string::npos) << cookie;
  const size_t date_at = at + 10;
  const std::string date = cookie.substr(date_at, cookie.find(';', date_at) - date_at);
  EXPECT_NEAR(ParseHttpDate(date), now + 3600, 2) << date;
  EXPECT_EQ(cookie, "sid=abc123; Path=/app; Domain=example.com; Max-Age=3600; Expires=" + date +
                        "; Secure; HttpOnly; SameSite=Strict");
}

TEST(AppResponseTest, TwoCookiesAreTwoSetCookieFields) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Cookie("a", "1").Cookie("b", "2", {.http_only = false});
    res.Send("");
  });
  EXPECT_EQ(GetOnce(app, "/").Headers("set-cookie"),
            (std::vector<std::string>{"a=1; Path=/; HttpOnly; SameSite=Lax",
                                      "b=2; Path=/; SameSite=Lax"}));
}

TEST(AppResponseTest, InvalidCookieThrowsAndAnswers500) {
  App app;
  app.Get("/name", [](const Request&, Response& res) { res.Cookie("a b", "1"); });
  app.Get("/value", [](const Request&, Response& res) { res.Cookie("a", "x;y"); });
  app.Get("/samesite-none", [](const Request&, Response& res) {
    res.Cookie("a", "1", {.same_site = CookieOptions::SameSite::kNone});
  });
  app.Get("/samesite-none-secure", [](const Request&, Response& res) {
    res.Cookie("a", "1", {.secure = true, .same_site = CookieOptions::SameSite::kNone}).Send("");
  });
  TestClient client(app);
  for (const char* path : {"/name", "/value", "/samesite-none"}) {
    TestResponse r = client.Get(path);
    EXPECT_EQ(r.status, 500) << path;
    EXPECT_TRUE(r.Headers("set-cookie").empty()) << path;
  }
  EXPECT_EQ(client.Get("/samesite-none-secure").Header("set-cookie"),
            "a=1; Path=/; Secure; HttpOnly; SameSite=None");
}

TEST(AppResponseTest, ClearCookieSendsAnEmptyExpiredCookie) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.ClearCookie("sid", {.path = "/app"});
    res.Send("");
  });
  EXPECT_EQ(GetOnce(app, "/").Header("set-cookie"),
            "sid=; Path=/app; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; "
            "SameSite=Lax");
}

TEST(AppResponseTest, RedirectIs302ByDefaultAnd301WhenAsked) {
  App app;
  app.Get("/old", [](const Request&, Response& res) { res.Redirect("/new"); });
  app.Get("/moved", [](const Request&, Response& res) { res.Redirect("/new", 301); });
  TestClient client(app);

  TestResponse found = client.Get("/old");
  EXPECT_EQ(found.status, 302);
  EXPECT_EQ(found.Header("location"), "/new");
  EXPECT_EQ(found.body, "Found. Redirecting to /new\n");

  TestResponse moved = client.Get("/moved");
  EXPECT_EQ(moved.status, 301);
  EXPECT_EQ(moved.Header("location"), "/new");
}

TEST(AppResponseTest, RedirectWithAnInvalidStatusOrLocationThrows) {
  App app;
  app.Get("/status", [](const Request&, Response& res) { res.Redirect("/new", 200); });
  app.Get("/location", [](const Request&, Response& res) { res.Redirect("/a\r\nX-Evil: 1"); });
  TestClient client(app);
  for (const char* path : {"/status", "/location"}) {
    TestResponse r = client.Get(path);
    EXPECT_EQ(r.status, 500) << path;
    EXPECT_EQ(r.Header("location"), "") << path;
    EXPECT_EQ(r.Header("x-evil"), "") << path;
  }
}

TEST(AppResponseTest, VaryMergesFieldsIntoOneLineWithoutDuplicates) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Vary("Origin").Vary("Accept-Encoding").Vary("origin").Set("Vary", "Accept-Encoding");
    res.Send("");
  });
  EXPECT_EQ(GetOnce(app, "/").Headers("vary"),
            (std::vector<std::string>{"Origin, Accept-Encoding"}));
}

TEST(AppResponseTest, VaryGivenAListThroughSetMergesEachField) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Vary("Origin").Set("Vary", "Cookie, origin").Vary("cookie");
    res.Send("");
  });
  EXPECT_EQ(GetOnce(app, "/").Headers("vary"), (std::vector<std::string>{"Origin, Cookie"}));
}

TEST(AppResponseTest, VaryAndTypeInterleavedKeepOneOfEach) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Vary("Origin").Type("text/html").Vary("Cookie").Type("application/xml");
    res.Send("<a/>");
  });
  TestResponse r = GetOnce(app, "/");
  EXPECT_EQ(r.Headers("content-type"), (std::vector<std::string>{"application/xml"}));
  EXPECT_EQ(r.Headers("vary"), (std::vector<std::string>{"Origin, Cookie"}));
}

}  // namespace
}  // namespace percore::http
