// The example service's tests: through percore::testing (no sockets), and once over a real
// socket with every loop running.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/testing/client.h"
#include "users_service.h"

namespace users {
namespace {

using nlohmann::json;
using percore::testing::Fields;
using percore::testing::TestClient;
using percore::testing::TestResponse;

const Fields kWriter = {{"Authorization", "Bearer secret"}, {"Content-Type", "application/json"}};

class UsersTest : public ::testing::Test {
 protected:
  UsersTest() : app_(MakeApp(store_, Options())), client_(app_) {}

  ServiceOptions Options() {
    ServiceOptions o;
    o.access_log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mutex_);
      log_.push_back(line);
    };
    return o;
  }
  TestResponse Create(const std::string& name) {
    return client_.Fetch("POST", "/api/users", kWriter,
                         json{{"name", name}, {"email", name + "@example.com"}}.dump());
  }
  static json Body(const TestResponse& r) { return json::parse(r.body); }

  std::shared_ptr<UserStore> store_ = std::make_shared<UserStore>();
  std::mutex log_mutex_;
  std::vector<std::string> log_;
  percore::http::App app_;
  TestClient client_;
};

TEST_F(UsersTest, CreatedUserCanBeReadBack) {
  TestResponse created = Create("ann");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.Header("location"), "/api/users/1");
  EXPECT_EQ(Body(created), (json{{"id", 1}, {"name", "ann"}, {"email", "ann@example.com"}}));
  TestResponse read = client_.Get("/api/users/1");
  ASSERT_EQ(read.status, 200);
  EXPECT_EQ(read.Header("content-type"), "application/json");
  EXPECT_EQ(Body(read)["name"], "ann");
}

TEST_F(UsersTest, ListFiltersByName) {
  Create("ann");
  Create("bob");
  Create("ann");
  EXPECT_EQ(Body(client_.Get("/api/users")).size(), 3u);
  json anns = Body(client_.Get("/api/users?name=ann"));
  ASSERT_EQ(anns.size(), 2u);
  EXPECT_EQ(anns[0]["id"], 1);
  EXPECT_EQ(anns[1]["id"], 3);
}

