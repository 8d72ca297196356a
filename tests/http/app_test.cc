// The application layer end to end: an App driven through percore::testing::TestClient (the
// real parser, middleware chain, router and response writer on one loop, no sockets).
#include "percore/http/app.h"

#include <time.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/http/middleware.h"
#include "percore/options.h"
#include "percore/testing/client.h"
#include "percore/testing/harness.h"

namespace percore::http {
namespace {

using percore::testing::Fields;
using percore::testing::LoopHarness;
using percore::testing::ParseResponse;
using percore::testing::TestClient;
using percore::testing::TestResponse;
using Log = std::vector<std::string>;

// ---- Helpers.

// A handler that answers `body`.
Handler Text(std::string body) {
  return [body](const Request&, Response& res) { res.Send(body); };
}

// A handler that logs "route" and answers "ok".
Handler LoggedRoute(Log* log) {
  return [log](const Request&, Response& res) {
    log->push_back("route");
    res.Send("ok");
  };
}

// A handler that answers with the (decoded) route parameter `name`.
Handler EchoParam(std::string name) {
  return [name](const Request& req, Response& res) { res.Send(req.Param(name)); };
}

// A middleware that logs `name` and goes on.
Middleware Mark(Log* log, std::string name) {
  return [log, name](const Request&, Response&, const Next& next) {
    log->push_back(name);
    next();
  };
}

// A middleware that sets `name: value` and goes on.
Middleware SetHeader(std::string name, std::string value) {
  return [name, value](const Request&, Response& res, const Next& next) {
    res.Set(name, value);
    next();
  };
}

// What the error hook was given, copied (Error's message is a view).
struct SeenError {
  int calls = 0;
  int status = 0;
  std::string message;
  std::exception_ptr exception;
};

// An error hook that records the error and answers {"error": message} with its status.
ErrorHandler JsonErrors(SeenError* seen) {
  return [seen](const Request&, Response& res, const Error& error) {
    ++seen->calls;
    seen->status = error.status;
    seen->message = std::string(error.message);
    seen->exception = error.exception;
    res.Status(error.status).Json({{"error", std::string(error.message)}});
  };
}

// A handler that throws `e`.
template <typename E>
Handler Throws(E e) {
  return [e](const Request&, Response&) { throw e; };
}

// One GET on a fresh client of `app`.
TestResponse GetOnce(const App& app, std::string_view target, const Fields& fields = {}) {
  TestClient client(app);
  return client.Get(target, fields);
}

// The Unix time of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or -1.
int64_t ParseHttpDate(const std::string& text) {
  struct tm tm = {};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return -1;
  return timegm(&tm);
}

// ---- Middleware.

TEST(AppMiddlewareTest, RunsInUseOrderBeforeTheRouteWhateverTheOrderRoutesWereAdded) {
  Log log;
  App app;
  app.Get("/", LoggedRoute(&log));
  app.Use(Mark(&log, "first"));
  app.Use(Mark(&log, "second"));
  EXPECT_EQ(GetOnce(app, "/").body, "ok");
  EXPECT_EQ(log, (Log{"first", "second", "route"}));
}

TEST(AppMiddlewareTest, PrefixMiddlewareRunsForThePrefixAndBelowItOnly) {
  Log log;
  App app;
  app.Use("/api", Mark(&log, "api"));
  for (const char* path : {"/api", "/api/x", "/apis"}) app.Get(path, Text(path));
  TestClient client(app);
  for (const char* path : {"/api", "/api/x", "/apis"}) EXPECT_EQ(client.Get(path).body, path);
  EXPECT_EQ(log, (Log{"api", "api"}));  // not for /apis
}

TEST(AppMiddlewareTest, BasePathIsThePrefixInsideTheMiddlewareAndEmptyInTheRoute) {
  Log log;
  App app;
  app.Use([&](const Request& req, Response&, const Next& next) {
    log.push_back("global:" + std::string(req.base_path()));
    next();
  });
  app.Use("/api", [&](const Request& req, Response&, const Next& next) {
    log.push_back("before:" + std::string(req.base_path()));
    next();
    log.push_back("after:" + std::string(req.base_path()));
  });
  app.Get("/api/users", [&](const Request& req, Response& res) {
    log.push_back("route:" + std::string(req.base_path()));
    res.Send("ok");
  });
  EXPECT_EQ(GetOnce(app, "/api/users").status, 200);
  EXPECT_EQ(log, (Log{"global:", "before:/api", "route:", "after:/api"}));
}

TEST(AppMiddlewareTest, MiddlewareThatAnswersStopsTheChain) {
  Log log;
  App app;
  app.Use([&](const Request& req, Response& res, const Next& next) {
    if (!req.HasHeader("authorization")) {
      res.Status(401).Send("who are you?\n");
      return;
    }
    next();
  });
  app.Use(Mark(&log, "later"));
  app.Get("/secret", LoggedRoute(&log));
  TestClient client(app);

  TestResponse denied = client.Get("/secret");
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.body, "who are you?\n");
  EXPECT_TRUE(log.empty());

