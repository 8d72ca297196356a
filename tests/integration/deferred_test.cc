// Answers that come later (Response::Defer) and the loop services behind them (Worker::After,
// WorkerRef::Post), in-process on 127.0.0.1, once per backend. Every wait has a deadline.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/http/task.h"
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
using percore::http::Response;
using percore::http::OnThread;
using percore::http::Request;
using percore::http::RouteOptions;
using percore::http::Sleep;
using percore::http::Task;
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

constexpr milliseconds kTimeout(10000);

int64_t MicrosNow() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

int QueryInt(const Request& req, std::string_view key) {
  return std::stoi(std::string(req.Query(key)));
}

// What the upload routes answer: "<bytes> <sum>", the sum of the body's bytes, so a lost,
// repeated or reordered piece shows.
struct Count {
  uint64_t bytes = 0;
  uint64_t sum = 0;
  void Add(std::string_view chunk) {
    bytes += chunk.size();
    for (char c : chunk) sum += static_cast<unsigned char>(c);
  }
  std::string Text() const { return std::to_string(bytes) + " " + std::to_string(sum); }
};

// A body reader that counts and answers with the count at the end.
absl::AnyInvocable<void(Response&, std::string_view, bool)> CountingReader() {
  return [count = std::make_shared<Count>()](Response& res, std::string_view chunk, bool last) {
    count->Add(chunk);
    if (last) res.Send(count->Text());
  };
}

