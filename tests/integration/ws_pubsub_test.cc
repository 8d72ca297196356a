// WebSocket publish/subscribe across loops (App::Publish), backpressure, and WebSockets on the
// engine's drain, rolling restart and a loop's crash. In-process on 127.0.0.1 with two loops,
// once per backend; every wait has a deadline, and nothing is timed.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/fault.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"
#include "support/ws_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::Request;
using percore::http::WebSocket;
using percore::http::WsOpcode;
using percore::testing::WaitUntil;
using percore::testing::WsClient;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(20000);

struct Member {
  std::string name;
  int loop = -1;
};

class WsPubSubTest : public percore::testing::EngineTest {
 protected:
  // /room: each connection subscribes to "room" when it opens; "pub:<text>" publishes <text>
  // from the loop; "crash" makes its loop die.
  void ServeRoom(http::WsOptions options = {}, bool start = true) {
    app_ = std::make_unique<App>();
    app_->Ws<Member>("/room",
                     {.upgrade =
                          [](const Request& req, Member& m) {
                            m.name = std::string(req.Query("name"));
                            m.loop = req.worker_id();
                          },
                      .open =
                          [this](WebSocket& ws) {
                            ws.Subscribe("room");
                            std::lock_guard<std::mutex> lock(mu_);
                            handles_[ws.data<Member>()->name] = ws;
                            ++opened_on_[ws.data<Member>()->loop];
                          },
                      .message =
                          [this](WebSocket& ws, std::string_view message, WsOpcode opcode) {
                            if (message == "crash") {
                              percore::testing::CrashLoop(
                                  *worker_of_[ws.data<Member>()->loop].load(), "asked to");
                            } else if (message.starts_with("pub:")) {
                              app_->Publish("room", message.substr(4), opcode);
                            }
                          },
                      .drain = [this](WebSocket&) { ++drains_; },
                      .close =
                          [this](WebSocket&, uint16_t code, std::string_view) {
                            std::lock_guard<std::mutex> lock(mu_);
                            closes_.push_back(code);
                          },
                      .options = options});
    // The loops' Worker, for CrashLoop: recorded by a plain route each loop serves.
    app_->Get("/loop", [this](const Request& req, http::Response& res) {
      worker_of_[req.worker_id()] = &req.worker();
      res.Send(std::to_string(req.worker_id()));
    });
    ASSERT_NO_FATAL_FAILURE(Serve(*app_, {}, start));
  }

  // Connects subscribers until there are at least `count` and both loops have some.
  void ConnectAcrossLoops(size_t count) {
    for (int i = 0; clients_.size() < count || !BothLoops(); ++i) {
      ASSERT_LT(i, 64) << "64 connections all went to one loop";
      clients_.push_back(std::make_unique<WsClient>(port_, "/room?name=c" + std::to_string(i)));
      ASSERT_TRUE(clients_.back()->upgraded());
      ASSERT_TRUE(WaitUntil([&] { return Opened() == clients_.size(); }, kTimeout));
    }
  }
  bool BothLoops() {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_on_[0] > 0 && opened_on_[1] > 0;
  }
  size_t Opened() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<size_t>(opened_on_[0] + opened_on_[1]);
  }
  WebSocket Handle(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return handles_[name];
  }
  // Runs the engine's supervision (Wait) on a thread of its own, as Run() would.
  void Supervise() {
    supervisor_ = std::thread([this] {
      if (engine_->Start().ok()) engine_->Wait();
    });
  }
  // The engine supervised, serving, with subscribers on both loops.
  void SuperviseWithSubscribers() {
    ASSERT_NO_FATAL_FAILURE(ServeRoom({}, /*start=*/false));
    if (IsSkipped()) return;
    Supervise();
    ASSERT_TRUE(WaitUntil([&] { return engine_->ready(); }, kTimeout));
    ASSERT_NO_FATAL_FAILURE(ConnectAcrossLoops(4));
  }
  // Each client gets "going away" (1001), answers it, and sees the connection end.
  void AnswerGoingAway() {
    for (auto& client : clients_) {
      EXPECT_EQ(client->ReadClose(kTimeout), 1001);
      ASSERT_TRUE(client->Send({.opcode = 8, .payload = testing::ClosePayload(1001)}));
      EXPECT_TRUE(client->WaitEnd(kTimeout));
    }
  }
  void TearDown() override {
    if (supervisor_.joinable()) {
      engine_->Stop();
      supervisor_.join();
      engine_.reset();
    }
    EngineTest::TearDown();
  }

  std::unique_ptr<App> app_;
  std::vector<std::unique_ptr<WsClient>> clients_;
  std::mutex mu_;
  std::map<int, int> opened_on_;
  std::map<std::string, WebSocket> handles_;
  std::atomic<Worker*> worker_of_[2] = {nullptr, nullptr};
  std::atomic<int> drains_{0};
  std::vector<uint16_t> closes_;
  std::thread supervisor_;
};

