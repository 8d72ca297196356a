// The HTTP session (App's protocol) on a LoopHarness, no sockets: one request, bad input (one
// status, "Connection: close", and the connection closes), limits and timeouts. Split reads and
// pipelining are in session_stream_test.cc, methods, routing and keep-alive in
// session_connection_test.cc; session_suite.h has what they share.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "session_suite.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

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

// ---- Bad input: one status, `Connection: close`, and the connection closes ----

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, AnswersItsStatusAndCloses) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* c = harness.Accept();
  harness.Feed(c, GetParam().input);
  ExpectOnlyError(harness.TakeOutput(c), GetParam().status);
  EXPECT_TRUE(harness.Closing(c));
}

TEST_P(BadInputTest, BytewiseAnswersItsStatusAndCloses) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* c = harness.Accept();
  harness.FeedBytewise(c, GetParam().input);
  ExpectOnlyError(harness.TakeOutput(c), GetParam().status);
  EXPECT_TRUE(harness.Closing(c));
}

TEST_P(BadInputTest, AfterAGoodRequestAnswersItThenTheError) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/") + GetParam().input + Get("/"));
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[1].status, GetParam().status);
  EXPECT_EQ(responses[1].Header("connection"), "close");
  EXPECT_TRUE(harness.Closing(c));
}

INSTANTIATE_TEST_SUITE_P(AllCases, BadInputTest, ::testing::ValuesIn(BadInputs()),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return std::string(info.param.name);
                         });

// A message that failed mid-body on one connection leaves nothing behind for another of the
// same loop: a bare CRLF there (no request start) used to read the failed message's offsets.
TEST(SessionTest, FailedMessageLeavesNoStateForAnotherConnection) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* bad = harness.Accept();
  Connection* idle = harness.Accept();
  harness.Feed(bad, "POST /echo HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(150, 'v') +
                        "\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n");
  ExpectOnlyError(harness.TakeOutput(bad), 400);
  harness.Feed(idle, "\r\n");
  EXPECT_EQ(harness.TakeOutput(idle), "");
  // Still idle: its deadline closes it without a 408.
  harness.ExpireDeadline(idle);
  EXPECT_EQ(harness.TakeOutput(idle), "");
  EXPECT_TRUE(harness.Closing(idle));
  Connection* next = harness.Accept();
  harness.Feed(next, "\r\n" + Get("/"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(next));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
}

TEST(SessionTest, OptionsAsteriskListsEveryMethod) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 204);
  std::vector<std::string> allowed = absl::StrSplit(responses[0].Header("allow"), ", ");
  std::sort(allowed.begin(), allowed.end());
  EXPECT_EQ(allowed, (std::vector<std::string>{"GET", "HEAD", "POST"}));
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, SmuggledRequestAfterBadHeaderEndIsNeverAnswered) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET / HTTP/1.1\r\nHost: a\r\n\rXGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 400);
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, TargetAtLimitIsAccepted) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/users/" + std::string(57, 'x')));  // 64 bytes
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, BodyAtLimitIsAccepted) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* c = harness.Accept();
  harness.Feed(c,
               "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
               "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               "8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].body, "0123456789abcdef");
  EXPECT_EQ(responses[1].status, 200);
  EXPECT_EQ(responses[1].body, "0123456789abcdef");
  EXPECT_FALSE(harness.Closing(c));
}

// The header section is measured from the method to the CRLF of the last field line: the empty
// line that ends it is not counted.
TEST(SessionTest, HeaderSectionAtLimitIsAccepted) {
  const std::string prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: ";  // 28 bytes
  const std::string at_limit = prefix + std::string(254 - prefix.size(), 'v') + "\r\n\r\n";
  const std::string over_limit = prefix + std::string(255 - prefix.size(), 'v') + "\r\n\r\n";
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* whole = harness.Accept();
  harness.Feed(whole, at_limit);
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(whole));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
  Connection* bytewise = harness.Accept();
  harness.FeedBytewise(bytewise, at_limit);
  responses = ParseAll(harness.TakeOutput(bytewise));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_FALSE(harness.Closing(bytewise));

  Connection* over = harness.Accept();
  harness.Feed(over, over_limit);
  ExpectOnlyError(harness.TakeOutput(over), 431);
  Connection* over_bytewise = harness.Accept();
  harness.FeedBytewise(over_bytewise, over_limit);
  ExpectOnlyError(harness.TakeOutput(over_bytewise), 431);
}

// A header section over the limit is refused even when its bytes are whitespace the parser
// reports in no span (the value of the last field is empty), and even before it ends.
TEST(SessionTest, WhitespaceHeaderSectionOverLimitIs431) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:" + std::string(300, ' ');
  {
    LoopHarness harness(MakeFactory(SmallLimits()));
    Connection* c = harness.Accept();
    harness.Feed(c, head + "\r\n\r\n");
    ExpectOnlyError(harness.TakeOutput(c), 431);
    EXPECT_TRUE(harness.Closing(c));
  }
  {
    LoopHarness harness(MakeFactory(SmallLimits()));
    Connection* c = harness.Accept();
    harness.Feed(c, head);  // never ends
    ExpectOnlyError(harness.TakeOutput(c), 431);
    EXPECT_TRUE(harness.Closing(c));
  }
  {
    LoopHarness harness(MakeFactory(SmallLimits()));
    Connection* c = harness.Accept();
    harness.FeedBytewise(c, head);
    ExpectOnlyError(harness.TakeOutput(c), 431);
    EXPECT_TRUE(harness.Closing(c));
  }
}

// ---- Timeouts ----

TEST(SessionTest, DeadlineMidHeadersAnswers408) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET / HTTP/1.1\r\nHos");
  EXPECT_EQ(harness.TakeOutput(c), "");
  harness.ExpireDeadline(c);
  ExpectOnlyError(harness.TakeOutput(c), 408);
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, DeadlineMidBodyAnswers408) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_EQ(harness.TakeOutput(c), "");
  harness.ExpireDeadline(c);
  ExpectOnlyError(harness.TakeOutput(c), 408);
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, DeadlineOnFreshConnectionClosesSilently) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.ExpireDeadline(c);
  EXPECT_EQ(harness.TakeOutput(c), "");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, DeadlineAfterCompleteRequestClosesSilently) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/"));
  ASSERT_EQ(ParseAll(harness.TakeOutput(c)).size(), 1u);
  EXPECT_FALSE(harness.Closing(c));
  harness.ExpireDeadline(c);
  EXPECT_EQ(harness.TakeOutput(c), "");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, DeadlineAfterPartialThenCompleteRequestClosesSilently) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET / HTTP/1.1\r\n");
  harness.Feed(c, "Host: a\r\n\r\n");
  ASSERT_EQ(ParseAll(harness.TakeOutput(c)).size(), 1u);
  harness.ExpireDeadline(c);
  EXPECT_EQ(harness.TakeOutput(c), "");
  EXPECT_TRUE(harness.Closing(c));
}

}  // namespace
}  // namespace percore::http