class DeferredTest : public percore::testing::EngineTest {
 protected:
  void SetUp() override {
    App app;
    app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
    app.Get("/delay", [](const Request& req, Response& res) {
      const int ms = QueryInt(req, "ms");
      req.worker().After(absl::Milliseconds(ms), [later = res.Defer(), ms]() mutable {
        later.Send("delayed " + std::to_string(ms));
      });
    });
    app.Get("/abortable", [this](const Request& req, Response& res) {
      Response later = res.Defer();
      later.OnAborted([this] { ++aborted_; });
      ++taken_;
      req.worker().After(absl::Milliseconds(QueryInt(req, "ms")),
                         [this, later = std::move(later)]() mutable {
        later.Send("too late");  // a no-op once aborted
        timer_ran_ = true;
      });
    });
    app.Get("/chunks", [](const Request& req, Response& res) {
      Response later = res.Defer();
      later.Write("a");
      req.worker().After(absl::Milliseconds(20), [later = std::move(later)]() mutable {
        later.Write("bc");
        later.End();
      });
    });
    app.Get("/watch", [](const Request& req, Response& res) {
      // A pipe another thread writes two bytes to; the watch reads one per call, so it must be
      // called again while the pipe stays readable (level-triggered), then unwatches.
      int fds[2];
      if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        res.Status(500).Send("pipe2 failed");
        return;
      }
      Worker& worker = req.worker();
      auto got = std::make_shared<std::string>();
      auto id = std::make_shared<WatchId>(0);
      // Shared: kept here too, to answer if the watch is refused.
      auto later = std::make_shared<Response>(res.Defer());
      *id = worker.Watch(fds[0], kReadable, [&worker, fds, got, id, later](uint32_t ready) {
        char c;
        if ((ready & kReadable) != 0 && read(fds[0], &c, 1) == 1) got->push_back(c);
        if (got->size() < 2) return;
        EXPECT_TRUE(worker.Unwatch(*id));
        EXPECT_FALSE(worker.Unwatch(*id));
        close(fds[0]);
        close(fds[1]);
        later->Send("watched " + *got);
      });
      if (*id == 0) {
        later->Status(500).Send("Watch refused the pipe");
        return;
      }
      std::thread([fd = fds[1]] { [[maybe_unused]] ssize_t n = write(fd, "ab", 2); }).detach();
    });
    app.Get("/co", percore::http::Async([](const Request& req, Response res) -> Task {
              Worker& worker = req.worker();
              const int ms = QueryInt(req, "ms");
              co_await Sleep(worker, absl::Milliseconds(ms));
              auto answer = OnThread(
                  worker, [](std::function<void()> job) { std::thread(std::move(job)).detach(); },
                  [] { return 41 + 1; });
              const int value = co_await answer;
              res.Send("co " + std::to_string(ms) + " " + std::to_string(value));
            }));
    app.Get("/co-throw", percore::http::Async([](const Request& req, Response) -> Task {
              co_await Sleep(req.worker(), absl::Milliseconds(1));
              throw std::runtime_error("from the coroutine");
            }));
    app.Get("/drop", [](const Request&, Response& res) {
      res.Set("X-Kept", "yes");
      Response dropped = res.Defer();  // and never answered
    });
    app.Get("/thread", [](const Request&, Response& res) {
      Response later = res.Defer();
      std::thread([later = std::move(later)]() mutable {
        later.worker().Post([later = std::move(later)]() mutable {
          later.Status(202).Send("from another thread");
        });
      }).detach();
    });
    app.Get("/peer", [](const Request& req, Response& res) {
      res.Send(req.peer().ip + " " + std::to_string(req.peer().port));
    });
    app.Get("/ref", [this](const Request& req, Response& res) {
      std::lock_guard<std::mutex> lock(mutex_);
      ref_ = req.worker().ref();
      res.Send("ok");
    });
    app.Get("/crash", [](const Request& req, Response& res) {
      percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
      res.Send("crashing");
    });
    app.Get("/timers", [this](const Request& req, Response& res) {
      // 50,000 timers over 0..199 ms (timer i waits i % 200 ms), every third cancelled. Each
      // that runs checks that it is not early, and that every timer armed before it with no
      // longer a delay has run (due no later; due alike, armed first).
      // Shared by the 50,000 timers: the one that runs last answers.
      auto later = std::make_shared<Response>(res.Defer());
      Worker& worker = req.worker();
      auto state = std::make_shared<TimerState>();
      constexpr int kTimers = 50000;
      constexpr int kDelays = 200;
      for (int d = 0; d < kDelays; ++d) {
        int first = d;
        while (first % 3 == 0) first += kDelays;  // cancelled
        state->next.push_back(first);
      }
      std::vector<TimerId> ids;
      for (int i = 0; i < kTimers; ++i) {
        const int64_t due_us = MicrosNow() + (i % kDelays) * 1000;
        ids.push_back(
            worker.After(absl::Milliseconds(i % kDelays), [state, due_us, i, later] {
              const int d = i % kDelays;
              if (i % 3 == 0) ++state->cancelled_ran;
              if (MicrosNow() < due_us) ++state->early;
              bool in_order = state->next[d] == i;
              for (int e = 0; e < d; ++e) in_order = in_order && state->next[e] > i;
              if (!in_order) ++state->out_of_order;
              int next = i + kDelays;
              while (next % 3 == 0) next += kDelays;  // cancelled
              state->next[d] = next;
              if (++state->ran == kTimers - (kTimers + 2) / 3) {
                later->Send(std::to_string(state->ran) + " " + std::to_string(state->early) + " " +
                           std::to_string(state->out_of_order) + " " +
                           std::to_string(state->cancelled_ran));
              }
            }));
      }
      int cancelled = 0;
      for (int i = 0; i < kTimers; i += 3) cancelled += worker.Cancel(ids[i]) ? 1 : 0;
      if (cancelled != (kTimers + 2) / 3 || worker.Cancel(ids[0])) {
        later->Status(500).Send("Cancel returned the wrong value");
      }
    });
    AddUploadRoutes(app);
    AddFileRoutes(app);
    EngineOptions options;
    options.threads = 1;
    ASSERT_NO_FATAL_FAILURE(Serve(app, options));
  }

  void TearDown() override {
    if (!file_path_.empty()) unlink(file_path_.c_str());
    EngineTest::TearDown();
  }

  Socket Connect() { return Socket(ConnectLocal(port_)); }

  // Files sent without a copy (Response::SendFile): /file?offset=&length= of a file the suite
  // writes, at once, or later from a timer with /file-later.
  void AddFileRoutes(App& app) {
    char path[] = "/tmp/percore-deferred-test-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    file_path_ = path;
    file_content_ = FileContent();
    ASSERT_EQ(write(fd, file_content_.data(), file_content_.size()),
              static_cast<ssize_t>(file_content_.size()));
    close(fd);
    auto open_range = [this](const Request& req, uint64_t* offset, uint64_t* length) {
      *offset = std::stoull(std::string(req.Query("offset")));
      *length = std::stoull(std::string(req.Query("length")));
      return open(file_path_.c_str(), O_RDONLY | O_CLOEXEC);
    };
    app.Get("/file", [open_range](const Request& req, Response& res) {
      uint64_t offset, length;
      const int fd = open_range(req, &offset, &length);
      res.Type("application/octet-stream").SendFile(fd, offset, length);
    });
    app.Get("/file-later", [open_range](const Request& req, Response& res) {
      uint64_t offset, length;
      const int fd = open_range(req, &offset, &length);
      Response later = res.Defer();
      req.worker().After(absl::Milliseconds(10),
                         [later = std::move(later), fd, offset, length]() mutable {
                           later.SendFile(fd, offset, length);
                         });
    });
  }

  static std::string FileContent() {
    std::string content(20 << 20, '\0');
    for (size_t i = 0; i < content.size(); ++i) {
      content[i] = static_cast<char>('A' + (i / 7 + i % 13) % 26);
    }
    return content;
  }

  // Streamed request bodies (RouteOptions::stream_body), read with CountingReader (or as it).
  void AddUploadRoutes(App& app) {
    RouteOptions streamed;
    streamed.stream_body = true;
    streamed.max_body_bytes = 64 << 20;
    app.Post(
        "/upload",
        [this](const Request& req, Response& res) {
          ++upload_handled_;
          if (req.Header("x-token") != "ok") {
            res.Status(401).Send("no token\n");  // before the body is read
            return;
          }
          Response later = res.Defer();
          later.OnAborted([this] { ++aborted_; });
          later.OnBody(CountingReader());
        },
        streamed);
    app.Post(
        "/upload-paced",
        [](const Request& req, Response& res) {
          // Pauses after each piece and goes on 1 ms later, from a timer.
          Worker& worker = req.worker();
          auto count = std::make_shared<Count>();
          // The timer needs a handle of its own: shared with the reader.
          auto later = std::make_shared<Response>(res.Defer());
          later->OnBody([later, count, &worker](Response& res, std::string_view chunk, bool last) {
            count->Add(chunk);
            if (last) {
              res.Send(count->Text());
              return;
            }
            res.PauseBody();
            worker.After(absl::Milliseconds(1), [later] { later->ResumeBody(); });
          });
        },
        streamed);
    app.Post(
        "/upload-later",
        [](const Request& req, Response& res) {
          // The reader comes 30 ms after the handler: what arrived meanwhile waits for it, and
          // an "Expect: 100-continue" client hears "100 Continue" only then.
          Response later = res.Defer();
          req.worker().After(absl::Milliseconds(30), [later = std::move(later)]() mutable {
            later.OnBody(CountingReader());
          });
        },
        streamed);
    app.Post(
        "/upload-enough",
        [](const Request&, Response& res) {
          // Answers on the first piece; the rest of the body is discarded.
          Response later = res.Defer();
          later.OnBody([](Response& res, std::string_view, bool) { res.Send("enough"); });
        },
        streamed);
    RouteOptions small;
    small.max_body_bytes = 10;
    app.Post(
        "/small", [](const Request& req, Response& res) { res.Send(req.body()); }, small);
    RouteOptions small_streamed = small;
    small_streamed.stream_body = true;
    app.Post(
        "/small-streamed",
        [this](const Request&, Response& res) {
          Response later = res.Defer();
          later.OnAborted([this] { ++aborted_; });
          later.OnBody([](Response& res, std::string_view, bool last) {
            if (last) res.Send("all of it");
          });
        },
        small_streamed);
  }

  struct TimerState {
    int ran = 0;
    int early = 0;
    int out_of_order = 0;
    int cancelled_ran = 0;
    std::vector<int> next;  // per delay, the index of the next timer to run
  };

  std::atomic<int> aborted_{0};
  std::atomic<int> taken_{0};  // /abortable requests handled
  std::atomic<int> upload_handled_{0};
  std::string file_path_;
  std::string file_content_;
  std::atomic<bool> timer_ran_{false};
  std::mutex mutex_;
  WorkerRef ref_;
};

