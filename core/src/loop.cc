#include "loop.h"

#include <malloc.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "clock.h"
#include "post_queue.h"
#include "proxy_header.h"
#include "tls_stream.h"

namespace percore {
namespace {

constexpr size_t kOutputBufferCapacity = 1024;
constexpr size_t kMaxPooledOutputs = 256;
// How long a stopping loop waits for cancelled operations to complete.
constexpr int64_t kShutdownMs = 2000;

}  // namespace

Loop::Loop(int id, int cpu, const EngineOptions& options, int listen_fd, int wake_fd,
           const LoopControl* engine, LoopControl* own, LoopStats* stats, EngineStats* engine_stats)
    : worker_(this, id, cpu, stats, engine_stats),
      options_(options),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      engine_(engine),
      own_(own),
      tick_ms_(std::max<int64_t>(1, absl::ToInt64Milliseconds(options.tick_interval))),
      linger_ms_(absl::ToInt64Milliseconds(options.linger_timeout)) {
  worker_.ref_ = WorkerRef(std::make_shared<PostQueue>(wake_fd));
}

Loop::~Loop() {
  // The ring goes first: once it is torn down the kernel holds no pointer into our buffers.
  backend_.reset();
  while (connections_ != nullptr) {
    connections_->life = Lifecycle::kReleasing;  // too late to hand over: TakeOrphans() has run
    Release(connections_);
  }
  // Jobs, timers and watches that never ran go now, on this thread, with whatever they hold.
  worker_.ref_.queue_->Close();
  timers_.clear();
  watches_.clear();
  protocol_.reset();
}

absl::Status Loop::Init(const ProtocolFactory& factory, std::unique_ptr<Backend> backend) {
  UpdateClock();
  backend_ = std::move(backend);
  delete_connection_ = backend_->connection_deleter();
  protocol_ = factory(worker_);
  if (protocol_ == nullptr) return absl::InternalError("protocol factory returned null");
  next_tick_ms_ = worker_.now_ms() + tick_ms_;
  return absl::OkStatus();
}

void Loop::UpdateClock() {
  worker_.now_ms_ = MonotonicMs();
  worker_.stats_->busy_since_ms.store(worker_.now_ms_, std::memory_order_relaxed);
}

absl::Status Loop::Run() {
  absl::Status status;
  try {
    while (!Stopping()) {
      UpdateClock();
      if (Draining()) {
        if (!worker_.draining_) BeginDrain();
        // Done once no connection is left and the cancelled accepts have completed: one that
        // completed first brings a connection to serve (drained), not to drop.
        if (connections_ == nullptr && !backend_->Accepting()) break;
      }
      RunDue();
      int result = backend_->Iterate(WaitUs());
      if (result < 0) {
        status = absl::ErrnoToStatus(-result, "event loop");
        break;
      }
    }
  } catch (const std::exception& e) {
    status = absl::InternalError(e.what());
  } catch (...) {
    status = absl::InternalError("unknown exception");
  }
  Shutdown(!status.ok());
  return status;
}

void Loop::RunDue() {
  if (worker_.now_ms() >= next_tick_ms_) {
    // A loop blocked by a slow handler, or flooded, runs its tick late.
    worker_.stats_->lag_us.store(static_cast<uint64_t>(worker_.now_ms() - next_tick_ms_) * 1000,
                                 std::memory_order_relaxed);
    Tick();
    next_tick_ms_ = worker_.now_ms() + tick_ms_;
  }
  RunPosted();
  RunTimers();
  DeliverResumed();
  FreeWatches();
}

int64_t Loop::WaitUs() const {
  if (!resumed_.empty() || !successors_.empty() || worker_.ref_.queue_->HasJobs()) return 0;
  // The clock is read again only for a timer: the tick needs no more than the loop's own.
  if (timer_heap_.empty()) return std::max<int64_t>(0, (next_tick_ms_ - worker_.now_ms()) * 1000);
  const int64_t until = std::min(next_tick_ms_ * 1000, timer_heap_.front().due_us);
  return std::max<int64_t>(0, until - MonotonicUs());
}

void Loop::Resume(ConnectionState* c) {
  if (c->held) {
    c->held = false;
    ScheduleResume(c);
  }
  AfterSession(c);
  MarkDirty(c);  // a Close() without output moves on too
}

void Loop::ScheduleResume(ConnectionState* c) {
  if (c->paused || c->held || c->resume_queued) return;
  c->resume_queued = true;
  resumed_.push_back(c);
}

void Loop::DeliverResumed() {
  // Connections are released only by the backend's Iterate(), which runs after this: every one
  // on the list is alive (Release() takes a released one off anyway). A session handed over
  // during one of these calls takes its place before the next.
  for (size_t i = 0;; ++i) {
    if (!successors_.empty()) TakeSuccessors();
    if (i == resumed_.size()) break;
    ConnectionState* c = resumed_[i];
    c->resume_queued = false;
    if (c->buffers != nullptr && !c->buffers->unread().empty() && !c->closing()) {
      // Nothing appends to or releases the output during the session's call: the view holds.
      const std::string_view bytes = c->buffers->unread();
      const size_t taken = Offer(c, bytes);
      if (c->closing()) {
        c->buffers->TakeUnread(bytes.size());  // discarded, as bytes read after a close are
      } else {
        c->buffers->TakeUnread(taken);
        if (taken < bytes.size()) Hold(c);  // paused or held again, the rest left where it is
      }
    }
    if (c->eof_untold && !c->handing_over &&
        (c->buffers == nullptr || c->buffers->unread().empty())) {
      c->eof_untold = false;
      TellPeerClosed(c);
    }
    MaybeReleaseBuffers(c);
    MarkDirty(c);  // read again
  }
  resumed_.clear();
}

void Loop::TellPeerClosed(ConnectionState* c) {
  if (!c->closing()) {
    c->session->OnPeerClosed(*c);
    AfterSession(c);
  }
  AdvanceClose(c);
}

void Loop::MaybeReleaseBuffers(ConnectionState* c) {
  if (c->buffers != nullptr && c->pending_output() == 0 && c->buffers->unread().empty()) {
    ReleaseBuffers(c);
  }
}

void Loop::BeginDrain() {
  worker_.draining_ = true;
  backend_->StopAccepting();
  own_->stopped_accepting.store(true);
  for (ConnectionState* c = connections_; c != nullptr; c = c->next) {
    if (c->closing() || c->handing_over) continue;  // a successor is told when it takes over
    c->session->OnDrain(*c);
    AfterSession(c);
  }
}

void Loop::Shutdown(bool died) {
  // Cancel everything in flight and wait for the kernel to confirm it, so no accepted socket is
  // left in an unread completion and no operation outlives the buffers it points into.
  shutting_down_ = true;
  backend_->CancelLoopOperations();
  for (ConnectionState* c = connections_; c != nullptr; c = c->next) {
    // After a death, only the connection being served when it happened, and those in the
    // middle of something, need to go: an idle one is handed to the replacement, which serves
    // its next request as if nothing had happened. (Bytes that still arrive for it before its
    // receive is cancelled cancel the adoption: see OnReceived.) Not over TLS, nor after a
    // PROXY header: the replacement would expect a handshake or a header again.
    const bool hand_over = died && c != in_session_ && !c->closing() && !c->send_inflight &&
                           c->pending_output() == 0 && !c->handing_over && c->tls == nullptr &&
                           c->proxy == nullptr && c->session->Idle();
    Abort(c);
    if (hand_over) c->life = Lifecycle::kHandingOver;
  }
  int64_t deadline = MonotonicMs() + kShutdownMs;
  while ((connections_ != nullptr || !backend_->Idle()) && MonotonicMs() < deadline) {
    if (backend_->Iterate(10000) < 0) break;
  }
  protocol_->OnTick();
  // The counters outlive this instance and are summed with its successor's: leave no gauge.
  worker_.stats_->lag_us.store(0, std::memory_order_relaxed);
  worker_.stats_->busy_since_ms.store(0, std::memory_order_relaxed);
}

void Loop::Tick() {
  protocol_->OnTick();
#ifdef __GLIBC__
  // glibc keeps freed memory in its arenas, and a loop's large output buffers (a streamed
  // download's, a megabyte each) and TLS handshakes' scratch come from this thread's arena:
  // once they stop going (none freed for a tick), hand the free pages back to the kernel, or a
  // burst of large answers or handshakes would stay resident. Not while they keep coming: the
  // next ones would fault them back in.
  if (freed_bytes_ > 0 && freed_bytes_ == freed_at_last_tick_) {
#ifndef __SANITIZE_ADDRESS__
    // Not under AddressSanitizer: its allocator holds the memory, not glibc's arenas, and
    // glibc's trim there once aborted a thread's exit (__malloc_arena_thread_freeres).
    malloc_trim(0);
#endif
    freed_bytes_ = 0;
  }
  freed_at_last_tick_ = freed_bytes_;
#endif
  const int64_t now = worker_.now_ms();
  const int64_t send_timeout_ms = absl::ToInt64Milliseconds(options_.send_timeout);
  for (ConnectionState* c = connections_; c != nullptr;) {
    ConnectionState* next = c->next;  // Release() during the visit is not possible: only Abort().
    if (c->releasing()) {
      // Nothing to time: release follows its cancelled operations.
    } else if (c->pending_output() > 0 && now - c->buffers->progress_ms > send_timeout_ms) {
      Abort(c);
    } else if (c->deadline_ms != 0 && c->deadline_ms <= now && c->pending_output() == 0) {
      // While output waits, the peer is the one not reading: the send timeout above governs.
      ExpireDeadline(c);
    } else if (c->kernel_tls && c->closing() && c->pending_output() == 0 && !c->send_inflight) {
      AdvanceClose(c);  // see KernelHoldsOutput
      MarkDirty(c);
    }
    c = next;
  }
}

void Loop::ExpireDeadline(ConnectionState* c) {
  c->deadline_ms = 0;
  if (c->closing()) {
    Abort(c);  // the linger time is over
  } else {
    c->session->OnDeadline(*c);
    AfterSession(c);
  }
}

ConnectionState* Loop::OnAccepted(int fd) {
  if (shutting_down_ || Stopping()) {
    // An accept that completed before its cancel: the loop is ending and would only hold it.
    close(fd);
    return nullptr;
  }
  LoopStats::Add(worker_.stats_->accepted, 1);
  return AddConnection(fd);
}

void Loop::Adopt(const std::vector<int>& fds) {
  for (int fd : fds) backend_->Adopted(AddConnection(fd));
}

// Inlined into OnReceived (GCC would call it: it has two callers), so plain bytes pay no call.
[[gnu::always_inline]] inline void Loop::Deliver(ConnectionState* c, std::string_view bytes) {
  if (c->paused || c->held || c->resume_queued) {
    // io_uring: a multishot receive goes on delivering until its cancel reaches the kernel,
    // so bytes come while paused. They wait here, not in the session, or a client that sends
    // requests and reads no answer would make the session answer them all (the output limit
    // would hold only for epoll, which simply stops reading). A resume may be queued after the
    // output was sent and given back: the bytes need a fresh one.
    if (c->buffers == nullptr) TakeBuffers(c);
    c->buffers->KeepUnread(bytes);
    return;
  }
  const size_t taken = Offer(c, bytes);
  if (taken < bytes.size() && !c->closing()) {
    if (c->buffers == nullptr) TakeBuffers(c);
    c->buffers->KeepUnread(bytes.substr(taken));
    Hold(c);
  }
  // A session handed over (an upgrade read just now) takes its place before anything else
  // runs: before the answer it wrote is sent, and before jobs that expect it in place (a
  // message published to the topics it joins as it opens).
  if (c->handing_over) TakeSuccessors();
}

void Loop::OnReceived(ConnectionState* c, std::string_view bytes) {
  LoopStats::Add(worker_.stats_->bytes_in, bytes.size());
  if (c->life == Lifecycle::kHandingOver) {
    c->life = Lifecycle::kReleasing;  // these bytes would be lost to the successor
  }
  if (c->closing()) return;  // lingering: discard
  // The PROXY header comes first, before TLS's ClientHello: the proxy passes TLS through.
  if (c->proxy != nullptr && !c->proxy->done && !TakeProxyHeader(c, bytes)) return;
  if (c->tls == nullptr) {
    Deliver(c, bytes);
    return;
  }
  // Ciphertext: what the session gets, and what a pause keeps, is what it decrypts to.
  const bool peer_closed = OpenTls(c, bytes);
  if (!bytes.empty() && !c->closing()) Deliver(c, bytes);
  if (peer_closed) OnReceiveEnded(c, 0);
}

size_t Loop::Offer(ConnectionState* c, std::string_view bytes) {
  in_session_ = c;  // stays set if the call throws: the loop dies, and `c` with it
  const size_t taken = c->session->OnData(*c, bytes);
  AfterSession(c);
  in_session_ = nullptr;
  return taken;
}

void Loop::Hold(ConnectionState* c) {
  // The rest waits: for the client to read what fills the output, or for the session.
  if (c->output_full()) {
    c->paused = true;
  } else {
    c->held = true;
  }
  MarkDirty(c);  // the backend stops reading (io_uring: cancels the multishot receive)
}

void Loop::OnReceiveEnded(ConnectionState* c, int result) {
  if (result == 0 && c->peer_eof) {
    // TLS: the FIN after a close_notify, already told.
  } else if (result == 0) {
    c->peer_eof = true;
    if (c->life == Lifecycle::kHandingOver) c->life = Lifecycle::kReleasing;
    if (!c->closing() &&
        (c->handing_over || (c->buffers != nullptr && !c->buffers->unread().empty()))) {
      // Requests the peer sent before its FIN wait behind a full output or an answer to come,
      // or for a session taking over: they are answered first (DeliverResumed tells the
      // session of the FIN after them).
      c->eof_untold = true;
    } else {
      TellPeerClosed(c);
    }
  } else if (result < 0 && result != -ENOBUFS && result != -ECANCELED) {
    Abort(c);
  }
  MarkDirty(c);
}

void Loop::OnSent(ConnectionState* c, int result) {
  c->send_inflight = false;
  if (result < 0) {
    Abort(c);
    MarkDirty(c);
    return;
  }
  LoopStats::Add(worker_.stats_->bytes_out, static_cast<uint64_t>(result));
  IoBuffers* o = c->buffers;
  o->progress_ms = worker_.now_ms();
  if (o->Sent(static_cast<size_t>(result))) {
    if (o->size() == 0) {
      if (!FlushKernelTls(c)) {
        Abort(c);
        MarkDirty(c);
        return;
      }
      const bool was_paused = c->paused;
      c->paused = false;
      if (was_paused) ScheduleResume(c);
      if (c->writable_wanted && !c->closing()) {
        c->writable_wanted = false;
        c->session->OnWritable(*c);
        AfterSession(c);
      }
      MaybeReleaseBuffers(c);
    }
    AdvanceClose(c);
  }
  MarkDirty(c);
}

void Loop::AfterSession(ConnectionState* c) {
  if (crash_reason_.has_value()) {
    // testing::CrashLoop: die the way a bug in the loop's own code would, before sending what
    // the session answered. Here, not at the next iteration: the epoll backend writes that
    // answer within this one.
    std::string reason = std::move(*crash_reason_);
    crash_reason_.reset();
    in_session_ = c;
    MarkDirty(c);
    throw InjectedCrash(reason);
  }
  if (c->pending_output() > 0) {
    if (!c->send_inflight) c->buffers->progress_ms = worker_.now_ms();
    if (c->pending_output() > options_.max_pending_output) c->paused = true;
    MarkDirty(c);
  }
}

void Loop::RequestClose(ConnectionState* c, bool linger) {
  if (c->releasing() || c->life == Lifecycle::kClosingNow) return;
  if (linger) {
    if (c->life != Lifecycle::kOpen) return;
    c->life = Lifecycle::kClosing;
  } else if (c->life == Lifecycle::kLingering) {
    c->life = Lifecycle::kReleasing;  // the linger is dropped
  } else {
    c->life = Lifecycle::kClosingNow;
  }
  c->deadline_ms = 0;  // the session's deadline no longer applies
  AdvanceClose(c);
  MarkDirty(c);
}

void Loop::AdvanceClose(ConnectionState* c) {
  if (c->pending_output() > 0 || c->send_inflight) return;
  // TLS: a close_notify goes first, so the peer knows the answer was not cut short.
  if (c->tls != nullptr && (c->life == Lifecycle::kClosing || c->life == Lifecycle::kClosingNow) &&
      c->tls->SayGoodbye()) {
    AfterSession(c);  // queued as output: the send timeout counts from now
    return;
  }
  if (c->kernel_tls && c->life != Lifecycle::kLingering && KernelHoldsOutput(c)) return;
  if (c->life == Lifecycle::kClosingNow ||
      (c->peer_eof && (c->life == Lifecycle::kClosing || c->life == Lifecycle::kLingering))) {
    c->life = Lifecycle::kReleasing;
  } else if (c->life == Lifecycle::kClosing) {
    // FIN after the last response; keep reading (and discarding) until the peer's FIN, so
    // bytes it sent after our last request do not make close() answer with a reset.
    shutdown(c->fd, SHUT_WR);
    c->life = Lifecycle::kLingering;
    c->deadline_ms = worker_.now_ms() + linger_ms_;
  }
}

void Loop::Abort(ConnectionState* c) {
  c->life = Lifecycle::kReleasing;
  MarkDirty(c);
}

void Loop::Release(ConnectionState* c) {
  if (c->prev != nullptr) {
    c->prev->next = c->next;
  } else {
    connections_ = c->next;
  }
  if (c->next != nullptr) c->next->prev = c->prev;
  if (c->resume_queued) std::erase(resumed_, c);
  if (c->handing_over) {
    std::erase_if(successors_, [c](const auto& s) { return s.first == c; });
  }
  worker_.stats_->active.store(worker_.stats_->active.load(std::memory_order_relaxed) - 1,
                               std::memory_order_relaxed);
  if (c->life == Lifecycle::kHandingOver) {
    orphans_.push_back(c->fd);
  } else {
    close(c->fd);
  }
  if (c->buffers != nullptr) ReleaseBuffers(c);
  // A handshake abandoned or timed out frees its scratch here (a completed one: OpenTls).
  if (c->tls != nullptr && !c->tls->established()) freed_bytes_ += kTlsHandshakeScratch;
  delete c->tls;
  delete c->proxy;
  delete_connection_(c);
}

void Loop::TakeBuffers(ConnectionState* c) {
  if (!buffer_pool_.empty()) {
    c->buffers = buffer_pool_.back().release();
    buffer_pool_.pop_back();
  } else {
    c->buffers = new IoBuffers;
    c->buffers->pending.reserve(kOutputBufferCapacity);
  }
  c->buffers->tls = c->kernel_tls ? nullptr : c->tls;  // the kernel seals: nothing to do here
}

void Loop::ReleaseBuffers(ConnectionState* c) {
  std::unique_ptr<IoBuffers> o(c->buffers);
  c->buffers = nullptr;
  freed_bytes_ += o->Clear();
  if (buffer_pool_.size() < kMaxPooledOutputs) buffer_pool_.push_back(std::move(o));
}

}  // namespace percore
