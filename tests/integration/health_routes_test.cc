// /healthz, /readyz and /metrics on a running engine (both backends): the counters follow the
// traffic, and readiness follows the supervisor.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/http/health.h"
#include "percore/testing/fault.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::testing::ConnectLocal;
using percore::testing::Get;
using percore::testing::HttpResponse;
using percore::testing::ReadResponse;
using percore::testing::SendAll;

// Sums the samples of `metric` whose labels contain `label` (any, if empty).
double Sum(const std::string& metrics, const std::string& metric, const std::string& label = "") {
  double total = 0;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(metric + "{", 0) != 0) continue;
    if (!label.empty() && line.find(label) == std::string::npos) continue;
    total += std::atof(line.substr(line.rfind(' ') + 1).c_str());
  }
  return total;
}

class HealthRoutesTest : public percore::testing::EngineTest {
 protected:
  void SetUp() override {
    App app;
    app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
    app.Get("/crash", [](const Request& req, Response& res) {
      percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
      res.Send("bye");
    });
    http::MountHealthRoutes(app);
    EngineOptions options;
    options.threads = 2;
    options.restart_backoff = absl::Milliseconds(10);
    options.crash_loop_deaths = 1;  // one death: not ready until it is older than the window
    options.crash_loop_window = absl::Seconds(1);
    options.log = [](std::string_view) {};
    ASSERT_NO_FATAL_FAILURE(Serve(app, options, /*start=*/false));  // Run() below starts it
    if (IsSkipped()) return;
    runner_ = std::thread([this] { run_status_ = engine_->Run(); });
    const auto deadline = Clock::now() + milliseconds(10000);
    while (!engine_->ready() && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));  // polling the condition, bounded above
    }
    ASSERT_TRUE(engine_->ready());
  }

  void TearDown() override {
    if (engine_ == nullptr) return;
    engine_->Stop();
    runner_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
  }

  std::optional<HttpResponse> Fetch(std::string_view path) {
    return percore::testing::Fetch(engine_->port(), Get(path));
  }

  // Polls `path` until it answers `status`, within the deadline.
  bool WaitForStatus(std::string_view path, int status) {
    const auto deadline = Clock::now() + milliseconds(10000);
    while (Clock::now() < deadline) {
      std::optional<HttpResponse> response = Fetch(path);
      if (response && response->status == status) return true;
      std::this_thread::sleep_for(milliseconds(10));  // polling the condition, bounded above
    }
    return false;
  }

  std::thread runner_;
  absl::Status run_status_;
};

TEST_P(HealthRoutesTest, HealthzAndReadyzAnswerWhileServing) {
  std::optional<HttpResponse> health = Fetch("/healthz");
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  std::optional<HttpResponse> ready = Fetch("/readyz");
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ready\n");
}

TEST_P(HealthRoutesTest, MetricsCountTheTraffic) {
  int fd = ConnectLocal(engine_->port());
  ASSERT_GE(fd, 0);
  std::string buffer;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(SendAll(fd, Get("/")));
    ASSERT_TRUE(ReadResponse(fd, buffer, milliseconds(10000)).has_value());
  }
  ASSERT_TRUE(SendAll(fd, Get("/missing")));
  ASSERT_TRUE(ReadResponse(fd, buffer, milliseconds(10000)).has_value());
  std::optional<HttpResponse> metrics = Fetch("/metrics");  // while `fd` is still open
  close(fd);
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = metrics->body;
  EXPECT_GE(Sum(m, "percore_requests_total", "code=\"2xx\""), 20) << m;
  EXPECT_GE(Sum(m, "percore_requests_total", "code=\"4xx\""), 1) << m;
  EXPECT_GE(Sum(m, "percore_connections_accepted_total"), 2) << m;
  EXPECT_GE(Sum(m, "percore_connections_active"), 2) << m;  // `fd` and the /metrics connection
  EXPECT_GT(Sum(m, "percore_received_bytes_total"), 21 * 30) << m;
  EXPECT_GT(Sum(m, "percore_sent_bytes_total"), 21 * 100) << m;
  EXPECT_EQ(Sum(m, "percore_loop_restarts_total"), 0) << m;
  EXPECT_NE(m.find("percore_connections_active{worker=\"1\",cpu=\""), std::string::npos) << m;
  EXPECT_NE(m.find("\npercore_ready 1\n"), std::string::npos) << m;
}

TEST_P(HealthRoutesTest, ReadinessDropsAfterACrashAndRecovers) {
  std::optional<HttpResponse> crash = Fetch("/crash");  // the loop dies before answering
  EXPECT_FALSE(crash.has_value());
  EXPECT_TRUE(WaitForStatus("/readyz", 503)) << "readiness never dropped";
  EXPECT_TRUE(WaitForStatus("/readyz", 200)) << "readiness never came back";
  std::optional<HttpResponse> metrics = Fetch("/metrics");
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(Sum(metrics->body, "percore_loop_restarts_total"), 1) << metrics->body;
  EXPECT_EQ(engine_->restarts(), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, HealthRoutesTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