TEST_P(DeferredTest, AnswerFromATimerWhileTheLoopServesOthers) {
  Socket slow = Connect();
  Socket fast = Connect();
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(slow.fd(), Get("/delay?ms=300")));
  std::string fast_buffer;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(SendAll(fast.fd(), Get("/")));
    std::optional<HttpResponse> r = ReadResponse(fast.fd(), fast_buffer, kTimeout);
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->body, "Hello World!");
  }
  std::string slow_buffer;
  std::optional<HttpResponse> r = ReadResponse(slow.fd(), slow_buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "delayed 300");
  EXPECT_GE(Clock::now() - start, milliseconds(300));
  // The connection goes on.
  ASSERT_TRUE(SendAll(slow.fd(), Get("/")));
  r = ReadResponse(slow.fd(), slow_buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, PipelinedDeferredAndImmediateRequestsAreAnsweredInOrder) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), Get("/delay?ms=100") + Get("/") + Get("/delay?ms=10") + Get("/") +
                                  Get("/delay?ms=0")));
  std::string buffer;
  const std::vector<std::string> expected = {"delayed 100", "Hello World!", "delayed 10",
                                             "Hello World!", "delayed 0"};
  for (const std::string& body : expected) {
    std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
    ASSERT_TRUE(r.has_value()) << body;
    EXPECT_EQ(r->body, body);
  }
}

