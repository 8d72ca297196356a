// The HTTP session on a LoopHarness (session_suite.h): input split into any reads answers the
// same bytes as one read; pipelined requests; request bodies, chunked and "100-continue".
#include <algorithm>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"
#include "session_suite.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

// ---- Byte-at-a-time parsing gives the same bytes as one read ----

struct Case {
  const char* name;
  std::string input;
};

std::string PipelinedBatch() {
  return Get("/") + "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
         "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n" +
         Get("/users/42?q=a") + "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + Get("/nope") +
         "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n" +
         "GET /headers HTTP/1.1\r\nHost: a\r\nX-Custom:  spaced value \r\n\r\n" + Get("/throw") +
         Get("/");
}

std::vector<Case> StreamCases() {
  std::vector<Case> cases = {
      {"SimpleGet", Get("/")},
      {"PostContentLength",
       "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"},
      {"PostChunked",
       "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"},
      {"ExpectContinue",
       "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"},
      {"Pipelined", PipelinedBatch()},
      {"ConnectionCloseThenMore",
       "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + Get("/")},
      {"Http10", "GET / HTTP/1.0\r\n\r\n"},
      {"Unfinished", Get("/") + "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"},
  };
  for (BadInput& bad : BadInputs()) cases.push_back({bad.name, std::move(bad.input)});
  return cases;
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class StreamTest : public ::testing::TestWithParam<Case> {};

TEST_P(StreamTest, BytewiseEqualsWhole) {
  // One harness, so both connections share one Date line.
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* whole = harness.Accept();
  Connection* bytewise = harness.Accept();
  harness.Feed(whole, GetParam().input);
  harness.FeedBytewise(bytewise, GetParam().input);
  const std::string expected = harness.TakeOutput(whole);
  EXPECT_NE(expected, "");
  EXPECT_EQ(harness.TakeOutput(bytewise), expected);
  EXPECT_EQ(harness.Closing(bytewise), harness.Closing(whole));
}

TEST_P(StreamTest, EverySplitInTwoEqualsWhole) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* whole = harness.Accept();
  const std::string& input = GetParam().input;
  harness.Feed(whole, input);
  const std::string expected = harness.TakeOutput(whole);
  for (size_t split = 1; split < input.size(); ++split) {
    Connection* c = harness.Accept();
    harness.Feed(c, std::string_view(input).substr(0, split));
    harness.Feed(c, std::string_view(input).substr(split));
    ASSERT_EQ(harness.TakeOutput(c), expected) << "split at " << split;
    ASSERT_EQ(harness.Closing(c), harness.Closing(whole)) << "split at " << split;
  }
}

TEST_P(StreamTest, RandomSplitsEqualWhole) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* whole = harness.Accept();
  const std::string& input = GetParam().input;
  harness.Feed(whole, input);
  const std::string expected = harness.TakeOutput(whole);
  std::mt19937 random(20240601);  // fixed: a failure is reproducible
  for (int round = 0; round < 50; ++round) {
    Connection* c = harness.Accept();
    std::string pieces;
    for (size_t at = 0; at < input.size();) {
      const size_t n = std::uniform_int_distribution<size_t>(1, 24)(random);
      harness.Feed(c, std::string(std::string_view(input).substr(at, n)));
      pieces += std::to_string(std::min(n, input.size() - at)) + " ";
      at += n;
    }
    ASSERT_EQ(harness.TakeOutput(c), expected) << "pieces: " << pieces;
    ASSERT_EQ(harness.Closing(c), harness.Closing(whole)) << "pieces: " << pieces;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, StreamTest, ::testing::ValuesIn(StreamCases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// ---- Pipelining ----

TEST(SessionTest, PipelinedBatchAnsweredInOrderInOneOutput) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  std::string batch;
  constexpr int kRequests = 10;
  for (int i = 0; i < kRequests; ++i) batch += Get("/users/" + std::to_string(i));
  harness.Feed(c, batch);
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(rest, "");
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(responses[i].status, 200);
    EXPECT_EQ(responses[i].body,
              "id=" + std::to_string(i) + " q= query= path=/users/" + std::to_string(i));
  }
  EXPECT_FALSE(harness.Closing(c));
  // Nothing more comes out until more bytes come in.
  EXPECT_EQ(harness.TakeOutput(c), "");
}

TEST(SessionTest, PipelinedBatchResponsesMatchTheirRequests) {
  LoopHarness harness(MakeFactory(SmallLimits()));
  Connection* c = harness.Accept();
  harness.Feed(c, PipelinedBatch());
  std::string out = harness.TakeOutput(c);
  // The fifth response answers HEAD: a Content-Length but no body, so split the output there.
  size_t head_start = 0;
  for (int i = 0; i < 4; ++i) head_start = out.find("HTTP/1.1 ", head_start + 1);
  ASSERT_NE(head_start, std::string::npos) << out;
  const size_t head_end = out.find("\r\n\r\n", head_start) + 4;
  std::vector<HttpResponse> first = ParseAll(std::string_view(out).substr(0, head_start));
  std::string rest;
  std::vector<HttpResponse> second = ParseAll(std::string_view(out).substr(head_end), &rest);
  EXPECT_EQ(rest, "");
  ASSERT_EQ(first.size(), 4u) << out;
  ASSERT_EQ(second.size(), 5u) << out;
  const std::string_view head = std::string_view(out).substr(head_start, head_end - head_start);
  EXPECT_EQ(head.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_NE(head.find("\r\nContent-Length: 12\r\n"), std::string_view::npos);
  EXPECT_EQ(first[0].body, "Hello World!");
  EXPECT_EQ(first[1].body, "hello");
  EXPECT_EQ(first[2].body, "abcdefg");
  EXPECT_EQ(first[3].body, "id=42 q=a query=q=a path=/users/42");
  EXPECT_EQ(second[0].status, 404);
  EXPECT_EQ(second[1].status, 405);
  EXPECT_EQ(second[2].body,
            "x-custom=spaced value X-CUSTOM=spaced value has=yes missing=no "
            "order=Host:a;X-Custom:spaced value;");
  EXPECT_EQ(second[3].status, 500);
  EXPECT_EQ(second[4].body, "Hello World!");
  EXPECT_FALSE(harness.Closing(c));
}

TEST(SessionTest, RequestSpanningManyReadsKeepsEveryView) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  const std::string request =
      "GET /headers?x=1 HTTP/1.1\r\nHost: a\r\nX-Custom: value\r\nX-Other: o\r\n\r\n";
  // Uneven pieces: 3, 5, 7, ... bytes.
  size_t at = 0;
  for (size_t n = 3; at < request.size(); n += 2) {
    harness.Feed(c, std::string(request.substr(at, n)));
    at += n;
  }
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body,
            "x-custom=value X-CUSTOM=value has=yes missing=no order=Host:a;X-Custom:value;"
            "X-Other:o;");
}

