// What the server suites (server_test.cc, server_close_test.cc, server_lifecycle_test.cc)
// share: the engine in-process, serving an App on 127.0.0.1 with two loops, once per backend;
// the test thread is the client. Every wait has a deadline; sleeps only pace a slow sender.
#ifndef PERCORE_TESTS_INTEGRATION_SERVER_SUITE_H_
#define PERCORE_TESTS_INTEGRATION_SERVER_SUITE_H_

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore::testing {

inline constexpr std::chrono::milliseconds kReadTimeout(10000);

inline std::string PostEcho(std::string_view body) {
  return "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

inline std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

inline http::App MakeApp(http::HttpOptions http) {
  http::App app(http);
  app.Get("/", [](const http::Request&, http::Response& res) { res.Send("Hello World!"); });
  app.Get("/worker", [](const http::Request& req, http::Response& res) {
    res.Send("worker " + std::to_string(req.worker_id()));
  });
  app.Get("/big",
          [](const http::Request&, http::Response& res) { res.Send(std::string(16 * 1024, 'b')); });
  app.All("/echo", [](const http::Request& req, http::Response& res) {
    std::string_view type = req.Header("content-type");
    res.Type(type.empty() ? "application/octet-stream" : type).Send(req.body());
  });
  return app;
}

// The suite runs once per backend.
class ServerTest : public EngineClientTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Serve(MakeApp(http::HttpOptions()))); }

  // Serves MakeApp(http) with `options`, replacing the running engine.
  void Restart(http::HttpOptions http, EngineOptions options = {}) {
    Serve(MakeApp(http), options);
  }

  void StopEngine() { percore::testing::StopLocal(&engine_); }

  // The server still answers a new connection, several requests on it.
  void ExpectServing() {
    Socket socket = Connect();
    ASSERT_TRUE(socket.ok());
    std::string buffer;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(SendAll(socket.fd(), Get("/")));
      std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
      ASSERT_TRUE(response.has_value()) << "request " << i;
      EXPECT_EQ(response->status, 200);
      EXPECT_EQ(response->body, "Hello World!");
    }
    for (int i = 0; i < 20; ++i) {  // fresh connections, so both loops are asked
      std::optional<HttpResponse> response = Fetch(Get("/"));
      ASSERT_TRUE(response.has_value()) << "fresh connection " << i;
      EXPECT_EQ(response->body, "Hello World!");
    }
  }

  // Every connection the server accepted has been released: this process is back to
  // `baseline` descriptors (taken with no client connection open).
  void ExpectConnectionsReleased(int baseline) {
    EXPECT_EQ(WaitForFdCount(baseline, std::chrono::milliseconds(20000)), baseline)
        << "the server still holds connections the clients closed";
  }
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_INTEGRATION_SERVER_SUITE_H_
