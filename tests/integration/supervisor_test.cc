// The supervisor and the graceful drain, with the engine in-process: Engine::Run() on a
// background thread (stopped with Stop() and joined in teardown), the engine's log lines captured,
// the test thread as the client on 127.0.0.1. Every wait has a deadline; sleeps only pace a
// sender or a poll of a condition that has its own deadline.
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <ostream>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/options.h"
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
using percore::testing::ReadToEnd;
using percore::testing::ReadToEndResult;
using percore::testing::SendAll;
using percore::testing::Socket;
using percore::testing::StreamEnd;
using percore::testing::WaitUntil;

constexpr milliseconds kReadTimeout(10000);
constexpr milliseconds kWaitTimeout(20000);

// The header section of a POST /echo whose `length`-byte body the server must ask for.
std::string EchoHeadersExpectingContinue(size_t length) {
  return "POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
         "Content-Length: " +
         std::to_string(length) + "\r\n\r\n";
}

// One connect() to 127.0.0.1:port: 0 if it was accepted (the socket is closed at once), else
// the errno.
int ConnectError(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int error = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno;
  close(fd);
  return error;
}

// Waits (bounded) until a connect to `port` is refused; false if it never was.
bool WaitForRefusedConnect(int port, milliseconds timeout) {
  return WaitUntil([port] { return ConnectError(port) == ECONNREFUSED; }, timeout);
}

App MakeApp() {
  App app;
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/worker",
          [](const Request& req, Response& res) { res.Send(std::to_string(req.worker_id())); });
  app.Get("/crash", [](const Request& req, Response& res) {
    percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
    res.Send("crashing worker " + std::to_string(req.worker_id()));
  });
  app.All("/echo", [](const Request& req, Response& res) { res.Send(req.body()); });
  // Which loop instance (thread) served the request.
  app.Get("/thread", [](const Request&, Response& res) { res.Send(std::to_string(gettid())); });
  app.Get("/stall", [](const Request& req, Response& res) {
    const int ms = std::stoi(std::string(req.Query("ms")));
    std::this_thread::sleep_for(milliseconds(ms));  // blocks the loop, as a buggy handler would
    res.Send("stalled");
  });
  return app;
}

// CPU time (user + system) this process has used so far, all threads.
absl::Duration ProcessCpuTime() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

// The suite runs once per backend.
class SupervisorTest : public percore::testing::EngineTest {
 protected:
  // `threads` loops (Serve() puts them on 127.0.0.1, any free port), log lines captured.
  EngineOptions TestEngineOptions(int threads) {
    EngineOptions options;
    options.threads = threads;
    options.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mutex_);
      log_.emplace_back(line);
      log_times_.push_back(Clock::now());
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
  bool WaitForRunToReturn(milliseconds timeout) {
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
  bool WaitForLogLines(std::string_view text, size_t count, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return CountLocked(text) >= count; });
  }
  size_t CountLogLines(std::string_view text) {
    std::lock_guard<std::mutex> lock(mutex_);
    return CountLocked(text);
  }
  // When the `index`th (0-based) log line containing `text` was logged.
  std::optional<Clock::time_point> LogTime(std::string_view text, size_t index) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < log_.size(); ++i) {
      if (log_[i].find(text) != std::string::npos && index-- == 0) return log_times_[i];
    }
    return std::nullopt;
  }

  Socket Connect() {
    Socket socket(ConnectLocal(port_));
    EXPECT_TRUE(socket.ok()) << "connect to port " << port_ << ": " << strerror(errno);
    return socket;
  }

  // One request on a fresh connection; the response, or nullopt.
  std::optional<HttpResponse> Fetch(const std::string& request) {
    return percore::testing::Fetch(port_, request, kReadTimeout);
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
  std::vector<Clock::time_point> log_times_;
  bool started_ = false;
  bool returned_ = false;
  absl::Status run_status_;
};

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