// ---- Bodies ----

TEST(SessionTest, ChunkedBodyIsDechunked) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c,
               "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n1\r\n,\r\n6;name=value\r\n world\r\n0\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].body, "hello, world");
}

TEST(SessionTest, ChunkedBodySplitAfterSecondChunkKeepsAllChunks) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c,
               "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n3\r\ndef\r\n");
  EXPECT_EQ(harness.TakeOutput(c), "");
  harness.Feed(c, "3\r\nghi\r\n0\r\n\r\n");
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body, "abcdefghi");
}

// The limit on skipped bytes holds per chunk: many chunks with extensions are fine.
TEST(SessionTest, ChunkExtensionsAreBoundedPerChunk) {
  HttpOptions options;
  options.max_header_bytes = 256;
  options.max_target_bytes = 64;
  LoopHarness harness(MakeFactory(options));
  Connection* c = harness.Accept();
  std::string request = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 20; ++i) request += "1;" + std::string(100, 'e') + "\r\nx\r\n";
  request += "0\r\n\r\n";
  harness.Feed(c, request);
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].body, std::string(20, 'x'));
}

TEST(SessionTest, TrailerFieldsAreNotHeaders) {
  const std::string request =
      "POST /headers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nX-Custom: trailer\r\nX-More: m\r\n\r\n";
  LoopHarness harness(MakeFactory());
  Connection* whole = harness.Accept();
  harness.Feed(whole, request);
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(whole));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body,
            "x-custom= X-CUSTOM= has=no missing=no order=Host:a;Transfer-Encoding:chunked;");
  // The trailer arrives in another read than the header section.
  Connection* split = harness.Accept();
  harness.Feed(split, request.substr(0, request.find("0\r\n")));
  harness.Feed(split, request.substr(request.find("0\r\n")));
  responses = ParseAll(harness.TakeOutput(split));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body,
            "x-custom= X-CUSTOM= has=no missing=no order=Host:a;Transfer-Encoding:chunked;");
  EXPECT_FALSE(harness.Closing(split));
}

TEST(SessionTest, ContentLengthBodyInPieces) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc");
  harness.Feed(c, "def");
  EXPECT_EQ(harness.TakeOutput(c), "");
  harness.Feed(c, "ghi" + Get("/"));
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c));
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].body, "abcdefghi");
  EXPECT_EQ(responses[1].body, "Hello World!");
}

TEST(SessionTest, ExpectContinueAnswers100First) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(
      c, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  EXPECT_EQ(harness.TakeOutput(c), "HTTP/1.1 100 Continue\r\n\r\n");
  harness.Feed(c, "data");
  std::string rest;
  std::vector<HttpResponse> responses = ParseAll(harness.TakeOutput(c), &rest);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].body, "data");
}

TEST(SessionTest, ExpectContinueInOneReadPrecedesFinalResponse) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c,
               "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
               "data");
  std::string out = harness.TakeOutput(c);
  const std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  ASSERT_EQ(out.substr(0, kContinue.size()), kContinue);
  std::vector<HttpResponse> responses = ParseAll(out.substr(kContinue.size()));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].body, "data");
}

TEST(SessionTest, NoContinueWithoutBody) {
  LoopHarness harness(MakeFactory());
  Connection* c = harness.Accept();
  harness.Feed(c, "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
  std::string out = harness.TakeOutput(c);
  EXPECT_EQ(out.find("100 Continue"), std::string::npos) << out;
  EXPECT_EQ(ParseAll(out).size(), 1u);
}

}  // namespace
}  // namespace percore::http
