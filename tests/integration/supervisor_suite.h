// What the supervisor suites (supervisor_test.cc, supervisor_drain_test.cc) share: the engine
// in-process, Engine::Run() on a background thread (stopped with Stop() and joined in teardown),
// the engine's log lines captured, the test thread as the client on 127.0.0.1. Every wait has a
// deadline; sleeps only pace a sender or a poll of a condition that has its own deadline.
#ifndef PERCORE_TESTS_INTEGRATION_SUPERVISOR_SUITE_H_
#define PERCORE_TESTS_INTEGRATION_SUPERVISOR_SUITE_H_

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "percore/testing/fault.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore::testing {

inline constexpr std::chrono::milliseconds kReadTimeout(10000);
inline constexpr std::chrono::milliseconds kWaitTimeout(20000);

inline http::App MakeApp() {
  http::App app;
  app.Get("/", [](const http::Request&, http::Response& res) { res.Send("Hello World!"); });
  app.Get("/worker", [](const http::Request& req, http::Response& res) {
    res.Send(std::to_string(req.worker_id()));
  });
  app.Get("/crash", [](const http::Request& req, http::Response& res) {
    percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
    res.Send("crashing worker " + std::to_string(req.worker_id()));
  });
  app.All("/echo", [](const http::Request& req, http::Response& res) { res.Send(req.body()); });
  // Which loop instance (thread) served the request.
  app.Get("/thread",
          [](const http::Request&, http::Response& res) { res.Send(std::to_string(gettid())); });
  app.Get("/stall", [](const http::Request& req, http::Response& res) {
    const int ms = std::stoi(std::string(req.Query("ms")));
    // Blocks the loop, as a buggy handler would.
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    res.Send("stalled");
  });
  return app;
}

// The suite runs once per backend.
class SupervisorTest : public EngineClientTest {
 protected:
  // `threads` loops (Serve() puts them on 127.0.0.1, any free port), log lines captured.
  EngineOptions TestEngineOptions(int threads) {
    EngineOptions options;
    options.threads = threads;
    options.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mutex_);
      log_.emplace_back(line);
      log_times_.push_back(std::chrono::steady_clock::now());
      changed_.notify_all();
    };
    options.on_started = [this](const Engine&) {
      std::lock_guard<std::mutex> lock(mutex_);
      started_ = true;
      changed_.notify_all();
    };
    return options;
  }

  // Creates the engine and runs Engine::Run() on a background thread until it serves, or with
  // `keep_signals` Start() then Wait(), as an application that keeps its own signals does.
  // Marks the test skipped (the caller returns) if the io_uring backend cannot run here.
  void RunEngine(const EngineOptions& options, bool keep_signals = false) {
    ASSERT_NO_FATAL_FAILURE(Serve(MakeApp(), options, /*start=*/false));
    if (IsSkipped()) return;
    runner_ = std::thread([this, keep_signals] {
      absl::Status status;
      if (keep_signals) {
        status = engine_->Start();
        if (status.ok()) {
          std::lock_guard<std::mutex> lock(mutex_);
          started_ = true;
          changed_.notify_all();
        }
        if (status.ok()) engine_->Wait();
      } else {
        status = engine_->Run();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      run_status_ = status;
      returned_ = true;
      changed_.notify_all();
    });
    std::unique_lock<std::mutex> lock(mutex_);
    ASSERT_TRUE(changed_.wait_for(lock, kWaitTimeout, [this] { return started_ || returned_; }))
        << "Run() did not start serving";
    ASSERT_TRUE(started_) << "Run() returned at start: " << run_status_;
  }

  void TearDown() override {
    if (engine_ == nullptr) return;
    engine_->Stop();
    EXPECT_TRUE(WaitForRunToReturn(kWaitTimeout)) << "Run() did not return after Stop()";
    runner_.join();  // (only hangs if Run() never returns; the failure above says so)
    engine_.reset();
  }

  // Stops the engine (if running), so that RunEngine() may start another.
  void StopEngine() {
    TearDown();
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = returned_ = false;
    run_status_ = absl::OkStatus();
    log_.clear();
    log_times_.clear();
  }
  // Waits for Run() to return; false if it is still running after `timeout`.
  bool WaitForRunToReturn(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return returned_; });
  }
  absl::Status run_status() {
    std::lock_guard<std::mutex> lock(mutex_);
    return run_status_;
  }

  // A copy of the log lines so far.
  std::vector<std::string> Log() {
    std::lock_guard<std::mutex> lock(mutex_);
    return log_;
  }
  // Waits until `count` log lines contain `text`; false if they do not within `timeout`.
  bool WaitForLogLines(std::string_view text, size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return CountLocked(text) >= count; });
  }
  size_t CountLogLines(std::string_view text) {
    std::lock_guard<std::mutex> lock(mutex_);
    return CountLocked(text);
  }
  // When the `index`th (0-based) log line containing `text` was logged.
  std::optional<std::chrono::steady_clock::time_point> LogTime(std::string_view text,
                                                               size_t index) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < log_.size(); ++i) {
      if (log_[i].find(text) != std::string::npos && index-- == 0) return log_times_[i];
    }
    return std::nullopt;
  }

 private:
  size_t CountLocked(std::string_view text) const {
    size_t count = 0;
    for (const std::string& line : log_) count += line.find(text) != std::string::npos ? 1 : 0;
    return count;
  }

  std::thread runner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> log_;
  std::vector<std::chrono::steady_clock::time_point> log_times_;
  bool started_ = false;
  bool returned_ = false;
  absl::Status run_status_;
};

}  // namespace percore::testing

#endif  // PERCORE_TESTS_INTEGRATION_SUPERVISOR_SUITE_H_
