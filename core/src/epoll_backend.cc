#include "epoll_backend.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "loop.h"

namespace percore {
namespace {

// epoll_event.data: a Connection*, or one of these for the loop's own descriptors.
constexpr uint64_t kListener = 1;
constexpr uint64_t kWake = 2;
constexpr uint64_t kWatchTag = 1;  // the low bit of a Watch* in epoll_event::data
constexpr int kAcceptBatch = 64;
// Reads per connection per iteration before the others get their turn.
constexpr int kReadsPerTurn = 4;
constexpr int64_t kAcceptRetryMs = 100;
// File bytes per connection per iteration before the others get their turn.
constexpr uint64_t kFileBytesPerTurn = 1024 * 1024;

}  // namespace

EpollBackend::EpollBackend(Loop& loop) : loop_(loop) {}

absl::StatusOr<std::unique_ptr<Backend>> EpollBackend::Create(Loop& loop) {
  std::unique_ptr<EpollBackend> backend(new EpollBackend(loop));
  absl::Status status = backend->Init();
  if (!status.ok()) return status;
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::Status EpollBackend::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return absl::ErrnoToStatus(errno, "epoll_create1");
  // accept() in a batch must stop at EAGAIN instead of blocking. (Only this backend sets it: on
  // a nonblocking file io_uring returns EAGAIN instead of waiting.)
  int flags = fcntl(loop_.listen_fd(), F_GETFL);
  if (flags < 0 || fcntl(loop_.listen_fd(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return absl::ErrnoToStatus(errno, "fcntl O_NONBLOCK on listener");
  }
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.u64 = kWake;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, loop_.wake_fd(), &wake) != 0) {
    return absl::ErrnoToStatus(errno, "epoll_ctl wake");
  }
  WatchListener(true);
  buffer_.resize(loop_.options().recv_buffer_size);
  events_.resize(256);
  return absl::OkStatus();
}

EpollBackend::~EpollBackend() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

void EpollBackend::WatchListener(bool on) {
  if (on == listening_) return;
  epoll_event ev{};
  ev.events = EPOLLIN;  // level-triggered: a backlog left by a full batch is reported again
  ev.data.u64 = kListener;
  epoll_ctl(epoll_fd_, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, loop_.listen_fd(), &ev);
  listening_ = on;
}

void EpollBackend::StopAccepting() {
  accept_stopped_ = true;
  WatchListener(false);
}

void EpollBackend::CancelLoopOperations() {
  StopAccepting();
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, loop_.wake_fd(), nullptr);
}

void EpollBackend::AcceptBatch() {
  for (int i = 0; i < kAcceptBatch; ++i) {
    int fd = accept4(loop_.listen_fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: the listener would stay readable and spin the loop.
        // Connections wait in the accept queue until the retry.
        WatchListener(false);
        accept_retry_ms_ = loop_.worker().now_ms() + kAcceptRetryMs;
      }
      return;  // EAGAIN: the queue is empty; ECONNABORTED and the like: next readiness
    }
    ConnectionState* c = loop_.OnAccepted(fd);
    if (c != nullptr) Register(static_cast<EpollConnection*>(c));
  }
}

bool EpollBackend::AddWatch(Watch* w) {
  // Level-triggered, unlike the connections: a client library expects to be told again while
  // the descriptor stays ready. The low bit tells a watch from a connection (both 8-aligned).
  epoll_event ev{};
  ev.events = ((w->events & kReadable) != 0 ? EPOLLIN : 0u) |
              ((w->events & kWritable) != 0 ? EPOLLOUT : 0u);
  ev.data.u64 = reinterpret_cast<uint64_t>(w) | kWatchTag;
  return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, w->fd, &ev) == 0;
}

void EpollBackend::RemoveWatch(Watch* w) {
  // Events for it already taken in this iteration are skipped (`removed`); the loop frees it
  // before the next wait.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w->fd, nullptr);
}

void EpollBackend::Register(EpollConnection* c) {
  // Registered once for everything, edge-triggered: no epoll_ctl per read, write or pause. The
  // kernel reports the socket's present readiness at once, so bytes that arrived before (on an
  // adopted connection) are read too.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = c;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->fd, &ev) != 0) loop_.Abort(c);
}

