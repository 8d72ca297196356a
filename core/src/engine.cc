#include "percore/engine.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <future>
#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "backoff.h"
#include "clock.h"
#include "control.h"
#include "drain_watch.h"
#include "epoll_backend.h"
#include "io_uring_backend.h"
#include "listener.h"
#include "log_line.h"
#include "loop.h"
#include "notify.h"
#include "percore/cpus.h"
#include "percore/signals.h"

namespace percore {
namespace {

bool IsPowerOfTwo(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

absl::Status Validate(const EngineOptions& o, const std::vector<int>& allowed) {
  if (o.port < 0 || o.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", o.port, " is out of range 0-65535"));
  }
  if (o.threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", o.threads, " must be >= 1"));
  }
  for (int cpu : o.cpus) {
    if (!std::binary_search(allowed.begin(), allowed.end(), cpu)) {
      return absl::InvalidArgumentError(absl::StrCat("cpu ", cpu,
                                                     " is not in this process's allowed set (",
                                                     absl::StrJoin(allowed, ","), ")"));
    }
  }
  if (o.backlog < 1) return absl::InvalidArgumentError("backlog must be >= 1");
  if (o.ring_entries < 8 || o.ring_entries > 32768 || !IsPowerOfTwo(o.ring_entries)) {
    return absl::InvalidArgumentError("ring_entries must be a power of two in 8..32768");
  }
  if (o.recv_buffers < 8 || o.recv_buffers > 32768 || !IsPowerOfTwo(o.recv_buffers)) {
    return absl::InvalidArgumentError("recv_buffers must be a power of two in 8..32768");
  }
  if (o.recv_buffer_size < 512 || o.recv_buffer_size > (1u << 20)) {
    return absl::InvalidArgumentError("recv_buffer_size must be in 512..1048576");
  }
  if (o.max_pending_output == 0)
    return absl::InvalidArgumentError("max_pending_output must be > 0");
  if (o.tick_interval <= absl::ZeroDuration() || o.linger_timeout < absl::ZeroDuration() ||
      o.send_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tick_interval and send_timeout must be > 0");
  }
  if (o.drain_delay < absl::ZeroDuration() || o.drain_idle < absl::ZeroDuration() ||
      o.drain_checks < 0 || o.shutdown_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "drain_delay, drain_idle and drain_checks must be >= 0 and shutdown_timeout > 0");
  }
  if (o.restart_backoff <= absl::ZeroDuration() || o.max_restart_backoff < o.restart_backoff) {
    return absl::InvalidArgumentError("restart_backoff must be > 0 and <= max_restart_backoff");
  }
  if (o.stall_timeout <= absl::ZeroDuration() || o.stuck_timeout <= o.stall_timeout) {
    return absl::InvalidArgumentError("stall_timeout must be > 0 and stuck_timeout longer");
  }
  if (!o.listen_fds.empty() && o.threads != 0 &&
      static_cast<size_t>(o.threads) != o.listen_fds.size()) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", o.threads, " differs from the ",
                                                   o.listen_fds.size(), " listen_fds given"));
  }
  for (int fd : o.listen_fds) {
    if (BoundPort(fd) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("listen_fds: ", fd, " is not a bound socket"));
    }
  }
  if (o.crash_loop_deaths < 1 || o.crash_loop_window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("crash_loop_deaths must be >= 1 and crash_loop_window > 0");
  }
  return absl::OkStatus();
}

// Many connections per loop need many descriptors; the soft limit is often 1024.
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

// One run of a loop on its own thread.
struct Engine::Instance {
  std::thread thread;
  std::promise<absl::Status> started;
  absl::Status exit_status;  // written by the loop thread before `exited`
  std::atomic<bool> exited{false};
  LoopControl control;                          // this instance's orders
  absl::Time stop_at = absl::InfiniteFuture();  // a retiring instance is stopped then
  bool stuck = false;  // replaced while stuck in a request: serves nothing, may never return
  // The idle connections of a loop that died, for the next loop of this lane: written by the
  // dying thread before `exited`, taken by the next one (Loop::TakeOrphans, Loop::Adopt).
  std::vector<int> orphans;
  bool running() const { return thread.joinable(); }
  // Holds nothing up any more: not running, exited, or stuck (serving nothing, maybe for good).
  bool finished() const { return !running() || exited.load() || stuck; }
};

