// percore/thread_pool.h — a few threads for work that must not run on a loop.
//
//   percore::ThreadPool pool({.threads = 4, .max_queued = 1024});   // tests/http/task_test.cc
//   auto later = std::make_shared<Response>(res.Defer());  // shared: a refused job is dropped
//   const bool queued = pool.Submit([later] {
//     std::string row = SlowLookup();                            // on a pool thread
//     later->worker().Post([later, row] { later->Send(row); });  // back on the loop
//   });
//   if (!queued) later->Status(503).Set("Retry-After", "1").Send("busy\n");
//
// A fixed number of threads and a bounded queue: a job that finds the queue full is refused at
// once (Submit() returns false) rather than waiting without bound, so an overload turns into
// quick 503s instead of growing latency and memory. Jobs run in the order submitted, each on
// one thread. The pool's threads block every signal that can be blocked, so SIGTERM, SIGHUP and
// SIGINT reach Engine::Run()'s (or the application's) sigtimedwait and never interrupt a job,
// and a write to a closed pipe or socket in a job fails with EPIPE instead of ending the process
// (percore/signals.h). A job that throws is logged on stderr and the thread goes on.
// Thread-safe, every method.
#ifndef PERCORE_THREAD_POOL_H_
#define PERCORE_THREAD_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace percore {

class ThreadPool {
 public:
  struct Options {
    int threads = 4;            // at least 1
    size_t max_queued = 1024;   // jobs waiting for a thread; Submit() refuses beyond
    std::string name = "pool";  // the threads' name (as ps and top show it), with a number
  };
  explicit ThreadPool(Options options);
  ThreadPool() : ThreadPool(Options{}) {}
  // Stop(): the jobs already queued run, then the threads are joined.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `job`. False, and `job` destroyed on the calling thread, when the queue is full or
  // the pool is stopping.
  bool Submit(absl::AnyInvocable<void()> job);
  // Refuses new jobs, lets the queued ones run, and joins the threads. Idempotent; not from one
  // of the pool's own jobs.
  void Stop();
  // Jobs waiting for a thread now.
  size_t queued() const;

 private:
  void Work();

  const size_t max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<absl::AnyInvocable<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace percore

#endif  // PERCORE_THREAD_POOL_H_
