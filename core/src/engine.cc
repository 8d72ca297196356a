#include "percore/engine.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <future>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "clock.h"
#include "epoll_backend.h"
#include "io_uring_backend.h"
#include "listener.h"
#include "log_line.h"
#include "loop.h"
#include "notify.h"
#include "percore/cpus.h"
#include "percore/signals.h"
#include "supervisor.h"
#include "tls_context.h"
#include "validate.h"

namespace percore {
namespace {

// Many connections per loop need many descriptors; the soft limit is often 1024.
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

// The engine's side of the supervisor: an instance is a pinned thread running a Loop.
struct Engine::Runner final : InstanceRunner {
  explicit Runner(Engine& engine) : engine(engine) {}

  std::future<absl::Status> Start(int id, int place, Instance& instance) override {
    // Shared with the thread: it may still be inside set_value() when the result is taken.
    auto started = std::make_shared<std::promise<absl::Status>>();
    std::future<absl::Status> result = started->get_future();
    try {
      instance.thread = std::thread(&Engine::RunInstance, &engine, id, place, &instance, started);
    } catch (const std::system_error& e) {
      // No thread (EAGAIN: a thread or memory limit): the instance counts as one that died at
      // once, so the supervisor retries it with backoff.
      instance.exit_status = absl::ResourceExhaustedError(e.what());
      instance.exited.store(true, std::memory_order_release);
      started->set_value(instance.exit_status);
    }
    return result;
  }

  void Wake(int id, int place) override {
    const size_t index = 2 * static_cast<size_t>(id) + place;
    if (index >= engine.wake_fds_.size()) return;  // Create() failed before making it
    const uint64_t one = 1;
    // EAGAIN only means the counter is already non-zero: the loop will wake either way.
    [[maybe_unused]] ssize_t n = write(engine.wake_fds_[index], &one, sizeof(one));
  }

  void CloseListeners() override {
    for (int& fd : engine.listen_fds_) {
      // shutdown() first: an accept still armed in a stuck loop's ring holds the socket, which
      // close() alone would leave listening. (It also reaches a guard's copy.)
      shutdown(fd, SHUT_RDWR);
      close(fd);
      fd = -1;
    }
  }

