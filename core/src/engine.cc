#include "percore/engine.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "control.h"
#include "epoll_backend.h"
#include "io_uring_backend.h"
#include "listener.h"
#include "loop.h"
#include "notify.h"
#include "percore/cpus.h"

namespace percore {
namespace {

// A loop that ran this long before dying is restarted after the initial backoff again.
constexpr absl::Duration kHealthyAfter = absl::Seconds(30);

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

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
  if (o.drain_delay < absl::ZeroDuration() || o.shutdown_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("drain_delay must be >= 0 and shutdown_timeout > 0");
  }
  if (o.restart_backoff <= absl::ZeroDuration() || o.max_restart_backoff < o.restart_backoff) {
    return absl::InvalidArgumentError("restart_backoff must be > 0 and <= max_restart_backoff");
  }
  if (o.stall_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("stall_timeout must be > 0");
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

struct Engine::LoopSlot {
  int id = 0;
  int cpu = 0;
  std::thread thread;
  std::promise<absl::Status> started;
  absl::Status exit_status;  // written by the loop thread before `exited`
  std::atomic<bool> exited{false};
  // Run()'s own, for restarts:
  bool down = false;  // died; restarts at `restart_at`
  absl::Time restart_at;
  absl::Time running_since;
  absl::Duration backoff;         // the delay before the next restart
  std::deque<absl::Time> deaths;  // within options_.crash_loop_window
  int64_t stall_logged_for = 0;   // the busy_since_ms of the stall already logged
};

Engine::Engine(const EngineOptions& options, ProtocolFactory factory, size_t loops)
    : options_(options),
      factory_(std::move(factory)),
      control_(std::make_unique<LoopControl>()),
      stats_(loops) {}

void Engine::Log(std::string_view line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::string text = std::string(line) + "\n";
    [[maybe_unused]] ssize_t n = write(STDERR_FILENO, text.data(), text.size());
  }
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
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(cpus.size());
  std::unique_ptr<Engine> engine(new Engine(options, std::move(factory), threads));
  for (int id = 0; id < threads; ++id) {
    engine->workers_.push_back(WorkerInfo{id, cpus[id % cpus.size()]});
    engine->stats_.loop(id).cpu = cpus[id % cpus.size()];
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
  absl::StatusOr<ListenerGroup> group =
      BindListeners(options.address, options.port, threads, options.backlog);
  if (!group.ok()) return group.status();
  engine->listen_fds_ = std::move(group->fds);
  engine->port_ = group->port;
  for (int id = 0; id < threads; ++id) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd");
    engine->wake_fds_.push_back(fd);
  }
  return engine;
}

Engine::~Engine() {
  Stop();
  Wait();
  for (int fd : listen_fds_) {
    if (fd >= 0) close(fd);
  }
  for (int fd : wake_fds_) close(fd);
}

void Engine::RunLoop(LoopSlot* slot) {
  pthread_setname_np(pthread_self(), absl::StrCat("percore/", slot->id).c_str());
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(slot->cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    slot->started.set_value(absl::InternalError(absl::StrCat("cannot pin to cpu ", slot->cpu)));
    slot->exited.store(true);
    return;
  }
  absl::Status status;
  {
    Loop loop(slot->id, slot->cpu, options_, listen_fds_[slot->id], wake_fds_[slot->id],
              control_.get(), &stats_);
    absl::StatusOr<std::unique_ptr<Backend>> backend =
        backend_ == BackendKind::kEpoll
            ? EpollBackend::Create(loop)
            : IoUringBackend::Create(loop, options_, loop.listen_fd(), loop.wake_fd());
    status = backend.ok() ? loop.Init(factory_, std::move(*backend)) : backend.status();
    slot->started.set_value(status);
    if (status.ok()) status = loop.Run();
  }
  slot->exit_status = status;
  slot->exited.store(true, std::memory_order_release);
}

std::future<absl::Status> Engine::StartLoop(LoopSlot* slot) {
  slot->exited.store(false);
  slot->exit_status = absl::OkStatus();
  slot->started = std::promise<absl::Status>();
  std::future<absl::Status> started = slot->started.get_future();
  slot->thread = std::thread(&Engine::RunLoop, this, slot);
  return started;
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
    slot->backoff = options_.restart_backoff;
    slot->running_since = now;
    started.push_back(StartLoop(slot.get()));
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
  stats_.ready_.store(first_error.ok());
  return first_error;
}

void Engine::Stop() {
  control_->stop.store(true);
  const uint64_t one = 1;
  for (int fd : wake_fds_) {
    // EAGAIN only means the counter is already non-zero: the loop will wake either way.
    [[maybe_unused]] ssize_t n = write(fd, &one, sizeof(one));
  }
}

void Engine::CheckStall(LoopSlot& slot) {
  LoopStats& stats = stats_.loop(slot.id);
  const int64_t busy_since = stats.busy_since_ms.load(std::memory_order_relaxed);
  if (busy_since == 0 || busy_since == slot.stall_logged_for) return;
  const int64_t busy_ms = MonotonicMs() - busy_since;
  if (busy_ms < absl::ToInt64Milliseconds(options_.stall_timeout)) return;
  slot.stall_logged_for = busy_since;  // once per stall
  LoopStats::Add(stats.stalls, 1);
  Log(absl::StrCat("Worker ", slot.id, " stalled for ", busy_ms, "ms in ", stats.Activity()));
}

int Engine::restarts() const {
  uint64_t total = 0;
  for (size_t i = 0; i < stats_.size(); ++i) total += stats_.loop(i).restarts.load();
  return static_cast<int>(total);
}

void Engine::Drain() { drain_requested_.store(true); }

void Engine::Wait() {
  for (auto& slot : slots_) {
    if (slot->thread.joinable()) slot->thread.join();
  }
}

absl::Duration Engine::Supervise(absl::Time now) {
  absl::Duration next_look = absl::Milliseconds(100);
  bool all_up = true;
  bool crash_looping = false;
  for (auto& slot_ptr : slots_) {
    LoopSlot& slot = *slot_ptr;
    if (!slot.down && slot.thread.joinable() && slot.exited.load(std::memory_order_acquire)) {
      slot.thread.join();
      if (control_->stop.load() || control_->draining.load()) {
        all_up = false;  // an exit that was asked for
        continue;
      }
      // A loop that ran long enough before dying starts its backoff over.
      if (now - slot.running_since >= kHealthyAfter) slot.backoff = options_.restart_backoff;
      slot.down = true;
      slot.restart_at = now + slot.backoff;
      Log(absl::StrCat("Worker ", slot.id, " died (", slot.exit_status.message(),
                       "); restarting in ", absl::FormatDuration(slot.backoff)));
      slot.backoff = std::min(slot.backoff * 1.5, options_.max_restart_backoff);
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
      if (control_->draining.load()) continue;  // not restarted to be drained
      if (now >= slot.restart_at) {
        // The listener stayed open: connections that arrived meanwhile wait in its accept
        // queue for the new loop.
        absl::Status status = StartLoop(&slot).get();
        slot.down = false;
        slot.running_since = now;
        LoopStats::Add(stats_.loop(slot.id).restarts, 1);
        if (!status.ok())
          Log(absl::StrCat("Worker ", slot.id, " failed to restart: ", status.message()));
      } else {
        next_look = std::min(next_look, slot.restart_at - now);
      }
    }
    while (!slot.deaths.empty() && now - slot.deaths.front() > options_.crash_loop_window) {
      slot.deaths.pop_front();
    }
    if (!slot.down) CheckStall(slot);
    crash_looping |= slot.deaths.size() >= static_cast<size_t>(options_.crash_loop_deaths);
  }
  stats_.ready_.store(all_up && !crash_looping && !drain_requested_.load());
  return next_look;
}

absl::Status Engine::Run() {
  // Block the stop signals before the loop threads exist, so they inherit the mask and the
  // signals stay pending for sigtimedwait below instead of interrupting a loop.
  sigset_t signals, previous;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, &previous);
  absl::Status status = Start();
  if (status.ok() && options_.on_started) options_.on_started(*this);
  // systemd (Type=notify): READY=1 once every loop serves, WATCHDOG=1 while all are healthy,
  // STOPPING=1 when the drain begins.
  SystemdNotifier notifier;
  if (status.ok()) notifier.Send("READY=1");
  absl::Time last_watchdog = absl::Now();
  absl::Time drain_started = absl::InfiniteFuture();
  bool listeners_closed = false;
  while (status.ok() && !control_->stop.load()) {
    const absl::Time now = absl::Now();
    if (drain_requested_.load() && drain_started == absl::InfiniteFuture()) {
      drain_started = now;
      stats_.ready_.store(false);
      notifier.Send("STOPPING=1");
      Log(absl::StrCat("Draining: not ready; finishing the requests in flight",
                       options_.drain_delay > absl::ZeroDuration()
                           ? absl::StrCat(" after ", absl::FormatDuration(options_.drain_delay))
                           : ""));
    }
    if (!control_->draining.load() && now >= drain_started + options_.drain_delay) {
      control_->draining.store(true);
      const uint64_t one = 1;
      for (int fd : wake_fds_) [[maybe_unused]] ssize_t n = write(fd, &one, sizeof(one));
    }
    if (control_->draining.load()) {
      const int serving = static_cast<int>(std::count_if(
          slots_.begin(), slots_.end(), [](const auto& slot) { return !slot->down; }));
      if (!listeners_closed && control_->stopped_accepting.load() >= serving) {
        for (int& fd : listen_fds_) {
          close(fd);
          fd = -1;
        }
        listeners_closed = true;
      }
      if (std::all_of(slots_.begin(), slots_.end(),
                      [](const auto& slot) { return slot->exited.load(); })) {
        break;  // every loop finished its connections
      }
      if (now >= drain_started + options_.drain_delay + options_.shutdown_timeout) {
        Log("Shutdown timeout: closing the connections left");
        break;
      }
    }
    absl::Duration wait = Supervise(now);
    if (notifier.watchdog_interval() > absl::ZeroDuration()) {
      // A loop that is down or crash-looping withholds the watchdog: systemd then acts on it.
      const bool healthy = drain_started == absl::InfiniteFuture()
                               ? stats_.ready()
                               : std::none_of(slots_.begin(), slots_.end(),
                                              [](const auto& slot) { return slot->down; });
      if (healthy && now - last_watchdog >= notifier.watchdog_interval()) {
        notifier.Send("WATCHDOG=1");
        last_watchdog = now;
      }
      wait = std::min(wait, notifier.watchdog_interval());
    }
    if (drain_started != absl::InfiniteFuture()) wait = std::min(wait, absl::Milliseconds(20));
    const timespec timeout = absl::ToTimespec(wait);
    const int signal = sigtimedwait(&signals, nullptr, &timeout);
    if (signal == SIGINT || signal == SIGTERM) {
      if (drain_started == absl::InfiniteFuture()) {
        Drain();
      } else {
        Log("Second signal: stopping now");
        break;
      }
    }
  }
  Stop();
  Wait();
  stats_.ready_.store(false);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return status;
}

}  // namespace percore
