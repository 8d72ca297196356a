#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "connection_state.h"
#include "loop.h"
#include "percore/buffers.h"
#include "percore/protocol.h"
#include "proxy_header.h"
#include "tls_stream.h"

namespace percore {
namespace {

void CloseFile(FileRange& file) {
  if (file.fd >= 0) close(file.fd);
  file = FileRange{};
}

}  // namespace

void IoBuffers::AddFile(int fd, uint64_t offset, uint64_t length) {
  queued_ += pending.size() + length;
  queue_.push_back(Part{std::move(pending), FileRange{fd, offset, length}});
  pending.clear();  // moved from: empty in practice, but only "valid" by the standard
}

bool IoBuffers::Prepare() {
  if (tls != nullptr) return PrepareSealed();
  if (sent_ < sending_.size() || file_.left > 0) return true;  // the current part goes on
  sending_.clear();
  sent_ = 0;
  if (queue_.empty()) {
    sending_.swap(pending);
    return true;
  }
  Part& part = queue_.front();
  sending_.swap(part.bytes);
  file_ = part.file;
  queued_ -= sending_.size() + file_.left;
  queue_.pop_front();
  return true;
}

bool IoBuffers::PrepareSealed() {
  if (sent_ < sending_.size()) return true;  // the current records go on
  sending_.clear();
  sent_ = 0;
  if (tls->kernel_backlog()) {
    // Kernel TLS: the records OpenSSL sealed go first; then the kernel takes its key (and
    // `tls` becomes null), and the rest goes out unsealed.
    if (!wire.empty()) {
      sending_.swap(wire);
      return true;
    }
    return tls->SendToKernel() && Prepare();
  }
  if (!tls->sealing()) {
    // The connection failed (or said its goodbye): nothing more can be sealed, so what waits
    // is dropped, not read; a large file would be read to its end for nothing, in one turn.
    CloseFile(file_);
    for (Part& part : queue_) CloseFile(part.file);
    queue_.clear();
    queued_ = 0;
    pending.clear();
  }
  // Seal in order until a send's worth is ready: a file is read a send's worth at a time (one
  // read, into the thread's slice), so a large one is never all in memory, and its bytes
  // follow the kernel's pace.
  constexpr size_t kSendBytes = 256 * 1024;
  static thread_local std::unique_ptr<char[]> slice;
  while (wire.size() < kSendBytes) {
    if (file_.left > 0) {
      if (slice == nullptr) slice.reset(new char[kSendBytes]);
      const size_t want = static_cast<size_t>(std::min<uint64_t>(file_.left, kSendBytes));
      const ssize_t n = pread(file_.fd, slice.get(), want, static_cast<off_t>(file_.offset));
      if (n <= 0) return false;
      // Records add a few bytes each: room for them all, so the sealing never reallocates.
      wire.reserve(wire.size() + static_cast<size_t>(n) + 8 * 1024);
      tls->Seal(std::string_view(slice.get(), static_cast<size_t>(n)), wire);
      file_.offset += static_cast<uint64_t>(n);
      file_.left -= static_cast<uint64_t>(n);
      if (file_.left == 0) CloseFile(file_);
    } else if (!queue_.empty()) {
      Part& part = queue_.front();
      tls->Seal(part.bytes, wire);
      file_ = part.file;
      queued_ -= part.bytes.size() + file_.left;
      queue_.pop_front();
    } else {
      tls->Seal(pending, wire);
      pending.clear();
      break;
    }
  }
  sending_.swap(wire);
  return true;
}

bool IoBuffers::Sent(size_t n) {
  if (sent_ < sending_.size()) {
    sent_ += n;
    if (sent_ < sending_.size()) return false;
    sending_.clear();
    sent_ = 0;
    // Of the two buffers, one is enough while nothing is pending: a producer that refills the
    // output once it is drained (Response::OnWritable) then writes into the one whose
    // pages are already there, and a large second one does not sit beside it. (Under TLS the
    // records go back and forth between `wire` and the one in flight, each kept at its size.)
    if (pending.empty() && tls == nullptr) {
      if (sending_.capacity() > pending.capacity()) sending_.swap(pending);
      KeepSmall(sending_);
    }
    return file_.left == 0;
  }
  file_.offset += n;
  file_.left -= n;
  if (file_.left > 0) return false;
  CloseFile(file_);
  return true;
}

size_t IoBuffers::Clear() {
  size_t freed = 0;
  CloseFile(file_);
  for (Part& part : queue_) CloseFile(part.file);
  queue_.clear();
  queued_ = 0;
  sent_ = 0;
  for (std::string* s : {&pending, &sending_, &unread_}) {
    freed += KeepSmall(*s);
    s->clear();
  }
  if (tls != nullptr) {  // `wire` is only ever written under TLS
    freed += KeepSmall(wire);
    wire.clear();
    tls = nullptr;
  }
  unread_from_ = 0;
  return freed;
}

void IoBuffers::KeepUnread(std::string_view bytes) {
  if (unread_from_ > 0 && unread_from_ >= unread_.size() / 2) {
    // Most of it was taken: move the rest to the front once, before it grows.
    unread_.erase(0, unread_from_);
    unread_from_ = 0;
  }
  unread_.append(bytes);
}

void IoBuffers::TakeUnread(size_t n) {
  unread_from_ += n;
  if (unread_from_ == unread_.size()) {
    unread_.clear();
    unread_from_ = 0;
  }
}

void Session::OnPeerClosed(Connection& conn) { conn.Close(); }

void Session::OnDrain(Connection& conn) { conn.Close(); }

std::string& Connection::output() {
  ConnectionState* c = StateOf(this);
  if (c->buffers == nullptr) c->loop->TakeBuffers(c);
  return c->buffers->pending;
}

void Connection::SendFile(int fd, uint64_t offset, uint64_t length) {
  ConnectionState* c = StateOf(this);
  if (length == 0 || c->releasing()) {
    close(fd);
    return;
  }
  if (c->buffers == nullptr) c->loop->TakeBuffers(c);
  c->buffers->AddFile(fd, offset, length);
}

void Connection::Close(bool linger) { StateOf(this)->loop->RequestClose(StateOf(this), linger); }

void Connection::Resume() { StateOf(this)->loop->Resume(StateOf(this)); }

void Connection::HandTo(std::unique_ptr<Session> next) {
  StateOf(this)->loop->HandOver(StateOf(this), std::move(next));
}

void Connection::NotifyWritable() { StateOf(this)->writable_wanted = true; }

bool Connection::closing() const { return StateOf(this)->closing(); }

void Connection::SetDeadline(int64_t deadline_ms) {
  ConnectionState* c = StateOf(this);
  // Handing over: the caller's deadline was cancelled, and the successor sets its own.
  if (!c->closing() && !c->handing_over) c->deadline_ms = deadline_ms;
}

Worker& Connection::worker() const { return StateOf(this)->loop->worker(); }

size_t Connection::pending_output() const { return StateOf(this)->pending_output(); }

bool Connection::output_full() const {
  const ConnectionState* c = StateOf(this);
  return c->pending_output() > c->loop->options().max_pending_output;
}

PeerAddress Connection::peer() const {
  PeerAddress peer;
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  char ip[INET6_ADDRSTRLEN] = "";
  if (getpeername(StateOf(this)->fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0) {
    if (addr.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
      inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
      peer.port = ntohs(in->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
      peer.port = ntohs(in6->sin6_port);
    }
  }
  peer.ip = ip;
  return peer;
}

PeerAddress Connection::client() const {
  const ProxyState* proxy = StateOf(this)->proxy;
  if (proxy != nullptr && !proxy->source.ip.empty()) return proxy->source;
  return peer();
}

std::optional<TlsInfo> Connection::tls() const {
  const ConnectionState* c = StateOf(this);
  if (c->tls == nullptr || !c->tls->established()) return std::nullopt;
  return c->tls->info();
}

TimerId Worker::After(absl::Duration delay, absl::AnyInvocable<void()> fn) {
  return loop_->AddTimer(delay, std::move(fn));
}

bool Worker::Cancel(TimerId timer) { return loop_->CancelTimer(timer); }

WatchId Worker::Watch(int fd, uint32_t events, absl::AnyInvocable<void(uint32_t ready)> fn) {
  return loop_->AddWatch(fd, events, std::move(fn));
}

bool Worker::Unwatch(WatchId watch) { return loop_->RemoveWatch(watch); }

}  // namespace percore