// One worker: its serving loop instance, and while one is being replaced, the retiring one.
struct Engine::LoopSlot {
  int id = 0;
  int cpu = 0;
  Instance lanes[2];
  int current = 0;  // the serving instance's lane
  // Run()'s own, for restarts:
  bool down = false;  // died; restarts at `restart_at`
  absl::Time restart_at;
  absl::Time running_since;
  std::optional<Backoff> backoff;  // the delay before the next restart
  std::deque<absl::Time> deaths;   // within options_.crash_loop_window
  int64_t stall_logged_for = 0;    // the busy_since_ms of the stall already logged
  int64_t stuck_handled_for = 0;   // the busy_since_ms of the stall already replaced
  int64_t stuck_logged_for = 0;    // the busy_since_ms of a stall that could not be replaced yet
};

Engine::Engine(const EngineOptions& options, ProtocolFactory factory, size_t loops)
    : options_(options),
      factory_(std::move(factory)),
      control_(std::make_unique<LoopControl>()),
      stats_(loops) {}

void Engine::Log(std::string_view line) const { LogLine(options_, line); }

std::pair<uint64_t, uint64_t> Engine::Answered() const {
  uint64_t answered = 0, not_ready = 0;
  for (size_t id = 0; id < stats_.size(); ++id) {
    const WorkerCounters counters = stats_.Read(id);
    answered += counters.requests();
    not_ready += counters.not_ready_answers;
  }
  return {answered, not_ready};
}

int Engine::LoopCount(const EngineOptions& options) {
  if (!options.listen_fds.empty()) return static_cast<int>(options.listen_fds.size());
  if (options.threads > 0) return options.threads;
  if (options.cpus.empty()) return DefaultLoopCount().count;
  std::vector<int> cpus = options.cpus;
  std::sort(cpus.begin(), cpus.end());
  return static_cast<int>(std::unique(cpus.begin(), cpus.end()) - cpus.begin());
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options,
                                                       ProtocolFactory factory) {
  std::vector<int> allowed = AllowedCpus();
  if (allowed.empty()) return absl::InternalError("sched_getaffinity returned no CPU");
  absl::Status valid = Validate(options, allowed);
  if (!valid.ok()) return valid;
  if (!factory) return absl::InvalidArgumentError("a protocol factory is required");

  std::vector<int> cpus = options.cpus.empty() ? allowed : options.cpus;
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  const int threads = LoopCount(options);
  std::unique_ptr<Engine> engine(new Engine(options, std::move(factory), threads));
  if (options.threads == 0 && options.cpus.empty()) {  // also a guard's child, given listen_fds
    DefaultLoops loops = DefaultLoopCount();
    if (loops.count == threads) engine->loops_note_ = loops.Describe();
  }
  for (int id = 0; id < threads; ++id) {
    engine->workers_.push_back(WorkerInfo{id, cpus[id % cpus.size()]});
    engine->stats_.worker(id).cpu = cpus[id % cpus.size()];
  }

  if (options.backend == BackendKind::kEpoll) {
    engine->backend_ = BackendKind::kEpoll;
  } else {
    absl::Status probe = IoUringBackend::Probe(options);
    if (probe.ok()) {
      engine->backend_ = BackendKind::kIoUring;
    } else if (options.backend == BackendKind::kAuto) {
      engine->backend_ = BackendKind::kEpoll;
      engine->backend_note_ =
          absl::StrCat("io_uring unavailable (", probe.message(), "); using epoll");
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat("io_uring unavailable (", probe.message(), ")"));
    }
  }

  RaiseFileLimit();
  if (!options.listen_fds.empty()) {
    engine->listen_fds_ = options.listen_fds;
    engine->port_ = BoundPort(options.listen_fds[0]);
  } else {
    absl::StatusOr<ListenerGroup> group =
        BindListeners(options.address, options.port, threads, options.backlog);
    if (!group.ok()) return group.status();
    engine->listen_fds_ = std::move(group->fds);
    engine->port_ = group->port;
  }
  for (int i = 0; i < 2 * threads; ++i) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd");
    engine->wake_fds_.push_back(fd);
  }
  return engine;
}

