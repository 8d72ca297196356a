#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "support/loop_harness.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

using percore::testing::LoopHarness;
using percore::testing::ParseResponse;

ProtocolFactory MakeFactory(HttpOptions options = {}) {
  App app(options);
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.All("/echo", [](const Request& req, Response& res) { res.Send(req.body()); });
  return *app.Factory();
}

TEST(SessionTest, AnswersOneRequest) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string out = harness.TakeOutput(c);
  size_t consumed = 0;
  auto response = ParseResponse(out, &consumed);
  ASSERT_TRUE(response.has_value()) << out;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "Hello World!");
  EXPECT_EQ(consumed, out.size());
  EXPECT_FALSE(harness.Closing(c));
}

}  // namespace
}  // namespace percore::http
