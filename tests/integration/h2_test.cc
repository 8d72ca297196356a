// HTTP/2 by prior knowledge on the engine's plain port, through nghttp2's client (H2Client): the
// same App as HTTP/1.1's, many streams on one connection, answers given later or streamed
// under the client's window, bodies both ways, limits and resets. In-process on 127.0.0.1, once
// per backend; every wait has a deadline, and nothing is timed.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "percore/http/app.h"
#include "percore/options.h"
#include "percore/testing/fault.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/h2_client.h"
#include "support/test_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::HttpOptions;
using percore::http::Request;
using percore::http::Response;
using percore::testing::Fields;
using percore::testing::H2Client;
using percore::testing::H2ClientOptions;
using percore::testing::H2Response;
using percore::testing::WaitUntil;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout(10000);

// Streams `left` bytes of 'x' in 16 KiB pieces, waiting in OnWritable whenever Write() says
// the stream is full; `full` counts those times.
struct Streamer {
  Response res;
  size_t left;
  std::atomic<int>* full;
  static void Go(std::shared_ptr<Streamer> s) {
    while (s->left > 0) {
      const size_t n = std::min<size_t>(s->left, 16384);
      s->left -= n;
      if (!s->res.Write(std::string(n, 'x')) && s->left > 0) {
        ++*s->full;
        s->res.OnWritable([s](Response&) { Go(s); });
        return;
      }
    }
    s->res.End();
  }
};

class H2Test : public percore::testing::EngineTest {
 protected:
  void ServeH2(HttpOptions http = {}, bool start = true) {
    App app(http);
    app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
    app.Get("/info", [](const Request& req, Response& res) {
      res.Set("X-Version",
              std::to_string(req.version_major()) + "." + std::to_string(req.version_minor()));
      res.Send(std::string(req.Header("host")) + "|" + std::string(req.Header("cookie")) + "|" +
               std::string(req.Query("q")));
    });
    app.All("/echo", [](const Request& req, Response& res) { res.Send(req.body()); });
    app.Get("/delay", [](const Request& req, Response& res) {
      const int ms = std::atoi(std::string(req.Query("ms")).c_str());
      req.worker().After(absl::Milliseconds(ms),
                         [later = res.Defer()]() mutable { later.Send("later"); });
    });
    app.Get("/big", [](const Request&, Response& res) { res.Send(std::string(20 << 20, 'b')); });
    app.Get("/stream", [this](const Request& req, Response& res) {
      const size_t bytes = std::stoul(std::string(req.Query("bytes")));
      auto s = std::make_shared<Streamer>(Streamer{res.Defer(), bytes, &full_});
      s->res.Length(bytes);
      Streamer::Go(s);
    });
    app.Get("/abortable", [this](const Request&, Response& res) {
      Response later = res.Defer();
      later.OnAborted([this] { ++aborted_; });
      std::lock_guard<std::mutex> lock(mu_);
      kept_.push_back(std::move(later));
      ++handled_;
    });
    app.Post("/upload",
             [](const Request&, Response& res) {
               auto total = std::make_shared<size_t>(0);
               res.Defer().OnBody([total](Response& r, std::string_view chunk, bool last) {
                 *total += chunk.size();
                 if (last) r.Send(std::to_string(*total));
               });
             },
             {.max_body_bytes = 8 << 20, .stream_body = true});
    EngineOptions options;
    options.drain_delay = absl::ZeroDuration();
    // Reads the body as it comes, but pauses at its first piece until the test resumes it.
    app.Post("/paused",
             [this](const Request& req, Response& res) {
               auto got = std::make_shared<size_t>(0);
               Response later = res.Defer();
               later.OnBody([this, got](Response& r, std::string_view chunk, bool last) {
                 *got += chunk.size();
                 received_ = *got;
                 if (last) {
                   r.Send(std::to_string(*got));
                 } else if (*got == chunk.size()) {
                   r.PauseBody();
                 }
               });
               std::lock_guard<std::mutex> lock(mu_);
               worker_ = req.worker().ref();
               kept_.push_back(std::move(later));
             },
             {.max_body_bytes = 8 << 20, .stream_body = true});
    // Throws from OnWritable once the client's window has shut the stream.
    app.Get("/throws", [](const Request&, Response& res) {
      Response later = res.Defer();
      while (later.Write(std::string(16384, 't'))) {
      }
      later.OnWritable([](Response&) { throw std::runtime_error("OnWritable threw"); });
    });
    app.Get("/crash", [](const Request& req, Response&) {
      percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
    });
    ASSERT_NO_FATAL_FAILURE(Serve(app, options, start));
  }
  void TearDown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      kept_.clear();
    }
    EngineTest::TearDown();
  }

  std::atomic<int> full_{0};
  std::atomic<int> aborted_{0};
  std::atomic<int> handled_{0};
  std::atomic<size_t> received_{0};
  WorkerRef worker_;
  std::mutex mu_;
  std::vector<Response> kept_;
};

