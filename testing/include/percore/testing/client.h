// percore/testing/client.h — an App's answers without sockets, for unit tests.
//
//   percore::http::App app = MakeMyApp();
//   percore::testing::TestClient client(app);
//   percore::testing::TestResponse r = client.Get("/users/7");
//   EXPECT_EQ(r.status, 200);
//   EXPECT_EQ(r.Header("content-type"), "application/json");
//   r = client.Fetch("POST", "/users", {{"Content-Type", "application/json"}}, R"({"name":"a"})");
//
// The request goes through the same parser, middleware, router and response writer as on a
// real connection, on one loop run by the calling thread: deferred answers, timers and jobs
// posted from other threads work (the client runs the loop until the answer is complete).
// Depends on no test framework. Owning-thread-only.
#ifndef PERCORE_TESTING_CLIENT_H_
#define PERCORE_TESTING_CLIENT_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "percore/http/app.h"
#include "percore/testing/harness.h"

namespace percore::testing {

// One parsed HTTP/1.1 response.
struct TestResponse {
  int status = 0;                                   // 0: no complete answer (see `error`)
  std::multimap<std::string, std::string> headers;  // names lower-cased, in order per name
  std::string body;                                 // de-chunked
  bool closed = false;                              // the server closed the connection after it
  std::string error;                                // why there is no answer
  // The first field named `name` (any case); empty if absent.
  std::string Header(std::string_view name) const;
  // Every field named `name` (Set-Cookie), in order.
  std::vector<std::string> Headers(std::string_view name) const;
};

// Parses one response at the start of `data`: nullopt until it is complete (a body that ends
// with the connection is complete only with `closed`). `head`: the answer to a HEAD request
// (no body whatever Content-Length says). *consumed is its length.
std::optional<TestResponse> ParseResponse(std::string_view data, size_t* consumed,
                                          bool head = false, bool closed = false);

using Fields = std::vector<std::pair<std::string, std::string>>;

// A client of one App on one keep-alive connection (a new one once the server closed it).
class TestClient {
 public:
  struct Options {
    // How long a request may wait for its answer (deferred ones).
    absl::Duration timeout = absl::Seconds(10);
    // A Host field is added to requests that have none.
    std::string host = "test";
  };
  // Serves a copy of `app`'s routes and options as they are now (routes added later are not
  // seen). Throws std::invalid_argument if the App's options are invalid.
  explicit TestClient(const http::App& app);
  TestClient(const http::App& app, Options options);
  ~TestClient();

  TestResponse Get(std::string_view target, const Fields& fields = {});
  // Sends `method target HTTP/1.1`, the fields (and Content-Length for a body) and the body.
  TestResponse Fetch(std::string_view method, std::string_view target, const Fields& fields = {},
                     std::string_view body = {});
  // Sends `bytes` as they are (one read) and returns the first answer; for requests the
  // helpers above cannot write (malformed ones, pipelining).
  TestResponse Raw(std::string_view bytes, bool head = false);
  // The loop, to run timers and posted jobs between requests.
  LoopHarness& harness() { return *harness_; }

 private:
  TestResponse Read(bool head);

  Options options_;
  std::unique_ptr<LoopHarness> harness_;
  Connection* conn_ = nullptr;
  std::string received_;  // bytes of answers not returned yet
};

}  // namespace percore::testing

#endif  // PERCORE_TESTING_CLIENT_H_
