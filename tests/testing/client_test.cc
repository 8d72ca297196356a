// percore::testing::TestClient::Open and TestStream: streamed and long-lived answers read piece
// by piece as the loop produces them, and left early.
#include "percore/testing/client.h"

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"

namespace percore::testing {
namespace {

using http::Response;
using http::Request;

// A streamed answer's pieces still to write. Held by the timer that writes the next one, and by
// nothing else: the loop's timers go with it, and so does this (no cycle to break).
struct Pieces {
  Response out;
  std::vector<std::string> pieces;
  size_t next = 0;
};

void WriteNext(const std::shared_ptr<Pieces>& p, Worker& worker) {
  if (p->next == p->pieces.size()) {
    p->out.End();
    return;
  }
  p->out.Write(p->pieces[p->next++]);
  worker.After(absl::Milliseconds(2), [p, &worker] { WriteNext(p, worker); });
}

// Writes `pieces` one per timer tick, 2 ms apart, then ends the body; `length` declares it.
void StreamPieces(const Request& req, Response& res, std::vector<std::string> pieces, bool length) {
  auto p = std::make_shared<Pieces>(Pieces{res.Defer(), std::move(pieces)});
  if (length) {
    uint64_t total = 0;
    for (const std::string& piece : p->pieces) total += piece.size();
    p->out.Length(total);
  }
  WriteNext(p, req.worker());
}

http::App StreamingApp() {
  http::App app;
  app.Get("/chunked", [](const Request& req, Response& res) {
    StreamPieces(req, res, {"one ", "two ", "three"}, false);
  });
  app.Get("/length", [](const Request& req, Response& res) {
    StreamPieces(req, res, {"abc", "def"}, true);
  });
  app.Get("/whole", [](const Request&, Response& res) { res.Send("all at once"); });
  return app;
}

TEST(TestStreamTest, ReadsAChunkedStreamPieceByPiece) {
  http::App app = StreamingApp();
  TestClient client(app);
  TestStream stream = client.Open("GET", "/chunked");
  ASSERT_EQ(stream.head().status, 200) << stream.head().error;
  EXPECT_EQ(stream.head().Header("transfer-encoding"), "chunked");
  EXPECT_TRUE(stream.head().body.empty());
  // Each Write() is a tick of the loop apart: one piece per call.
  EXPECT_EQ(stream.Next(), "one ");
  EXPECT_FALSE(stream.ended());
  EXPECT_EQ(stream.Next(), "two ");
  EXPECT_EQ(stream.Next(), "three");
  if (!stream.ended()) {
    EXPECT_EQ(stream.Next(), "");  // the last chunk, on its own tick
  }
  EXPECT_TRUE(stream.ended());
  EXPECT_TRUE(stream.head().error.empty()) << stream.head().error;
  EXPECT_FALSE(stream.head().closed);
  // The connection is kept for the next request.
  EXPECT_EQ(client.Get("/whole").body, "all at once");
}

TEST(TestStreamTest, ReadsAStreamWithALengthToItsEnd) {
  http::App app = StreamingApp();
  TestClient client(app);
  TestStream stream = client.Open("GET", "/length");
  ASSERT_EQ(stream.head().status, 200) << stream.head().error;
  EXPECT_EQ(stream.head().Header("content-length"), "6");
  EXPECT_EQ(stream.Next(), "abc");
  EXPECT_EQ(stream.Next(), "def");
  EXPECT_TRUE(stream.ended());
  EXPECT_EQ(stream.Next(), "");
  EXPECT_TRUE(stream.head().error.empty()) << stream.head().error;
}

TEST(TestStreamTest, AWholeAnswerIsOnePieceAndAHeadNone) {
  http::App app = StreamingApp();
  TestClient client(app);
  {
    TestStream stream = client.Open("GET", "/whole");
    EXPECT_EQ(stream.Next(), "all at once");
    EXPECT_TRUE(stream.ended());
  }
  TestStream head = client.Open("HEAD", "/whole");
  EXPECT_EQ(head.head().status, 200);
  EXPECT_EQ(head.head().Header("content-length"), "11");
  EXPECT_TRUE(head.ended());
}

TEST(TestStreamTest, NoOtherRequestWhileAStreamIsOpen) {
  http::App app = StreamingApp();
  TestClient client(app);
  TestStream stream = client.Open("GET", "/chunked");
  EXPECT_THROW(client.Get("/whole"), std::logic_error);
  stream.Close();
  EXPECT_EQ(client.Get("/whole").body, "all at once");
}

TEST(TestStreamTest, NoHeadWithinTheTimeout) {
  auto kept = std::make_shared<std::vector<Response>>();
  http::App app;
  app.Get("/never", [kept](const Request&, Response& res) { kept->push_back(res.Defer()); });
  TestClient client(app, {.timeout = absl::Milliseconds(20)});
  TestStream stream = client.Open("GET", "/never");
  EXPECT_EQ(stream.head().status, 0);
  EXPECT_EQ(stream.head().error, "no answer within 20ms");
  EXPECT_TRUE(stream.ended());
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_TRUE(kept->front().aborted());  // the stream gave up on its connection
  kept->clear();                         // on the loop, while it is there
}

// An event stream with no end: a piece every 5 ms until the client goes.
struct Events {
  int sent = 0;
  bool aborted = false;
};

http::App EventsApp(Events* events) {
  http::App app;
  app.Get("/events", [events](const Request& req, Response& res) {
    auto out = std::make_shared<Response>(res.Defer());
    out->Type("text/event-stream");
    auto tick = std::make_shared<std::function<void()>>();
    Worker& worker = req.worker();
    auto pending = std::make_shared<TimerId>();  // the next tick's timer
    out->OnAborted([events, tick, pending, &worker] {
      events->aborted = true;
      worker.Cancel(*pending);
      *tick = nullptr;  // the cycle through the capture ends here
    });
    *tick = [events, out, tick, pending, &worker] {
      out->Write("data: " + std::to_string(++events->sent) + "\n\n");
      *pending = worker.After(absl::Milliseconds(5), [tick] {
        if (*tick) (*tick)();
      });
    };
    (*tick)();
  });
  return app;
}

TEST(TestStreamTest, ClosingAnEndlessStreamEarlyAbortsItsAnswer) {
  Events state;
  http::App app = EventsApp(&state);
  TestClient client(app);
  // The example of percore/testing/client.h, word for word.
  percore::testing::TestStream events = client.Open("GET", "/events");
  EXPECT_EQ(events.head().status, 200);
  EXPECT_EQ(events.Next(), "data: 1\n\n");  // runs the loop until a piece comes
  EXPECT_EQ(events.Next(), "data: 2\n\n");
  events.Close();  // the client goes: the server's OnAborted runs
  EXPECT_TRUE(state.aborted);
  EXPECT_EQ(state.sent, 2);
  EXPECT_TRUE(events.ended());
  EXPECT_EQ(events.Next(), "");
  // The client serves on, on a new connection.
  TestStream again = client.Open("GET", "/events");
  EXPECT_EQ(again.Next(), "data: 3\n\n");
}

TEST(TestStreamTest, DroppingAnOpenStreamClosesIt) {
  Events events;
  http::App app = EventsApp(&events);
  TestClient client(app);
  {
    TestStream stream = client.Open("GET", "/events");
    EXPECT_EQ(stream.Next(), "data: 1\n\n");
  }
  EXPECT_TRUE(events.aborted);
}

}  // namespace
}  // namespace percore::testing