TEST_P(SupervisorTest, DrainFinishesRequestInFlightClosesIdleAndRefusesNewConnections) {
  ASSERT_NO_FATAL_FAILURE(RunEngine(TestEngineOptions(2)));
  if (IsSkipped()) return;

  // A request in flight: the server has its header section (it asked for the body).
  Socket inflight = Connect();
  ASSERT_TRUE(inflight.ok());
  std::string inflight_buffer;
  const std::string body = "drained body";
  ASSERT_TRUE(SendAll(inflight.fd(), EchoHeadersExpectingContinue(body.size())));
  std::optional<HttpResponse> go_on = ReadResponse(inflight.fd(), inflight_buffer, kReadTimeout);
  ASSERT_TRUE(go_on.has_value());
  ASSERT_EQ(go_on->status, 100);
  // An idle keep-alive connection.
  Socket idle = Connect();
  ASSERT_TRUE(idle.ok());
  std::string idle_buffer;
  ASSERT_TRUE(SendAll(idle.fd(), Get("/")));
  ASSERT_TRUE(ReadResponse(idle.fd(), idle_buffer, kReadTimeout).has_value());

  engine_->Drain();
  ReadToEndResult idle_end = ReadToEnd(idle.fd(), kReadTimeout);
  EXPECT_EQ(idle_end.end, StreamEnd::kClosed) << "the idle connection was not closed";
  EXPECT_EQ(idle_end.data, "");
  idle.Reset();
  EXPECT_FALSE(engine_->ready());
  EXPECT_TRUE(WaitForRefusedConnect(port_, kWaitTimeout))
      << "new connections still accepted while draining";

  ASSERT_TRUE(SendAll(inflight.fd(), body));
  std::optional<HttpResponse> response = ReadResponse(inflight.fd(), inflight_buffer, kReadTimeout);
  ASSERT_TRUE(response.has_value()) << "the request in flight was not answered";
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, body);
  EXPECT_EQ(response->Header("connection"), "close");
  ReadToEndResult inflight_end = ReadToEnd(inflight.fd(), kReadTimeout);
  EXPECT_EQ(inflight_end.end, StreamEnd::kClosed);
  EXPECT_EQ(inflight_end.data, "");
  inflight.Reset();

  ASSERT_TRUE(WaitForRunToReturn(kWaitTimeout)) << "Run() did not return after the drain";
  EXPECT_TRUE(run_status().ok()) << run_status();
  EXPECT_FALSE(engine_->ready());
  EXPECT_EQ(engine_->restarts(), 0);
  // The request in flight was not answered yet, and no readiness check came: the engine stopped
  // accepting after drain_idle of quiet.
  const std::vector<std::string> log = Log();
  EXPECT_NE(std::find(log.begin(), log.end(),
                      "Draining: not ready; serving until out of the load balancer (at most 10s)"),
            log.end())
      << ::testing::PrintToString(log);
  EXPECT_NE(std::find(log.begin(), log.end(),
                      "No request for 1s and no readiness check: finishing the requests in flight"),
            log.end())
      << ::testing::PrintToString(log);
  EXPECT_EQ(CountLogLines("Shutdown timeout"), 0u) << ::testing::PrintToString(log);
}

TEST_P(SupervisorTest, ShutdownTimeoutEndsADrainARequestNeverFinishes) {
  EngineOptions options = TestEngineOptions(2);
  options.shutdown_timeout = absl::Milliseconds(500);
  ASSERT_NO_FATAL_FAILURE(RunEngine(options));
  if (IsSkipped()) return;

  // The header section of a request whose body never comes.
  Socket stuck = Connect();
  ASSERT_TRUE(stuck.ok());
  std::string buffer;
  ASSERT_TRUE(SendAll(stuck.fd(), EchoHeadersExpectingContinue(100)));
  std::optional<HttpResponse> go_on = ReadResponse(stuck.fd(), buffer, kReadTimeout);
  ASSERT_TRUE(go_on.has_value());
  ASSERT_EQ(go_on->status, 100);

  const auto drain_called = Clock::now();
  engine_->Drain();
  ASSERT_TRUE(WaitForRunToReturn(kWaitTimeout)) << "Run() did not return after the timeout";
  EXPECT_GE(Clock::now() - drain_called, milliseconds(500)) << "Run() returned before the timeout";
  EXPECT_TRUE(run_status().ok()) << run_status();
  ReadToEndResult end = ReadToEnd(stuck.fd(), kReadTimeout);
  EXPECT_NE(end.end, StreamEnd::kTimeout) << "the connection was left open";
  EXPECT_EQ(end.data.find("HTTP/1.1 200"), std::string::npos) << end.data;
  const std::vector<std::string> log = Log();
  EXPECT_NE(std::find(log.begin(), log.end(), "Shutdown timeout: closing the connections left"),
            log.end())
      << ::testing::PrintToString(log);
}