TEST_P(DeferredTest, ClientLeavingBeforeTheAnswerAbortsItOnce) {
  {
    Socket c = Connect();
    ASSERT_TRUE(SendAll(c.fd(), Get("/abortable?ms=300")));
    ASSERT_TRUE(WaitUntil([this] { return taken_.load() == 1; }, kTimeout));
    c.Reset();
  }
  EXPECT_TRUE(WaitUntil([this] { return aborted_.load() == 1; }, kTimeout)) << aborted_.load();
  EXPECT_TRUE(WaitUntil([this] { return timer_ran_.load(); }, kTimeout));
  EXPECT_EQ(aborted_.load(), 1);
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/"), kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_P(DeferredTest, StreamedPiecesGoOutChunkedAndTheConnectionGoesOn) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), Get("/chunks") + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("transfer-encoding"), "chunked");
  EXPECT_EQ(r->body, "abc");
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, StreamedPiecesToHttp10EndWithTheConnection) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), "GET /chunks HTTP/1.0\r\n\r\n"));
  ReadToEndResult all = ReadToEnd(c.fd(), kTimeout);
  EXPECT_EQ(all.end, StreamEnd::kClosed);
  EXPECT_EQ(all.data.find("Transfer-Encoding"), std::string::npos) << all.data;
  EXPECT_NE(all.data.find("Connection: close\r\n"), std::string::npos) << all.data;
  EXPECT_TRUE(all.data.ends_with("\r\n\r\nabc")) << all.data;
}

TEST_P(DeferredTest, DroppedDeferredResponseAnswers500AndTheConnectionGoesOn) {
  Socket c = Connect();
  ASSERT_TRUE(SendAll(c.fd(), Get("/drop") + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->Header("x-kept"), "");
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, WatchedPipeIsReportedUntilUnwatched) {
  for (int i = 0; i < 3; ++i) {  // watches come and go on one loop
    std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/watch"), kTimeout);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "watched ab");
  }
}

TEST_P(DeferredTest, CoroutineHandlerAwaitsATimerAndAnotherThread) {
  Socket c = Connect();
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(c.fd(), Get("/co?ms=30") + Get("/co-throw") + Get("/")));
  std::string buffer;
  std::optional<HttpResponse> r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "co 30 42");
  EXPECT_GE(Clock::now() - start, milliseconds(30));
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  r = ReadResponse(c.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
}