Engine::~Engine() {
  Stop();
  Wait();
  for (auto& slot : slots_) {
    for (Instance& instance : slot->lanes) {
      for (int fd : instance.orphans) close(fd);  // a dead loop's, never restarted
    }
  }
  for (int fd : listen_fds_) {
    if (fd >= 0) close(fd);
  }
  for (int fd : wake_fds_) close(fd);
}

void Engine::RunLoop(LoopSlot* slot, int lane) {
  Instance& self = slot->lanes[lane];
  pthread_setname_np(pthread_self(), absl::StrCat("percore/", slot->id).c_str());
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(slot->cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    self.started.set_value(absl::InternalError(absl::StrCat("cannot pin to cpu ", slot->cpu)));
    self.exited.store(true, std::memory_order_release);
    return;
  }
  absl::Status status;
  {
    Loop loop(slot->id, slot->cpu, options_, listen_fds_[slot->id], wake_fds_[2 * slot->id + lane],
              control_.get(), &self.control, &stats_.worker(slot->id).lanes[lane], &stats_);
    absl::StatusOr<std::unique_ptr<Backend>> backend =
        backend_ == BackendKind::kEpoll
            ? EpollBackend::Create(loop)
            : IoUringBackend::Create(loop, options_, loop.listen_fd(), loop.wake_fd());
    status = backend.ok() ? loop.Init(factory_, std::move(*backend)) : backend.status();
    if (status.ok()) {
      loop.Adopt(self.orphans);
      self.orphans.clear();
    }
    self.started.set_value(status);
    if (status.ok()) status = loop.Run();
    if (!status.ok()) self.orphans = loop.TakeOrphans();
  }
  self.exit_status = status;
  self.exited.store(true, std::memory_order_release);
}

std::future<absl::Status> Engine::StartLoop(LoopSlot* slot, int lane) {
  Instance& instance = slot->lanes[lane];
  instance.exited.store(false);
  instance.exit_status = absl::OkStatus();
  instance.control.stop.store(false);
  instance.control.draining.store(false);
  instance.control.stopped_accepting.store(false);
  instance.stop_at = absl::InfiniteFuture();
  instance.stuck = false;
  instance.started = std::promise<absl::Status>();
  std::future<absl::Status> started = instance.started.get_future();
  try {
    instance.thread = std::thread(&Engine::RunLoop, this, slot, lane);
  } catch (const std::system_error& e) {
    // No thread (EAGAIN: a thread or memory limit): the instance counts as one that died at
    // once, so the supervisor retries it with backoff.
    instance.exit_status = absl::ResourceExhaustedError(e.what());
    instance.exited.store(true, std::memory_order_release);
    instance.started.set_value(instance.exit_status);
  }
  return started;
}

bool Engine::Reap(Instance& instance) {
  if (instance.running() && !instance.exited.load(std::memory_order_acquire)) return false;
  if (instance.running()) instance.thread.join();
  return true;
}

void Engine::Wake(int id, int lane) {
  const uint64_t one = 1;
  // EAGAIN only means the counter is already non-zero: the loop will wake either way.
  [[maybe_unused]] ssize_t n = write(wake_fds_[2 * id + lane], &one, sizeof(one));
}

void Engine::WakeAll() {
  for (size_t i = 0; i < wake_fds_.size(); ++i) Wake(static_cast<int>(i / 2), i % 2);
}

void Engine::Retire(LoopSlot& slot, int lane, absl::Time now) {
  Instance& instance = slot.lanes[lane];
  instance.control.draining.store(true);
  instance.stop_at = now + options_.shutdown_timeout;
  Wake(slot.id, lane);
}

bool Engine::Replace(LoopSlot& slot, absl::Time now) {
  const int old_lane = slot.current;
  const int new_lane = 1 - old_lane;
  Instance& fresh = slot.lanes[new_lane];
  if (!Reap(fresh)) return false;  // the instance replaced before is still finishing
  // The new loop accepts on the same listener. The old one has at most a few accepts armed
  // (see kAcceptsArmed in the io_uring backend; epoll accepts only when the loop asks), so once
  // it stops accepting, or while it is stuck, the queue is the new loop's.
  absl::Status status = StartLoop(&slot, new_lane).get();
  if (!status.ok()) {
    if (fresh.thread.joinable()) fresh.thread.join();
    Log(absl::StrCat("Worker ", slot.id, " not replaced: ", status.message()));
    return false;
  }
  slot.current = new_lane;
  Retire(slot, old_lane, now);
  return true;
}

