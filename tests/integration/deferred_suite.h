// What the deferred-answer suites (deferred_test.cc, deferred_body_test.cc) share: an engine
// in-process on 127.0.0.1 with one loop, once per backend, serving routes that answer later
// (Response::Defer) through the loop services (Worker::After, Worker::Watch, WorkerRef::Post),
// coroutines, streamed request bodies and files sent without a copy. Every wait has a deadline.
#ifndef PERCORE_TESTS_INTEGRATION_DEFERRED_SUITE_H_
#define PERCORE_TESTS_INTEGRATION_DEFERRED_SUITE_H_

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/http/task.h"
#include "percore/options.h"
#include "percore/testing/fault.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore::testing {

inline constexpr std::chrono::milliseconds kTimeout(10000);

inline int64_t MicrosNow() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline int QueryInt(const http::Request& req, std::string_view key) {
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
inline absl::AnyInvocable<void(http::Response&, std::string_view, bool)> CountingReader() {
  return
      [count = std::make_shared<Count>()](http::Response& res, std::string_view chunk, bool last) {
        count->Add(chunk);
        if (last) res.Send(count->Text());
      };
}

class DeferredTest : public percore::testing::EngineTest {
 protected:
  void SetUp() override {
    http::App app;
    app.Get("/", [](const http::Request&, http::Response& res) { res.Send("Hello World!"); });
    app.Get("/delay", [](const http::Request& req, http::Response& res) {
      const int ms = QueryInt(req, "ms");
      req.worker().After(absl::Milliseconds(ms), [later = res.Defer(), ms]() mutable {
        later.Send("delayed " + std::to_string(ms));
      });
    });
    app.Get("/abortable", [this](const http::Request& req, http::Response& res) {
      http::Response later = res.Defer();
      later.OnAborted([this] { ++aborted_; });
      ++taken_;
      req.worker().After(absl::Milliseconds(QueryInt(req, "ms")),
                         [this, later = std::move(later)]() mutable {
                           later.Send("too late");  // a no-op once aborted
                           timer_ran_ = true;
                         });
    });
    app.Get("/chunks", [](const http::Request& req, http::Response& res) {
      http::Response later = res.Defer();
      later.Write("a");
      req.worker().After(absl::Milliseconds(20), [later = std::move(later)]() mutable {
        later.Write("bc");
        later.End();
      });
    });
    app.Get("/watch", [](const http::Request& req, http::Response& res) {
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
      auto later = std::make_shared<http::Response>(res.Defer());
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
    app.Get("/co",
            percore::http::Async([](const http::Request& req, http::Response res) -> http::Task {
              Worker& worker = req.worker();
              const int ms = QueryInt(req, "ms");
              co_await http::Sleep(worker, absl::Milliseconds(ms));
              auto answer = http::OnThread(
                  worker, [](std::function<void()> job) { std::thread(std::move(job)).detach(); },
                  [] { return 41 + 1; });
              const int value = co_await answer;
              res.Send("co " + std::to_string(ms) + " " + std::to_string(value));
            }));
    app.Get("/co-throw",
            percore::http::Async([](const http::Request& req, http::Response) -> http::Task {
              co_await http::Sleep(req.worker(), absl::Milliseconds(1));
              throw std::runtime_error("from the coroutine");
            }));
    app.Get("/drop", [](const http::Request&, http::Response& res) {
      res.Set("X-Kept", "yes");
      http::Response dropped = res.Defer();  // and never answered
    });
    app.Get("/thread", [](const http::Request&, http::Response& res) {
      http::Response later = res.Defer();
      std::thread([later = std::move(later)]() mutable {
        later.worker().Post([later = std::move(later)]() mutable {
          later.Status(202).Send("from another thread");
        });
      }).detach();
    });
    app.Get("/peer", [](const http::Request& req, http::Response& res) {
      res.Send(req.peer().ip + " " + std::to_string(req.peer().port));
    });
    app.Get("/ref", [this](const http::Request& req, http::Response& res) {
      std::lock_guard<std::mutex> lock(mutex_);
      ref_ = req.worker().ref();
      res.Send("ok");
    });
    app.Get("/crash", [](const http::Request& req, http::Response& res) {
      percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
      res.Send("crashing");
    });
    app.Get("/timers", [this](const http::Request& req, http::Response& res) {
      // 50,000 timers over 0..199 ms (timer i waits i % 200 ms), every third cancelled. Each
      // that runs checks that it is not early, and that every timer armed before it with no
      // longer a delay has run (due no later; due alike, armed first).
      // Shared by the 50,000 timers: the one that runs last answers.
      auto later = std::make_shared<http::Response>(res.Defer());
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
        ids.push_back(worker.After(absl::Milliseconds(i % kDelays), [state, due_us, i, later] {
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
  void AddFileRoutes(http::App& app) {
    char path[] = "/tmp/percore-deferred-test-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    file_path_ = path;
    file_content_ = FileContent();
    ASSERT_EQ(write(fd, file_content_.data(), file_content_.size()),
              static_cast<ssize_t>(file_content_.size()));
    close(fd);
    auto open_range = [this](const http::Request& req, uint64_t* offset, uint64_t* length) {
      *offset = std::stoull(std::string(req.Query("offset")));
      *length = std::stoull(std::string(req.Query("length")));
      return open(file_path_.c_str(), O_RDONLY | O_CLOEXEC);
    };
    app.Get("/file", [open_range](const http::Request& req, http::Response& res) {
      uint64_t offset, length;
      const int fd = open_range(req, &offset, &length);
      res.Type("application/octet-stream").SendFile(fd, offset, length);
    });
    app.Get("/file-later", [open_range](const http::Request& req, http::Response& res) {
      uint64_t offset, length;
      const int fd = open_range(req, &offset, &length);
      http::Response later = res.Defer();
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
  void AddUploadRoutes(http::App& app) {
    http::RouteOptions streamed;
    streamed.stream_body = true;
    streamed.max_body_bytes = 64 << 20;
    app.Post(
        "/upload",
        [this](const http::Request& req, http::Response& res) {
          ++upload_handled_;
          if (req.Header("x-token") != "ok") {
            res.Status(401).Send("no token\n");  // before the body is read
            return;
          }
          http::Response later = res.Defer();
          later.OnAborted([this] { ++aborted_; });
          later.OnBody(CountingReader());
        },
        streamed);
    app.Post(
        "/upload-paced",
        [](const http::Request& req, http::Response& res) {
          // Pauses after each piece and goes on 1 ms later, from a timer.
          Worker& worker = req.worker();
          auto count = std::make_shared<Count>();
          // The timer needs a handle of its own: shared with the reader.
          auto later = std::make_shared<http::Response>(res.Defer());
          later->OnBody(
              [later, count, &worker](http::Response& res, std::string_view chunk, bool last) {
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
        [](const http::Request& req, http::Response& res) {
          // The reader comes 30 ms after the handler: what arrived meanwhile waits for it, and
          // an "Expect: 100-continue" client hears "100 Continue" only then.
          http::Response later = res.Defer();
          req.worker().After(absl::Milliseconds(30), [later = std::move(later)]() mutable {
            later.OnBody(CountingReader());
          });
        },
        streamed);
    app.Post(
        "/upload-enough",
        [](const http::Request&, http::Response& res) {
          // Answers on the first piece; the rest of the body is discarded.
          http::Response later = res.Defer();
          later.OnBody([](http::Response& res, std::string_view, bool) { res.Send("enough"); });
        },
        streamed);
    http::RouteOptions small;
    small.max_body_bytes = 10;
    app.Post(
        "/small", [](const http::Request& req, http::Response& res) { res.Send(req.body()); },
        small);
    http::RouteOptions small_streamed = small;
    small_streamed.stream_body = true;
    app.Post(
        "/small-streamed",
        [this](const http::Request&, http::Response& res) {
          http::Response later = res.Defer();
          later.OnAborted([this] { ++aborted_; });
          later.OnBody([](http::Response& res, std::string_view, bool last) {
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

}  // namespace percore::testing

#endif  // PERCORE_TESTS_INTEGRATION_DEFERRED_SUITE_H_
