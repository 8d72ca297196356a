#include "percore/engine.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "epoll_backend.h"
#include "io_uring_backend.h"
#include "listener.h"
#include "loop.h"
#include "percore/cpus.h"

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
      return absl::InvalidArgumentError(absl::StrCat(
          "cpu ", cpu, " is not in this process's allowed set (", absl::StrJoin(allowed, ","), ")"));
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
  if (o.max_pending_output == 0) return absl::InvalidArgumentError("max_pending_output must be > 0");
  if (o.tick_interval <= absl::ZeroDuration() || o.linger_timeout < absl::ZeroDuration() ||
      o.send_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("tick_interval and send_timeout must be > 0");
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
  int id;
  int cpu;
  std::thread thread;
  std::promise<absl::Status> started;
  absl::Status exit_status;          // written by the loop thread before `exited`
  std::atomic<bool> exited{false};
};

Engine::Engine(const EngineOptions& options, ProtocolFactory factory)
    : options_(options), factory_(std::move(factory)) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options,
                                                       ProtocolFactory factory) {
  std::vector<int> allowed = AllowedCpus();
  if (allowed.empty()) return absl::InternalError("sched_getaffinity returned no CPU");
  absl::Status valid = Validate(options, allowed);
  if (!valid.ok()) return valid;
  if (!factory) return absl::InvalidArgumentError("a protocol factory is required");

  std::unique_ptr<Engine> engine(new Engine(options, std::move(factory)));
  std::vector<int> cpus = options.cpus.empty() ? allowed : options.cpus;
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(cpus.size());
  for (int id = 0; id < threads; ++id) {
    engine->workers_.push_back(WorkerInfo{id, cpus[id % cpus.size()]});
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
  for (int fd : listen_fds_) close(fd);
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
    Loop loop(slot->id, slot->cpu, options_, listen_fds_[slot->id], wake_fds_[slot->id], &stop_);
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

absl::Status Engine::Start() {
  if (started_) return absl::FailedPreconditionError("Engine::Start called twice");
  started_ = true;
  std::vector<std::future<absl::Status>> started;
  for (const WorkerInfo& w : workers_) {
    auto slot = std::make_unique<LoopSlot>();
    slot->id = w.id;
    slot->cpu = w.cpu;
    started.push_back(slot->started.get_future());
    slot->thread = std::thread(&Engine::RunLoop, this, slot.get());
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
  return first_error;
}

void Engine::Stop() {
  stop_.store(true);
  const uint64_t one = 1;
  for (int fd : wake_fds_) {
    // EAGAIN only means the counter is already non-zero: the loop will wake either way.
    [[maybe_unused]] ssize_t n = write(fd, &one, sizeof(one));
  }
}

void Engine::Wait() {
  for (auto& slot : slots_) {
    if (slot->thread.joinable()) slot->thread.join();
  }
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
  while (status.ok() && !stop_.load()) {
    timespec poll{0, 100 * 1000 * 1000};
    int signal = sigtimedwait(&signals, nullptr, &poll);
    if (signal == SIGINT || signal == SIGTERM) break;
    bool any_exited = std::any_of(slots_.begin(), slots_.end(),
                                  [](const auto& slot) { return slot->exited.load(); });
    if (any_exited) break;
  }
  Stop();
  Wait();
  for (const auto& slot : slots_) {
    if (status.ok() && !slot->exit_status.ok()) {
      status = absl::Status(slot->exit_status.code(),
                            absl::StrCat("worker ", slot->id, ": ", slot->exit_status.message()));
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return status;
}

}  // namespace percore
