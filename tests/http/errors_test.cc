#include "errors.h"

#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "response_writer.h"
#include "support/test_client.h"

namespace percore::http {
namespace {

using percore::testing::ParseResponse;

constexpr std::string_view kDate = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

class ErrorsTest : public ::testing::TestWithParam<int> {};

TEST_P(ErrorsTest, WellFormedAndClosing) {
  const int status = GetParam();
  std::string out;
  AppendErrorResponse(out, status, kDate);
  const std::string reason(ReasonPhrase(status));
  ASSERT_NE(reason, "Unknown");
  const std::string body = reason + "\n";
  EXPECT_EQ(out, "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n" + std::string(kDate) +
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: " +
                     std::to_string(body.size()) +
                     "\r\n"
                     "Connection: close\r\n"
                     "\r\n" +
                     body);
  size_t consumed = 0;
  auto response = ParseResponse(out, &consumed);
  ASSERT_TRUE(response.has_value()) << out;
  EXPECT_EQ(consumed, out.size());
  EXPECT_EQ(response->status, status);
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_EQ(response->Header("content-length"), std::to_string(response->body.size()));
  EXPECT_EQ(response->body, body);
}

TEST_P(ErrorsTest, AppendsAfterExistingOutput) {
  std::string out = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  const std::string before = out;
  AppendErrorResponse(out, GetParam(), kDate);
  EXPECT_EQ(out.substr(0, before.size()), before);
  std::string alone;
  AppendErrorResponse(alone, GetParam(), kDate);
  EXPECT_EQ(out.substr(before.size()), alone);
}

INSTANTIATE_TEST_SUITE_P(ReadyMade, ErrorsTest,
                         ::testing::Values(400, 408, 413, 414, 417, 431, 500, 501, 505));

TEST(ErrorsTest, UsesTheGivenDateLine) {
  std::string out;
  AppendErrorResponse(out, 408, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
  EXPECT_EQ(out.substr(0, 67),
            "HTTP/1.1 408 Request Timeout\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
}

TEST(ErrorsTest, UnlistedStatusAnswers400) {
  for (int status : {200, 404, 418, 999}) {
    std::string out, expected;
    AppendErrorResponse(out, status, kDate);
    AppendErrorResponse(expected, 400, kDate);
    EXPECT_EQ(out, expected) << status;
  }
}

}  // namespace
}  // namespace percore::http
