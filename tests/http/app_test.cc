// The application layer end to end: an App driven through percore::testing::TestClient (the
// real parser, middleware chain, router and response writer on one loop, no sockets):
// middleware and the error hook. Routing, requests and responses are in app_request_test.cc,
// CORS and the client's address in app_client_test.cc.
#include "percore/http/app.h"

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "app_suite.h"
#include "gtest/gtest.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"
#include "percore/testing/harness.h"

namespace percore::http {
namespace {

using percore::testing::LoopHarness;

// ---- Helpers.

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

// A handler that throws `e`.
template <typename E>
Handler Throws(E e) {
  return [e](const Request&, Response&) { throw e; };
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

}  // namespace
}  // namespace percore::http
