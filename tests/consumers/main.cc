// A program built on an installed (or add_subdirectory'd) percore, the way a user's would be:
// an App with a JSON route and gzip, asked through percore::testing's TestClient (the same
// parser, router and response writer as a socket, without one). Exits non-zero on a wrong answer.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/testing/client.h"
#include "percore/version.h"

namespace {

int Check(bool ok, const char* what) {
  if (!ok) std::fprintf(stderr, "consumer: FAILED: %s\n", what);
  return ok ? 0 : 1;
}

}  // namespace

int main() {
  percore::http::App app;
  app.Use(percore::http::Compress());
  app.Get("/users/:id", [](const percore::http::Request& req, percore::http::Response& res) {
    nlohmann::json body;  // nlohmann-json comes with percore::http
    body["id"] = std::string(req.Param("id"));
    body["pad"] = std::string(2000, 'x');  // big enough for Compress to gzip
    res.Json(body);
  });
  percore::testing::TestClient client(app);

  percore::testing::TestResponse plain = client.Get("/users/7");
  percore::testing::TestResponse gzipped = client.Get("/users/7", {{"Accept-Encoding", "gzip"}});
  int failures = 0;
  failures += Check(plain.status == 200, "GET /users/7 is 200");
  failures += Check(plain.body.rfind("{\"id\":\"7\"", 0) == 0, "the body is the route's JSON");
  failures += Check(gzipped.Header("content-encoding") == "gzip", "Compress gzips (zlib linked)");
  failures += Check(client.Get("/nope").status == 404, "GET /nope is 404");
  std::printf("percore %s consumer: %s\n", PERCORE_VERSION, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