absl::Status Engine::Start() {
  if (started_) return absl::FailedPreconditionError("Engine::Start called twice");
  started_ = true;
  std::vector<std::future<absl::Status>> started;
  const absl::Time now = absl::Now();
  for (const WorkerInfo& w : workers_) {
    auto slot = std::make_unique<LoopSlot>();
    slot->id = w.id;
    slot->cpu = w.cpu;
    slot->backoff.emplace(options_);
    slot->running_since = now;
    started.push_back(StartLoop(slot.get(), 0));
    slots_.push_back(std::move(slot));
  }
  absl::Status first_error;
  for (size_t i = 0; i < started.size(); ++i) {
    absl::Status status = started[i].get();
    if (!status.ok() && first_error.ok()) {
      first_error = absl::Status(status.code(), absl::StrCat("worker ", i, ": ", status.message()));
    }
  }
  if (!first_error.ok()) {
    Stop();
    Wait();
  }
  stats_.serving_.store(first_error.ok());
  return first_error;
}

void Engine::Stop() {
  control_->stop.store(true);
  WakeAll();
}

void Engine::CheckStall(LoopSlot& slot, absl::Time now) {
  WorkerStats& worker = stats_.worker(slot.id);
  const LoopStats& stats = worker.lanes[slot.current];
  const int64_t busy_since = stats.busy_since_ms.load(std::memory_order_relaxed);
  if (busy_since == 0) return;
  const absl::Duration busy = absl::Milliseconds(MonotonicMs() - busy_since);
  if (busy >= options_.stall_timeout && busy_since != slot.stall_logged_for) {
    slot.stall_logged_for = busy_since;  // once per stall
    LoopStats::Add(worker.stalls, 1);
    Log(absl::StrCat("Worker ", slot.id, " stalled for ", absl::ToInt64Milliseconds(busy), "ms in ",
                     stats.Activity()));
  }
  if (busy < options_.stuck_timeout || busy_since == slot.stuck_handled_for ||
      control_->draining.load()) {
    return;
  }
  const std::string activity = stats.Activity();
  const int stuck_lane = slot.current;
  if (!Replace(slot, now)) {
    // Tried again at the next look (the other lane may be finishing a roll's old loop).
    if (busy_since != slot.stuck_logged_for) {
      slot.stuck_logged_for = busy_since;
      Log(absl::StrCat("Worker ", slot.id, " stuck for ", absl::ToInt64Milliseconds(busy), "ms in ",
                       activity, "; not replaced yet: its previous loop is still running"));
    }
    return;
  }
  slot.stuck_handled_for = busy_since;  // once per stall
  slot.lanes[stuck_lane].stuck = true;
  LoopStats::Add(worker.restarts, 1);
  Log(absl::StrCat("Worker ", slot.id, " stuck for ", absl::ToInt64Milliseconds(busy), "ms in ",
                   activity, "; replaced by a new loop on cpu ", slot.cpu));
}

int Engine::restarts() const {
  uint64_t total = 0;
  for (size_t i = 0; i < stats_.size(); ++i) total += stats_.worker(i).restarts.load();
  return static_cast<int>(total);
}

void Engine::Drain() { stats_.draining_.store(true); }

void Engine::Reload() { reload_requested_.store(true); }

void Engine::Wait() {
  for (auto& slot : slots_) {
    for (Instance& instance : slot->lanes) {
      if (instance.running()) instance.thread.join();
    }
  }
}