TEST_P(H2Test, ServesTheAppsRoutesAsHttp11Does) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  ASSERT_TRUE(client.connected());
  std::optional<H2Response> r = client.Fetch("GET", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "Hello World!");
  EXPECT_EQ(r->Header("content-length"), "12");
  EXPECT_EQ(r->Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_FALSE(r->Header("date").empty());
  EXPECT_EQ(r->error_code, 0u);
  // :authority stands for Host; cookie fields are joined (RFC 9113 8.2.3).
  r = client.Fetch("GET", "/info?q=1", {{"cookie", "a=1"}, {"cookie", "b=2"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "localhost|a=1; b=2|1");
  EXPECT_EQ(r->Header("x-version"), "2.0");
  r = client.Fetch("HEAD", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->Header("content-length"), "12");
  r = client.Fetch("GET", "/missing");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  r = client.Fetch("DELETE", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->Header("allow"), "GET, HEAD");
  // HTTP/1.1 goes on being served on the same port.
  std::optional<percore::testing::HttpResponse> h1 =
      percore::testing::Fetch(port_, percore::testing::Get("/"));
  ASSERT_TRUE(h1.has_value());
  EXPECT_EQ(h1->body, "Hello World!");
}

TEST_P(H2Test, AHundredStreamsOnOneConnectionAnswerAsTheyAreReady) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  // The first is answered last: a later answer holds up none behind it.
  const int32_t slow = client.Submit("GET", "/delay?ms=400");
  std::vector<int32_t> ids;
  for (int i = 0; i < 99; ++i) ids.push_back(client.Submit("GET", i % 2 ? "/" : "/delay?ms=1"));
  ASSERT_TRUE(client.Until([&] {
    for (int32_t id : ids) {
      if (!client.response(id).closed) return false;
    }
    return true;
  }));
  EXPECT_FALSE(client.response(slow).closed);
  for (int32_t id : ids) EXPECT_EQ(client.response(id).status, 200) << id;
  std::optional<H2Response> r = client.Wait(slow);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "later");
  EXPECT_EQ(Total(&WorkerCounters::h2_streams), 100u);
}

TEST_P(H2Test, BodiesBothWays) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  std::string upload(1 << 20, '\0');
  for (size_t i = 0; i < upload.size(); ++i) upload[i] = static_cast<char>(i * 7);
  std::optional<H2Response> r = client.Fetch("POST", "/echo", {}, upload);
  ASSERT_TRUE(r.has_value()) << client.closed() << " " << client.goaway_error().value_or(99);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body == upload);
  r = client.Fetch("GET", "/big");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body.size(), size_t{20} << 20);
  // A streaming route's reader gets the body.
  r = client.Fetch("POST", "/upload", {}, std::string(3 << 20, 'u'));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, std::to_string(3 << 20));
}

TEST_P(H2Test, AReaderThatPausesStopsTheClientAfterOneWindow) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  const size_t total = 2 << 20;
  const int32_t id = client.Submit("POST", "/paused", {}, std::string(total, 'p'));
  // The server opens the stream's window only as its reader takes the body: the client stops
  // with its window spent, and the server has taken what the reader was handed, no more.
  ASSERT_TRUE(client.Until([&] {
    return received_.load() > 0 &&
           nghttp2_session_get_stream_remote_window_size(client.session(), id) == 0;
  }));
  EXPECT_LE(received_.load(), size_t{HttpOptions().http2.stream_window_bytes});
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_EQ(kept_.size(), 1u);
    Response* paused = &kept_.back();
    ASSERT_TRUE(worker_.Post([paused] { paused->ResumeBody(); }));
  }
  std::optional<H2Response> r = client.Wait(id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, std::to_string(total));
}

