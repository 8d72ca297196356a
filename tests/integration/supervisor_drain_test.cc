// The supervisor with the engine in-process (supervisor_suite.h), once per backend: a drain
// finishes the requests in flight, closes the idle connections and refuses new ones; a rolling
// restart (Reload) fails no request; a stuck loop is replaced. Crashes are in supervisor_test.cc.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <optional>
#include <regex>
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
}  // namespace percore::testing
