// docs/websocket.md and the example of percore/http/websocket.h, as written there (with the names
// they leave to the reader defined here): the chat endpoint, a pool's result sent back through
// the loop, and a producer that follows backpressure. In-process on 127.0.0.1.
#include <atomic>
#include <chrono>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "percore/thread_pool.h"
#include "support/engine_test.h"
#include "support/ws_client.h"

namespace {

using percore::testing::WsClient;

std::string RunJob(std::string_view job) { return "done: " + std::string(job); }

// The feed's producer: sends numbered messages of 16 KiB until Send says to wait.
std::atomic<int> fed{0};
void SendSome(percore::http::WebSocket& ws) {
  while (fed.load() < 1000 &&
         ws.Send(std::string(16 * 1024, 'f')) == percore::http::WsSendStatus::kSent) {
    ++fed;
  }
}

class WsGuideTest : public ::testing::Test {
 protected:
  void Serve(const percore::http::App& app) {
    percore::testing::ServeLocal(app, percore::BackendKind::kEpoll, {}, true, &engine_, &port_);
  }
  void TearDown() override { percore::testing::StopLocal(&engine_); }
  std::unique_ptr<percore::Engine> engine_;
  int port_ = 0;
};

TEST_F(WsGuideTest, TheChatEndpoint) {
  // docs/websocket.md "An endpoint" (and websocket.h's example, with its refusal added).
  struct Member {
    std::string name;
  };
  percore::http::App app;
  app.Ws<Member>("/chat", {
                              .upgrade =
                                  [](const percore::http::Request& req, Member& member) {
                                    member.name = std::string(req.Query("name"));
                                    if (member.name.empty())
                                      throw percore::http::HttpError(400, "?name= is needed");
                                  },
                              .open = [](percore::http::WebSocket& ws) { ws.Subscribe("chat"); },
                              .message =
                                  [&app](percore::http::WebSocket& ws, std::string_view text,
                                         percore::http::WsOpcode opcode) {
                                    app.Publish("chat",
                                                ws.data<Member>()->name + ": " + std::string(text),
                                                opcode);
                                  },
                              .close =
                                  [&app](percore::http::WebSocket& ws, uint16_t, std::string_view) {
                                    app.Publish("chat", ws.data<Member>()->name + " left");
                                  },
                          });
  ASSERT_NO_FATAL_FAILURE(Serve(app));
  WsClient ann(port_, "/chat?name=ann");
  ASSERT_TRUE(ann.upgraded());
  {
    WsClient bob(port_, "/chat?name=bob");
    ASSERT_TRUE(bob.upgraded());
    ASSERT_TRUE(ann.SendText("hi"));  // once both are subscribed (open ran before any message)
    EXPECT_EQ(bob.ReadMessage(), "ann: hi");
    EXPECT_EQ(ann.ReadMessage(), "ann: hi");
  }
  EXPECT_EQ(ann.ReadMessage(), "bob left");
  WsClient nobody(port_, "/chat");
  EXPECT_NE(nobody.head().find(" 400 "), std::string::npos) << nobody.head();
  // The callbacks use `app`: the engine stops before it goes (as Run() returns before main's
  // App does).
  percore::testing::StopLocal(&engine_);
}

TEST_F(WsGuideTest, APoolsResultSentThroughTheLoop) {
  percore::ThreadPool pool;
  percore::http::App app;
  // docs/websocket.md, the handle from another thread.
  app.Ws("/jobs", {.message = [&pool](percore::http::WebSocket& ws, std::string_view job,
                                      percore::http::WsOpcode) {
           pool.Submit([ws, job = std::string(job)] {
             std::string result = RunJob(job);  // on a pool thread
             ws.worker().Post([ws, result] { ws.Send(result); });
           });
         }});
  ASSERT_NO_FATAL_FAILURE(Serve(app));
  WsClient client(port_, "/jobs");
  ASSERT_TRUE(client.upgraded());
  ASSERT_TRUE(client.SendText("resize"));
  EXPECT_EQ(client.ReadMessage(), "done: resize");
}

TEST_F(WsGuideTest, AProducerThatFollowsBackpressure) {
  percore::http::App app;
  // docs/websocket.md "Sending, and a slow client".
  app.Ws("/feed", {
                      .open = [](percore::http::WebSocket& ws) { SendSome(ws); },
                      .drain = [](percore::http::WebSocket& ws) { SendSome(ws); },
                  });
  ASSERT_NO_FATAL_FAILURE(Serve(app));
  WsClient client(port_, "/feed");
  ASSERT_TRUE(client.upgraded());
  // All 1,000 arrive, none dropped: the producer waited for `drain` each time it was told to.
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(client.ReadMessage(std::chrono::seconds(20)), std::string(16 * 1024, 'f')) << i;
  }
  EXPECT_EQ(fed.load(), 1000);
}

}  // namespace
