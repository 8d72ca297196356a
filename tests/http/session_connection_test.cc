// The HTTP session on a LoopHarness (session_suite.h): methods and routing (HEAD, 404, 405,
// OPTIONS, 501), and connection management (keep-alive, "Connection: close", HTTP/1.0, handlers
// that throw or never answer, Upgrade).
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "session_suite.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

// ---- Methods and routing ----

TEST(SessionTest, HeadHasGetContentLengthButNoBody) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string out = harness.TakeOutput(c);
  EXPECT_EQ(out.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_NE(out.find("\r\nContent-Length: 12\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("\r\n\r\n") + 4, out.size()) << out;  // the header section is all there is
  EXPECT_EQ(out.find("Hello"), std::string::npos);
  EXPECT_FALSE(harness.Closing(c));
  // The connection goes on: the next response is not mistaken for a body.
  harness.Feed(c, Get("/"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body, "Hello World!");
}

TEST(SessionTest, UnknownPathIs404) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/missing"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 404);
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, WrongMethodIs405WithAllow) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 405);
  EXPECT_EQ(responses[0].Header("allow"), "GET, HEAD");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, OptionsOnKnownPathIs204WithAllow) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "OPTIONS /users/7 HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string out = harness.TakeOutput(c);
  std::vector<HttpResponse> responses = ParseAll(out);
  ASSERT_EQ(responses.size(), 1u) << out;
  EXPECT_EQ(responses[0].status, 204);
  EXPECT_EQ(responses[0].Header("allow"), "GET, HEAD");
  EXPECT_EQ(responses[0].Header("content-length"), "");
  EXPECT_EQ(responses[0].body, "");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, OptionsOnUnknownPathIs404) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "OPTIONS /missing HTTP/1.1\r\nHost: a\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 404);
}

TEST(SessionTest, RouteParamsAndQueryReachTheHandler) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/users/alice?x=1&q=two&y"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body, "id=alice q=two query=x=1&q=two&y path=/users/alice");
}

TEST(SessionTest, AbsoluteFormTargetIsRoutedByItsPath) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("http://example.com:8080/users/bob?q=1"));
  harness.Feed(c, Get("http://example.com"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].body, "id=bob q=1 query=q=1 path=/users/bob");
  EXPECT_EQ(responses[1].body, "Hello World!");
}

TEST(SessionTest, HeadersAreCaseInsensitive) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET /headers HTTP/1.1\r\nhost: a\r\nx-CuStOm: \tv1\t\r\nX-Custom: v2\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body,
            "x-custom=v1 X-CUSTOM=v1 has=yes missing=no order=host:a;x-CuStOm:v1;X-Custom:v2;");
}

// ---- Connection management ----

TEST(SessionTest, Http10WithoutKeepAliveCloses) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET /version HTTP/1.0\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].Header("connection"), "close");
  EXPECT_EQ(responses[0].body, "minor=0 keep_alive=0");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, Http10WithKeepAliveStaysOpen) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].Header("connection"), "keep-alive");
  EXPECT_EQ(responses[0].body, "minor=0 keep_alive=1");
  EXPECT_FALSE(harness.Closing(c));
  harness.Feed(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body, "Hello World!");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, Http11KeepAliveHasNoConnectionHeader) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/version"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].Header("connection"), "");
  EXPECT_EQ(responses[0].body, "minor=1 keep_alive=1");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, Http11ConnectionCloseCloses) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET /version HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].Header("connection"), "close");
  EXPECT_EQ(responses[0].body, "minor=1 keep_alive=0");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, BytesAfterConnectionCloseAreNotAnswered) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + Get("/") + Get("/"));
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(rest, "");
  EXPECT_TRUE(harness.Closing(c));
  harness.Feed(c, Get("/"));
  EXPECT_EQ(harness.TakeOutput(c), "");
}

TEST(SessionTest, HandlerConnectionCloseCloses) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/close") + Get("/"));
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(responses[0].body, "bye");
  EXPECT_EQ(responses[0].Header("connection"), "close");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, ThrowingHandlerGives500ForThatRequestOnly) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/throw") + Get("/throw-int") + Get("/"));
  std::string out = harness.TakeOutput(c);
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(out, &rest);
  ASSERT_EQ(responses.size(), 3u) << out;
  EXPECT_EQ(rest, "");
  EXPECT_EQ(responses[0].status, 500);
  EXPECT_EQ(responses[0].Header("x-partial"), "");  // the failed handler's fields are dropped
  EXPECT_EQ(responses[0].Header("connection"), "");
  EXPECT_EQ(responses[1].status, 500);
  EXPECT_EQ(responses[2].status, 200);
  EXPECT_EQ(responses[2].body, "Hello World!");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, HandlerThrowingAfterSendKeepsItsResponse) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, Get("/send-then-throw") + Get("/bad-status") + Get("/"));
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].body, "sent");
  EXPECT_EQ(responses[1].status, 500);
  EXPECT_EQ(responses[2].body, "Hello World!");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, HandlerThatNeitherAnswersNorDefersGets500AndTheConnectionGoesOn) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c,
               "POST /created HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
               "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].status, 500);
  EXPECT_EQ(responses[1].body, "Hello World!");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, UpgradeRequestIsAnsweredAndCloses) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c,
               "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
               "\x81\x05hello");
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].Header("connection"), "close");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(SessionTest, KeepAliveConnectionServesManyRequests) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  for (int i = 0; i < 5; ++i) {
    harness.Feed(c, Get("/users/" + std::to_string(i)));
    std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
    ASSERT_EQ(responses.size(), 1u);
    EXPECT_EQ(responses[0].body,
              "id=" + std::to_string(i) + " q= query= path=/users/" + std::to_string(i));
  }
  EXPECT_FALSE(harness.Closing(c));
}

// RFC 9110 9.1: a method no route answers and RFC 9110 does not define is not implemented (501,
// and the connection closes); one a route names, or a route for any method answers, is routed.
TEST(SessionTest, UnknownMethodIs501UnlessARouteAnswersIt) {
  App plain;
  plain.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  plain.Route("PROPFIND", "/dav", [](const Request&, Response& res) { res.Send("dav"); });
  LoopHarness harness(*plain.Factory());
  Connection* c = harness.Accept();
  harness.Feed(c, "BREW / HTTP/1.1\r\nHost: a\r\n\r\n");
  ExpectOnlyError(harness.TakeOutput(c), 501);
  c = harness.Accept();
  harness.Feed(c, "get / HTTP/1.1\r\nHost: a\r\n\r\n");  // methods are case-sensitive
  ExpectOnlyError(harness.TakeOutput(c), 501);
  c = harness.Accept();
  harness.Feed(c,
               "PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\nPROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].body, "dav");
  EXPECT_EQ(responses[1].status, 405);
  EXPECT_FALSE(harness.Closing(c));

  LoopHarness any(MakeFactory());  // has routes for any method
  c = any.Accept();
  any.Feed(c, "BREW /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\ntea");
  responses = ParseAll(any.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body, "tea");
}

}  // namespace
}  // namespace percore::http
