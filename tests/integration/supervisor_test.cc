// The supervisor with the engine in-process (supervisor_suite.h), once per backend: a loop that
// crashes is restarted while the other serves on, its connections closed or handed to its
// replacement, and a crash loop backs off. Drains, rolling restarts and stuck loops are in
// supervisor_drain_test.cc.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/options.h"
#include "supervisor_suite.h"
#include "support/backends.h"
#include "support/test_client.h"

namespace percore::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// CPU time (user + system) this process has used so far, all threads.
absl::Duration ProcessCpuTime() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

TEST_P(SupervisorTest, CrashedLoopRestartsWhileTheOtherLoopServesOn) {
  ASSERT_NO_FATAL_FAILURE(RunEngine(TestEngineOptions(2)));
  if (IsSkipped()) return;

  // A keep-alive connection, and the loop that owns it.
  Socket kept = Connect();
  ASSERT_TRUE(kept.ok());
  std::string kept_buffer;
  ASSERT_TRUE(SendAll(kept.fd(), Get("/worker")));
  std::optional<HttpResponse> first = ReadResponse(kept.fd(), kept_buffer, kReadTimeout);
  ASSERT_TRUE(first.has_value());
  const std::string kept_worker = first->body;

  // A connection on the other loop: fresh connections until one lands there.
  Socket victim;
  std::string victim_worker;
  for (int i = 0; i < 500 && !victim.ok(); ++i) {
    Socket socket = Connect();
    ASSERT_TRUE(socket.ok());
    std::string buffer;
    ASSERT_TRUE(SendAll(socket.fd(), Get("/worker")));
    std::optional<HttpResponse> response = ReadResponse(socket.fd(), buffer, kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "connection " << i;
    if (response->body != kept_worker) {
      victim_worker = response->body;
      victim = std::move(socket);
    }
  }
  ASSERT_TRUE(victim.ok()) << "500 fresh connections all landed on worker " << kept_worker;

  // ~200 sequential requests on the kept connection from another thread: 50 before the crash,
  // 100 paced over the time the other loop is down, the rest once it was restarted.
  std::atomic<int> kept_done{0};
  std::atomic<bool> crashed{false};
  std::string kept_errors;  // written by the thread, read after join
  std::thread keeper([&] {
    for (int i = 0; i < 200; ++i) {
      if (i == 50) {
        if (!WaitUntil([&] { return crashed.load(); }, kWaitTimeout)) {
          kept_errors += "the crash was never logged\n";
          return;
        }
      }
      if (i == 150 && !WaitUntil([&] { return engine_->restarts() >= 1; }, kWaitTimeout)) {
        kept_errors += "the crashed loop was never restarted\n";
        return;
      }
      if (i >= 50 && i < 150) std::this_thread::sleep_for(milliseconds(1));  // pacing
      const bool root = i % 2 == 0;
      std::optional<HttpResponse> response;
      if (SendAll(kept.fd(), Get(root ? "/" : "/worker"))) {
        response = ReadResponse(kept.fd(), kept_buffer, kReadTimeout);
      }
      const std::string expected = root ? "Hello World!" : kept_worker;
      if (!response.has_value()) {
        kept_errors += "request " + std::to_string(i) + ": no response\n";
        return;
      }
      if (response->status != 200 || response->body != expected ||
          response->Header("connection") == "close") {
        kept_errors += "request " + std::to_string(i) + ": status " +
                       std::to_string(response->status) + ", body \"" + response->body +
                       "\", connection \"" + response->Header("connection") + "\"\n";
      }
      kept_done.store(i + 1);
    }
  });

  // However this test ends, the thread is released and joined.
  struct Joiner {
    std::thread& thread;
    std::atomic<bool>& release;
    ~Joiner() {
      release.store(true);
      if (thread.joinable()) thread.join();
    }
  } joiner{keeper, crashed};

  ASSERT_TRUE(WaitUntil([&] { return kept_done.load() >= 50; }, kWaitTimeout));
  ASSERT_TRUE(SendAll(victim.fd(), Get("/crash")));
  const std::string died = "Worker " + victim_worker + " died (";
  const bool logged = WaitForLogLines(died, 1, kWaitTimeout);
  crashed.store(true);
  EXPECT_TRUE(logged) << "no \"" << died << "\" line";

  // The crashed loop closed its connections.
  ReadToEndResult victim_end = ReadToEnd(victim.fd(), kReadTimeout);
  EXPECT_NE(victim_end.end, StreamEnd::kTimeout) << "the crashed loop left its connection open";

  // Fresh connections while the loop is down and after it is back: every one is served (one
  // that lands on the dead loop's listener waits in its accept queue for the new loop).
  int fresh = 0;
  int fresh_after_restart = 0;
  for (; fresh < 400 && fresh_after_restart < 20; ++fresh) {
    const bool restarted = engine_->restarts() >= 1;
    std::optional<HttpResponse> response = Fetch(Get("/"));
    ASSERT_TRUE(response.has_value()) << "fresh connection " << fresh;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "Hello World!");
    if (restarted) ++fresh_after_restart;
  }
  EXPECT_EQ(fresh_after_restart, 20) << "no restart within " << fresh << " fresh connections";
  RecordProperty("fresh_connections_before_restart", fresh - fresh_after_restart);

  keeper.join();
  EXPECT_EQ(kept_errors, "");
  EXPECT_EQ(kept_done.load(), 200);

  EXPECT_TRUE(WaitUntil([&] { return engine_->ready(); }, kWaitTimeout))
      << "not ready again after the restart";
  EXPECT_EQ(engine_->restarts(), 1);
  const std::vector<std::string> log = Log();
  EXPECT_EQ(CountLogLines(" died ("), 1u) << ::testing::PrintToString(log);
  EXPECT_NE(std::find(log.begin(), log.end(),
                      "Worker " + victim_worker +
                          " died (crash requested by /crash); restarting in 100ms"),
            log.end())
      << ::testing::PrintToString(log);
  // Both loops serve again.
  std::set<std::string> workers;
  for (int i = 0; i < 200 && workers.size() < 2; ++i) {
    std::optional<HttpResponse> response = Fetch(Get("/worker"));
    ASSERT_TRUE(response.has_value());
    workers.insert(response->body);
  }
  EXPECT_EQ(workers, (std::set<std::string>{"0", "1"}));
}

