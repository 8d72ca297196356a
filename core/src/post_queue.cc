#include "post_queue.h"

#include <unistd.h>

#include <cstdint>

#include "percore/protocol.h"

namespace percore {

bool PostQueue::Push(absl::AnyInvocable<void()>& fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return false;
  jobs_.push_back(std::move(fn));
  if (jobs_.size() == 1) {
    has_jobs_.store(true, std::memory_order_release);
    // The first job of a batch wakes the loop; it takes the whole batch at once.
    const uint64_t one = 1;
    if (wake_fd_ >= 0) [[maybe_unused]]
      ssize_t n = write(wake_fd_, &one, sizeof(one));
  }
  return true;
}

void PostQueue::TakeAll(std::vector<absl::AnyInvocable<void()>>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->swap(jobs_);
  has_jobs_.store(false, std::memory_order_relaxed);
}

std::vector<absl::AnyInvocable<void()>> PostQueue::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  has_jobs_.store(false, std::memory_order_relaxed);
  return std::move(jobs_);
}

bool WorkerRef::Post(absl::AnyInvocable<void()> fn) const {
  // A refused job is destroyed here, on the caller's thread, like the one it replaces.
  return queue_ != nullptr && queue_->Push(fn);
}

bool WorkerRef::OnWorkerThread() const { return queue_ != nullptr && queue_->OnOwnerThread(); }

}  // namespace percore