bool EpollBackend::Read(EpollConnection* c) {
  for (int i = 0; i < kReadsPerTurn; ++i) {
    if (!Loop::WantsRead(c)) return false;  // paused or closing: readable_ stays as it is
    ssize_t n = recv(c->fd, buffer_.data(), buffer_.size(), 0);
    if (n > 0) {
      loop_.OnReceived(c, std::string_view(buffer_.data(), static_cast<size_t>(n)));
      // A short read drained the socket; bytes arriving later raise a new edge. Not so the
      // peer's FIN: if it came with the edge that brought these bytes, no other edge follows,
      // so read on until recv() reports it.
      if (static_cast<size_t>(n) < buffer_.size() && !c->peer_hup) {
        c->readable = false;
        return false;
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (errno == EAGAIN) c->readable = false;
      return false;
    }
    c->readable = false;
    loop_.OnReceiveEnded(c, n == 0 ? 0 : -errno);
    return false;
  }
  return true;
}

void EpollBackend::Write(EpollConnection* c) {
  IoBuffers* o = c->buffers;
  if (!o->Prepare()) {
    loop_.OnSent(c, -EIO);
    return;
  }
  const std::string_view bytes = o->bytes();
  size_t left = bytes.size();
  ssize_t n;
  if (!bytes.empty()) {
    do {
      n = send(c->fd, bytes.data(), left, Loop::SendFlags(c) | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
  } else {
    // A file range, straight from the page cache to the socket; a share at a time, as reads.
    const FileRange& file = o->file();
    left = static_cast<size_t>(std::min<uint64_t>(file.left, kFileBytesPerTurn));
    off_t offset = static_cast<off_t>(file.offset);
    do {
      n = sendfile(c->fd, file.fd, &offset, left);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      // The file ended before its range did: the peer was promised those bytes.
      loop_.OnSent(c, -EIO);
      return;
    }
  }
  if (n < 0 && errno != EAGAIN) {
    loop_.OnSent(c, -errno);
    return;
  }
  if (n > 0) loop_.OnSent(c, static_cast<int>(n));
  // The socket buffer is full: wait for EPOLLOUT before the next write. (A short sendfile() may
  // also be the file's end: only its EAGAIN says the socket is full.)
  if (n < 0 || (!bytes.empty() && static_cast<size_t>(n) < left)) c->send_inflight = true;
}

void EpollBackend::Reconcile(EpollConnection* c) {
  if (c->releasing()) {
    // A connection cut short earlier this iteration may be released in a later round: it must
    // not stay on unread_, which the next iteration walks.
    unread_.erase(std::remove(unread_.begin(), unread_.end(), c), unread_.end());
    loop_.Release(c);  // close() also takes the descriptor out of the epoll set
    return;
  }
  if (Loop::WantsSend(c)) Write(c);
  if (c->readable && Loop::WantsRead(c) && Read(c)) unread_.push_back(c);
  // A TLS handshake's answer goes out now, not after every other connection's read
  // (Loop::TakeUrgent).
  if (loop_.TakeUrgent() && Loop::WantsSend(c)) Write(c);
}

int EpollBackend::Iterate(int64_t timeout_us) {
  // Connections cut short last time read first, again up to their share. (Taken here, before
  // anything can be released: a connection on this list is alive until it is reconciled.)
  for (EpollConnection* c : unread_) loop_.MarkDirty(c);
  unread_.clear();
  // Reconciling can produce more work (a write that completes may finish a close), so drain the
  // dirty list a few rounds; what is left waits for the next iteration without sleeping.
  for (int round = 0; round < 4 && !loop_.dirty().empty(); ++round) {
    work_.swap(loop_.dirty());
    size_t i = 0;
    try {
      for (; i < work_.size(); ++i) {
        work_[i]->dirty = false;
        Reconcile(static_cast<EpollConnection*>(work_[i]));
      }
    } catch (...) {
      // The loop is dying (an exception from a session call, e.g. testing::CrashLoop). work_ must
      // not keep connections already reconciled (maybe released) for the shutdown's Iterate;
      // the ones not reached are still marked dirty, so they go back on the dirty list.
      for (++i; i < work_.size(); ++i) loop_.dirty().push_back(work_[i]);
      work_.clear();
      throw;
    }
    work_.clear();
  }
  if (!accept_stopped_ && !listening_ && loop_.worker().now_ms() >= accept_retry_ms_) {
    WatchListener(true);
  }
  const bool busy = !loop_.dirty().empty() || !unread_.empty() || loop_.HasResumed();
  loop_.BeginWait();
  // epoll_pwait2 (Linux 5.11) waits to the microsecond, so timers run when due; epoll_wait
  // counts whole milliseconds, rounded up so as never to be early.
  const int64_t wait_us = busy ? 0 : timeout_us;
  int n;
  if (pwait2_) {
    timespec timeout{static_cast<time_t>(wait_us / 1000000),
                     static_cast<long>(wait_us % 1000000) * 1000};
    n = epoll_pwait2(epoll_fd_, events_.data(), static_cast<int>(events_.size()), &timeout,
                     nullptr);
    if (n < 0 && errno == ENOSYS) pwait2_ = false;
  }
  if (!pwait2_) {
    n = epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                   static_cast<int>((wait_us + 999) / 1000));
  }
  if (n < 0) return errno == EINTR ? 0 : -errno;
  loop_.UpdateClock();

  for (int i = 0; i < n; ++i) {
    const epoll_event& ev = events_[i];
    if (ev.data.u64 == kListener) {
      AcceptBatch();
    } else if (ev.data.u64 == kWake) {
      uint64_t value;
      [[maybe_unused]] ssize_t r = read(loop_.wake_fd(), &value, sizeof(value));
    } else if ((ev.data.u64 & kWatchTag) != 0) {
      auto* w = reinterpret_cast<Watch*>(ev.data.u64 & ~kWatchTag);
      const uint32_t ready = ((ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 ? kReadable : 0u) |
                             ((ev.events & (EPOLLOUT | EPOLLERR)) != 0 ? kWritable : 0u);
      loop_.OnWatchReady(w, ready & w->events);
    } else {
      auto* c = static_cast<EpollConnection*>(ev.data.ptr);
      if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable = true;
      if (ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->peer_hup = true;
      if ((ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->send_inflight) {
        c->send_inflight = false;
      }
      loop_.MarkDirty(c);
    }
  }
  if (n == static_cast<int>(events_.size())) events_.resize(events_.size() * 2);
  return 0;
}

}  // namespace percore