TEST_P(H2Test, WhatAPausedReaderHeldGoesBackToTheConnectionsWindow) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  // Four paused readers hold a window each (256 KiB), all of the connection's 1 MiB; reset,
  // the bytes they held must open the connection's window again, or no body could come.
  std::vector<int32_t> paused;
  for (int i = 0; i < 4; ++i) {
    paused.push_back(client.Submit("POST", "/paused", {}, std::string(1 << 20, 'p')));
  }
  // Each stream's window spent, and so the connection's.
  ASSERT_TRUE(client.Until([&] {
    for (int32_t id : paused) {
      if (nghttp2_session_get_stream_remote_window_size(client.session(), id) != 0) return false;
    }
    return nghttp2_session_get_remote_window_size(client.session()) == 0;
  }));
  for (int32_t id : paused) client.Reset(id);
  std::optional<H2Response> r = client.Fetch("POST", "/echo", {}, std::string(900 << 10, 'e'));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body.size(), size_t{900} << 10);
}

TEST_P(H2Test, AStreamedAnswerWaitsForTheClientsWindow) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  // The client reads nothing: the server may send one window (64 KiB) and no more.
  H2Client client(port_, H2ClientOptions{.auto_window_update = false});
  const size_t total = 4 << 20;
  const int32_t id = client.Submit("GET", "/stream?bytes=" + std::to_string(total));
  ASSERT_TRUE(client.Until([&] { return client.response(id).body.size() >= 65535; }));
  ASSERT_TRUE(WaitUntil([&] { return full_.load() > 0; }, kTimeout));
  EXPECT_FALSE(
      client.Until([&] { return client.response(id).body.size() > 65535; }, milliseconds(200)));
  // Reading on lets the rest come.
  size_t consumed = 0;
  ASSERT_TRUE(client.Until([&] {
    const H2Response& r = client.response(id);
    if (r.body.size() > consumed) {
      client.Consume(id, r.body.size() - consumed);
      consumed = r.body.size();
    }
    return r.closed;
  }));
  EXPECT_EQ(client.response(id).body.size(), total);
  EXPECT_EQ(client.response(id).error_code, 0u);
}