absl::Duration Engine::Supervise(absl::Time now) {
  absl::Duration next_look = absl::Milliseconds(100);
  bool all_up = true;
  bool crash_looping = false;
  const bool ending = control_->stop.load() || control_->draining.load();
  for (auto& slot_ptr : slots_) {
    LoopSlot& slot = *slot_ptr;
    // A retiring instance: done once it exits; stopped if it takes too long.
    Instance& retiring = slot.lanes[1 - slot.current];
    if (retiring.running()) {
      if (Reap(retiring)) {
        Log(absl::StrCat("Worker ", slot.id,
                         "'s replaced loop finished its connections and exited"));
      } else if (now >= retiring.stop_at && !retiring.control.stop.load()) {
        retiring.control.stop.store(true);
        Wake(slot.id, 1 - slot.current);
      }
    }
    Instance& serving = slot.lanes[slot.current];
    if (!slot.down && serving.exited.load(std::memory_order_acquire) && Reap(serving)) {
      if (ending) {
        all_up = false;  // an exit that was asked for
        continue;
      }
      const absl::Duration delay = slot.backoff->AfterDeath(now - slot.running_since);
      slot.down = true;
      slot.restart_at = now + delay;
      Log(absl::StrCat("Worker ", slot.id, " died (", serving.exit_status.message(),
                       "); restarting in ", absl::FormatDuration(delay)));
      slot.deaths.push_back(now);
      while (!slot.deaths.empty() && now - slot.deaths.front() > options_.crash_loop_window) {
        slot.deaths.pop_front();
      }
      if (slot.deaths.size() == static_cast<size_t>(options_.crash_loop_deaths)) {
        Log(absl::StrCat("Worker ", slot.id, " died ", options_.crash_loop_deaths, " times in ",
                         absl::FormatDuration(options_.crash_loop_window),
                         "; reporting not ready"));
      }
    }
    if (slot.down) {
      all_up = false;
      if (ending) continue;  // not restarted to be drained
      if (now >= slot.restart_at) {
        // The listener stayed open: connections that arrived meanwhile wait in its accept
        // queue for the new loop.
        absl::Status status = StartLoop(&slot, slot.current).get();
        slot.down = false;
        slot.running_since = now;
        LoopStats::Add(stats_.worker(slot.id).restarts, 1);
        if (!status.ok())
          Log(absl::StrCat("Worker ", slot.id, " failed to restart: ", status.message()));
      } else {
        next_look = std::min(next_look, slot.restart_at - now);
      }
    }
    while (!slot.deaths.empty() && now - slot.deaths.front() > options_.crash_loop_window) {
      slot.deaths.pop_front();
    }
    if (!slot.down) CheckStall(slot, now);
    crash_looping |= slot.deaths.size() >= static_cast<size_t>(options_.crash_loop_deaths);
  }
  stats_.serving_.store(all_up && !crash_looping);
  return next_look;
}

void Engine::AdvanceRoll(absl::Time now) {
  if (stats_.draining_.load()) return;  // a drain is coming: no new loops
  if (roll_id_ < 0) {
    if (!reload_requested_.exchange(false)) return;
    Log("Rolling restart: replacing the workers one at a time");
    roll_id_ = 0;
    roll_replaced_ = false;
  }
  LoopSlot& slot = *slots_[roll_id_];
  Instance& retiring = slot.lanes[1 - slot.current];
  if (!roll_replaced_) {
    if (slot.lanes[slot.current].exited.load()) return;  // died: Supervise restarts it first
    if (slot.down) {
      roll_replaced_ = true;  // its restart is a new loop already
    } else if (retiring.running()) {
      // A stuck loop replaced earlier that has not returned: wait for it, unless it outlived its
      // stop time (stuck for good), which the roll cannot fix.
      if (now < retiring.stop_at) return;
      Log(absl::StrCat("Rolling restart: worker ", slot.id, " skipped: its old loop is stuck"));
      roll_replaced_ = true;
    } else if (Replace(slot, now)) {
      Log(absl::StrCat("Worker ", slot.id, " restarted on cpu ", slot.cpu,
                       "; the old loop is draining"));
      roll_replaced_ = true;
      return;
    } else {
      roll_replaced_ = true;  // logged by Replace; the old loop keeps serving
    }
  }
  if (retiring.running() && now < retiring.stop_at) return;  // still draining
  roll_replaced_ = false;
  if (++roll_id_ == static_cast<int>(slots_.size())) {
    roll_id_ = -1;
    Log("Rolling restart done");
  }
}