  EXPECT_EQ(client.Get("/secret", {{"Authorization", "Bearer x"}}).status, 200);
  EXPECT_EQ(log, (Log{"later", "route"}));
}

TEST(AppMiddlewareTest, HeaderSetBeforeNextIsOnTheRoutesAnswerAndOnThe404) {
  App app;
  app.Use(SetHeader("X-Served-By", "percore"));
  app.Get("/", Text("home"));
  TestClient client(app);

  TestResponse found = client.Get("/");
  EXPECT_EQ(found.body, "home");
  EXPECT_EQ(found.Header("x-served-by"), "percore");

  TestResponse missing = client.Get("/nowhere");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.Header("x-served-by"), "percore");
}

TEST(AppMiddlewareTest, CodeAfterNextRunsAfterTheHandler) {
  Log log;
  App app;
  app.Use([&](const Request&, Response& res, const Next& next) {
    next();
    log.push_back(res.sent() ? "after: sent" : "after: not sent");
  });
  app.Get("/", LoggedRoute(&log));
  EXPECT_EQ(GetOnce(app, "/").status, 200);
  EXPECT_EQ(log, (Log{"route", "after: sent"}));
}

TEST(AppMiddlewareTest, CallingNextTwiceRunsTheRouteOnce) {
  Log log;
  App app;
  app.Use([](const Request&, Response&, const Next& next) {
    next();
    next();
  });
  app.Get("/", LoggedRoute(&log));
  TestClient client(app);
  EXPECT_EQ(client.Get("/").body, "ok");
  EXPECT_EQ(log, (Log{"route"}));
  EXPECT_EQ(client.Get("/").body, "ok");  // and nothing extra was written on the connection
}

// A middleware that logs "finish <status>" once the answer is complete, and "after next".
Middleware LogFinish(Log* log) {
  return [log](const Request&, Response& res, const Next& next) {
    res.OnFinish([log](int status) { log->push_back("finish " + std::to_string(status)); });
    next();
    log->push_back("after next");
  };
}

TEST(AppMiddlewareTest, OnFinishGetsTheStatusOfASyncAnswer) {
  Log log;
  App app;
  app.Use(LogFinish(&log));
  app.Get("/", [](const Request&, Response& res) { res.Status(201).Send("made"); });
  EXPECT_EQ(GetOnce(app, "/").status, 201);
  EXPECT_EQ(log, (Log{"after next", "finish 201"}));
}

TEST(AppMiddlewareTest, OnFinishGetsTheStatusOfADeferredAnswerOnceItIsSent) {
  Log log;
  App app;
  app.Use(LogFinish(&log));
  app.Get("/later", [&](const Request& req, Response& res) {
    req.worker().After(absl::Milliseconds(5), [&log, later = res.Defer()]() mutable {
      log.push_back("timer");
      later.Status(202).Send("done");
    });
  });
  TestResponse r = GetOnce(app, "/later");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.body, "done");
  EXPECT_EQ(log, (Log{"after next", "timer", "finish 202"}));
}

