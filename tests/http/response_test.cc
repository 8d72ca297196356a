#include "percore/http/response.h"

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "response_writer.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

constexpr std::string_view kDate = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

// A Response writing into strings the test can read.
class ResponseTest : public ::testing::Test {
 protected:
  Response Make(bool head = false, bool close = false, bool http10_keep_alive = false) {
    core_.emplace(&out_, &fields_, kDate, head, close, http10_keep_alive, http10_keep_alive);
    return ResponseWriter::Make(*core_);
  }
  // How often `needle` occurs in the output.
  int Count(std::string_view needle) const {
    int n = 0;
    for (size_t at = out_.find(needle); at != std::string::npos; at = out_.find(needle, at + 1)) {
      ++n;
    }
    return n;
  }

  std::string out_;
  std::optional<ResponseCore> core_;
  std::string fields_ = "stale: leftover of a previous response\r\n";  // Make() clears it
};

TEST_F(ResponseTest, DefaultResponseExactBytes) {
  Response res = Make();
  EXPECT_EQ(res.status(), 200);
  EXPECT_FALSE(res.sent());
  res.Send("Hello World!");
  EXPECT_TRUE(res.sent());
  EXPECT_EQ(out_,
            "HTTP/1.1 200 OK\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 12\r\n"
            "\r\n"
            "Hello World!");
}

TEST_F(ResponseTest, StatusLineAndReason) {
  const std::vector<std::pair<int, std::string>> cases = {
      {200, "HTTP/1.1 200 OK\r\n"},
      {201, "HTTP/1.1 201 Created\r\n"},
      {301, "HTTP/1.1 301 Moved Permanently\r\n"},
      {404, "HTTP/1.1 404 Not Found\r\n"},
      {418, "HTTP/1.1 418 Unknown\r\n"},
      {500, "HTTP/1.1 500 Internal Server Error\r\n"},
      {503, "HTTP/1.1 503 Service Unavailable\r\n"},
      {599, "HTTP/1.1 599 Unknown\r\n"},
  };
  for (const auto& [status, line] : cases) {
    out_.clear();
    Response res = Make();
    res.Status(status).Send("x");
    EXPECT_EQ(res.status(), status);
    EXPECT_EQ(out_.substr(0, line.size()), line) << status;
  }
}

