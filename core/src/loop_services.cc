// The loop's services to code running on it: jobs posted from other threads, timers and
// watched descriptors, and the boundary their callbacks run behind.
#include <algorithm>
#include <exception>
#include <functional>

#include "absl/strings/str_cat.h"
#include "clock.h"
#include "log_line.h"
#include "loop.h"
#include "post_queue.h"

namespace percore {

void Loop::Guarded(std::string_view what, absl::FunctionRef<void()> fn) {
  // A callback's exception is its own failure, as a handler's is: the loop and every other
  // connection on it go on. Only the fault injected on purpose kills the loop.
  try {
    fn();
  } catch (const InjectedCrash&) {
    throw;
  } catch (const std::exception& e) {
    CallbackFailed(what, e.what());
  } catch (...) {
    CallbackFailed(what, "an exception that is not a std::exception");
  }
}

void Loop::CallbackFailed(std::string_view what, std::string_view error) {
  LoopStats::Add(worker_.stats_->callback_failures, 1);
  // At most a line a second per loop: a callback that fails every time must not turn the loop
  // into a writer of stderr.
  const int64_t now = MonotonicMs();
  if (callback_failure_logged_ms_ != 0 && now - callback_failure_logged_ms_ < 1000) {
    ++callback_failures_unlogged_;
    return;
  }
  std::string line = absl::StrCat("percore: worker ", worker_.id(), ": ", std::string(what),
                                  " threw: ", std::string(error));
  if (callback_failures_unlogged_ > 0) {
    absl::StrAppend(&line, " (and ", callback_failures_unlogged_, " more since the last line)");
  }
  LogLine(options_, line);
  callback_failure_logged_ms_ = now;
  callback_failures_unlogged_ = 0;
}

void Loop::RunPosted() {
  PostQueue& queue = *worker_.ref_.queue_;
  if (!queue.HasJobs()) return;
  queue.TakeAll(&posted_);
  // posted_ may be left as it is if a job kills the loop (testing::CrashLoop): the rest are
  // destroyed then.
  for (auto& job : posted_) {
    auto fn = std::move(job);
    Guarded("a posted job", [&fn] { fn(); });
  }
  posted_.clear();
}

TimerId Loop::AddTimer(absl::Duration delay, absl::AnyInvocable<void()> fn) {
  // From now, read afresh: the loop's clock is as old as the batch being handled.
  const int64_t due =
      MonotonicUs() +
      std::max<int64_t>(0, absl::ToInt64Microseconds(absl::Ceil(delay, absl::Microseconds(1))));
  const TimerId id = ++last_timer_;
  timers_.emplace(id, std::move(fn));
  timer_heap_.push_back(TimerEntry{due, id});
  std::push_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  return id;
}

bool Loop::CancelTimer(TimerId id) {
  if (timers_.erase(id) == 0) return false;
  // Many timers armed far ahead and cancelled (request timeouts that did not fire) would keep
  // the heap growing: rebuild it from the live ones when cancelled entries dominate.
  if (timer_heap_.size() > 64 && timer_heap_.size() > 2 * timers_.size()) {
    std::erase_if(timer_heap_, [this](const TimerEntry& e) { return !timers_.contains(e.id); });
    std::make_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  }
  return true;
}

void Loop::RunTimers() {
  if (timer_heap_.empty()) return;
  const int64_t now = MonotonicUs();
  while (!timer_heap_.empty() && timer_heap_.front().due_us <= now) {
    std::pop_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
    const TimerId id = timer_heap_.back().id;
    timer_heap_.pop_back();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    auto fn = std::move(it->second);
    timers_.erase(it);
    Guarded("a timer", [&fn] { fn(); });
  }
}

WatchId Loop::AddWatch(int fd, uint32_t events, absl::AnyInvocable<void(uint32_t)> fn) {
  auto w = std::make_unique<Watch>();
  w->id = ++last_watch_;
  w->fd = fd;
  w->events = events;
  w->fn = std::move(fn);
  if (fd < 0 || (events & (kReadable | kWritable)) == 0 || !backend_->AddWatch(w.get())) return 0;
  const WatchId id = w->id;
  watches_.emplace(id, std::move(w));
  return id;
}

bool Loop::RemoveWatch(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end() || it->second->removed) return false;
  Watch* w = it->second.get();
  w->removed = true;
  w->fn = nullptr;  // if it is running, OnWatchReady holds it until it returns
  backend_->RemoveWatch(w);
  removed_watches_.push_back(id);
  return true;
}

void Loop::OnWatchReady(Watch* w, uint32_t ready) {
  if (w->removed) return;
  // Held here while it runs: the callback may unwatch (and so destroy) itself.
  absl::AnyInvocable<void(uint32_t)> fn = std::move(w->fn);
  Guarded("a watch", [&] { fn(ready); });
  if (!w->removed) w->fn = std::move(fn);
}

void Loop::FreeWatches() {
  // Freed only between iterations, when no completion being handled can point to them.
  std::erase_if(removed_watches_, [this](WatchId id) {
    auto it = watches_.find(id);
    if (it->second->armed) return false;
    watches_.erase(it);
    return true;
  });
}

}  // namespace percore