TEST(AppMiddlewareTest, OnFinishAddedAfterNextOfADeferredAnswerRunsOnceItIsSent) {
  Log log;
  App app;
  app.Use([&](const Request&, Response& res, const Next& next) {
    next();
    res.OnFinish([&](int status) { log.push_back("finish " + std::to_string(status)); });
  });
  app.Get("/later", [](const Request& req, Response& res) {
    req.worker().After(absl::Milliseconds(5),
                       [later = res.Defer()]() mutable { later.Status(203).Send(""); });
  });
  EXPECT_EQ(GetOnce(app, "/later").status, 203);
  EXPECT_EQ(log, (Log{"finish 203"}));
}

TEST(AppMiddlewareTest, OnFinishGetsZeroWhenTheConnectionGoesBeforeADeferredAnswer) {
  Log log;
  std::optional<Response> held;
  App app;
  app.Use(LogFinish(&log));
  app.Get("/never", [&](const Request&, Response& res) { held = res.Defer(); });
  LoopHarness harness(*app.Factory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(log, (Log{"after next"}));
  harness.Release(c);  // the client vanishes
  EXPECT_EQ(log, (Log{"after next", "finish 0"}));
  ASSERT_TRUE(held.has_value());
  EXPECT_TRUE(held->aborted());
  held.reset();
}

TEST(AppMiddlewareTest, ChainRunsForThe405AndOptionsAnswers) {
  Log log;
  App app;
  app.Use(Mark(&log, "mw"));
  app.Use(SetHeader("X-Chain", "yes"));
  app.Get("/thing", Text("thing"));
  TestClient client(app);

  TestResponse not_allowed = client.Fetch("DELETE", "/thing");
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_EQ(not_allowed.Header("x-chain"), "yes");

  TestResponse options = client.Fetch("OPTIONS", "/thing");
  EXPECT_EQ(options.status, 204);
  EXPECT_EQ(options.Header("allow"), "GET, HEAD");
  EXPECT_EQ(options.Header("x-chain"), "yes");
  EXPECT_EQ(log, (Log{"mw", "mw"}));
}

// ---- Errors.

TEST(AppErrorTest, HookAnswersThe404) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  TestResponse r = GetOnce(app, "/nowhere");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.body, R"({"error":"Not Found"})");
  EXPECT_EQ(seen.calls, 1);
  EXPECT_EQ(seen.status, 404);
  EXPECT_FALSE(seen.exception);
}

TEST(AppErrorTest, HookAnswersThe405WithAllowAlreadySet) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Get("/items", Text("list"));
  app.Post("/items", Text("made"));
  TestResponse r = TestClient(app).Fetch("PUT", "/items", {}, "x");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Headers("allow"), (std::vector<std::string>{"GET, POST, HEAD"}));
  EXPECT_EQ(r.body, R"({"error":"Method Not Allowed"})");
  EXPECT_EQ(seen.status, 405);
}

TEST(AppErrorTest, OptionsIsStill204WithAllowAndTheHookIsNotCalled) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Get("/items", Text("list"));
  TestResponse r = TestClient(app).Fetch("OPTIONS", "/items");
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.Header("allow"), "GET, HEAD");
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(seen.calls, 0);
}

TEST(AppErrorTest, HttpErrorReachesTheHookWithItsStatusAndMessage) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Post("/names", Throws(HttpError(409, "taken")));
  TestResponse r = TestClient(app).Fetch("POST", "/names", {}, "bob");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body, R"({"error":"taken"})");
  EXPECT_EQ(seen.status, 409);
  EXPECT_EQ(seen.message, "taken");
}

TEST(AppErrorTest, HttpErrorWithANonErrorStatusIsA500) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Get("/", Throws(HttpError(200, "not an error")));
  EXPECT_EQ(GetOnce(app, "/").status, 500);
  EXPECT_EQ(seen.status, 500);
}

TEST(AppErrorTest, OtherExceptionIsA500WithTheExceptionForTheHook) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Get("/", Throws(std::runtime_error("disk on fire")));
  TestResponse r = GetOnce(app, "/");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, R"({"error":"disk on fire"})");
  ASSERT_TRUE(seen.exception);
  try {
    std::rethrow_exception(seen.exception);
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "disk on fire");
  } catch (...) {
    ADD_FAILURE() << "not the runtime_error thrown";
  }
}