TEST_P(SupervisorTest, ConnectionsArrivingAsTheDrainBeginsDoNotHoldItUp) {
  // A storm of connections, held open without a byte sent, while the drain begins: each one is
  // either refused, reset with the closed listener's queue, or accepted and then closed by the
  // drain. None may be kept as an idle keep-alive connection, which would hold the drain up
  // until the shutdown timeout. (io_uring: accepts that complete just before their cancel.)
  constexpr int kMaxHeld = 3000;
  const uint64_t limit = percore::testing::RaiseFdLimit(2 * kMaxHeld + 256);
  if (limit < 2 * kMaxHeld + 256) {
    GTEST_SKIP() << "RLIMIT_NOFILE is " << limit << ", too low for " << kMaxHeld
                 << " connections with both ends in one process";
  }
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    if (engine_ != nullptr) {
      ASSERT_NO_FATAL_FAILURE(StopEngine());
    }
    EngineOptions options = TestEngineOptions(2);
    options.shutdown_timeout = absl::Seconds(60);      // longer than this test waits
    options.linger_timeout = absl::Milliseconds(200);  // the held connections do not close
    ASSERT_NO_FATAL_FAILURE(RunEngine(options));
    if (IsSkipped()) return;
    std::atomic<bool> stop{false};
    std::atomic<int> connected{0};
    std::vector<Socket> held;
    held.reserve(kMaxHeld);
    std::thread storm([&] {
      while (!stop.load() && held.size() < static_cast<size_t>(kMaxHeld)) {
        int fd = ConnectLocal(port_);
        if (fd < 0) break;  // refused: the listeners are closed
        held.emplace_back(fd);
        connected.fetch_add(1);
      }
    });
    const bool storming = WaitUntil([&] { return connected.load() >= 100; }, kWaitTimeout);
    engine_->Drain();
    const bool returned = WaitForRunToReturn(kWaitTimeout);
    stop.store(true);
    storm.join();
    ASSERT_TRUE(storming);
    ASSERT_TRUE(returned) << "Run() still draining with " << held.size() << " connections held";
    EXPECT_TRUE(run_status().ok()) << run_status();
    EXPECT_EQ(CountLogLines("Shutdown timeout"), 0u) << ::testing::PrintToString(Log());
  }
}

// The loop threads that answer 40 requests on fresh connections.
std::set<std::string> ServingThreads(int port) {
  std::set<std::string> threads;
  for (int i = 0; i < 40; ++i) {
    std::optional<HttpResponse> response = percore::testing::Fetch(port, Get("/thread"));
    if (response.has_value() && response->status == 200) threads.insert(response->body);
  }
  return threads;
}

TEST_P(SupervisorTest, StartAndWaitSuperviseWithoutTakingTheSignals) {
  EngineOptions options = TestEngineOptions(1);
  options.drain_delay = absl::ZeroDuration();
  ASSERT_NO_FATAL_FAILURE(RunEngine(options, /*keep_signals=*/true));
  if (IsSkipped()) return;

  // A loop that dies is restarted, as under Run().
  Socket crasher = Connect();
  ASSERT_TRUE(SendAll(crasher.fd(), Get("/crash")));
  ASSERT_TRUE(
      WaitForLogLines("Worker 0 died (crash requested by /crash); restarting in", 1, kWaitTimeout))
      << ::testing::PrintToString(Log());
  // (The death is logged before readiness drops: wait for the restart itself.)
  ASSERT_TRUE(
      WaitUntil([&] { return engine_->restarts() == 1 && engine_->ready(); }, kWaitTimeout));
  std::optional<HttpResponse> served = Fetch(Get("/worker"));
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(served->status, 200);

  // Reload() rolls, and Drain() ends Wait() once the loops finished: both seen at once.
  engine_->Reload();
  ASSERT_TRUE(WaitForLogLines("Rolling restart done", 1, kWaitTimeout));
  engine_->Drain();
  EXPECT_TRUE(WaitForRunToReturn(kWaitTimeout)) << "Wait() did not return after Drain()";
  EXPECT_EQ(CountLogLines("Draining: not ready; finishing the requests in flight"), 1u);
  EXPECT_FALSE(engine_->ready());
}

TEST_P(SupervisorTest, ReloadReplacesEachLoopWithoutFailingARequest) {
  RunEngine(TestEngineOptions(2));
  if (IsSkipped() || HasFatalFailure()) return;
  const std::set<std::string> before = ServingThreads(port_);
  EXPECT_EQ(before.size(), 2u) << "40 connections should reach both loops";
  // An idle keep-alive connection held across the roll.
  Socket idle = Connect();
  std::string idle_buffer;
  ASSERT_TRUE(SendAll(idle.fd(), Get("/")));
  ASSERT_TRUE(ReadResponse(idle.fd(), idle_buffer, kReadTimeout).has_value());

  percore::testing::LoadClient load({.port = port_, .threads = 4});
  ASSERT_TRUE(WaitUntil([&] { return load.responses() >= 200; }, kWaitTimeout));
  engine_->Reload();
  ASSERT_TRUE(WaitForLogLines("Rolling restart done", 1, kWaitTimeout))
      << ::testing::PrintToString(Log());
  const int64_t at_done = load.responses();
  EXPECT_TRUE(WaitUntil([&] { return load.responses() >= at_done + 200; }, kWaitTimeout));
  load.Stop();
  EXPECT_EQ(load.failures(), 0) << ::testing::PrintToString(load.errors());

  // The old loops closed the idle connection (no response was cut short) and exited.
  ReadToEndResult idle_end = ReadToEnd(idle.fd(), kReadTimeout);
  EXPECT_EQ(idle_end.end, StreamEnd::kClosed);
  EXPECT_EQ(idle_end.data, "");
  EXPECT_TRUE(WaitForLogLines("'s replaced loop", 2, kWaitTimeout))
      << ::testing::PrintToString(Log());
  EXPECT_EQ(CountLogLines("restarted on cpu"), 2u);
  // New threads serve now; none of the old ones.
  const std::set<std::string> after = ServingThreads(port_);
  EXPECT_EQ(after.size(), 2u);
  for (const std::string& thread : after) EXPECT_EQ(before.count(thread), 0u) << thread;
  EXPECT_EQ(engine_->restarts(), 0);  // a roll is not a failure
  EXPECT_TRUE(engine_->ready());
}

