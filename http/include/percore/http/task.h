// percore/http/task.h — handlers written as C++20 coroutines.
//
//   percore::ThreadPool pool;
//   app.Get("/users/:id", percore::http::Async(
//       [&pool](const Request& req, Response res) -> percore::http::Task {
//         std::string id(req.Param("id"));     // copies: req ends at the first co_await
//         percore::Worker& worker = req.worker();
//         co_await percore::http::Sleep(worker, absl::Milliseconds(50));
//         auto lookup = percore::http::OnThread(worker, pool, [id] { return Lookup(id); });
//         std::string row = co_await lookup;   // Lookup ran on a pool thread; back on the loop
//         res.Type("application/json").Send(row);
//       }));
//
// The coroutine runs on its loop: it starts inside the handler and goes on where it was each
// time what it awaits is done. Its Request is valid only until its first suspension; its
// Response, a handle kept with Defer() (see response.h), is its to answer. An exception that
// escapes it answers 500.
// A coroutine whose loop exits while it waits is destroyed there, with what it holds, and never
// resumed. Owning-loop-only.
//
// An OnThread is made in a statement of its own and then awaited by name, as above: co_await
// refuses it as a temporary (it does not compile). GCC 12 (Debian 12's) destroys a lambda that
// is built inside a co_await expression twice when the lambda owns anything (a captured string:
// heap corruption), whatever the awaitable does with it; built in a declaration, it is
// destroyed once. Sleep and Ready hold nothing to destroy and may be awaited as temporaries.
#ifndef PERCORE_HTTP_TASK_H_
#define PERCORE_HTTP_TASK_H_

#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "absl/time/time.h"
#include "percore/http/request.h"
#include "percore/http/response.h"
#include "percore/http/router.h"
#include "percore/protocol.h"
#include "percore/thread_pool.h"

namespace percore::http {

// The return type of a coroutine handler (see Async). Starts at once and destroys itself at its
// end: nothing to keep.
class Task {
 public:
  struct promise_type {
    // Takes the coroutine's arguments (a lambda's own object first) as the coroutine's frame
    // holds them: its answer is the last, looked at again for an exception that escapes the
    // coroutine, while the frame (and so the answer) still exists.
    template <typename... Args>
    explicit promise_type(Args&... args) : response(&(args, ...)) {
      static_assert(std::is_same_v<std::remove_cvref_t<decltype((args, ...))>, Response>,
                    "a percore::http::Task coroutine takes (const Request&, Response)");
    }
    Task get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() {
      if (!response->sent()) response->Status(500).Send("Internal Server Error\n");
    }
    Response* response;
  };
};

// Makes a Handler of a coroutine taking (const Request&, Response), the handle Defer() keeps.
template <typename Coroutine>
Handler Async(Coroutine coroutine) {
  return [coroutine = std::move(coroutine)](const Request& req, Response& res) {
    coroutine(req, res.Defer());
  };
}

namespace internal {

// Resumes a suspended coroutine once; destroys it if dropped unresumed (its loop exited while
// it waited), so that nothing it holds leaks. Shared by the copies of the callback that holds it.
class Resumption {
 public:
  explicit Resumption(std::coroutine_handle<> h) : handle_(h) {}
  Resumption(const Resumption&) = delete;
  Resumption& operator=(const Resumption&) = delete;
  ~Resumption() {
    if (handle_) handle_.destroy();
  }
  void Resume() { std::exchange(handle_, nullptr).resume(); }
  // Gives the coroutine up without destroying it: it goes on by other means.
  void Release() { handle_ = nullptr; }

 private:
  std::coroutine_handle<> handle_;
};

}  // namespace internal

// co_await Sleep(worker, delay): goes on after `delay`, from the loop's timer.
class Sleep {
 public:
  Sleep(Worker& worker, absl::Duration delay) : worker_(worker), delay_(delay) {}
  bool await_ready() const { return delay_ <= absl::ZeroDuration(); }
  void await_suspend(std::coroutine_handle<> h) {
    auto resumption = std::make_shared<internal::Resumption>(h);
    worker_.After(delay_, [resumption] { resumption->Resume(); });
  }
  void await_resume() const {}

