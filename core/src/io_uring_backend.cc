// The io_uring backend: a few armed accepts, multishot receives into a provided-buffer ring, and
// one send per connection in flight, all turned into completions once per loop iteration.
#include "io_uring_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "io_uring_setup.h"
#include "loop.h"

namespace percore {
namespace {

// The io_uring user_data encoding, in one place.
//
// The high bits hold an IoUringConnection* (8-byte aligned) or 0 for the loop's own operations;
// the low 3 bits hold the operation. A connection is released only when none of its operations
// is in flight (reading, send_inflight, cancel_inflight), so the pointer in a completion always
// names a live connection.
enum Op : uint64_t {
  kAccept = 1,      // one of the accepts armed on the loop's listener
  kWake = 2,        // read of the loop's eventfd
  kReceive = 3,     // multishot receive on the connection, buffers from the buffer ring
  kSend = 4,        // the connection's one send: bytes, or a splice from its pipe
  kCancel = 5,      // cancel of the connection's receive, or of all its operations
  kLoopCancel = 6,  // cancel of the accept or the wake read, or of a watch's poll
  kWatch = 7,       // the poll of a watched descriptor (the high bits hold a Watch*)
  kFileIn = 0,      // a splice from a file into the connection's pipe (a send in flight)
};
constexpr uint64_t kOpMask = 7;

uint64_t Encode(IoUringConnection* c, Op op) { return reinterpret_cast<uint64_t>(c) | op; }
Op OpOf(uint64_t data) { return static_cast<Op>(data & kOpMask); }
IoUringConnection* ConnectionOf(uint64_t data) {
  return reinterpret_cast<IoUringConnection*>(data & ~kOpMask);
}

// The pipe a connection's file ranges go through: big enough that a splice moves a useful
// amount (the kernel rounds to pages; the default is 64 KiB).
constexpr int kPipeBytes = 256 * 1024;
// Empty pipes a loop keeps for the next file sent: enough for a few files at once without a
// pipe2() each, few enough to hold little.
constexpr size_t kSparePipes = 4;

void ClosePipe(int read, int write) {
  for (int fd : {read, write}) {
    if (fd >= 0) close(fd);
  }
}

constexpr int64_t kAcceptRetryMs = 100;
// Accepts kept armed on the listener: single-shot, re-armed as they complete, not one multishot
// accept. The kernel completes an armed accept in task work that runs even while the loop's
// thread is inside a handler (a sleeping thread is woken for it), so a loop stuck in a request
// would take in every connection that reaches its listener, where nobody can serve it. With a
// few single-shot accepts it takes at most this many; the rest wait in the listener's queue for
// the loop that replaces it (EngineOptions::stuck_timeout). Several, so a burst of connections
// is accepted in one iteration.
constexpr int kAcceptsArmed = 4;

}  // namespace

IoUringBackend::IoUringBackend(Loop& loop, const EngineOptions& options, int listen_fd, int wake_fd)
    : loop_(loop), options_(options), listen_fd_(listen_fd), wake_fd_(wake_fd) {}

absl::StatusOr<std::unique_ptr<Backend>> IoUringBackend::Create(Loop& loop,
                                                                const EngineOptions& options,
                                                                int listen_fd, int wake_fd) {
  std::unique_ptr<IoUringBackend> backend(new IoUringBackend(loop, options, listen_fd, wake_fd));
  absl::Status status = backend->Init();
  if (!status.ok()) return status;
  return std::unique_ptr<Backend>(std::move(backend));
}

absl::Status IoUringBackend::Init() {
  absl::Status status = SetUpRing(&ring_, options_.ring_entries);
  if (!status.ok()) return status;
  ring_ready_ = true;
  const unsigned count = options_.recv_buffers;
  absl::StatusOr<io_uring_buf_ring*> buf_ring = SetUpBufferRing(&ring_, count);
  if (!buf_ring.ok()) return buf_ring.status();
  buf_ring_ = *buf_ring;
  buf_ring_bytes_ = sizeof(io_uring_buf) * count;
  buffers_bytes_ = options_.recv_buffer_size * count;
  // Populated now: the kernel cycles through every buffer of the ring, and a page first
  // touched by a receive would fault inside the kernel's copy on the request path.
  void* buffers = mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE,
                       MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
  if (buffers == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap receive buffers");
  buffers_ = static_cast<char*>(buffers);
  for (unsigned id = 0; id < count; ++id) ReturnBuffer(id);
  io_uring_buf_ring_advance(buf_ring_, returned_buffers_);
  returned_buffers_ = 0;

  ArmAccept();
  ArmWake();
  int ret = io_uring_submit(&ring_);
  if (ret < 0) return absl::ErrnoToStatus(-ret, "io_uring_submit");
  return absl::OkStatus();
}

IoUringBackend::~IoUringBackend() {
  for (auto& [c, pipe] : pipes_) ClosePipe(pipe.read, pipe.write);
  for (Pipe& pipe : spare_pipes_) ClosePipe(pipe.read, pipe.write);
  if (ring_ready_) {
    if (buf_ring_ != nullptr) io_uring_unregister_buf_ring(&ring_, kBufferGroup);
    io_uring_queue_exit(&ring_);
  }
  if (buf_ring_ != nullptr) munmap(buf_ring_, buf_ring_bytes_);
  if (buffers_ != nullptr) munmap(buffers_, buffers_bytes_);
}

io_uring_sqe* IoUringBackend::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel now, then continue filling it.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void IoUringBackend::ReturnBuffer(unsigned id) {
  io_uring_buf_ring_add(buf_ring_, buffers_ + size_t{id} * options_.recv_buffer_size,
                        static_cast<unsigned>(options_.recv_buffer_size), id,
                        io_uring_buf_ring_mask(options_.recv_buffers), returned_buffers_++);
}

void IoUringBackend::ArmAccept() {
  while (accepts_armed_ < kAcceptsArmed) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, Encode(nullptr, kAccept));
    ++accepts_armed_;
  }
}