TEST_F(ResponseTest, ReasonPhrases) {
  EXPECT_EQ(ReasonPhrase(200), "OK");
  EXPECT_EQ(ReasonPhrase(204), "No Content");
  EXPECT_EQ(ReasonPhrase(405), "Method Not Allowed");
  EXPECT_EQ(ReasonPhrase(413), "Content Too Large");
  EXPECT_EQ(ReasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(ReasonPhrase(505), "HTTP Version Not Supported");
  EXPECT_EQ(ReasonPhrase(299), "Unknown");
}

TEST_F(ResponseTest, AppendDecimal) {
  for (size_t n :
       {size_t{0}, size_t{7}, size_t{10}, size_t{1234567890}, size_t{18446744073709551615u}}) {
    std::string out = "x";
    AppendDecimal(out, n);
    EXPECT_EQ(out, "x" + std::to_string(n));
  }
}

TEST_F(ResponseTest, DateLineFollowsStatusLine) {
  Make().Status(404).Send("gone");
  EXPECT_EQ(out_.substr(0, out_.find("\r\n") + 2 + kDate.size()),
            "HTTP/1.1 404 Not Found\r\n" + std::string(kDate));
  EXPECT_EQ(Count("Date: "), 1);
}

TEST_F(ResponseTest, ContentLengthAlways) {
  Make().Send("");
  EXPECT_EQ(out_, "HTTP/1.1 200 OK\r\n" + std::string(kDate) + "Content-Length: 0\r\n\r\n");
  out_.clear();
  const std::string body(100000, 'b');
  Make().Status(500).Send(body);
  EXPECT_NE(out_.find("\r\nContent-Length: 100000\r\n"), std::string::npos);
  EXPECT_EQ(out_.substr(out_.size() - body.size()), body);
}

TEST_F(ResponseTest, NoDefaultContentTypeForEmptyBody) {
  Make().Send("");
  EXPECT_EQ(out_.find("Content-Type"), std::string::npos);
}

TEST_F(ResponseTest, TypeOverridesDefault) {
  Make().Type("application/json").Send("{}");
  EXPECT_EQ(Count("Content-Type: "), 1);
  EXPECT_NE(out_.find("\r\nContent-Type: application/json\r\n"), std::string::npos);
}

TEST_F(ResponseTest, LastTypeWins) {
  Response res = Make();
  res.Type("text/html").Set("X-A", "1").Type("image/png").Set("X-B", "2").Type("text/csv");
  res.Send("a,b");
  EXPECT_EQ(Count("Content-Type: "), 1) << out_;
  EXPECT_NE(out_.find("Content-Type: text/csv\r\n"), std::string::npos);
  EXPECT_NE(out_.find("X-A: 1\r\n"), std::string::npos) << out_;
  EXPECT_NE(out_.find("X-B: 2\r\n"), std::string::npos) << out_;
  EXPECT_EQ(out_.substr(out_.size() - 7), "\r\n\r\na,b");
}

TEST_F(ResponseTest, SetContentTypeIsType) {
  Response res = Make();
  res.Type("text/html").Set("content-type", "application/xml").Send("<a/>");
  EXPECT_EQ(Count("ontent-"), 2) << out_;  // Content-Type and Content-Length
  EXPECT_NE(out_.find("Content-Type: application/xml\r\n"), std::string::npos) << out_;
}

TEST_F(ResponseTest, SetAddsFields) {
  Response res = Make();
  res.Status(201).Set("Location", "/items/7").Set("X-Request-Id", "abc").Set("X-Empty", "");
  res.Send("{}");
  EXPECT_EQ(out_, "HTTP/1.1 201 Created\r\n" + std::string(kDate) +
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 2\r\n"
                      "Location: /items/7\r\n"
                      "X-Request-Id: abc\r\n"
                      "X-Empty: \r\n"
                      "\r\n"
                      "{}");
  EXPECT_EQ(out_.find("stale"), std::string::npos);
}

TEST_F(ResponseTest, SetRejectsControlCharacters) {
  Response res = Make();
  EXPECT_THROW(res.Set("X-A", "a\r\nInjected: 1"), std::invalid_argument);
  EXPECT_THROW(res.Set("X-A", "a\rb"), std::invalid_argument);
  EXPECT_THROW(res.Set("X-A", "a\nb"), std::invalid_argument);
  EXPECT_THROW(res.Set("X-A", std::string_view("a\0b", 3)), std::invalid_argument);
  EXPECT_THROW(res.Set("X-\r\nA", "v"), std::invalid_argument);
  EXPECT_THROW(res.Set("X-\nA", "v"), std::invalid_argument);
  EXPECT_THROW(res.Set("", "v"), std::invalid_argument);
  EXPECT_THROW(res.Set("X:A", "v"), std::invalid_argument);
  EXPECT_THROW(res.Type("text/plain\r\nX: 1"), std::invalid_argument);
  res.Send("ok");
  EXPECT_EQ(out_.find("Injected"), std::string::npos);
  EXPECT_EQ(out_.find("X-A"), std::string::npos);
  EXPECT_EQ(Count("\r\n"), 5) << out_;  // status, Date, type, length, blank line
}

TEST_F(ResponseTest, SetRejectsManagedFields) {
  Response res = Make();
  EXPECT_THROW(res.Set("Content-Length", "5"), std::invalid_argument);
  EXPECT_THROW(res.Set("content-length", "5"), std::invalid_argument);
  EXPECT_THROW(res.Set("Date", "today"), std::invalid_argument);
  EXPECT_THROW(res.Set("DATE", "today"), std::invalid_argument);
  EXPECT_THROW(res.Set("Transfer-Encoding", "chunked"), std::invalid_argument);
  EXPECT_THROW(res.Set("Connection", "keep-alive"), std::invalid_argument);
  EXPECT_THROW(res.Set("Connection", "upgrade"), std::invalid_argument);
  res.Send("ok");
  EXPECT_EQ(Count("Content-Length: "), 1);
  EXPECT_EQ(Count("Date: "), 1);
  EXPECT_EQ(out_.find("Transfer-Encoding"), std::string::npos);
  EXPECT_EQ(out_.find("Connection"), std::string::npos);
}

TEST_F(ResponseTest, SetConnectionCloseCloses) {
  Response res = Make();
  EXPECT_FALSE(ResponseWriter::Closes(res));
  res.Set("Connection", " Close ");
  EXPECT_TRUE(ResponseWriter::Closes(res));
  res.Send("bye");
  EXPECT_EQ(Count("Connection: close\r\n"), 1);
  EXPECT_EQ(Count("Connection"), 1);
}

TEST_F(ResponseTest, RequestCloseWritesConnectionClose) {
  Response res = Make(/*head=*/false, /*close=*/true);
  EXPECT_TRUE(ResponseWriter::Closes(res));
  res.Set("Connection", "close").Send("bye");  // said twice, written once
  EXPECT_EQ(Count("Connection"), 1);
  EXPECT_EQ(Count("Connection: close\r\n"), 1);
}

TEST_F(ResponseTest, Http10KeepAlive) {
  Make(/*head=*/false, /*close=*/false, /*http10_keep_alive=*/true).Send("x");
  EXPECT_EQ(Count("Connection: keep-alive\r\n"), 1);
  out_.clear();
  Response res = Make(false, false, true);
  res.Set("Connection", "close").Send("x");  // the handler's close wins
  EXPECT_EQ(Count("Connection"), 1);
  EXPECT_EQ(Count("Connection: close\r\n"), 1);
}

TEST_F(ResponseTest, NoContentHasNoBodyAndNoContentLength) {
  for (int status : {204, 304}) {
    out_.clear();
    Make().Status(status).Send("ignored body");
    EXPECT_EQ(out_.find("Content-Length"), std::string::npos) << out_;
    EXPECT_EQ(out_.find("ignored"), std::string::npos) << out_;
    EXPECT_EQ(out_.substr(out_.size() - 4), "\r\n\r\n") << out_;
  }
  out_.clear();
  Make().Status(204).Set("Allow", "GET, HEAD").Send("");
  EXPECT_EQ(out_, "HTTP/1.1 204 No Content\r\n" + std::string(kDate) + "Allow: GET, HEAD\r\n\r\n");
}

TEST_F(ResponseTest, HeadKeepsContentLengthButNoBody) {
  Make(/*head=*/true).Send("Hello World!");
  EXPECT_EQ(out_, "HTTP/1.1 200 OK\r\n" + std::string(kDate) +
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 12\r\n\r\n");
}

TEST_F(ResponseTest, StatusOutOfRangeThrows) {
  Response res = Make();
  EXPECT_THROW(res.Status(99), std::invalid_argument);
  EXPECT_THROW(res.Status(100), std::invalid_argument);
  EXPECT_THROW(res.Status(199), std::invalid_argument);
  EXPECT_THROW(res.Status(600), std::invalid_argument);
  EXPECT_THROW(res.Status(-200), std::invalid_argument);
  EXPECT_EQ(res.status(), 200);  // unchanged
  EXPECT_NO_THROW(res.Status(200));
  EXPECT_NO_THROW(res.Status(599));
  EXPECT_EQ(res.status(), 599);
}

TEST_F(ResponseTest, SecondSendIgnored) {
  Response res = Make();
  res.Send("first");
  const std::string after_first = out_;
  res.Send("second");
  EXPECT_EQ(out_, after_first);
  EXPECT_EQ(Count("HTTP/1.1"), 1);
  EXPECT_EQ(out_.find("second"), std::string::npos);
}

TEST_F(ResponseTest, AppendsAfterEarlierOutput) {
  out_ = "previous response bytes";
  Make().Send("x");
  EXPECT_EQ(out_.substr(0, 40), "previous response bytesHTTP/1.1 200 OK\r\n");
}

// Through a real session: what a handler does reaches the connection.

ProtocolFactory HandlerApp() {
  App app;
  app.Get("/close",
          [](const Request&, Response& res) { res.Set("Connection", "close").Send("bye"); });
  app.Get("/typed", [](const Request&, Response& res) {
    res.Status(202).Type("text/html").Type("application/json").Set("X-A", "1").Send("{}");
  });
  app.Get("/twice", [](const Request&, Response& res) {
    res.Send("one");
    res.Send("two");
  });
  app.Get("/managed", [](const Request&, Response& res) { res.Set("Content-Length", "1"); });
  return *app.Factory();
}

TEST(ResponseSessionTest, HandlerConnectionCloseClosesTheConnection) {
  percore::testing::LoopHarness harness(HandlerApp());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET /close HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string out = harness.TakeOutput(c);
  size_t consumed = 0;
  auto response = percore::testing::ParseResponse(out, &consumed);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(consumed, out.size());
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_TRUE(harness.Closing(c));
}

TEST(ResponseSessionTest, HandlerFieldsReachTheWire) {
  percore::testing::LoopHarness harness(HandlerApp());
  Connection* c = harness.Accept();
  harness.Feed(c,
               "GET /typed HTTP/1.1\r\nHost: a\r\n\r\nGET /twice HTTP/1.1\r\nHost: a\r\n\r\n"
               "GET /managed HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string out = harness.TakeOutput(c);
  size_t consumed = 0;
  auto typed = percore::testing::ParseResponse(out, &consumed);
  ASSERT_TRUE(typed.has_value()) << out;
  EXPECT_EQ(typed->status, 202);
  EXPECT_EQ(typed->Header("content-type"), "application/json");
  EXPECT_EQ(typed->Header("x-a"), "1");
  EXPECT_EQ(typed->Header("date").size(), 29u);
  out.erase(0, consumed);
  auto twice = percore::testing::ParseResponse(out, &consumed);
  ASSERT_TRUE(twice.has_value()) << out;
  EXPECT_EQ(twice->body, "one");
  out.erase(0, consumed);
  auto managed = percore::testing::ParseResponse(out, &consumed);  // Set threw: 500
  ASSERT_TRUE(managed.has_value()) << out;
  EXPECT_EQ(managed->status, 500);
  EXPECT_EQ(consumed, out.size());
  EXPECT_FALSE(harness.Closing(c));
}

}  // namespace
}  // namespace percore::http
