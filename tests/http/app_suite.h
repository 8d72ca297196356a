// What the App suites (app_test.cc, app_request_test.cc, app_client_test.cc) share: handlers
// that answer or log, an error hook that records what it was given, and one GET on a fresh
// TestClient.
#ifndef PERCORE_TESTS_HTTP_APP_SUITE_H_
#define PERCORE_TESTS_HTTP_APP_SUITE_H_

#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "percore/http/app.h"
#include "percore/testing/client.h"

namespace percore::http {

using Log = std::vector<std::string>;
using percore::testing::Fields;
using percore::testing::TestClient;
using percore::testing::TestResponse;

// A handler that answers `body`.
inline Handler Text(std::string body) {
  return [body](const Request&, Response& res) { res.Send(body); };
}

// A handler that logs "route" and answers "ok".
inline Handler LoggedRoute(Log* log) {
  return [log](const Request&, Response& res) {
    log->push_back("route");
    res.Send("ok");
  };
}

// What the error hook was given, copied (Error's message is a view).
struct SeenError {
  int calls = 0;
  int status = 0;
  std::string message;
  std::exception_ptr exception;
};

// An error hook that records the error and answers {"error": message} with its status.
inline ErrorHandler JsonErrors(SeenError* seen) {
  return [seen](const Request&, Response& res, const Error& error) {
    ++seen->calls;
    seen->status = error.status;
    seen->message = std::string(error.message);
    seen->exception = error.exception;
    res.Status(error.status).Json({{"error", std::string(error.message)}});
  };
}

// One GET on a fresh client of `app`.
inline TestResponse GetOnce(const App& app, std::string_view target, const Fields& fields = {}) {
  TestClient client(app);
  return client.Get(target, fields);
}

}  // namespace percore::http

#endif  // PERCORE_TESTS_HTTP_APP_SUITE_H_
