// Coroutine handlers (percore/http/task.h) written as its header shows, with captures that own
// memory: each object is destroyed exactly once (GCC 12 destroyed a lambda built inside a
// co_await twice; OnThread is awaited by name so none is). Public headers only: the same file
// is built with clang and AddressSanitizer by tests/consumers/run.sh.
#include <atomic>
#include <stdexcept>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/http/task.h"
#include "percore/testing/client.h"
#include "percore/thread_pool.h"

namespace {

using percore::http::App;
using percore::http::Async;
using percore::http::Response;
using percore::http::OnThread;
using percore::http::Request;
using percore::http::Sleep;
using percore::http::Task;
using percore::testing::TestClient;
using percore::testing::TestResponse;

// Counts its lives; owns heap memory, so a second destruction is a double free under ASan.
struct Counted {
  static inline std::atomic<int> made{0}, gone{0};
  std::string text;
  explicit Counted(std::string t) : text(std::move(t)) { ++made; }
  Counted(const Counted& o) : text(o.text) { ++made; }
  Counted(Counted&& o) noexcept : text(std::move(o.text)) { ++made; }
  ~Counted() { ++gone; }
};

std::string Lookup(const std::string& id) { return R"({"id":")" + id + R"(","name":"ada"})"; }

class TaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Counted::made = 0;
    Counted::gone = 0;
  }
  percore::ThreadPool pool_{{.threads = 2, .max_queued = 8}};
};

// The header's example, as written there.
TEST_F(TaskTest, TheDocumentedPatternAnswersAndDestroysEachCaptureOnce) {
  App app;
  percore::ThreadPool& pool = pool_;
  app.Get("/users/:id", percore::http::Async(
      [&pool](const Request& req, Response res) -> percore::http::Task {
        std::string id(req.Param("id"));     // copies: req ends at the first co_await
        percore::Worker& worker = req.worker();
        co_await percore::http::Sleep(worker, absl::Milliseconds(5));
        auto lookup = percore::http::OnThread(worker, pool, [id] { return Lookup(id); });
        std::string row = co_await lookup;   // Lookup ran on a pool thread; back on the loop
        res.Type("application/json").Send(row);
      }));
  TestClient client(app);
  TestResponse r = client.Get("/users/7");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, R"({"id":"7","name":"ada"})");
}

std::string SlowLookup() { return "row\n"; }

// percore/thread_pool.h's example, as written there, in a handler.
TEST_F(TaskTest, TheThreadPoolExampleAnswersThroughTheLoop) {
  App app;
  percore::ThreadPool& pool = pool_;
  app.Get("/row", [&pool](const Request&, percore::http::Response& res) {
    auto later = std::make_shared<Response>(res.Defer());  // shared: a refused job is dropped
    const bool queued = pool.Submit([later] {
      std::string row = SlowLookup();                            // on a pool thread
      later->worker().Post([later, row] { later->Send(row); });  // back on the loop
    });
    if (!queued) later->Status(503).Set("Retry-After", "1").Send("busy\n");
  });
  TestClient client(app);
  TestResponse r = client.Get("/row");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "row\n");
}

TEST_F(TaskTest, OwningCapturesLiveOnceAcrossEveryAwait) {
  App app;
  percore::ThreadPool& pool = pool_;
  app.Get("/count", Async([&pool](const Request& req, Response res) -> Task {
    Counted owned("x" + std::string(100, 'y'));  // past the small-string buffer: on the heap
    percore::Worker& worker = req.worker();
    auto first = OnThread(worker, pool, [owned] { return owned.text.size(); });
    const size_t size = co_await first;
    auto second = OnThread(worker, [&pool](std::function<void()> job) { pool.Submit(job); },
                           [owned]() mutable { owned.text += "!"; return owned.text; });
    const std::string text = co_await second;
    co_await Sleep(worker, absl::Milliseconds(1));
    res.Send(std::to_string(size) + " " + std::to_string(text.size()));
  }));
  TestClient client(app);
  for (int i = 0; i < 20; ++i) {
    TestResponse r = client.Get("/count");
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body, "101 102");
  }
  EXPECT_GT(Counted::made.load(), 0);
  EXPECT_EQ(Counted::made.load(), Counted::gone.load());
}

TEST_F(TaskTest, AnExceptionOnThePoolThreadIsThrownFromTheAwait) {
  App app;
  percore::ThreadPool& pool = pool_;
  app.Get("/throw", Async([&pool](const Request& req, Response res) -> Task {
    auto failing = OnThread(req.worker(), pool, []() -> int { throw std::invalid_argument("no"); });
    try {
      co_await failing;
      res.Send("not thrown");
    } catch (const std::invalid_argument& e) {
      res.Status(400).Send(e.what());
    }
  }));
  TestClient client(app);
  TestResponse r = client.Get("/throw");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, "no");
}

TEST_F(TaskTest, AJobTheFullPoolRefusesIsThrownFromTheAwait) {
  App app;
  auto refuse = [](std::function<void()>) { return false; };  // a pool whose queue is full
  app.Get("/busy", Async([refuse](const Request& req, Response res) -> Task {
    Counted owned(std::string(100, 'z'));
    auto job = OnThread(req.worker(), refuse, [owned] { return owned.text.size(); });
    try {
      co_await job;
      res.Send("ran");
    } catch (const std::runtime_error&) {
      res.Status(503).Set("Retry-After", "1").Send("busy\n");
    }
  }));
  TestClient client(app);
  TestResponse r = client.Get("/busy");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.Header("retry-after"), "1");
  EXPECT_EQ(Counted::made.load(), Counted::gone.load());
}

}  // namespace