TEST_P(H2Test, AResetStreamRunsOnAbortedAndLeavesTheOthers) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  const int32_t id = client.Submit("GET", "/abortable");
  ASSERT_TRUE(client.Until([&] { return handled_.load() == 1; }));
  client.Reset(id);
  ASSERT_TRUE(client.Until([&] { return aborted_.load() == 1; }));
  std::optional<H2Response> r = client.Fetch("GET", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_P(H2Test, LimitsAnswerWithTheirStatus) {
  HttpOptions http;
  http.max_body_bytes = 1000;
  http.max_header_bytes = 1024;
  http.max_target_bytes = 512;
  ASSERT_NO_FATAL_FAILURE(ServeH2(http));
  if (IsSkipped()) return;
  H2Client client(port_);
  std::optional<H2Response> r = client.Fetch("POST", "/echo", {}, std::string(5000, 'a'));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  r = client.Fetch("POST", "/echo", {{"content-length", "5000"}}, std::string(5000, 'a'));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  r = client.Fetch("GET", "/", {{"x-big", std::string(2000, 'h')}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 431);
  // The connection goes on.
  r = client.Fetch("GET", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_P(H2Test, APingFloodIsSentGoaway) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client flood(port_);
  H2Client other(port_);
  ASSERT_TRUE(other.Fetch("GET", "/").has_value());
  for (int i = 0; i < 5000; ++i) flood.Ping();
  ASSERT_TRUE(flood.Until([&] { return flood.goaway_error().has_value(); }));
  EXPECT_EQ(*flood.goaway_error(), static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_TRUE(flood.Until([&] { return flood.closed(); }));
  std::optional<H2Response> r = other.Fetch("GET", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_P(H2Test, ARapidResetFloodIsSentGoaway) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client flood(port_);
  // CVE-2023-44487: each stream opened and cancelled at once.
  for (int i = 0; i < 1000 && !flood.closed() && !flood.goaway_error().has_value(); ++i) {
    const int32_t id = flood.Submit("GET", "/delay?ms=1000");
    flood.SendRaw("");  // its HEADERS go before the reset
    flood.Reset(id);
  }
  ASSERT_TRUE(flood.Until([&] { return flood.goaway_error().has_value(); }));
  EXPECT_EQ(*flood.goaway_error(), static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  H2Client other(port_);
  std::optional<H2Response> r = other.Fetch("GET", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_P(H2Test, ADrainSendsGoawayAndFinishesTheStreamsInFlight) {
  ASSERT_NO_FATAL_FAILURE(ServeH2({}, /*start=*/false));
  if (IsSkipped()) return;
  // Start() and Wait() on a thread of their own: Wait() carries out the drain.
  std::atomic<int> started{-1};
  std::thread supervisor([this, &started] {
    started = engine_->Start().ok() ? 1 : 0;
    engine_->Wait();
  });
  ASSERT_TRUE(WaitUntil([&] { return started.load() >= 0; }, kTimeout));
  ASSERT_EQ(started.load(), 1);
  H2Client client(port_);
  ASSERT_TRUE(client.Fetch("GET", "/").has_value());
  const int32_t id = client.Submit("GET", "/delay?ms=300");
  ASSERT_TRUE(client.Until([&] { return Total(&WorkerCounters::h2_streams) == 2; }));
  engine_->Drain();
  ASSERT_TRUE(client.Until([&] { return client.goaway_error().has_value(); }));
  EXPECT_EQ(*client.goaway_error(), 0u);
  EXPECT_EQ(client.goaway_last_stream(), id);
  std::optional<H2Response> r = client.Wait(id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "later");
  EXPECT_TRUE(client.Until([&] { return client.closed(); }));
  supervisor.join();
}

TEST_P(H2Test, ALoopThatDiesClosesItsConnectionsAndItsReplacementServes) {
  ASSERT_NO_FATAL_FAILURE(ServeH2({}, /*start=*/false));
  if (IsSkipped()) return;
  std::thread supervisor([this] {
    if (engine_->Start().ok()) engine_->Wait();
  });
  ASSERT_TRUE(WaitUntil([&] { return engine_->ready(); }, kTimeout));
  H2Client client(port_);
  const int32_t held = client.Submit("GET", "/abortable");
  ASSERT_TRUE(client.Until([&] { return handled_.load() == 1; }));
  client.Submit("GET", "/crash");
  // The loop dies with the stream in flight: the connection goes, and the answer with it.
  EXPECT_TRUE(client.Until([&] { return client.closed(); }));
  EXPECT_FALSE(client.response(held).closed);
  // Served again once the supervisor has replaced the loop.
  ASSERT_TRUE(WaitUntil([&] { return engine_->ready(); }, kTimeout));
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    H2Client again(port_);
    std::optional<H2Response> r = again.Fetch("GET", "/");
    served = r.has_value() && r->status == 200;
  }
  EXPECT_TRUE(served);
  {
    std::lock_guard<std::mutex> lock(mu_);
    kept_.clear();
  }
  engine_->Stop();
  supervisor.join();
}

TEST_P(H2Test, AnOnWritableThatThrowsResetsItsStreamAndTheConnectionGoesOn) {
  ASSERT_NO_FATAL_FAILURE(ServeH2());
  if (IsSkipped()) return;
  H2Client client(port_);
  const int32_t id = client.Submit("GET", "/throws");
  std::optional<H2Response> r = client.Wait(id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error_code, static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR));
  r = client.Fetch("GET", "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(H2Test, WithHttp2OffThePrefaceIs505) {
  HttpOptions http;
  http.http2.enabled = false;
  ASSERT_NO_FATAL_FAILURE(ServeH2(http));
  if (IsSkipped()) return;
  std::optional<percore::testing::HttpResponse> r =
      percore::testing::Fetch(port_, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 505);
}

INSTANTIATE_TEST_SUITE_P(Backends, H2Test, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