TEST_P(DeferredTest, AnswerPostedFromAnotherThread) {
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/thread"), kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "from another thread");
}

TEST_P(DeferredTest, PostsFromEightThreadsRunOnceEachOnTheLoopAndAreRefusedAfterIt) {
  ASSERT_TRUE(percore::testing::Fetch(port_, Get("/ref"), kTimeout).has_value());
  WorkerRef ref;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ref = ref_;
  }
  constexpr int kThreads = 8;
  constexpr int kJobs = 5000;
  auto counts = std::make_shared<std::vector<int>>(kThreads * kJobs, 0);  // loop thread only
  auto off_loop = std::make_shared<std::atomic<int>>(0);
  auto done = std::make_shared<std::atomic<int>>(0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([=] {
      for (int j = 0; j < kJobs; ++j) {
        const bool posted = ref.Post([=] {
          if (!ref.OnWorkerThread()) ++*off_loop;
          ++(*counts)[t * kJobs + j];
          ++*done;
        });
        if (!posted) return;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(WaitUntil([&] { return done->load() == kThreads * kJobs; }, kTimeout))
      << done->load();
  EXPECT_EQ(off_loop->load(), 0);
  EXPECT_EQ(std::count(counts->begin(), counts->end(), 1), kThreads * kJobs);
  EXPECT_FALSE(ref.OnWorkerThread());
  engine_->Stop();
  engine_->Wait();
  EXPECT_FALSE(ref.Post([] {})) << "a post to a loop that exited";
}

TEST_P(DeferredTest, FiftyThousandTimersRunInOrderAndCancelledOnesNever) {
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Get("/timers"), kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  // ran, early, out of order, cancelled that ran
  EXPECT_EQ(r->body, "33333 0 0 0");
}

TEST_P(DeferredTest, LoopDeathClosesAConnectionWaitingForItsAnswerAndAbortsIt) {
  Socket waiting = Connect();
  ASSERT_TRUE(SendAll(waiting.fd(), Get("/abortable?ms=5000")));
  ASSERT_TRUE(WaitUntil([this] { return taken_.load() == 1; }, kTimeout));
  Socket crasher = Connect();
  ASSERT_TRUE(SendAll(crasher.fd(), Get("/crash")));
  ReadToEndResult end = ReadToEnd(waiting.fd(), kTimeout);
  EXPECT_NE(end.end, StreamEnd::kTimeout) << "the waiting connection stayed open";
  EXPECT_EQ(end.data, "");
  EXPECT_TRUE(WaitUntil([this] { return aborted_.load() == 1; }, kTimeout)) << aborted_.load();
}

// Reads exactly `n` bytes, or what came before the peer closed or `timeout` passed.
std::string ReadBytes(int fd, size_t n, milliseconds timeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  while (out.size() < n && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    char buf[256];
    const ssize_t got = read(fd, buf, std::min(sizeof(buf), n - out.size()));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// A body of `n` bytes that is not all alike, and what the upload routes answer for it.
std::string Body(size_t n) {
  std::string body(n, '\0');
  for (size_t i = 0; i < n; ++i) body[i] = static_cast<char>('a' + (i * 7) % 26);
  return body;
}

std::string CountOf(std::string_view body) {
  uint64_t sum = 0;
  for (char c : body) sum += static_cast<unsigned char>(c);
  return std::to_string(body.size()) + " " + std::to_string(sum);
}

std::string Post(std::string_view path, std::string_view body, std::string_view extra = "") {
  return "POST " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra) +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

// `body` in chunks of up to `piece` bytes.
std::string Chunked(std::string_view body, size_t piece) {
  std::string out;
  for (size_t i = 0; i < body.size(); i += piece) {
    const std::string_view part = body.substr(i, piece);
    char size[20];
    out.append(size,
               static_cast<size_t>(std::snprintf(size, sizeof(size), "%zx\r\n", part.size())));
    out.append(part);
    out.append("\r\n");
  }
  return out + "0\r\n\r\n";
}

TEST_P(DeferredTest, StreamedUploadReachesItsReaderWholeAndTheConnectionGoesOn) {
  Socket s = Connect();
  std::string buffer;
  const std::string body = Body(8 << 20);
  // Sent from another thread: the server reads while the client writes.
  std::thread writer([&] {
    SendAll(s.fd(), Post("/upload", body, "X-Token: ok\r\n"));
    SendAll(s.fd(),
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nX-Token: ok\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" +
                Chunked(body.substr(0, 3 << 20), 100000) + Get("/"));
  });
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, CountOf(body));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(body.substr(0, 3 << 20)));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  writer.join();
  EXPECT_EQ(aborted_.load(), 0);
}

TEST_P(DeferredTest, PausedReaderGetsEveryByteInOrder) {
  Socket s = Connect();
  std::string buffer;
  const std::string body = Body(1 << 20);
  std::thread writer([&] { SendAll(s.fd(), Post("/upload-paced", body) + Get("/")); });
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(body));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  writer.join();
}

TEST_P(DeferredTest, ReaderThatComesLaterGetsWhatArrivedMeanwhileAndThe100ContinueWaitsForIt) {
  Socket s = Connect();
  std::string buffer;
  const std::string small = Body(1000);
  ASSERT_TRUE(SendAll(s.fd(), Post("/upload-later", small)));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(small));
  // Expect: 100-continue: nothing is sent until the reader asks for the body.
  const std::string body = Body(200000);
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(s.fd(),
                      "POST /upload-later HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                      "Content-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n"));
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  ASSERT_EQ(ReadBytes(s.fd(), interim.size(), kTimeout), interim);
  EXPECT_GE(Clock::now() - start, milliseconds(25));
  ASSERT_TRUE(SendAll(s.fd(), body));
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, CountOf(body));
}

TEST_P(DeferredTest, UploadRefusedBeforeItsBodyIsSent) {
  // A small body: answered at once, the body read past, and the connection goes on.
  Socket s = Connect();
  std::string buffer;
  ASSERT_TRUE(SendAll(s.fd(), Post("/upload", Body(5000)) + Get("/")));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("connection"), "");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");

  // 100 MB announced with "Expect: 100-continue": the 401 comes without "100 Continue", says
  // it closes (more than max_discard_bytes would have to be read past), and the connection
  // ends; the client sends none of the body.
  Socket big = Connect();
  ASSERT_TRUE(SendAll(big.fd(),
                      "POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                      "Content-Length: 50000000\r\n\r\n"));
  ReadToEndResult end = ReadToEnd(big.fd(), kTimeout);
  EXPECT_EQ(end.end, StreamEnd::kClosed);
  size_t consumed = 0;
  r = percore::testing::ParseResponse(end.data, &consumed);
  ASSERT_TRUE(r.has_value()) << end.data;
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_EQ(end.data.find("100 Continue"), std::string::npos);

  // A small body announced with "Expect: 100-continue": the client may send it or not after
  // the 401, so the answer closes the connection either way.
  Socket expecting = Connect();
  ASSERT_TRUE(SendAll(expecting.fd(),
                      "POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                      "Content-Length: 10\r\n\r\n"));
  end = ReadToEnd(expecting.fd(), kTimeout);
  EXPECT_EQ(end.end, StreamEnd::kClosed);
  r = percore::testing::ParseResponse(end.data, &consumed);
  ASSERT_TRUE(r.has_value()) << end.data;
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("connection"), "close");
}

TEST_P(DeferredTest, AnswerBeforeTheBodyEndsDiscardsTheRest) {
  Socket s = Connect();
  std::string buffer;
  const std::string body = Body(300000);
  std::thread writer([&] { SendAll(s.fd(), Post("/upload-enough", body) + Get("/")); });
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "enough");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  writer.join();
}

TEST_P(DeferredTest, RouteBodyLimitsAnswer413) {
  // Buffered: refused on its Content-Length.
  std::optional<HttpResponse> r = percore::testing::Fetch(port_, Post("/small", "0123456789A"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  r = percore::testing::Fetch(port_, Post("/small", "0123456789"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "0123456789");
  // Streamed and chunked: refused when the limit is passed, and the reader is told.
  r = percore::testing::Fetch(port_,
                              "POST /small-streamed HTTP/1.1\r\nHost: localhost\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n" +
                                  Chunked(Body(30), 8));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(WaitUntil([this] { return aborted_.load() == 1; }, kTimeout));
  r = percore::testing::Fetch(port_,
                              "POST /small-streamed HTTP/1.1\r\nHost: localhost\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n" +
                                  Chunked(Body(10), 3));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "all of it");
}

std::string FileGet(std::string_view path, uint64_t offset, uint64_t length) {
  return Get(std::string(path) + "?offset=" + std::to_string(offset) +
             "&length=" + std::to_string(length));
}

TEST_P(DeferredTest, FileRangesGoOutWholeAndInOrderWithWhatFollows) {
  Socket s = Connect();
  std::string buffer;
  const uint64_t size = file_content_.size();
  // Pipelined: the whole file, a plain answer, a range from the middle answered later, a range
  // of nothing, and a plain answer again.
  ASSERT_TRUE(SendAll(s.fd(), FileGet("/file", 0, size) + Get("/") +
                                  FileGet("/file-later", 12345, 3 << 20) + FileGet("/file", 7, 0) +
                                  Get("/")));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("content-type"), "application/octet-stream");
  EXPECT_TRUE(r->body == file_content_) << r->body.size();
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->body == file_content_.substr(12345, 3 << 20)) << r->body.size();
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->Header("content-length"), "0");
  r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "Hello World!");
  // HEAD: the length, no body, and the connection goes on.
  ASSERT_TRUE(
      SendAll(s.fd(), "HEAD /file?offset=0&length=1000 HTTP/1.1\r\nHost: x\r\n\r\n" + Get("/")));
  // The HEAD answer has Content-Length 1000 and no body: read up to the next answer by hand.
  std::string all = buffer;
  const auto deadline = Clock::now() + kTimeout;
  while (all.find("Hello World!") == std::string::npos && Clock::now() < deadline) {
    all += ReadBytes(s.fd(), 1, milliseconds(100));
  }
  EXPECT_NE(all.find("Content-Length: 1000\r\n"), std::string::npos) << all;
  EXPECT_NE(all.find("\r\n\r\nHTTP/1.1 200 OK\r\n"), std::string::npos) << all;
  EXPECT_NE(all.find("Hello World!"), std::string::npos) << all;
}

