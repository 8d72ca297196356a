// How a connection gets its session: at once for plain TCP, after the handshake for TLS (so the
// protocol can see what ALPN chose), and from another session when one hands it over; and the
// TLS steps between the loop and TlsStream (kernel TLS's sends and its wait before the FIN).
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "loop.h"
#include "proxy_header.h"
#include "tls_context.h"
#include "tls_stream.h"

namespace percore {
namespace {

// A TLS connection's session until its handshake is done: every byte is the handshake's, and
// the deadline is the handshake's (TlsOptions::handshake_timeout).
class TlsHandshake final : public Session {
 public:
  size_t OnData(Connection& conn, std::string_view bytes) override { return bytes.size(); }
  void OnDeadline(Connection& conn) override {
    LoopStats::Add(conn.worker().stats().tls_failures, 1);
    conn.Close(false);
  }
};

}  // namespace

ConnectionState* Loop::AddConnection(int fd) {
  ConnectionState* c = backend_->NewConnection();
  c->loop = this;
  c->fd = fd;
  c->next = connections_;
  if (connections_ != nullptr) connections_->prev = c;
  connections_ = c;
  LoopStats::Add(worker_.stats_->active, 1);
  MarkDirty(c);  // arm its receive
  if (options_.proxy_protocol) c->proxy = new ProxyState;
  if (tls_ == nullptr) {
    StartSession(c);
    return c;
  }
  std::shared_ptr<const TlsContext> context = tls_->Current();
  c->tls = TlsStream::Create(context, c).release();
  c->session = std::make_unique<TlsHandshake>();
  c->deadline_ms =
      worker_.now_ms() + absl::ToInt64Milliseconds(context->options().handshake_timeout);
  if (c->tls == nullptr) Abort(c);  // out of memory
  return c;
}

void Loop::StartSession(ConnectionState* c) {
  c->deadline_ms = 0;  // the handshake's
  c->session = protocol_->NewSession(*c);
  if (worker_.draining_) {
    // Accepted after BeginDrain (io_uring: the accept completed before its cancel did), or
    // its handshake ended after: told at once, as BeginDrain told the others, or it would hold
    // the drain up while idle.
    c->session->OnDrain(*c);
    AfterSession(c);
  }
}

bool Loop::OpenTls(ConnectionState* c, std::string_view& bytes) {
  size_t used = 0;
  const bool handshaking = !c->tls->established();
  TlsStream::Event event = c->tls->Open(bytes, tls_plain_, &used);
  bytes = std::string_view(tls_plain_.data(), used);
  // The handshake's answer, an alert, tickets: queued as a session's output is, so the send
  // timeout counts from now (a burst of handshakes can hold it past a tick before it goes).
  if (c->pending_output() > 0) {
    AfterSession(c);
    urgent_ = urgent_ || handshaking;  // see TakeUrgent
  }
  if (!FlushKernelTls(c)) event = TlsStream::Event::kFailed;
  // The receive that ends the handshake may end the input too (the client's Finished, a
  // request and its close_notify in one read): the session is made all the same, for the
  // request.
  if (handshaking && event != TlsStream::Event::kFailed && c->tls->established()) {
    LoopStats::Add(worker_.stats_->tls_handshakes, 1);
    // The handshake's scratch (OpenSSL's messages, records and keys, tens of KiB) is free
    // now, in malloc's lists between the connections that stay: counted, so that once
    // handshakes stop for a tick the loop's trim gives those pages back (Loop::Tick): some
    // 0.6 KiB of each idle TLS connection's resident cost.
    freed_bytes_ += kTlsHandshakeScratch;
    if (c->tls->info().resumed) LoopStats::Add(worker_.stats_->tls_resumed, 1);
    StartSession(c);
  }
  switch (event) {
    case TlsStream::Event::kNone:
    case TlsStream::Event::kEstablished:
      break;
    case TlsStream::Event::kPeerClosed:
      return true;
    case TlsStream::Event::kFailed:
      // The alert OpenSSL wrote goes out, then the socket closes.
      if (!c->tls->established()) LoopStats::Add(worker_.stats_->tls_failures, 1);
      bytes = {};
      RequestClose(c, false);
      break;
  }
  return false;
}

bool Loop::FlushKernelTls(ConnectionState* c) {
  // Kernel TLS: the key OpenSSL handed over, and the records it wrote since (TLS 1.3's tickets
  // after the client's Finished, TLS 1.2's Finished), go once nothing sealed before them is
  // unsent. While output waits, IoBuffers::Prepare() sends them ahead of it instead.
  if (c->tls == nullptr || !c->tls->kernel_backlog() || c->pending_output() > 0 ||
      c->send_inflight) {
    return true;
  }
  return c->tls->SendToKernel();
}

bool Loop::KernelHoldsOutput(ConnectionState* c) {
  // Kernel TLS: a record TCP had no room for when the send completed waits in the kernel's TLS
  // layer, which pushes it once acknowledgements make room; a FIN or a close before that cuts
  // it off. Room comes long before TCP holds nothing unacknowledged, so until then the close
  // waits, a tick at a time (Tick), within the linger time.
  int unacknowledged = 0;
  if (ioctl(c->fd, SIOCOUTQ, &unacknowledged) != 0 || unacknowledged == 0) return false;
  if (c->deadline_ms == 0) c->deadline_ms = worker_.now_ms() + linger_ms_;
  return true;
}

void Loop::HandOver(ConnectionState* c, std::unique_ptr<Session> next) {
  if (c->closing() || c->handing_over) return;
  c->handing_over = true;
  c->deadline_ms = 0;
  // Whatever is read from now on waits for the successor, as when a session holds its input.
  if (!c->paused) c->held = true;
  successors_.emplace_back(c, std::move(next));
  MarkDirty(c);
}

void Loop::TakeSuccessors() {
  // Outside every call into a session: the sessions replaced are not on the stack.
  std::vector<std::pair<ConnectionState*, std::unique_ptr<Session>>> successors;
  successors.swap(successors_);
  for (auto& [c, next] : successors) {
    c->handing_over = false;
    if (c->closing()) continue;  // `next` goes unused
    c->session = std::move(next);
    c->held = false;
    c->session->OnTakeOver(*c);
    AfterSession(c);
    if (worker_.draining_ && !c->closing()) {
      c->session->OnDrain(*c);
      AfterSession(c);
    }
    ScheduleResume(c);  // the bytes the old session left, and a FIN read meanwhile
    MarkDirty(c);       // read again
  }
}

}  // namespace percore
