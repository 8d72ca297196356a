#include "percore/thread_pool.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "log_line.h"

namespace percore {

ThreadPool::ThreadPool(Options options) : max_queued_(options.max_queued) {
  // Every signal blocked while the threads are made, so they start with it blocked (a signal
  // could otherwise reach one before it blocks them itself); the caller's mask is restored.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  const int threads = std::max(1, options.threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Work(); });
    // At most 15 characters: the kernel's limit for a thread's name.
    const std::string name = (options.name + "/" + std::to_string(i)).substr(0, 15);
    pthread_setname_np(threads_.back().native_handle(), name.c_str());
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

ThreadPool::~ThreadPool() { Stop(); }

bool ThreadPool::Submit(absl::AnyInvocable<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || jobs_.size() >= max_queued_) return false;
    jobs_.push_back(std::move(job));
  }
  ready_.notify_one();
  return true;
}

void ThreadPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

size_t ThreadPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.size();
}

void ThreadPool::Work() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and nothing left to run
    absl::AnyInvocable<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    try {
      job();
    } catch (const std::exception& e) {
      const std::string line = std::string("percore: a thread pool job threw: ") + e.what() + "\n";
      WriteWithoutSigpipe(STDERR_FILENO, line.data(), line.size());
    } catch (...) {
      static constexpr char kLine[] = "percore: a thread pool job threw a non-std exception\n";
      WriteWithoutSigpipe(STDERR_FILENO, kLine, sizeof(kLine) - 1);
    }
    job = nullptr;  // what it holds goes before the next wait, outside the lock
    lock.lock();
  }
}

}  // namespace percore