TEST_P(WsPubSubTest, PublishersOnSeveralThreadsAndALoopReachEverySubscriberInOrder) {
  ASSERT_NO_FATAL_FAILURE(ServeRoom());
  if (IsSkipped()) return;
  ASSERT_NO_FATAL_FAILURE(ConnectAcrossLoops(8));
  // One message published from a loop, by a subscriber's own message.
  ASSERT_TRUE(clients_[0]->SendText("pub:from a loop"));
  for (auto& client : clients_) ASSERT_EQ(client->ReadMessage(kTimeout), "from a loop");
  constexpr int kThreads = 4, kEach = 250;
  std::vector<std::thread> publishers;
  for (int t = 0; t < kThreads; ++t) {
    publishers.emplace_back([this, t] {
      for (int i = 0; i < kEach; ++i) {
        app_->Publish("room", std::to_string(t) + ":" + std::to_string(i));
      }
    });
  }
  for (std::thread& p : publishers) p.join();
  for (size_t c = 0; c < clients_.size(); ++c) {
    SCOPED_TRACE("subscriber " + std::to_string(c));
    std::vector<int> next(kThreads, 0);  // each publisher's messages arrive in its order
    for (int n = 0; n < kThreads * kEach; ++n) {
      std::optional<std::string> message = clients_[c]->ReadMessage(kTimeout);
      ASSERT_TRUE(message.has_value()) << "after " << n << " messages";
      const size_t colon = message->find(':');
      const int t = std::stoi(message->substr(0, colon));
      EXPECT_EQ(std::stoi(message->substr(colon + 1)), next[t]) << "from publisher " << t;
      next[t] = std::stoi(message->substr(colon + 1)) + 1;
    }
  }
}

TEST_P(WsPubSubTest, OnceAClientHasItsSwitchItsOpenHasRunAndAPublishReachesIt) {
  ASSERT_NO_FATAL_FAILURE(ServeRoom());
  if (IsSkipped()) return;
  // `open` subscribes: it runs before the 101 leaves, so a message published as soon as the
  // client has the 101, from any thread, reaches it.
  for (int i = 0; i < 20; ++i) {
    WsClient client(port_, "/room?name=n" + std::to_string(i));
    ASSERT_TRUE(client.upgraded());
    app_->Publish("room", "welcome " + std::to_string(i));
    EXPECT_EQ(client.ReadMessage(kTimeout), "welcome " + std::to_string(i));
  }
}

