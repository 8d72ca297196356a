// The errors percore finds itself before a handler runs (413, 431, 408, 400 after the request
// line) and Request::Json()'s 415 go through the error hook once there is a request to hang
// them on; a request line that cannot be parsed keeps the default plain-text answer. In-process
// on 127.0.0.1, once per backend.
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::Error;
using percore::http::Request;
using percore::http::Response;
using percore::http::RouteOptions;
using percore::testing::ConnectLocal;
using percore::testing::ReadUntilClose;
using percore::testing::SendAll;
using percore::testing::Socket;

constexpr std::chrono::milliseconds kTimeout(10000);

class ErrorHookTest : public percore::testing::EngineTest {
 protected:
  void SetUp() override {
    percore::http::HttpOptions http;
    http.header_timeout = absl::Milliseconds(300);
    http.max_header_bytes = 4096;
    http.max_target_bytes = 1024;
    App app(http);
    // A JSON API: every error answered in JSON.
    app.OnError([](const Request&, Response& res, const Error& error) {
      res.Status(error.status).Json({{"error", error.status}});
    });
    app.Post(
        "/small", [](const Request& req, Response& res) { res.Send(req.body()); },
        RouteOptions{.max_body_bytes = 10});
    app.Post("/json", [](const Request& req, Response& res) { res.Json(req.Json()); });
    EngineOptions options;
    options.threads = 1;
    ASSERT_NO_FATAL_FAILURE(Serve(app, options));
  }

  // Sends `bytes` and reads until the server closes.
  std::string Exchange(std::string_view bytes) {
    Socket client(ConnectLocal(port_));
    EXPECT_TRUE(client.ok());
    EXPECT_TRUE(SendAll(client.fd(), bytes));
    return ReadUntilClose(client.fd(), kTimeout);
  }

  // Whether `answer` is the hook's JSON answer for `status`, closing the connection.
  static ::testing::AssertionResult IsHookAnswer(const std::string& answer, int status) {
    const std::string line = "HTTP/1.1 " + std::to_string(status) + " ";
    const std::string body = "{\"error\":" + std::to_string(status) + "}";
    if (answer.rfind(line, 0) == 0 && answer.find("application/json") != std::string::npos &&
        answer.find("Connection: close\r\n") != std::string::npos &&
        answer.size() >= body.size() && answer.compare(answer.size() - body.size(), body.size(),
                                                       body) == 0) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "not the hook's " << status << ": " << answer;
  }

};

TEST_P(ErrorHookTest, BodyOverTheRoutesLimitByContentLength) {
  EXPECT_TRUE(IsHookAnswer(Exchange("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"),
                           413));
}

TEST_P(ErrorHookTest, ChunkedBodyOverTheRoutesLimit) {
  EXPECT_TRUE(IsHookAnswer(Exchange("POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                    "chunked\r\n\r\n14\r\n01234567890123456789\r\n0\r\n\r\n"),
                           413));
}

TEST_P(ErrorHookTest, HeaderSectionTooLarge) {
  const std::string big(5000, 'a');
  EXPECT_TRUE(
      IsHookAnswer(Exchange("GET /small HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n"), 431));
}

TEST_P(ErrorHookTest, HeaderTimeoutAfterTheRequestLine) {
  EXPECT_TRUE(IsHookAnswer(Exchange("GET /small HTTP/1.1\r\nHost: x\r\n"), 408));
}

TEST_P(ErrorHookTest, MissingHost) {
  EXPECT_TRUE(IsHookAnswer(Exchange("GET /small HTTP/1.1\r\nAccept: */*\r\n\r\n"), 400));
}

TEST_P(ErrorHookTest, JsonOfABodyThatIsNotJson) {
  Socket client(ConnectLocal(port_));
  ASSERT_TRUE(SendAll(client.fd(),
                      "POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                      "Content-Length: 2\r\nConnection: close\r\n\r\nhi"));
  const std::string answer = ReadUntilClose(client.fd(), kTimeout);
  EXPECT_EQ(answer.rfind("HTTP/1.1 415 ", 0), 0u) << answer;
  EXPECT_NE(answer.find("{\"error\":415}"), std::string::npos) << answer;
}

TEST_P(ErrorHookTest, UnparsableRequestLineKeepsTheDefaultAnswer) {
  const std::string answer = Exchange("GET\x01 / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer;
  EXPECT_NE(answer.find("text/plain"), std::string::npos) << answer;
  const std::string long_target(2000, 'a');
  const std::string too_long = Exchange("GET /" + long_target + " HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(too_long.rfind("HTTP/1.1 414 ", 0), 0u) << too_long;
  EXPECT_NE(too_long.find("text/plain"), std::string::npos) << too_long;
}

INSTANTIATE_TEST_SUITE_P(Backends, ErrorHookTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