void IoUringBackend::ArmWake() {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
  io_uring_sqe_set_data64(sqe, Encode(nullptr, kWake));
  wake_armed_ = true;
}

void IoUringBackend::ArmReceive(IoUringConnection* c) {
  io_uring_sqe* sqe = Sqe();
  // The first receive is single-shot: a connection that closes after one request (HTTP's
  // "Connection: close") then has nothing armed to cancel before its socket is closed. Every
  // later one is multishot, armed once for as long as the connection keeps reading.
  if (c->multishot && !c->one_at_a_time) {
    io_uring_prep_recv_multishot(sqe, c->fd, nullptr, 0, 0);
  } else {
    io_uring_prep_recv(sqe, c->fd, nullptr, 0, 0);
    c->multishot = true;
  }
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(sqe, Encode(c, kReceive));
  c->reading = true;
}

void IoUringBackend::StartSend(IoUringConnection* c) {
  IoBuffers* o = c->buffers;
  if (!o->Prepare()) {
    loop_.OnSent(c, -EIO);
    return;
  }
  c->send_inflight = true;
  const std::string_view bytes = o->bytes();
  if (bytes.empty()) {
    StartFileSend(c);
    return;
  }
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_send(sqe, c->fd, bytes.data(), bytes.size(), Loop::SendFlags(c));
  io_uring_sqe_set_data64(sqe, Encode(c, kSend));
}

void IoUringBackend::StartFileSend(IoUringConnection* c) {
  // io_uring has no sendfile: splice moves the file's pages into a pipe and from the pipe into
  // the socket, with no copy through user space. One step at a time, each its own completion.
  Pipe& pipe = pipes_[c];
  if (!c->has_pipe) {
    c->has_pipe = true;
    int fds[2];
    if (!spare_pipes_.empty()) {
      pipe = spare_pipes_.back();
      spare_pipes_.pop_back();
    } else if (pipe2(fds, O_CLOEXEC) == 0) {
      pipe.read = fds[0];
      pipe.write = fds[1];
      const int size = fcntl(pipe.write, F_SETPIPE_SZ, kPipeBytes);
      pipe.size = static_cast<uint32_t>(size > 0 ? size : fcntl(pipe.write, F_GETPIPE_SZ));
    }
  }
  io_uring_sqe* sqe = Sqe();
  if (pipe.read < 0) {
    // No pipe (out of descriptors): a no-op completes as a file that ended early, which fails
    // the connection.
    io_uring_prep_nop(sqe);
  } else if (pipe.in_pipe > 0) {
    io_uring_prep_splice(sqe, pipe.read, -1, c->fd, -1, pipe.in_pipe, SPLICE_F_MOVE);
    io_uring_sqe_set_data64(sqe, Encode(c, kSend));
    return;
  } else {
    const FileRange& file = c->buffers->file();
    const auto length = static_cast<unsigned>(std::min<uint64_t>(file.left, pipe.size));
    io_uring_prep_splice(sqe, file.fd, static_cast<int64_t>(file.offset), pipe.write, -1, length,
                         SPLICE_F_MOVE);
  }
  io_uring_sqe_set_data64(sqe, Encode(c, kFileIn));
  c->file_in = true;
}

