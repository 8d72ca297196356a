// A router with body options finds a request's route at the end of its header section (for the
// route's body limit, and to run a streaming handler before the body) and keeps it for the
// answer: these check the answer is the right route's, with the right parameters, however the
// body arrives and whatever other connections ask in between.
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

using percore::testing::LoopHarness;
using percore::testing::ParseResponse;

ProtocolFactory BodyRoutes() {
  App app;
  RouteOptions small;
  small.max_body_bytes = 8;
  app.Post(
      "/small",
      [](const Request& req, Response& res) {
        // A parameter of another request's route would show here.
        res.Send("small:" + std::string(req.body()) + std::string(req.Param("name")));
      },
      small);
  app.Post("/items/:id", [](const Request& req, Response& res) {
    res.Send("item " + std::string(req.Param("id")) + ":" + std::string(req.body()));
  });
  app.Get("/users/:name", [](const Request& req, Response& res) {
    res.Send("user " + std::string(req.Param("name")));
  });
  return *app.Factory();
}

std::string Post(const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: a\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// "status body" of the one answer `c` has, or what is wrong.
std::string Answer(LoopHarness& harness, Connection* c) {
  const std::string out = harness.TakeOutput(c);
  size_t consumed = 0;
  const std::optional<percore::testing::TestResponse> r = ParseResponse(out, &consumed);
  if (!r.has_value()) return "no complete answer in: " + out;
  if (consumed != out.size()) return "more than one answer in: " + out;
  return std::to_string(r->status) + " " + r->body;
}

TEST(BodyRouteTest, KeptRouteAnswersAfterTheBodyArrivesInLaterReads) {
  LoopHarness harness(BodyRoutes());
  Connection* a = harness.Accept();
  Connection* b = harness.Accept();
  const std::string small = Post("/small", "1234");
  harness.Feed(a, small.substr(0, small.size() - 4));  // the header section
  // Another connection's request with parameters in between.
  harness.Feed(b, "GET /users/bob HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(Answer(harness, b), "200 user bob");
  harness.Feed(a, "12");
  harness.Feed(a, "34");
  EXPECT_EQ(Answer(harness, a), "200 small:1234");
  // The kept route's limit: a body over it is refused at the header section.
  harness.Feed(a, Post("/small", "123456789"));
  EXPECT_EQ(Answer(harness, a).substr(0, 4), "413 ");
}

TEST(BodyRouteTest, ParametersSurviveTheHeaderSectionMovingBetweenReads) {
  LoopHarness harness(BodyRoutes());
  Connection* a = harness.Accept();
  Connection* b = harness.Accept();
  const std::string item = Post("/items/42", "body");
  // Cut inside the header section, so it is kept in the session's own buffer, then the body
  // byte by byte, with another request's parameters routed in between.
  harness.Feed(a, item.substr(0, 20));
  harness.Feed(a, item.substr(20, item.size() - 24));
  harness.Feed(b, "GET /users/alice HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(Answer(harness, b), "200 user alice");
  harness.FeedBytewise(a, "body");
  EXPECT_EQ(Answer(harness, a), "200 item 42:body");
}

}  // namespace
}  // namespace percore::http