absl::Status Engine::Run() {
  // Blocked before the loop threads exist, so they inherit the mask (percore/signals.h).
  const BlockedSignals signals({SIGINT, SIGTERM, SIGHUP});
  absl::Status status = Start();
  if (status.ok() && options_.on_started) options_.on_started(*this);
  // systemd (Type=notify): READY=1 once every loop serves, WATCHDOG=1 while all are healthy,
  // STOPPING=1 when the drain begins.
  SystemdNotifier notifier;
  if (status.ok()) notifier.Send("READY=1");
  absl::Time last_watchdog = absl::Now();
  std::optional<DrainWatch> watch;  // from the start of a drain
  absl::Time drain_accepting_ended = absl::InfiniteFuture();
  bool listeners_closed = false;
  auto all_instances = [this](auto predicate) {
    for (const auto& slot : slots_) {
      for (const Instance& instance : slot->lanes) {
        if (!predicate(instance)) return false;
      }
    }
    return true;
  };
  while (status.ok() && !control_->stop.load()) {
    const absl::Time now = absl::Now();
    if (stats_.draining_.load() && !watch) {
      notifier.Send("STOPPING=1");
      const auto [answered, not_ready] = Answered();
      watch.emplace(options_, now, answered, not_ready);
      Log(options_.drain_delay > absl::ZeroDuration()
              ? absl::StrCat(
                    "Draining: not ready; serving until out of the load balancer (at most ",
                    absl::FormatDuration(options_.drain_delay), ")")
              : "Draining: not ready; finishing the requests in flight");
    }
    if (!control_->draining.load() && watch) {
      const auto [answered, not_ready] = Answered();
      if (std::optional<std::string> why = watch->Over(now, answered, not_ready)) {
        if (options_.drain_delay > absl::ZeroDuration()) {
          Log(absl::StrCat(*why, ": finishing the requests in flight"));
        }
        control_->draining.store(true);
        drain_accepting_ended = now;
        WakeAll();
      }
    }
    if (control_->draining.load()) {
      // A stuck instance (replaced, not returned) accepts nothing and may never return: it holds
      // up neither the closing of the listeners nor the end of the drain.
      if (!listeners_closed && all_instances([](const Instance& instance) {
            return instance.finished() || instance.control.stopped_accepting.load();
          })) {
        for (int& fd : listen_fds_) {
          // shutdown() first: an accept still armed in a stuck loop's ring holds the socket,
          // which close() alone would leave listening. (It also reaches a guard's copy.)
          shutdown(fd, SHUT_RDWR);
          close(fd);
          fd = -1;
        }
        listeners_closed = true;
      }
      if (all_instances([](const Instance& instance) { return instance.finished(); })) {
        break;  // every loop finished its connections
      }
      if (now >= drain_accepting_ended + options_.shutdown_timeout) {
        Log("Shutdown timeout: closing the connections left");
        break;
      }
    } else {
      AdvanceRoll(now);
    }
    absl::Duration wait = Supervise(now);
    if (notifier.watchdog_interval() > absl::ZeroDuration()) {
      // A loop that is down or crash-looping withholds the watchdog: systemd then acts on it.
      const bool healthy = !watch ? stats_.ready()
                                  : std::none_of(slots_.begin(), slots_.end(),
                                                 [](const auto& slot) { return slot->down; });
      if (healthy && now - last_watchdog >= notifier.watchdog_interval()) {
        notifier.Send("WATCHDOG=1");
        last_watchdog = now;
      }
      wait = std::min(wait, notifier.watchdog_interval());
    }
    if (watch || roll_id_ >= 0) {
      wait = std::min(wait, absl::Milliseconds(20));
    }
    const int signal = signals.Wait(wait);
    if (signal == SIGHUP) {
      Reload();
    } else if (signal == SIGINT || signal == SIGTERM) {
      if (!watch) {
        Drain();
      } else {
        Log("Second signal: stopping now");
        break;
      }
    }
  }
  Stop();
  // Every loop closes its connections and exits within a few seconds, unless one is stuck in a
  // request (known to be, or still busy after that time): that thread is left to the destructor
  // rather than holding Run() up.
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (!all_instances([](const Instance& instance) { return instance.finished(); }) &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (auto& slot : slots_) {
    for (Instance& instance : slot->lanes) {
      if (!Reap(instance)) Log(absl::StrCat("Worker ", slot->id, " is stuck; not waiting for it"));
    }
  }
  stats_.serving_.store(false);
  return status;
}

}  // namespace percore
