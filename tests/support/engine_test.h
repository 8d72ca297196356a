// The engine in-process, serving an App on 127.0.0.1 with the backend under test: what the
// integration suites that run once per backend share.
#ifndef PERCORE_TESTS_SUPPORT_ENGINE_TEST_H_
#define PERCORE_TESTS_SUPPORT_ENGINE_TEST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "percore/stats.h"
#include "support/test_client.h"

namespace percore::testing {

// app.Listen() on 127.0.0.1, any free port unless `options` names one, with `backend` and the
// rest of `options` (2 loops unless it says otherwise). Not started.
absl::StatusOr<std::unique_ptr<Engine>> ListenLocal(const http::App& app, BackendKind backend,
                                                    EngineOptions options = {});
// Whether `status` says the io_uring backend cannot run on this machine: the test skips.
bool IoUringUnavailable(const absl::Status& status);

// EngineTest::Serve() for a fixture whose parameter is more than a backend: stops the engine in
// *engine if any, then puts ListenLocal(app, backend, options) there, started unless `start` is
// false, and its port in *port.
void ServeLocal(const http::App& app, BackendKind backend, EngineOptions options, bool start,
                std::unique_ptr<Engine>* engine, int* port);
// Stops the engine in *engine, if any, waits for its loops and releases it.
void StopLocal(std::unique_ptr<Engine>* engine);

// A suite run once per backend (percore::testing::AllBackends()) around one started engine.
class EngineTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  // Serves `app` with ListenLocal(app, GetParam(), options), replacing the engine served before;
  // not started if `start` is false (the test runs it its own way). Skips the test where io_uring
  // cannot run: call it as ASSERT_NO_FATAL_FAILURE(Serve(app)), then return if IsSkipped().
  void Serve(const http::App& app, EngineOptions options = {}, bool start = true);
  void TearDown() override;
  // A counter summed over the workers: Total(&WorkerCounters::bytes_out).
  uint64_t Total(uint64_t WorkerCounters::*counter) const;

  std::unique_ptr<Engine> engine_;
  int port_ = 0;
};

// An EngineTest whose tests are the engine's client by name: Connect() and Fetch() on its port.
class EngineClientTest : public EngineTest {
 protected:
  // A connection to the engine (a failure to connect is a test failure).
  Socket Connect();
  // One request on a fresh connection; the response, or nullopt.
  std::optional<HttpResponse> Fetch(const std::string& request);
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_SUPPORT_ENGINE_TEST_H_