TEST_P(SupervisorTest, StuckLoopIsReplacedAndNewConnectionsAreServedWhileItIsStuck) {
  EngineOptions options = TestEngineOptions(1);  // one loop: every connection is its
  options.stall_timeout = absl::Milliseconds(200);
  options.stuck_timeout = absl::Milliseconds(800);
  RunEngine(options);
  if (IsSkipped() || HasFatalFailure()) return;
  std::atomic<bool> stall_answered{false};
  std::optional<HttpResponse> stalled;
  std::thread slow([&] {
    stalled = Fetch(Get("/stall?ms=3000"));
    stall_answered.store(true);
  });
  ASSERT_TRUE(WaitForLogLines(" stalled for ", 1, kWaitTimeout));
  // Connections made while the loop is stuck, before its replacement: they queue on the
  // listener (a few are taken in by the stuck loop's armed accepts and wait for it).
  std::vector<std::optional<HttpResponse>> early(6);
  std::vector<std::thread> early_clients;
  for (auto& response : early) {
    early_clients.emplace_back([&response, this] { response = Fetch(Get("/")); });
  }
  ASSERT_TRUE(WaitForLogLines("; replaced by a new loop on cpu", 1, kWaitTimeout))
      << ::testing::PrintToString(Log());
  // Served by the new loop while the old one is still stuck.
  for (int i = 0; i < 10; ++i) {
    std::optional<HttpResponse> fresh = Fetch(Get("/"));
    ASSERT_TRUE(fresh.has_value()) << "fresh connection " << i;
    EXPECT_EQ(fresh->status, 200);
  }
  EXPECT_FALSE(stall_answered.load()) << "the stall ended before the checks, proving nothing";
  slow.join();
  for (std::thread& client : early_clients) client.join();
  for (size_t i = 0; i < early.size(); ++i) {
    ASSERT_TRUE(early[i].has_value()) << "early connection " << i;
    EXPECT_EQ(early[i]->status, 200);
  }
  // The stuck loop, once it returned, finished its request, drained and exited.
  ASSERT_TRUE(stalled.has_value());
  EXPECT_EQ(stalled->status, 200);
  EXPECT_TRUE(WaitForLogLines("'s replaced loop", 1, kWaitTimeout))
      << ::testing::PrintToString(Log());
  const std::vector<std::string> log = Log();
  EXPECT_EQ(std::count_if(log.begin(), log.end(),
                          [](const std::string& line) {
                            return std::regex_match(
                                line, std::regex("Worker 0 stuck for [0-9]+ms in GET "
                                                 "/stall\\?ms=3000; replaced by a new loop on "
                                                 "cpu [0-9]+"));
                          }),
            1)
      << ::testing::PrintToString(log);
  EXPECT_EQ(engine_->restarts(), 1);
  EXPECT_EQ(engine_->stats().Read(0).stalls, 1u);
  EXPECT_TRUE(engine_->ready());
}

// A drain does not wait for a stuck loop that was replaced: the listeners close (new connections
// are refused) and Run() returns while that loop is still in its request.
TEST_P(SupervisorTest, DrainDoesNotWaitForAReplacedStuckLoop) {
  EngineOptions options = TestEngineOptions(1);
  options.stall_timeout = absl::Milliseconds(200);
  options.stuck_timeout = absl::Milliseconds(600);
  RunEngine(options);
  if (IsSkipped() || HasFatalFailure()) return;
  std::atomic<bool> stall_answered{false};
  std::thread slow([&] {
    Fetch(Get("/stall?ms=3000"));
    stall_answered.store(true);
  });
  ASSERT_TRUE(WaitForLogLines("; replaced by a new loop on cpu", 1, kWaitTimeout));
  engine_->Drain();
  EXPECT_TRUE(WaitForRunToReturn(kWaitTimeout));
  EXPECT_FALSE(stall_answered.load()) << "Run() waited for the stuck loop";
  EXPECT_TRUE(run_status().ok()) << run_status();
  EXPECT_EQ(ConnectError(port_), ECONNREFUSED);
  slow.join();
}

INSTANTIATE_TEST_SUITE_P(Backends, SupervisorTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
