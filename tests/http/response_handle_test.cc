// Response as a handle: what moving it does, what a moved-from one and an answered one do, and
// what the handler's own Response refuses.
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/client.h"

namespace {

using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::TestClient;
using percore::testing::TestResponse;

TEST(ResponseHandleTest, MovingTheHandlersResponseKeepsItsAnswer) {
  App app;
  app.Get("/moved", [](const Request& req, Response& res) {
    res.Set("X-Before", "kept");
    req.worker().After(absl::Milliseconds(1),
                       [later = std::move(res)]() mutable { later.Send("moved"); });
    EXPECT_TRUE(res.deferred());
    res.Send("ignored");  // the handler's Response sends nothing more
  });
  TestClient client(app);
  TestResponse r = client.Get("/moved");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "moved");
  EXPECT_EQ(r.Header("x-before"), "kept");
}

TEST(ResponseHandleTest, AMovedFromHandleDoesNothing) {
  App app;
  app.Get("/pair", [](const Request&, Response& res) {
    Response a = res.Defer();
    Response b = std::move(a);
    a.Status(500).Send("from the moved-from one");  // NOLINT: what the test is about
    EXPECT_FALSE(a.Write("x"));
    EXPECT_FALSE(a.sent());
    EXPECT_FALSE(a.aborted());
    b.Send("from the new owner");
  });
  TestClient client(app);
  TestResponse r = client.Get("/pair");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "from the new owner");
}

TEST(ResponseHandleTest, AHandleAnsweredOnceIgnoresWhatFollows) {
  auto after = std::make_shared<std::optional<bool>>();
  App app;
  app.Get("/once", [after](const Request&, Response& res) {
    Response later = res.Defer();
    later.Send("first");
    later.Send("second");
    *after = later.Write("more");
    EXPECT_TRUE(later.sent());
  });
  TestClient client(app);
  TestResponse r = client.Get("/once");
  EXPECT_EQ(r.body, "first");
  ASSERT_TRUE(after->has_value());
  EXPECT_FALSE(**after);
  EXPECT_EQ(client.Get("/once").body, "first");  // the connection went on, nothing stray on it
}

TEST(ResponseHandleTest, TheHandlersResponseRefusesWhatOnlyAKeptAnswerDoes) {
  App app;
  app.Get("/write", [](const Request&, Response& res) { res.Write("x"); });
  app.Get("/defer-twice", [](const Request&, Response& res) {
    Response later = res.Defer();
    try {
      later.Defer();
    } catch (const std::logic_error&) {
      later.Status(409).Send("refused");
    }
  });
  TestClient client(app);
  EXPECT_EQ(client.Get("/write").status, 500);
  EXPECT_EQ(client.Get("/defer-twice").status, 409);
}

TEST(ResponseHandleTest, OnBodyWithoutAStreamedBodyHandsTheAnswerOverAtOnce) {
  App app;
  app.Post("/whole", [](const Request& req, Response& res) {
    const std::string body(req.body());
    res.Defer().OnBody([body](Response& later, std::string_view chunk, bool last) {
      EXPECT_TRUE(chunk.empty());
      if (last) later.Send("had " + body);
    });
  });
  TestClient client(app);
  TestResponse r = client.Fetch("POST", "/whole", {}, "abc");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "had abc");
}

TEST(ResponseHandleTest, AReaderThatEndsWithoutAnAnswerLeavesA500) {
  App app;
  percore::http::RouteOptions streamed;
  streamed.stream_body = true;
  app.Post(
      "/silent",
      [](const Request&, Response& res) {
        res.Defer().OnBody([](Response&, std::string_view, bool) {});  // never answers
      },
      streamed);
  TestClient client(app);
  EXPECT_EQ(client.Fetch("POST", "/silent", {}, "abc").status, 500);
  EXPECT_EQ(client.Fetch("POST", "/silent", {}, "").status, 500);
}

}  // namespace
