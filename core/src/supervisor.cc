#include "supervisor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "clock.h"
#include "log_line.h"

namespace percore {

Supervisor::Supervisor(const EngineOptions& options, EngineStats& stats, InstanceRunner& runner)
    : options_(options),
      stats_(stats),
      runner_(runner),
      workers_(new WorkerState[stats.size()]),
      count_(static_cast<int>(stats.size())) {}

void Supervisor::Log(std::string_view line) const { LogLine(options_, line); }

absl::Status Supervisor::Start(absl::Time now) {
  std::vector<std::future<absl::Status>> started;
  for (int id = 0; id < count_; ++id) {
    WorkerState& worker = workers_[id];
    worker.backoff.emplace(options_);
    worker.running_since = now;
    started.push_back(StartInstance(id, 0));
  }
  absl::Status first_error;
  for (int id = 0; id < count_; ++id) {
    absl::Status status = started[id].get();
    if (!status.ok() && first_error.ok()) {
      first_error =
          absl::Status(status.code(), absl::StrCat("worker ", id, ": ", status.message()));
    }
  }
  if (!first_error.ok()) {
    Stop();
    return first_error;
  }
  stats_.serving_.store(true);
  return absl::OkStatus();
}

std::future<absl::Status> Supervisor::StartInstance(int id, int place) {
  Instance& instance = workers_[id].places[place];
  instance.exited.store(false);
  instance.exit_status = absl::OkStatus();
  instance.control.stop.store(false);
  instance.control.draining.store(false);
  instance.control.stopped_accepting.store(false);
  instance.stop_at = absl::InfiniteFuture();
  instance.stuck = false;
  instance.running = true;
  return runner_.Start(id, place, instance);
}

bool Supervisor::Reap(Instance& instance) {
  if (!instance.running) return true;
  if (!instance.exited.load(std::memory_order_acquire)) return false;
  Join(instance);
  return true;
}

void Supervisor::Stop() {
  stats_.serving_.store(false);
  all_.stop.store(true);
  WakeAll();
}

void Supervisor::Drain() { stats_.draining_.store(true); }

void Supervisor::WakeAll() {
  for (int id = 0; id < count_; ++id) {
    runner_.Wake(id, 0);
    runner_.Wake(id, 1);
  }
}

bool Supervisor::All(bool (*predicate)(const Instance&)) const {
  for (int id = 0; id < count_; ++id) {
    for (const Instance& instance : workers_[id].places) {
      if (!predicate(instance)) return false;
    }
  }
  return true;
}

bool Supervisor::AllServeNothing() const {
  return All([](const Instance& instance) { return instance.serves_nothing(); });
}

void Supervisor::ReapAll() {
  stats_.serving_.store(false);
  for (int id = 0; id < count_; ++id) {
    for (Instance& instance : workers_[id].places) {
      if (!Reap(instance)) Log(absl::StrCat("Worker ", id, " is stuck; not waiting for it"));
    }
  }
}

void Supervisor::Join(Instance& instance) {
  if (instance.thread.joinable()) instance.thread.join();
  instance.running = false;
}

void Supervisor::JoinAll() {
  for (int id = 0; id < count_; ++id) {
    for (Instance& instance : workers_[id].places) Join(instance);
  }
}

std::pair<uint64_t, uint64_t> Supervisor::Answered() const {
  uint64_t answered = 0, not_ready = 0;
  for (int id = 0; id < count_; ++id) {
    const WorkerCounters counters = stats_.Read(id);
    answered += counters.requests();
    not_ready += counters.not_ready_answers;
  }
  return {answered, not_ready};
}

void Supervisor::Retire(int id, int place, absl::Time now) {
  Instance& instance = workers_[id].places[place];
  instance.control.draining.store(true);
  instance.stop_at = now + options_.shutdown_timeout;
  runner_.Wake(id, place);
}

bool Supervisor::Replace(int id, absl::Time now) {
  WorkerState& worker = workers_[id];
  const int old_place = worker.serving;
  const int new_place = 1 - old_place;
  Instance& fresh = worker.places[new_place];
  if (!Reap(fresh)) return false;  // the instance replaced before is still finishing
  // The new loop accepts on the same listener. The old one has at most a few accepts armed
  // (see kAcceptsArmed in the io_uring backend; epoll accepts only when the loop asks), so once
  // it stops accepting, or while it is stuck, the queue is the new loop's.
  absl::Status status = StartInstance(id, new_place).get();
  if (!status.ok()) {
    Join(fresh);  // it exits at once
    Log(absl::StrCat("Worker ", id, " not replaced: ", status.message()));
    return false;
  }
  worker.serving = new_place;
  Retire(id, old_place, now);
  return true;
}

void Supervisor::CheckStall(int id, absl::Time now) {
  WorkerState& worker = workers_[id];
  WorkerStats& counters = stats_.worker(id);
  const LoopStats& stats = counters.instances[worker.serving];
  const int64_t busy_since = stats.busy_since_ms.load(std::memory_order_relaxed);
  if (busy_since == 0) return;
  const absl::Duration busy = now - FromMonotonicMs(busy_since);
  if (busy >= options_.stall_timeout && busy_since != worker.stall_logged_for) {
    worker.stall_logged_for = busy_since;  // once per stall
    LoopStats::Add(counters.stalls, 1);
    Log(absl::StrCat("Worker ", id, " stalled for ", absl::ToInt64Milliseconds(busy), "ms in ",
                     stats.Activity()));
  }
  if (busy < options_.stuck_timeout || busy_since == worker.stuck_handled_for ||
      all_.draining.load()) {
    return;
  }
  const std::string activity = stats.Activity();
  const int stuck_place = worker.serving;
  if (!Replace(id, now)) {
    // Tried again at the next look (the other place may be finishing a roll's old instance).
    if (busy_since != worker.stuck_logged_for) {
      worker.stuck_logged_for = busy_since;
      Log(absl::StrCat("Worker ", id, " stuck for ", absl::ToInt64Milliseconds(busy), "ms in ",
                       activity, "; not replaced yet: its previous loop is still running"));
    }
    return;
  }
  worker.stuck_handled_for = busy_since;  // once per stall
  worker.places[stuck_place].stuck = true;
  LoopStats::Add(counters.restarts, 1);
  Log(absl::StrCat("Worker ", id, " stuck for ", absl::ToInt64Milliseconds(busy), "ms in ",
                   activity, "; replaced by a new loop on cpu ", counters.cpu));
}

absl::Duration Supervisor::Supervise(absl::Time now) {
  absl::Duration next_look = absl::Milliseconds(100);
  bool all_up = true;
  bool crash_looping = false;
  const bool ending = all_.stop.load() || all_.draining.load();
  const size_t crash_loop_deaths = static_cast<size_t>(options_.crash_loop_deaths);
  for (int id = 0; id < count_; ++id) {
    WorkerState& worker = workers_[id];
    while (!worker.deaths.empty() && now - worker.deaths.front() > options_.crash_loop_window) {
      worker.deaths.pop_front();
    }
    // A retiring instance: done once it exits; stopped if it takes too long.
    const int retiring_place = 1 - worker.serving;
    Instance& retiring = worker.places[retiring_place];
    if (retiring.running) {
      if (Reap(retiring)) {
        Log(absl::StrCat("Worker ", id, "'s replaced loop finished its connections and exited"));
      } else if (now >= retiring.stop_at && !retiring.control.stop.load()) {
        retiring.control.stop.store(true);
        runner_.Wake(id, retiring_place);
      }
    }
    Instance& serving = worker.places[worker.serving];
    if (!worker.down && serving.exited.load(std::memory_order_acquire) && Reap(serving)) {
      if (ending) {
        all_up = false;  // an exit that was asked for
        continue;
      }
      const absl::Duration delay = worker.backoff->AfterDeath(now - worker.running_since);
      worker.down = true;
      worker.restart_at = now + delay;
      Log(absl::StrCat("Worker ", id, " died (", serving.exit_status.message(), "); restarting in ",
                       absl::FormatDuration(delay)));
      worker.deaths.push_back(now);
      if (worker.deaths.size() == crash_loop_deaths) {
        Log(absl::StrCat("Worker ", id, " died ", options_.crash_loop_deaths, " times in ",
                         absl::FormatDuration(options_.crash_loop_window),
                         "; reporting not ready"));
      }
    }
    if (worker.down) {
      all_up = false;
      if (ending) continue;  // not restarted to be drained
      if (now >= worker.restart_at) {
        // The listener stayed open: connections that arrived meanwhile wait in its accept
        // queue for the new loop.
        absl::Status status = StartInstance(id, worker.serving).get();
        worker.down = false;
        worker.running_since = now;
        LoopStats::Add(stats_.worker(id).restarts, 1);
        if (!status.ok()) {
          Log(absl::StrCat("Worker ", id, " failed to restart: ", status.message()));
        }
      } else {
        next_look = std::min(next_look, worker.restart_at - now);
      }
    }
    if (!worker.down) CheckStall(id, now);
    crash_looping |= worker.deaths.size() >= crash_loop_deaths;
  }
  stats_.serving_.store(all_up && !crash_looping);
  return next_look;
}

void Supervisor::AdvanceRoll(absl::Time now) {
  if (roll_id_ < 0) {
    if (!reload_requested_.exchange(false)) return;
    Log("Rolling restart: replacing the workers one at a time");
    roll_id_ = 0;
    roll_replaced_ = false;
  }
  WorkerState& worker = workers_[roll_id_];
  Instance& retiring = worker.places[1 - worker.serving];
  if (!roll_replaced_) {
    if (worker.places[worker.serving].exited.load()) return;  // died: restarted first
    if (worker.down) {
      roll_replaced_ = true;  // its restart is a new loop already
    } else if (retiring.running) {
      // A stuck loop replaced earlier that has not returned: wait for it, unless it outlived its
      // stop time (stuck for good), which the roll cannot fix.
      if (now < retiring.stop_at) return;
      Log(absl::StrCat("Rolling restart: worker ", roll_id_, " skipped: its old loop is stuck"));
      roll_replaced_ = true;
    } else if (Replace(roll_id_, now)) {
      Log(absl::StrCat("Worker ", roll_id_, " restarted on cpu ", stats_.worker(roll_id_).cpu,
                       "; the old loop is draining"));
      roll_replaced_ = true;
      return;
    } else {
      roll_replaced_ = true;  // logged by Replace; the old loop keeps serving
    }
  }
  if (retiring.running && now < retiring.stop_at) return;  // still draining
  roll_replaced_ = false;
  if (++roll_id_ == count_) {
    roll_id_ = -1;
    Log("Rolling restart done");
  }
}

bool Supervisor::AdvanceDrain(absl::Time now, Look& look) {
  if (!watch_) {
    look.drain_began = true;
    const auto [answered, not_ready] = Answered();
    watch_.emplace(options_, now, answered, not_ready);
    Log(options_.drain_delay > absl::ZeroDuration()
            ? absl::StrCat("Draining: not ready; serving until out of the load balancer (at most ",
                           absl::FormatDuration(options_.drain_delay), ")")
            : "Draining: not ready; finishing the requests in flight");
  }
  if (!all_.draining.load()) {
    const auto [answered, not_ready] = Answered();
    std::optional<std::string> why = watch_->Over(now, answered, not_ready);
    if (!why) return false;
    if (options_.drain_delay > absl::ZeroDuration()) {
      Log(absl::StrCat(*why, ": finishing the requests in flight"));
    }
    all_.draining.store(true);
    accepting_ended_ = now;
    WakeAll();
  }
  // A stuck instance (replaced, not returned) accepts nothing and may never return: it holds
  // up neither the closing of the listeners nor the end of the drain.
  if (!listeners_closed_ && All([](const Instance& instance) {
        return instance.serves_nothing() || instance.control.stopped_accepting.load();
      })) {
    runner_.CloseListeners();
    listeners_closed_ = true;
  }
  if (AllServeNothing()) return true;  // every loop finished its connections
  if (now >= accepting_ended_ + options_.shutdown_timeout) {
    Log("Shutdown timeout: closing the connections left");
    return true;
  }
  return false;
}

Supervisor::Look Supervisor::Step(absl::Time now) {
  Look look;
  if (all_.stop.load()) {
    look.done = true;
    return look;
  }
  if (stats_.draining_.load()) {
    if (AdvanceDrain(now, look)) {
      look.done = true;
      return look;
    }
  } else {
    AdvanceRoll(now);
  }
  look.wait = Supervise(now);
  if (watch_ || roll_id_ >= 0) look.wait = std::min(look.wait, absl::Milliseconds(20));
  // A worker down or crash-looping withholds systemd's watchdog, which then acts on it.
  look.healthy = !watch_ ? stats_.ready()
                         : std::none_of(workers_.get(), workers_.get() + count_,
                                        [](const WorkerState& worker) { return worker.down; });
  return look;
}

}  // namespace percore