TEST(AppErrorTest, HandlerThatNeitherAnswersNorDefersIsA500ThroughTheHook) {
  SeenError seen;
  App app;
  app.OnError(JsonErrors(&seen));
  app.Get("/", [](const Request&, Response&) {});
  EXPECT_EQ(GetOnce(app, "/").status, 500);
  EXPECT_EQ(seen.calls, 1);
  EXPECT_EQ(seen.status, 500);
  EXPECT_FALSE(seen.exception);
}

TEST(AppErrorTest, HookAnswerHasTheErrorsStatusUnlessItSetsAnother) {
  App app;
  app.OnError([](const Request&, Response& res, const Error& error) { res.Send("oops"); });
  app.Get("/created-then-conflict", [](const Request&, Response& res) {
    res.Status(201);
    throw HttpError(409, "taken");
  });
  TestClient client(app);
  EXPECT_EQ(client.Get("/nowhere").status, 404);
  EXPECT_EQ(client.Get("/created-then-conflict").status, 409);
}

TEST(AppErrorTest, HookThatThrowsGivesTheDefaultAnswer) {
  App app;
  app.OnError([](const Request&, Response&, const Error&) { throw std::runtime_error("hook"); });
  app.Get("/boom", Throws(std::runtime_error("boom")));
  TestClient client(app);

  TestResponse missing = client.Get("/nowhere");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "Not Found\n");

  TestResponse failed = client.Get("/boom");
  EXPECT_EQ(failed.status, 500);
  EXPECT_EQ(failed.body, "Internal Server Error\n");
}

TEST(AppErrorTest, WithoutAHookTheDefaultAnswersKeepTheConnection) {
  App app;
  app.Get("/boom", Throws(std::runtime_error("boom")));
  app.Get("/taken", Throws(HttpError(409, "taken")));
  app.Get("/", Text("fine"));
  TestClient client(app);

  TestResponse missing = client.Get("/nowhere");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "Not Found\n");
  EXPECT_EQ(missing.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_FALSE(missing.closed);

  TestResponse failed = client.Get("/boom");
  EXPECT_EQ(failed.status, 500);
  EXPECT_EQ(failed.body, "Internal Server Error\n");
  EXPECT_FALSE(failed.closed);

  TestResponse conflict = client.Get("/taken");
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(conflict.body, "Conflict\n");

  TestResponse after = client.Get("/");
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.body, "fine");
}

TEST(AppErrorTest, ExceptionAfterSetDoesNotLeakFieldsIntoThe500) {
  App app;
  app.Get("/", [](const Request&, Response& res) {
    res.Set("X-Half", "made").Cookie("sid", "1");
    throw std::runtime_error("boom");
  });
  TestResponse r = GetOnce(app, "/");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.Header("x-half"), "");
  EXPECT_TRUE(r.Headers("set-cookie").empty());
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

// ---- Cors().

constexpr const char* kOrigin = "https://app.example";

App CorsApp(CorsOptions options) {
  App app;
  app.Use(Cors(std::move(options)));
  app.Get("/items", Text("items"));
  app.Post("/items", Text("made"));
  return app;
}

