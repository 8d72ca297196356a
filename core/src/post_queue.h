// PostQueue: the jobs other threads post to one loop (WorkerRef::Post), drained by the loop each
// iteration. The loop's eventfd wakes it when the first job of a batch arrives.
#ifndef PERCORE_SRC_POST_QUEUE_H_
#define PERCORE_SRC_POST_QUEUE_H_

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace percore {

class PostQueue {
 public:
  // `wake_fd` is the loop's eventfd (or -1: nothing to wake, as in tests). Made on the loop's
  // thread, which it remembers as its owner.
  explicit PostQueue(int wake_fd) : wake_fd_(wake_fd), owner_(std::this_thread::get_id()) {}

  // Queues `fn`; false once Close() ran. Thread-safe.
  bool Push(absl::AnyInvocable<void()>& fn);
  // Whether jobs wait; a relaxed look the loop takes every iteration before locking.
  bool HasJobs() const { return has_jobs_.load(std::memory_order_acquire); }
  // The jobs posted so far, in order. Loop thread.
  void TakeAll(std::vector<absl::AnyInvocable<void()>>* out);
  // Refuses every post from now on and returns the jobs that will never run, for the caller to
  // destroy outside the lock. Loop thread, as the loop exits.
  std::vector<absl::AnyInvocable<void()>> Close();
  bool OnOwnerThread() const { return std::this_thread::get_id() == owner_; }

 private:
  std::mutex mutex_;
  std::vector<absl::AnyInvocable<void()>> jobs_;
  std::atomic<bool> has_jobs_{false};
  bool closed_ = false;
  const int wake_fd_;  // written under mutex_, so never after Close(): the engine may close it
  const std::thread::id owner_;
};

}  // namespace percore

#endif  // PERCORE_SRC_POST_QUEUE_H_
