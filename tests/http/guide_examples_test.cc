// docs/guide.md's "Answers that come later", as written there (with the names it leaves to the
// reader defined here): a timer's answer, a pool's answer shared with its refusal, and a streamed
// upload whose reader answers through the handle it is given.
#include <memory>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/testing/client.h"
#include "percore/thread_pool.h"

namespace {

using percore::http::App;
using percore::http::Request;
using percore::http::Response;
using percore::http::RouteOptions;
using percore::testing::TestClient;
using percore::testing::TestResponse;

constexpr std::string_view kToken = "secret";

std::string BuildReport() { return "report\n"; }

// Where an upload goes: here, a string the test reads.
struct Sink {
  explicit Sink(std::string_view name) : name(name) {}
  void Append(std::string_view chunk) { bytes.append(chunk); }
  std::string name;
  std::string bytes;
};

App GuideApp(percore::ThreadPool& pool, std::shared_ptr<Sink>* stored) {
  App app;
  app.Get("/later", [](const Request& req, Response& res) {
    req.worker().After(absl::Milliseconds(50),
                       [later = res.Defer()]() mutable { later.Send("done"); });
  });
  app.Get("/report", [&pool](const Request& req, Response& res) {
    auto later = std::make_shared<Response>(res.Defer());  // shared: a refused job is dropped
    later->OnAborted([] { /* the client went away: stop the work */ });
    const bool queued = pool.Submit([later] {           // pool: a percore::ThreadPool
      std::string body = BuildReport();                 // on a pool thread
      later->worker().Post([later, body] { later->Send(body); });  // back on the loop
    });
    if (!queued) later->Status(503).Set("Retry-After", "1").Send("busy\n");  // its queue is full
  });
  RouteOptions upload{.max_body_bytes = size_t{8} << 30, .stream_body = true};
  app.Put("/files/:name", [stored](const Request& req, Response& res) {
    if (req.Header("authorization") != kToken) return res.Status(401).Send("no\n");
    auto file = std::make_shared<Sink>(req.Param("name"));
    *stored = file;  // for the test to look at
    res.Defer().OnBody([file](Response& later, std::string_view chunk, bool last) {
      file->Append(chunk);
      if (last) later.Status(201).Send("stored\n");
    });
  }, upload);
  return app;
}

class GuideExamplesTest : public ::testing::Test {
 protected:
  TestClient& client() {
    if (client_ == nullptr) client_ = std::make_unique<TestClient>(GuideApp(pool_, &stored_));
    return *client_;
  }

  percore::ThreadPool pool_{{.threads = 1, .max_queued = 1}};
  std::shared_ptr<Sink> stored_;
  std::unique_ptr<TestClient> client_;
};

TEST_F(GuideExamplesTest, TheTimersAnswerComesLater) {
  TestResponse r = client().Get("/later");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "done");
}

TEST_F(GuideExamplesTest, ThePoolsAnswerComesBackThroughTheLoop) {
  TestResponse r = client().Get("/report");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "report\n");
}

TEST_F(GuideExamplesTest, AJobThePoolRefusesIsAnswered503ByTheSharedHandle) {
  pool_.Stop();  // a stopped pool refuses every job
  TestResponse r = client().Get("/report");
  EXPECT_EQ(r.status, 503) << r.error;
  EXPECT_EQ(r.body, "busy\n");
}

TEST_F(GuideExamplesTest, TheUploadsReaderAnswersThroughTheHandleItIsGiven) {
  const std::string body(100000, 'u');
  TestResponse r =
      client().Fetch("PUT", "/files/notes.txt", {{"authorization", std::string(kToken)}}, body);
  EXPECT_EQ(r.status, 201) << r.error;
  EXPECT_EQ(r.body, "stored\n");
  ASSERT_NE(stored_, nullptr);
  EXPECT_EQ(stored_->name, "notes.txt");
  EXPECT_EQ(stored_->bytes, body);
  EXPECT_EQ(client().Fetch("PUT", "/files/x", {}, "nope").status, 401);
}

}  // namespace