void IoUringBackend::ReturnPipe(IoUringConnection* c, bool empty) {
  auto it = pipes_.find(c);
  Pipe& pipe = it->second;
  if (empty && pipe.read >= 0 && spare_pipes_.size() < kSparePipes) {
    spare_pipes_.push_back(pipe);
  } else {
    ClosePipe(pipe.read, pipe.write);
  }
  pipes_.erase(it);
  c->has_pipe = false;
}

void IoUringBackend::Release(IoUringConnection* c) {
  if (c->has_pipe) ReturnPipe(c, /*empty=*/false);
  loop_.Release(c);
}

void IoUringBackend::Reconcile(IoUringConnection* c) {
  if (c->releasing()) {
    // Cancels the receive and a send or splice into the socket; a splice from a file into the
    // pipe completes by itself (the pipe has room for it).
    if ((c->reading || (c->send_inflight && !c->file_in)) && !c->cancel_inflight) {
      io_uring_sqe* sqe = Sqe();
      io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, Encode(c, kCancel));
      c->cancel_inflight = true;
    }
    if (!c->reading && !c->send_inflight && !c->cancel_inflight) Release(c);
    return;
  }
  if (Loop::WantsSend(c)) StartSend(c);
  if (c->paused || c->held) c->one_at_a_time = true;
  if (Loop::WantsRead(c)) {
    if (!c->reading) ArmReceive(c);
  } else if (c->reading && !c->cancel_inflight) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel64(sqe, Encode(c, kReceive), 0);
    io_uring_sqe_set_data64(sqe, Encode(c, kCancel));
    c->cancel_inflight = true;
  }
}

bool IoUringBackend::AddWatch(Watch* w) {
  ArmWatch(w);
  return true;
}

void IoUringBackend::ArmWatch(Watch* w) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_poll_add(
      sqe, w->fd,
      ((w->events & kReadable) != 0 ? POLLIN : 0u) | ((w->events & kWritable) != 0 ? POLLOUT : 0u));
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(w) | kWatch);
  w->armed = true;
}

void IoUringBackend::RemoveWatch(Watch* w) {
  if (!w->armed) return;
  // The poll then completes with -ECANCELED, which ends `armed`.
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_poll_remove(sqe, reinterpret_cast<uint64_t>(w) | kWatch);
  io_uring_sqe_set_data64(sqe, Encode(nullptr, kLoopCancel));
}

void IoUringBackend::StopAccepting() {
  if (accept_stopped_) return;
  accept_stopped_ = true;
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_cancel64(sqe, Encode(nullptr, kAccept), IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, Encode(nullptr, kLoopCancel));
}

void IoUringBackend::CancelLoopOperations() {
  StopAccepting();
  loop_cancelled_ = true;
  for (Op op : {kWake}) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel64(sqe, Encode(nullptr, op), 0);
    io_uring_sqe_set_data64(sqe, Encode(nullptr, kLoopCancel));
  }
}

void IoUringBackend::ReconcileDirty() {
  std::vector<ConnectionState*>& dirty = loop_.dirty();
  for (ConnectionState* c : dirty) {
    c->dirty = false;
    Reconcile(static_cast<IoUringConnection*>(c));  // may release c; never marks anything dirty
  }
  dirty.clear();
}