  Engine& engine;
};

Engine::Engine(const EngineOptions& options, ProtocolFactory factory, const std::vector<int>& cpus)
    : options_(options),
      factory_(std::move(factory)),
      stats_(cpus.size()),
      runner_(std::make_unique<Runner>(*this)),
      supervisor_(std::make_unique<Supervisor>(options_, stats_, *runner_)) {
  for (size_t id = 0; id < cpus.size(); ++id) stats_.worker(id).cpu = cpus[id];
}

void Engine::Log(std::string_view line) const { LogLine(options_, line); }

std::vector<WorkerInfo> Engine::workers() const {
  std::vector<WorkerInfo> workers;
  for (size_t id = 0; id < stats_.size(); ++id) {
    workers.push_back(WorkerInfo{static_cast<int>(id), stats_.worker(id).cpu});
  }
  return workers;
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
  absl::Status valid = ValidateOptions(options, allowed);
  if (!valid.ok()) return valid;
  if (!factory) return absl::InvalidArgumentError("a protocol factory is required");

  std::vector<int> cpus = options.cpus.empty() ? allowed : options.cpus;
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  const int threads = LoopCount(options);
  std::vector<int> worker_cpus;  // by worker id
  for (int id = 0; id < threads; ++id) worker_cpus.push_back(cpus[id % cpus.size()]);
  std::unique_ptr<Engine> engine(new Engine(options, std::move(factory), worker_cpus));
  if (options.threads == 0 && options.cpus.empty()) {  // also a guard's child, given listen_fds
    DefaultLoops loops = DefaultLoopCount();
    if (loops.count == threads) engine->loops_note_ = loops.Describe();
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

  if (options.tls.enabled()) {
    absl::StatusOr<std::unique_ptr<TlsSource>> tls = TlsSource::Create(options.tls);
    if (!tls.ok()) return tls.status();
    engine->tls_ = std::move(*tls);
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
  engine->notice_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (engine->notice_fd_ < 0) return absl::ErrnoToStatus(errno, "eventfd");
  return engine;
}

Engine::~Engine() {
  Stop();
  supervisor_->JoinAll();
  for (size_t id = 0; id < stats_.size(); ++id) {
    for (int place = 0; place < 2; ++place) {
      for (int fd : supervisor_->instance(id, place).orphans) close(fd);  // never restarted
    }
  }
  for (int fd : listen_fds_) {
    if (fd >= 0) close(fd);
  }
  for (int fd : wake_fds_) close(fd);
  if (notice_fd_ >= 0) close(notice_fd_);
}

void Engine::RunInstance(int id, int place, Instance* self,
                         std::shared_ptr<std::promise<absl::Status>> started) {
  const int cpu = stats_.worker(id).cpu;
  pthread_setname_np(pthread_self(), absl::StrCat("percore/", id).c_str());
  // A send, sendfile, splice or write to a peer or pipe that has gone makes the kernel send
  // SIGPIPE to the calling thread, whose default action ends the whole process: one client that
  // resets while a file goes out by sendfile() (which has no MSG_NOSIGNAL) would kill every
  // loop. Blocked on this thread, it stays pending here and the call fails with EPIPE, which the
  // loop handles; the process's disposition, an embedding application's, is left alone.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    self->exit_status = absl::InternalError(absl::StrCat("cannot pin to cpu ", cpu));
    started->set_value(self->exit_status);
    self->exited.store(true, std::memory_order_release);
    return;
  }
  absl::Status status;
  {
    Loop loop(id, cpu, options_, listen_fds_[id], wake_fds_[2 * id + place], &supervisor_->all(),
              &self->control, &stats_.worker(id).instances[place], &stats_);
    loop.UseTls(tls_.get());
    absl::StatusOr<std::unique_ptr<Backend>> backend =
        backend_ == BackendKind::kEpoll
            ? EpollBackend::Create(loop)
            : IoUringBackend::Create(loop, options_, loop.listen_fd(), loop.wake_fd());
    status = backend.ok() ? loop.Init(factory_, std::move(*backend)) : backend.status();
    if (status.ok()) {
      loop.Adopt(self->orphans);
      self->orphans.clear();
    }
    started->set_value(status);
    if (status.ok()) status = loop.Run();
    if (!status.ok()) self->orphans = loop.TakeOrphans();
  }
  self->exit_status = status;
  self->exited.store(true, std::memory_order_release);
}

absl::Status Engine::Start() {
  if (started_) return absl::FailedPreconditionError("Engine::Start called twice");
  started_ = true;
  absl::Status status = supervisor_->Start(MonotonicTime());
  if (!status.ok()) {
    supervised_ = true;  // nothing to supervise: Wait() returns at once
    supervisor_->JoinAll();
  }
  return status;
}

void Engine::Notice() {
  if (notice_fd_ < 0) return;  // Create() failed before making it
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(notice_fd_, &one, sizeof(one));
}

void Engine::Stop() {
  supervisor_->Stop();
  Notice();
}

void Engine::Drain() {
  supervisor_->Drain();
  Notice();
}

void Engine::Reload() {
  supervisor_->Reload();
  Notice();
}

absl::Status Engine::ReloadTls() {
  if (tls_ == nullptr) return absl::FailedPreconditionError("the engine does not speak TLS");
  absl::Status reloaded = tls_->Reload();
  Log(reloaded.ok() ? "TLS certificates reloaded"
                    : absl::StrCat(reloaded.message(), "; the current certificates stay"));
  return reloaded;
}

int Engine::restarts() const {
  uint64_t total = 0;
  for (size_t i = 0; i < stats_.size(); ++i) total += stats_.worker(i).restarts.load();
  return static_cast<int>(total);
}

void Engine::Wait() {
  if (!started_ || supervised_) return;
  supervised_ = true;
  Supervise(nullptr);
}

absl::Status Engine::Run() {
  // Blocked before the loop threads exist, so they inherit the mask (percore/signals.h).
  const BlockedSignals signals({SIGINT, SIGTERM, SIGHUP});
  absl::Status status = Start();
  if (!status.ok()) return status;
  if (options_.on_started) options_.on_started(*this);
  supervised_ = true;
  Supervise(&signals);
  return absl::OkStatus();
}

void Engine::Supervise(const BlockedSignals* signals) {
  // systemd (Type=notify): READY=1 once every loop serves, WATCHDOG=1 while all are healthy,
  // STOPPING=1 when the drain begins.
  SystemdNotifier notifier;
  notifier.Send("READY=1");
  absl::Time last_watchdog = MonotonicTime();
  while (true) {
    const absl::Time now = MonotonicTime();
    const Supervisor::Look look = supervisor_->Step(now);
    if (look.done) break;
    if (look.drain_began) notifier.Send("STOPPING=1");
    absl::Duration wait = look.wait;
    if (notifier.watchdog_interval() > absl::ZeroDuration()) {
      if (look.healthy && now - last_watchdog >= notifier.watchdog_interval()) {
        notifier.Send("WATCHDOG=1");
        last_watchdog = now;
      }
      wait = std::min(wait, notifier.watchdog_interval());
    }
    if (signals == nullptr) {
      // Stop(), Drain() and Reload() write notice_fd_: the wait ends at once.
      pollfd notice{notice_fd_, POLLIN, 0};
      if (poll(&notice, 1,
               static_cast<int>(
                   absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1))))) > 0) {
        uint64_t count;
        [[maybe_unused]] ssize_t n = read(notice_fd_, &count, sizeof(count));
      }
      continue;
    }
    const int signal = signals->Wait(wait);
    if (signal == SIGHUP) {
      if (tls_ != nullptr) ReloadTls().IgnoreError();  // logged; the loops roll either way
      Reload();
    } else if (signal == SIGINT || signal == SIGTERM) {
      if (!supervisor_->draining()) {
        Drain();
      } else {
        Log("Second signal: stopping now");
        break;
      }
    }
  }
  supervisor_->Stop();
  // Every loop closes its connections and exits within a few seconds, unless one is stuck in a
  // request (known to be, or still busy after that time): that thread is left to the destructor
  // rather than holding the caller up.
  const absl::Time give_up = MonotonicTime() + absl::Seconds(5);
  while (!supervisor_->AllServeNothing() && MonotonicTime() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  supervisor_->ReapAll();
}

}  // namespace percore