// A loop that dies closes only the connection it was serving: its idle keep-alive connections
// go to the loop that replaces it and keep serving.
TEST_P(SupervisorTest, IdleConnectionsOfACrashedLoopAreServedByItsReplacement) {
  EngineOptions options = TestEngineOptions(1);
  options.restart_backoff = absl::Milliseconds(10);
  ASSERT_NO_FATAL_FAILURE(RunEngine(options));
  if (IsSkipped()) return;
  constexpr int kIdle = 50;
  std::vector<Socket> idle(kIdle);
  std::vector<std::string> buffers(kIdle);
  for (int i = 0; i < kIdle; ++i) {
    idle[i] = Connect();
    ASSERT_TRUE(idle[i].ok());
    ASSERT_TRUE(SendAll(idle[i].fd(), Get("/thread")));
    std::optional<HttpResponse> response = ReadResponse(idle[i].fd(), buffers[i], kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "connection " << i;
  }
  std::optional<HttpResponse> first = Fetch(Get("/thread"));
  ASSERT_TRUE(first.has_value());
  const std::string before = first->body;
  Socket crasher = Connect();
  ASSERT_TRUE(SendAll(crasher.fd(), Get("/crash")));
  ReadToEndResult crasher_end = ReadToEnd(crasher.fd(), kReadTimeout);
  EXPECT_EQ(crasher_end.end, StreamEnd::kClosed) << "the crashing request's connection";
  EXPECT_EQ(crasher_end.data, "") << "the crashing request's answer";
  ASSERT_TRUE(WaitUntil([&] { return engine_->restarts() >= 1; }, kWaitTimeout));
  for (int i = 0; i < kIdle; ++i) {
    ASSERT_TRUE(SendAll(idle[i].fd(), Get("/thread"))) << "connection " << i;
    std::optional<HttpResponse> response = ReadResponse(idle[i].fd(), buffers[i], kReadTimeout);
    ASSERT_TRUE(response.has_value()) << "connection " << i << " was not adopted";
    EXPECT_EQ(response->status, 200);
    EXPECT_NE(response->body, before) << "served by the dead loop's thread";
  }
}

// ... but not a connection that began with a PROXY header (EngineOptions::proxy_protocol): its
// replacement would wait for a header already read, and take the next request for a bad one.
TEST_P(SupervisorTest, ProxyProtocolConnectionsOfACrashedLoopAreClosedNotHandedOver) {
  EngineOptions options = TestEngineOptions(1);
  options.restart_backoff = absl::Milliseconds(10);
  options.proxy_protocol = true;
  ASSERT_NO_FATAL_FAILURE(RunEngine(options));
  if (IsSkipped()) return;
  const std::string header = "PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n";
  Socket idle = Connect();
  ASSERT_TRUE(idle.ok());
  std::string buffer;
  ASSERT_TRUE(SendAll(idle.fd(), header + Get("/thread")));
  ASSERT_TRUE(ReadResponse(idle.fd(), buffer, kReadTimeout).has_value());
  Socket crasher = Connect();
  ASSERT_TRUE(SendAll(crasher.fd(), header + Get("/crash")));
  EXPECT_EQ(ReadToEnd(crasher.fd(), kReadTimeout).end, StreamEnd::kClosed);
  ASSERT_TRUE(WaitUntil([&] { return engine_->restarts() >= 1; }, kWaitTimeout));
  ReadToEndResult end = ReadToEnd(idle.fd(), kReadTimeout);
  EXPECT_EQ(end.end, StreamEnd::kClosed) << "the idle PROXY connection was handed over";
  EXPECT_EQ(end.data, "");
}

TEST_P(SupervisorTest, CrashLoopBacksOffAndFailsReadinessUntilTheWindowPasses) {
  EngineOptions options = TestEngineOptions(1);
  options.restart_backoff = absl::Milliseconds(10);
  options.max_restart_backoff = absl::Milliseconds(80);
  options.crash_loop_deaths = 5;
  options.crash_loop_window = absl::Seconds(2);
  ASSERT_NO_FATAL_FAILURE(RunEngine(options));
  if (IsSkipped()) return;
  EXPECT_TRUE(engine_->ready());

  constexpr int kCrashes = 20;
  const absl::Duration cpu_before = ProcessCpuTime();
  const auto wall_before = Clock::now();
  bool saw_not_ready = false;
  for (int i = 0; i < kCrashes; ++i) {
    // A fresh connection: while the loop is down it waits in the listener's accept queue.
    Socket socket = Connect();
    ASSERT_TRUE(socket.ok());
    ASSERT_TRUE(SendAll(socket.fd(), Get("/crash")));
    ASSERT_TRUE(WaitForLogLines(" died (", static_cast<size_t>(i) + 1, kWaitTimeout))
        << "crash " << i << " was not logged: " << ::testing::PrintToString(Log());
    if (!saw_not_ready && CountLogLines("reporting not ready") > 0) {
      // Logged just before the readiness is stored; false stays until the window passes.
      saw_not_ready = WaitUntil([&] { return !engine_->ready(); }, kReadTimeout);
      EXPECT_TRUE(saw_not_ready) << "ready() after \"reporting not ready\"";
    }
  }
  const absl::Duration cpu = ProcessCpuTime() - cpu_before;
  const absl::Duration wall = absl::FromChrono(Clock::now() - wall_before);
  // Each restart waits its backoff: a busy supervisor (or loop) would burn a CPU meanwhile.
  EXPECT_LT(cpu, wall * 0.5) << "CPU " << cpu << " over " << wall << " of crashes";
  RecordProperty("crash_sequence_cpu", absl::FormatDuration(cpu));
  RecordProperty("crash_sequence_wall", absl::FormatDuration(wall));

  // The delays: 10ms, then x1.5 each death, capped at 80ms.
  const std::vector<std::string> log = Log();
  std::vector<std::string> delays;
  for (const std::string& line : log) {
    const std::string prefix = "Worker 0 died (crash requested by /crash); restarting in ";
    if (line.find(" died (") == std::string::npos) continue;
    ASSERT_EQ(line.rfind(prefix, 0), 0u) << line;
    delays.push_back(line.substr(prefix.size()));
  }
  ASSERT_EQ(delays.size(), static_cast<size_t>(kCrashes)) << ::testing::PrintToString(log);
  const std::vector<std::string> first = {"10ms",     "15ms",      "22.5ms", "33.75ms",
                                          "50.625ms", "75.9375ms", "80ms"};
  absl::Duration expected = absl::Milliseconds(10);
  for (size_t i = 0; i < delays.size(); ++i) {
    absl::Duration parsed;
    ASSERT_TRUE(absl::ParseDuration(delays[i], &parsed)) << delays[i];
    EXPECT_EQ(parsed, expected) << "death " << i << ": \"" << delays[i] << "\"";
    if (i < first.size()) {
      EXPECT_EQ(delays[i], first[i]) << "death " << i;
    }
    expected = std::min(expected * 1.5, absl::Milliseconds(80));
  }

  EXPECT_TRUE(saw_not_ready) << ::testing::PrintToString(log);
  EXPECT_NE(std::find(log.begin(), log.end(), "Worker 0 died 5 times in 2s; reporting not ready"),
            log.end())
      << ::testing::PrintToString(log);

  // Ready again once fewer than 5 deaths are within the window: when the 16th death (the 5th
  // most recent) is older than 2 s.
  ASSERT_TRUE(WaitUntil([&] { return engine_->ready(); }, kWaitTimeout))
      << "still not ready long after the last crash";
  const auto ready_again = Clock::now();
  std::optional<Clock::time_point> fifth_last = LogTime(" died (", kCrashes - 5);
  ASSERT_TRUE(fifth_last.has_value());
  // (The log line comes a moment after the death was recorded: a little slack.)
  EXPECT_GE(ready_again - *fifth_last, milliseconds(2000 - 250))
      << "ready again before the deaths left the window";
  EXPECT_EQ(engine_->restarts(), kCrashes);
  std::optional<HttpResponse> response = Fetch(Get("/"));
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "Hello World!");
}

INSTANTIATE_TEST_SUITE_P(Backends, SupervisorTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore::testing