TEST_F(UsersTest, WritesNeedTheToken) {
  TestResponse r = client_.Fetch("POST", "/api/users", {{"Content-Type", "application/json"}},
                                 R"({"name":"a","email":"a@b"})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.Header("www-authenticate"), "Bearer");
  EXPECT_EQ(Body(r)["status"], 401);
  EXPECT_TRUE(store_->List("").empty());
  r = client_.Fetch("DELETE", "/api/users/1", {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(r.status, 401);
}

TEST_F(UsersTest, BadBodiesGetTheirOwnStatus) {
  const Fields text = {{"Authorization", "Bearer secret"}, {"Content-Type", "text/plain"}};
  EXPECT_EQ(client_.Fetch("POST", "/api/users", text, "name=a").status, 415);
  EXPECT_EQ(client_.Fetch("POST", "/api/users", kWriter, "{\"name\":").status, 400);
  TestResponse missing = client_.Fetch("POST", "/api/users", kWriter, R"({"name":"a"})");
  EXPECT_EQ(missing.status, 422);
  EXPECT_EQ(Body(missing)["error"], "name and email must be strings");
  EXPECT_EQ(client_.Fetch("POST", "/api/users", kWriter, R"({"name":"a","email":"x"})").status,
            422);
  EXPECT_TRUE(store_->List("").empty());
}

TEST_F(UsersTest, UnknownUsersAndPathsAreJson404s) {
  TestResponse none = client_.Get("/api/users/42");
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(Body(none), (json{{"error", "no such user"}, {"status", 404}}));
  TestResponse not_a_number = client_.Get("/api/users/abc");  // (\d+) does not match
  EXPECT_EQ(not_a_number.status, 404);
  EXPECT_EQ(Body(not_a_number)["error"], "Not Found");
  EXPECT_EQ(client_.Get("/api/users/99999999999999999999").status, 404);  // too large
  TestResponse wrong_method = client_.Fetch("PATCH", "/api/users/1", kWriter, "{}");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.Header("allow"), "GET, PUT, DELETE, HEAD");
}

TEST_F(UsersTest, UpdateAndDelete) {
  Create("ann");
  TestResponse put =
      client_.Fetch("PUT", "/api/users/1", kWriter, R"({"name":"anne","email":"anne@x"})");
  ASSERT_EQ(put.status, 200);
  EXPECT_EQ(store_->Find(1)->name, "anne");
  EXPECT_EQ(client_.Fetch("DELETE", "/api/users/1", kWriter).status, 204);
  EXPECT_EQ(client_.Fetch("DELETE", "/api/users/1", kWriter).status, 404);
  EXPECT_EQ(client_.Fetch("PUT", "/api/users/1", kWriter, R"({"name":"a","email":"a@x"})").status,
            404);
}

TEST_F(UsersTest, AvatarIsAnsweredLater) {
  Create("ann");
  TestResponse r = client_.Get("/api/users/1/avatar");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["avatar"], "https://avatars.example/ann.png");
  std::lock_guard<std::mutex> lock(log_mutex_);
  ASSERT_FALSE(log_.empty());
  // Logged when the answer went, not when the handler returned.
  EXPECT_TRUE(log_.back().starts_with("GET /api/users/1/avatar 200 ")) << log_.back();
}

TEST_F(UsersTest, CorsPreflightForTheConfiguredOrigin) {
  TestResponse r = client_.Fetch("OPTIONS", "/api/users",
                                 {{"Origin", "https://app.example"},
                                  {"Access-Control-Request-Method", "POST"},
                                  {"Access-Control-Request-Headers", "content-type"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.Header("access-control-allow-origin"), "https://app.example");
  EXPECT_EQ(r.Header("access-control-allow-headers"), "Authorization, Content-Type");
  EXPECT_EQ(r.Header("access-control-max-age"), "600");
  TestResponse other = client_.Get("/api/users", {{"Origin", "https://evil.example"}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.Header("access-control-allow-origin"), "");
}

TEST_F(UsersTest, LargeListsAreGzipped) {
  for (int i = 0; i < 100; ++i) store_->Add("user" + std::to_string(i), "u@example.com");
  TestResponse plain = client_.Get("/api/users");
  TestResponse zipped = client_.Get("/api/users", {{"Accept-Encoding", "gzip"}});
  ASSERT_EQ(zipped.Header("content-encoding"), "gzip");
  EXPECT_LT(zipped.body.size(), plain.body.size() / 4);
  std::string inflated(plain.body.size(), '\0');
  uLongf size = inflated.size();
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(zipped.body.data());
  z.avail_in = static_cast<uInt>(zipped.body.size());
  z.next_out = reinterpret_cast<Bytef*>(inflated.data());
  z.avail_out = static_cast<uInt>(size);
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  inflateEnd(&z);
  EXPECT_EQ(inflated, plain.body);
}

// Over a socket, every loop running: what a client of the real server sees.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    pollfd p{fd, POLLIN, 0};
    // "Connection: close": the answer ends with the connection; 10 s at most.
    while (poll(&p, 1, 10000) == 1) {
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      answer.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  return answer;
}

TEST(UsersServerTest, ServesOverASocket) {
  auto store = std::make_shared<UserStore>();
  percore::http::App app = MakeApp(store);
  percore::EngineOptions options;
  options.port = 0;  // any free port
  options.threads = 2;
  absl::StatusOr<std::unique_ptr<percore::Engine>> engine = app.Listen(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::thread runner([&] { (void)(*engine)->Run(); });
  const int port = (*engine)->port();
  const std::string body = R"({"name":"ann","email":"ann@example.com"})";
  std::string created =
      Exchange(port,
               "POST /api/users HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
               "secret\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_TRUE(created.starts_with("HTTP/1.1 201 Created\r\n")) << created;
  std::string read =
      Exchange(port, "GET /api/users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(read.starts_with("HTTP/1.1 200 OK\r\n")) << read;
  EXPECT_NE(read.find(R"({"email":"ann@example.com","id":1,"name":"ann"})"), std::string::npos)
      << read;
  (*engine)->Stop();
  runner.join();
}

}  // namespace
}  // namespace users