 private:
  Worker& worker_;
  absl::Duration delay_;
};

// co_await Ready(worker, fd, events): goes on once `fd` is ready for some of `events`
// (WatchEvent bits); yields the bits that are.
class Ready {
 public:
  Ready(Worker& worker, int fd, uint32_t events) : worker_(worker), fd_(fd), events_(events) {}
  bool await_ready() const { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    auto resumption = std::make_shared<internal::Resumption>(h);
    auto id = std::make_shared<WatchId>(0);
    *id = worker_.Watch(fd_, events_, [this, resumption, id, &worker = worker_](uint32_t ready) {
      ready_ = ready;
      worker.Unwatch(*id);
      resumption->Resume();
    });
    if (*id == 0) {
      ready_ = 0;  // the backend refused the descriptor: go on at once, told nothing is ready
      worker_.After(absl::ZeroDuration(), [resumption] { resumption->Resume(); });
    }
  }
  uint32_t await_resume() const { return ready_; }

 private:
  Worker& worker_;
  int fd_;
  uint32_t events_;
  uint32_t ready_ = 0;
};

// auto op = OnThread(worker, run, fn); co_await op: runs `fn` on another thread, then goes on
// back on the loop with fn's result. `run` is a ThreadPool (by reference: it must outlive the
// co_await) or any callable taking a std::function<void()> that runs it elsewhere and returns
// void or whether it took it. An exception from `fn` is thrown from the co_await, and so is a
// job the pool refused (ThreadPool::Submit returned false: its queue is full): a
// std::runtime_error that the coroutine may catch (to answer 503) or let become a 500.
template <typename Run, typename Fn>
class OnThread {
 public:
  using Result = std::invoke_result_t<Fn&>;
  OnThread(Worker& worker, Run run, Fn fn)
      : loop_(worker.ref()), run_(std::move(run)), fn_(std::move(fn)) {}
  OnThread(Worker& worker, ThreadPool& pool, Fn fn)
    requires std::is_same_v<Run, ThreadPool*>
      : OnThread(worker, &pool, std::move(fn)) {}
  OnThread(const OnThread&) = delete;
  OnThread& operator=(const OnThread&) = delete;

  // Awaited by name (an lvalue): the awaiter refers to this object, which the coroutine keeps.
  // As a temporary it is refused: see the top of this file.
  struct Awaiter {
    OnThread* op;
    bool await_ready() const { return false; }
    bool await_suspend(std::coroutine_handle<> h) { return op->Suspend(h); }
    Result await_resume() { return op->Resume(); }
  };
  Awaiter operator co_await() & { return Awaiter{this}; }
  void operator co_await() && = delete;

 private:
  bool Suspend(std::coroutine_handle<> h) {
    auto resumption = std::make_shared<internal::Resumption>(h);
    std::function<void()> job = [this, resumption, loop = loop_] {
      try {
        if constexpr (std::is_void_v<Result>) {
          fn_();
        } else {
          result_.emplace(fn_());
        }
      } catch (...) {
        error_ = std::current_exception();
      }
      // Back to the loop; if it has exited, `resumption` is dropped and the coroutine with it.
      loop.Post([resumption] { resumption->Resume(); });
    };
    if (Submit(std::move(job))) return true;
    // Refused: the job (and its share of `resumption`) is gone; go on at once, with the error.
    resumption->Release();
    error_ = std::make_exception_ptr(std::runtime_error("the thread pool refused the job"));
    return false;
  }
  Result Resume() {
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<Result>) return std::move(*result_);
  }
  bool Submit(std::function<void()> job) {
    if constexpr (std::is_same_v<Run, ThreadPool*>) {
      return run_->Submit(std::move(job));
    } else if constexpr (std::is_same_v<std::invoke_result_t<Run&, std::function<void()>>,
                                        bool>) {
      return run_(std::move(job));
    } else {
      run_(std::move(job));
      return true;
    }
  }

  WorkerRef loop_;
  Run run_;
  Fn fn_;
  std::conditional_t<std::is_void_v<Result>, std::optional<int>, std::optional<Result>> result_;
  std::exception_ptr error_;
};

template <typename Run, typename Fn>
OnThread(Worker&, Run, Fn) -> OnThread<Run, Fn>;
template <typename Fn>
OnThread(Worker&, ThreadPool&, Fn) -> OnThread<ThreadPool*, Fn>;

}  // namespace percore::http

#endif  // PERCORE_HTTP_TASK_H_