TEST(AppCorsTest, PreflightIsAnswered204WithTheAllowFields) {
  App app = CorsApp({.origins = {kOrigin}, .max_age = 600});
  TestResponse r =
      TestClient(app).Fetch("OPTIONS", "/items",
                            {{"Origin", kOrigin},
                             {"Access-Control-Request-Method", "POST"},
                             {"Access-Control-Request-Headers", "X-Token, Content-Type"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.Header("access-control-allow-origin"), kOrigin);
  EXPECT_EQ(r.Header("access-control-allow-methods"), "GET, HEAD, PUT, PATCH, POST, DELETE");
  EXPECT_EQ(r.Header("access-control-allow-headers"), "X-Token, Content-Type");
  EXPECT_EQ(r.Header("access-control-max-age"), "600");
  EXPECT_EQ(r.Headers("vary"),
            (std::vector<std::string>{"Origin, Access-Control-Request-Headers"}));
}

TEST(AppCorsTest, SimpleRequestFromAnAllowedOriginNamesIt) {
  App app = CorsApp({.origins = {"https://other.example", kOrigin},
                     .exposed_headers = "X-Total",
                     .credentials = true});
  TestResponse r = TestClient(app).Get("/items", {{"Origin", kOrigin}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "items");
  EXPECT_EQ(r.Header("access-control-allow-origin"), kOrigin);
  EXPECT_EQ(r.Header("access-control-allow-credentials"), "true");
  EXPECT_EQ(r.Header("access-control-expose-headers"), "X-Total");
  EXPECT_EQ(r.Header("vary"), "Origin");
  EXPECT_EQ(r.Header("access-control-allow-methods"), "");  // preflight only
}

TEST(AppCorsTest, DisallowedOriginGetsTheNormalAnswerWithoutCorsFields) {
  App app = CorsApp({.origins = {kOrigin}});
  TestClient client(app);
  for (const Fields& fields :
       {Fields{{"Origin", "https://evil.example"}},
        Fields{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}}}) {
    const bool preflight = fields.size() == 2;
    TestResponse r = client.Fetch(preflight ? "OPTIONS" : "GET", "/items", fields);
    EXPECT_EQ(r.status, preflight ? 204 : 200);  // the router's own OPTIONS answer
    EXPECT_EQ(r.body, preflight ? "" : "items");
    EXPECT_EQ(r.Header("access-control-allow-origin"), "");
    EXPECT_EQ(r.Header("access-control-allow-methods"), "");
    EXPECT_EQ(r.Header("vary"), "Origin");
  }
}

TEST(AppCorsTest, AnyOriginModeAnswersStar) {
  App app = CorsApp({});
  TestClient client(app);
  TestResponse simple = client.Get("/items", {{"Origin", kOrigin}});
  EXPECT_EQ(simple.Header("access-control-allow-origin"), "*");
  EXPECT_EQ(simple.Header("vary"), "");  // the same answer for every origin

  TestResponse preflight = client.Fetch(
      "OPTIONS", "/items", {{"Origin", kOrigin}, {"Access-Control-Request-Method", "PUT"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.Header("access-control-allow-origin"), "*");
  EXPECT_EQ(preflight.Header("access-control-max-age"), "");  // max_age -1: left out
}

TEST(AppCorsTest, CredentialsWithoutOriginsThrows) {
  EXPECT_THROW(Cors({.credentials = true}), std::invalid_argument);
}

// ---- Client address.

// An app whose /ip answers "<client ip>:<client port>".
App AddressApp(HttpOptions options) {
  App app(std::move(options));
  app.Get("/ip", [](const Request& req, Response& res) {
    const PeerAddress client = req.client();
    res.Send(client.ip + ":" + std::to_string(client.port));
  });
  return app;
}

HttpOptions TrustLoopback() {
  HttpOptions options;
  options.trust_proxy = {"127.0.0.1"};
  return options;
}

// The engine takes the PROXY header off (EngineOptions::proxy_protocol) and Request::client()
// starts from its source address: a harness with that option, and one connection over TCP.
class ProxyServer {
 public:
  explicit ProxyServer(const App& app) {
    EngineOptions options;
    options.proxy_protocol = true;
    harness_ = std::make_unique<LoopHarness>(*app.Factory(), options);
    conn_ = harness_->AcceptTcp();
  }
  ~ProxyServer() { harness_->Release(conn_); }
  LoopHarness& harness() { return *harness_; }
  Connection* conn() { return conn_; }
  // Sends `bytes` in one read and parses the one answer they get, if any.
  std::optional<TestResponse> Raw(std::string_view bytes) {
    harness_->Feed(conn_, bytes);
    const std::string out = harness_->TakeOutput(conn_);
    size_t consumed = 0;
    std::optional<TestResponse> r = ParseResponse(out, &consumed);
    if (r.has_value()) {
      EXPECT_EQ(consumed, out.size()) << out;
    }
    return r;
  }

 private:
  std::unique_ptr<LoopHarness> harness_;
  Connection* conn_ = nullptr;
};

constexpr std::string_view kForwarded = "198.51.100.1, 203.0.113.7";
constexpr std::string_view kIpRequest = "GET /ip HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(AppClientAddressTest, TrustedProxyGivesTheRightmostUntrustedForwardedFor) {
  App app = AddressApp(TrustLoopback());
  EXPECT_EQ(GetOnce(app, "/ip", {{"X-Forwarded-For", std::string(kForwarded)}}).body,
            "203.0.113.7:0");
}

TEST(AppClientAddressTest, ForwardedForIsIgnoredWithoutTrustProxy) {
  App app = AddressApp({});
  const std::string body = GetOnce(app, "/ip", {{"X-Forwarded-For", std::string(kForwarded)}}).body;
  EXPECT_EQ(body.substr(0, body.find(':')), "127.0.0.1") << body;
  EXPECT_NE(body, "127.0.0.1:0");  // the peer's own port
}

TEST(AppClientAddressTest, InvalidTrustProxyRangeMakesTheClientThrow) {
  HttpOptions options;
  options.trust_proxy = {"10.0.0.0/33"};
  App app = AddressApp(options);
  EXPECT_THROW(TestClient{app}, std::invalid_argument);
}

TEST(AppClientAddressTest, ProxyProtocolV1GivesTheSourceAddress) {
  ProxyServer server(AddressApp({}));
  std::optional<TestResponse> r =
      server.Raw("PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n" + std::string(kIpRequest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "192.0.2.9:5555");
}

TEST(AppClientAddressTest, ProxyProtocolSourceIsWhereForwardedForTrustStarts) {
  HttpOptions options;
  options.trust_proxy = {"192.0.2.9"};
  ProxyServer server(AddressApp(options));
  std::optional<TestResponse> r = server.Raw(
      "PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n"
      "GET /ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.4\r\n\r\n");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "198.51.100.4:0");
}

// A PROXY protocol v2 header for TCP over IPv4 (HAProxy's proxy-protocol.txt, 2.2).
std::string ProxyV2(const uint8_t (&src)[4], const uint8_t (&dst)[4], uint16_t src_port,
                    uint16_t dst_port) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += '\x21';                      // version 2, PROXY
  h += '\x11';                      // AF_INET, STREAM
  h += std::string("\x00\x0c", 2);  // 12 bytes of addresses follow
  h.append(reinterpret_cast<const char*>(src), 4);
  h.append(reinterpret_cast<const char*>(dst), 4);
  for (uint16_t port : {src_port, dst_port}) {
    h += static_cast<char>(port >> 8);
    h += static_cast<char>(port & 0xff);
  }
  return h;
}

TEST(AppClientAddressTest, ProxyProtocolV2GivesTheSourceAddress) {
  ProxyServer server(AddressApp({}));
  const std::string header = ProxyV2({192, 0, 2, 9}, {10, 0, 0, 1}, 5555, 80);
  ASSERT_EQ(header.size(), 28u);
  std::optional<TestResponse> r = server.Raw(header + std::string(kIpRequest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "192.0.2.9:5555");
}

TEST(AppClientAddressTest, ProxyProtocolConnectionWithoutTheHeaderIsClosedUnanswered) {
  ProxyServer server(AddressApp({}));
  EXPECT_FALSE(server.Raw(kIpRequest).has_value());
  EXPECT_TRUE(server.harness().Closing(server.conn()));
}

TEST(AppClientAddressTest, ProxyProtocolHeaderSplitOverTwoReads) {
  ProxyServer server(AddressApp({}));
  ASSERT_NE(server.conn(), nullptr);
  EXPECT_FALSE(server.Raw("PROXY TCP4 192.0.2.9 10.0.0.1 55").has_value());
  EXPECT_FALSE(server.harness().Closing(server.conn()));
  std::optional<TestResponse> r = server.Raw("55 80\r\n" + std::string(kIpRequest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "192.0.2.9:5555");
}

}  // namespace
}  // namespace percore::http