int IoUringBackend::Iterate(int64_t timeout_us) {
  ReconcileDirty();
  if (!accept_stopped_ && accepts_armed_ < kAcceptsArmed &&
      loop_.worker().now_ms() >= accept_retry_ms_) {
    ArmAccept();
  }
  if (!loop_cancelled_ && !wake_armed_) ArmWake();

  // One syscall: submit everything queued above and sleep until a completion or the timeout.
  __kernel_timespec timeout{};
  timeout.tv_sec = timeout_us / 1000000;
  timeout.tv_nsec = static_cast<long long>(timeout_us % 1000000) * 1000;
  io_uring_cqe* cqe = nullptr;
  loop_.BeginWait();
  int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &timeout, nullptr);
  if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) return ret;
  loop_.UpdateClock();

  // Each completion is consumed before it is handled: if handling it throws (the loop dies),
  // the shutdown that follows must not see it twice.
  unsigned head;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    const io_uring_cqe copy = *cqe;
    io_uring_cq_advance(&ring_, 1);
    Dispatch(&copy);
    // A TLS handshake's answer goes out before the next completion is handled (Loop::TakeUrgent):
    // a connection released here has no completion left in this batch (it had nothing in
    // flight), so none of the ones still to come names it.
    if (loop_.TakeUrgent()) {
      ReconcileDirty();
      io_uring_submit(&ring_);
    }
  }
  if (returned_buffers_ > 0) {
    io_uring_buf_ring_advance(buf_ring_, returned_buffers_);
    returned_buffers_ = 0;
  }
  return 0;
}

void IoUringBackend::Dispatch(const io_uring_cqe* cqe) {
  const uint64_t data = cqe->user_data;
  const int res = cqe->res;
  const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  IoUringConnection* c = ConnectionOf(data);
  switch (OpOf(data)) {
    case kAccept:
      if (res >= 0) {
        loop_.OnAccepted(res);
      } else if (res != -ECANCELED) {
        // EMFILE, ENFILE, ENOMEM: re-arming at once would spin while the limit holds.
        // Connections wait in the accept queue meanwhile.
        accept_retry_ms_ = loop_.worker().now_ms() + kAcceptRetryMs;
      }
      --accepts_armed_;
      break;
    case kWake:
      wake_armed_ = false;
      break;
    case kReceive:
      if (res > 0) {
        // A receive that ended is not armed any more, even if handling its bytes throws (the
        // loop dies): its shutdown must not wait for it.
        if (!more) c->reading = false;
        const unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        loop_.OnReceived(c, std::string_view(buffers_ + size_t{id} * options_.recv_buffer_size,
                                             static_cast<size_t>(res)));
        ReturnBuffer(id);  // the session copied what it keeps
        if (!more) loop_.OnReceiveEnded(c, res);
      } else {
        c->reading = false;
        loop_.OnReceiveEnded(c, res);
      }
      break;
    case kSend:
      if (res > 0 && c->has_pipe) {
        Pipe& pipe = pipes_[c];
        if (pipe.in_pipe > 0) pipe.in_pipe -= static_cast<uint32_t>(res);  // from the pipe
      }
      loop_.OnSent(c, res);
      if (c->has_pipe && res > 0 && pipes_[c].in_pipe == 0 &&
          (c->buffers == nullptr || c->buffers->file().left == 0)) {
        ReturnPipe(c, /*empty=*/true);  // the file is sent
      }
      break;
    case kFileIn:
      c->file_in = false;
      if (res > 0 && !c->releasing()) {
        pipes_[c].in_pipe = static_cast<uint32_t>(res);
        StartFileSend(c);  // on into the socket: still a send in flight
        break;
      }
      // 0: the file ended before its range did, and the peer was promised those bytes.
      loop_.OnSent(c, res < 0 ? res : -EIO);
      break;
    case kCancel:
      c->cancel_inflight = false;
      loop_.MarkDirty(c);
      break;
    case kLoopCancel:
      break;
    case kWatch: {
      auto* w = reinterpret_cast<Watch*>(data & ~kOpMask);
      w->armed = false;
      if (w->removed || res == -ECANCELED) break;
      if (res < 0) {
        // EBADF and the like: said once, as ready, for the library's own call to report; not
        // armed again, or it would fail without end.
        loop_.OnWatchReady(w, w->events);
        break;
      }
      const auto mask = static_cast<unsigned>(res);
      const uint32_t ready = ((mask & (POLLIN | POLLHUP | POLLERR)) != 0 ? kReadable : 0u) |
                             ((mask & (POLLOUT | POLLERR)) != 0 ? kWritable : 0u);
      loop_.OnWatchReady(w, ready & w->events);
      if (!w->removed && !w->armed) ArmWatch(w);
      break;
    }
  }
}

}  // namespace percore