TEST_P(WsPubSubTest, AClientThatReadsNothingHoldsBoundedMemoryAndOthersKeepUp) {
  http::WsOptions options;
  options.max_backpressure_bytes = 64 * 1024;
  ASSERT_NO_FATAL_FAILURE(ServeRoom(options));
  if (IsSkipped()) return;
  WsClient slow(port_, "/room?name=slow");
  ASSERT_TRUE(slow.upgraded());
  WsClient fast(port_, "/room?name=fast");
  ASSERT_TRUE(fast.upgraded());
  ASSERT_TRUE(WaitUntil([&] { return Opened() == 2; }, kTimeout));
  // 16 MiB in batches of 32 KiB (half the bound) that the fast client reads as they come: it
  // never falls behind; the slow one does once the kernel's buffers are full (a few MiB on
  // loopback: a client that never reads keeps its receive buffer at its first size).
  const std::string kib(1024, 'm');
  for (int batch = 0; batch < 512; ++batch) {
    for (int i = 0; i < 32; ++i) app_->Publish("room", kib);
    for (int i = 0; i < 32; ++i) ASSERT_EQ(fast.ReadMessage(kTimeout), kib) << batch;
  }
  EXPECT_GT(Total(&WorkerCounters::ws_dropped), 0u) << "the slow client's messages dropped";
  // What waits for the slow client in user space stays near the bound.
  WebSocket handle = Handle("slow");
  std::atomic<int64_t> buffered{-1};
  ASSERT_TRUE(handle.worker().Post([&] { buffered = static_cast<int64_t>(handle.buffered()); }));
  ASSERT_TRUE(WaitUntil([&] { return buffered.load() >= 0; }, kTimeout));
  EXPECT_LE(buffered.load(), 64 * 1024 + 1024 + 16);
  // It reads again: what waited goes, and `drain` says so.
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (int i = 0; i < 1000 && slow.ReadMessage(milliseconds(20)).has_value(); ++i) {
        }
        return drains_.load() > 0;
      },
      kTimeout));
}

TEST_P(WsPubSubTest, ADrainSendsGoingAwayAndEndsOnceTheClientsAnswer) {
  ASSERT_NO_FATAL_FAILURE(SuperviseWithSubscribers());
  if (IsSkipped()) return;
  engine_->Drain();
  ASSERT_NO_FATAL_FAILURE(AnswerGoingAway());
  supervisor_.join();  // the drain is over: every loop ended
  engine_.reset();
  EXPECT_EQ(closes_, std::vector<uint16_t>(clients_.size(), 1001));
}

TEST_P(WsPubSubTest, ARollingRestartClosesEachLoopsWebSocketsAndTheNewLoopsServe) {
  ASSERT_NO_FATAL_FAILURE(SuperviseWithSubscribers());
  if (IsSkipped()) return;
  engine_->Reload();
  ASSERT_NO_FATAL_FAILURE(AnswerGoingAway());
  // The new loops subscribe anew and receive what is published.
  WsClient again(port_, "/room?name=again");
  ASSERT_TRUE(again.upgraded());
  ASSERT_TRUE(again.SendText("pub:after the restart"));
  EXPECT_EQ(again.ReadMessage(kTimeout), "after the restart");
}

TEST_P(WsPubSubTest, ALoopThatCrashesClosesItsWebSocketsAndItsSuccessorServes) {
  ASSERT_NO_FATAL_FAILURE(ServeRoom({}, /*start=*/false));
  if (IsSkipped()) return;
  Supervise();
  ASSERT_TRUE(WaitUntil([&] { return engine_->ready(); }, kTimeout));
  // Each loop's Worker, recorded by /loop (connections spread over the loops).
  ASSERT_TRUE(WaitUntil(
      [&] {
        testing::Fetch(port_, "GET /loop HTTP/1.1\r\nHost: x\r\n\r\n", kTimeout);
        return worker_of_[0] != nullptr && worker_of_[1] != nullptr;
      },
      kTimeout));
  WsClient victim(port_, "/room?name=victim");
  ASSERT_TRUE(victim.upgraded());
  ASSERT_TRUE(victim.SendText("crash"));
  EXPECT_TRUE(victim.WaitEnd(kTimeout)) << "the dead loop's WebSocket is closed";
  ASSERT_TRUE(WaitUntil([&] { return engine_->restarts() == 1 && engine_->ready(); }, kTimeout));
  for (int i = 0; i < 8; ++i) {  // whichever loop it lands on, it subscribes and receives
    WsClient next(port_, "/room?name=n" + std::to_string(i));
    ASSERT_TRUE(next.upgraded());
    ASSERT_TRUE(next.SendText("pub:still here"));
    EXPECT_EQ(next.ReadMessage(kTimeout), "still here");
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, WsPubSubTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