TEST_P(DeferredTest, FileShorterThanItsRangeFailsTheConnection) {
  Socket s = Connect();
  const uint64_t size = file_content_.size();
  ASSERT_TRUE(SendAll(s.fd(), FileGet("/file", size - 100, 1000) + Get("/")));
  ReadToEndResult end = ReadToEnd(s.fd(), kTimeout);
  EXPECT_NE(end.end, StreamEnd::kTimeout);
  // The head and the 100 bytes the file had, then the end: never the next answer.
  const size_t body = end.data.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  EXPECT_EQ(end.data.substr(body + 4), file_content_.substr(size - 100));
  EXPECT_EQ(end.data.find("Hello World!"), std::string::npos);
}

TEST_P(DeferredTest, RequestKnowsItsPeerAddress) {
  Socket s = Connect();
  sockaddr_in local{};
  socklen_t length = sizeof(local);
  ASSERT_EQ(getsockname(s.fd(), reinterpret_cast<sockaddr*>(&local), &length), 0);
  std::string buffer;
  ASSERT_TRUE(SendAll(s.fd(), Get("/peer")));
  std::optional<HttpResponse> r = ReadResponse(s.fd(), buffer, kTimeout);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "127.0.0.1 " + std::to_string(ntohs(local.sin_port)));
}

INSTANTIATE_TEST_SUITE_P(Backends, DeferredTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
