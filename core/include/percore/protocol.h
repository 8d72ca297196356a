// percore/protocol.h — the boundary between the engine and a protocol such as HTTP.
//
// The engine knows nothing about HTTP. Each loop asks a ProtocolFactory, once, on the loop's own
// thread, for a Protocol; the Protocol makes one Session per accepted connection. The loop hands
// the Session every batch of bytes it receives and sends whatever the Session appended to
// Connection::output() once the current batch of completions has been handled.
//
//   class Echo : public percore::Session {
//     size_t OnData(percore::Connection& c, std::string_view bytes) override {
//       c.output().append(bytes);
//       return bytes.size();
//     }
//     void OnDeadline(percore::Connection& c) override { c.Close(); }
//   };
//   class EchoProtocol : public percore::Protocol {
//     std::unique_ptr<percore::Session> NewSession(percore::Connection&) override {
//       return std::make_unique<Echo>();
//     }
//   };
//   auto engine = percore::Engine::Create(options, [](percore::Worker&) {
//     return std::make_unique<EchoProtocol>();
//   });
//
// Everything here is owning-loop-only: a Connection, its Session and the Worker belong to one
// loop thread and must not be touched from another.
#ifndef PERCORE_PROTOCOL_H_
#define PERCORE_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "percore/tls.h"

namespace percore {

class Loop;
class Connection;
class EngineStats;
class PostQueue;
struct LoopStats;

// A handle to one Worker (one loop) that any thread may keep, copy and use, even after the loop
// is gone (Worker::ref()): the way work done elsewhere comes back to the loop that owns its
// connection.
class WorkerRef {
 public:
  WorkerRef() = default;
  // Runs `fn` on the loop soon, after every job posted before it, exactly once. Returns false,
  // and destroys `fn` unrun on the calling thread, once the loop has exited (a restarted loop is
  // another loop) or for an empty WorkerRef. Thread-safe.
  bool Post(absl::AnyInvocable<void()> fn) const;
  // Whether the calling thread is the loop's own. Thread-safe.
  bool OnWorkerThread() const;

 private:
  friend class Loop;
  explicit WorkerRef(std::shared_ptr<PostQueue> queue) : queue_(std::move(queue)) {}
  std::shared_ptr<PostQueue> queue_;
};

// Identifies a timer of one loop (Worker::After); 0 is none.
using TimerId = uint64_t;
// Identifies a watched descriptor of one loop (Worker::Watch); 0 is none.
using WatchId = uint64_t;
// What Worker::Watch waits for, and what its callback is told: a bit set.
enum WatchEvent : uint32_t {
  kReadable = 1,  // also an error or hang-up, which a read then reports
  kWritable = 2,
};

class Worker;
namespace testing {
// Fault injection for tests and demos (percore/testing/fault.h).
void CrashLoop(Worker& worker, std::string_view reason);
}  // namespace testing

// The loop a protocol runs on, as protocol code sees it. Owning-loop-only.
class Worker {
 public:
  // Stable id of this loop (0..threads-1); a restarted loop keeps its id.
  int id() const { return id_; }
  // The CPU this loop is pinned to.
  int cpu() const { return cpu_; }
  // Monotonic milliseconds, read when the loop's wait returns.
  int64_t now_ms() const { return now_ms_; }
  // This loop's counters (written only by this loop; see percore/stats.h).
  LoopStats& stats() const { return *stats_; }
  // Every loop's counters and the engine's readiness, for health and metrics endpoints.
  const EngineStats& engine_stats() const { return *engine_stats_; }
  // Whether the engine is shutting down gracefully: finish what is in flight, keep nothing open.
  bool draining() const { return draining_; }
  // A handle to this loop for other threads: ref().Post(fn) runs fn here. Thread-safe.
  const WorkerRef& ref() const { return ref_; }
  // Runs `fn` on this loop once `delay` has passed: the loop's wait is bounded by its nearest
  // timer, to the microsecond. Cheap to arm and cancel by the tens of thousands. An exception that
  // escapes `fn` is logged (at most a line a second per loop) and counted
  // (percore_callback_failures_total), and the loop goes on; so for Post() and Watch() callbacks.
  // Owning-loop-only.
  TimerId After(absl::Duration delay, absl::AnyInvocable<void()> fn);
  // Cancels a timer that has not run; false if it ran, was cancelled or never was. `fn` is
  // destroyed at once. Owning-loop-only.
  bool Cancel(TimerId timer);
  // Calls `fn(ready)` on this loop each time `fd` is ready for some of `events` (WatchEvent
  // bits), level-triggered, until Unwatch(): the way an asynchronous client library (libpq,
  // hiredis, c-ares, curl's multi interface) runs on the loop instead of a thread of its own.
  // The descriptor stays the caller's: Unwatch() it before closing it. Returns 0 if the
  // backend refuses the descriptor. Owning-loop-only.
  WatchId Watch(int fd, uint32_t events, absl::AnyInvocable<void(uint32_t ready)> fn);
  // Stops watching; `fn` is not called again (it may be running: it is destroyed once it
  // returns). False if `watch` is not watched. Owning-loop-only.
  bool Unwatch(WatchId watch);

 private:
  friend class Loop;
  friend void testing::CrashLoop(Worker& worker, std::string_view reason);
  Worker(Loop* loop, int id, int cpu, LoopStats* stats, const EngineStats* engine_stats)
      : loop_(loop), id_(id), cpu_(cpu), stats_(stats), engine_stats_(engine_stats) {}
  Loop* loop_;
  WorkerRef ref_;
  int id_;
  int cpu_;
  LoopStats* stats_;
  const EngineStats* engine_stats_;
  int64_t now_ms_ = 0;
  bool draining_ = false;
};

// The per-connection half of a protocol. Created by Protocol::NewSession, destroyed by the loop
// when the connection is released. Owning-loop-only.
class Session {
 public:
  virtual ~Session() = default;
  // Bytes received on `conn`. `bytes` is valid only during the call (it is a receive buffer the
  // loop reuses at once): copy whatever must outlive it. Returns how many of them the session
  // took: all, or fewer when it can take no more for now. The loop then stops reading and
  // keeps the rest, and hands it to OnData again once it may: when Connection::output_full()
  // made the session stop, once the output has been sent (meanwhile the connection's deadline
  // does not run); otherwise (the session waits for something, such as an answer that comes
  // later) once the session calls Connection::Resume().
  virtual size_t OnData(Connection& conn, std::string_view bytes) = 0;
  // The deadline set with Connection::SetDeadline has passed.
  virtual void OnDeadline(Connection& conn) = 0;
  // The peer shut down its sending side. The default closes once pending output is sent.
  virtual void OnPeerClosed(Connection& conn);
  // The engine started draining (Worker::draining()). The default closes the connection once
  // pending output is sent; a protocol with a request in flight finishes it first.
  virtual void OnDrain(Connection& conn);
  // The output has all been sent after Connection::NotifyWritable() asked for this call.
  virtual void OnWritable(Connection& conn) {}
  // This session takes the connection over from another (Connection::HandTo): called once,
  // before any other call.
  virtual void OnTakeOver(Connection& conn) {}
  // Whether a fresh session could take this connection over as it is: nothing of a request
  // received and unanswered (an idle keep-alive connection). When a loop dies, such
  // connections with no output pending go to the loop that replaces it, instead of being
  // closed (never a TLS connection, nor one that began with a PROXY header). The default: never.
  virtual bool Idle() const { return false; }
};

// The per-loop half of a protocol. Owning-loop-only.
class Protocol {
 public:
  virtual ~Protocol() = default;
  // A new connection was accepted; return its session (never null).
  virtual std::unique_ptr<Session> NewSession(Connection& conn) = 0;
  // Called about every EngineOptions::tick_interval, and once more before the loop exits.
  virtual void OnTick() {}
};

// Makes the Protocol of one loop; called on that loop's thread. Must be callable from any thread.
using ProtocolFactory = std::function<std::unique_ptr<Protocol>(Worker& worker)>;

// The peer of a connection (Connection::peer()).
struct PeerAddress {
  std::string ip;  // "127.0.0.1", "::1"; empty if the socket could not say
  uint16_t port = 0;
};

// One accepted TCP connection, as a protocol sees it: a handle to state the loop keeps. Valid
// until the loop releases it, which is never during a call into its Session. Owning-loop-only.
class Connection {
 public:
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The buffer to append bytes to send. The loop sends it after the current batch of
  // completions, in one send, and never has two sends in flight on the socket.
  std::string& output();
  // Queues `length` bytes of the file `fd` from `offset` after what output() holds, to be sent
  // without a copy through user space (sendfile, or splice on io_uring); bytes appended to
  // output() afterwards follow them. The connection owns `fd` from here on and closes it once
  // sent or when the connection goes. The bytes count in pending_output() until sent. A file
  // shorter than `length` fails the connection (the peer was promised the bytes).
  void SendFile(int fd, uint64_t offset, uint64_t length);
  // Closes gracefully: pending output is sent first, then the loop half-closes and releases the
  // connection when the peer closes too (or after EngineOptions::linger_timeout). Bytes received
  // after Close() are discarded. With `linger` false (for a peer that said it sends nothing more,
  // as HTTP's "Connection: close" does, and has sent nothing more) the socket is closed as soon as
  // the output is sent, without waiting for the peer's FIN; bytes the peer sends anyway make the
  // kernel answer with a reset. Idempotent; Close(false) after Close() drops the linger.
  void Close(bool linger = true);
  // Whether more than EngineOptions::max_pending_output bytes wait to be sent: the loop reads
  // nothing more from this connection until they are sent, and a session should take no more
  // work from the bytes it was given (see Session::OnData).
  bool output_full() const;
  // Asks for one Session::OnWritable call once everything in the output has been sent: for a
  // session that produces a large answer piece by piece and stops at output_full().
  void NotifyWritable();
  // For a session acting outside a call from the loop (from a timer, a posted job): sends what
  // it appended to output() (or closes, after Close()), and, if OnData took fewer bytes than it
  // was given for a reason of its own, hands it the rest from the loop's next iteration and
  // reads again.
  void Resume();
  // Whether Close() was called or the connection failed.
  bool closing() const;
  // Calls Session::OnDeadline once the loop's clock passes `deadline_ms` (Worker::now_ms()
  // scale, checked every tick) and no output is waiting to be sent (while it is, the peer is
  // the one not reading, and EngineOptions::send_timeout governs); 0 cancels. One deadline per
  // connection; ignored once closing.
  void SetDeadline(int64_t deadline_ms);
  // The loop this connection belongs to.
  Worker& worker() const;
  // Bytes appended to output() (and queued with SendFile()) and not yet taken by the kernel.
  size_t pending_output() const;
  // The peer's address, asked of the kernel (getpeername).
  PeerAddress peer() const;
  // The client's address: with EngineOptions::proxy_protocol, the source address of the
  // connection's PROXY header when the header named one (not LOCAL or UNKNOWN, as a proxy's
  // health check sends); otherwise peer().
  PeerAddress client() const;
  // What TLS negotiated, on a port that speaks it (percore/tls.h); nullopt for plain TCP. A
  // session is made only once the handshake is done, so it always has this.
  std::optional<TlsInfo> tls() const;
  // Hands the connection to another protocol's session, as HTTP/1.1 does to WebSocket after its
  // 101. As soon as the read during which it is called is handled (before what the caller wrote
  // is sent), or, called from elsewhere, at the loop's next turn, `next` is the connection's
  // session and the caller is destroyed; until then the loop keeps what it reads for `next`.
  // The bytes the caller did not take from OnData go to `next`, then everything after: reads,
  // the peer's FIN, the drain (a drain already begun is told to `next` after its
  // Session::OnTakeOver). The caller's deadline is cancelled, and SetDeadline does nothing until
  // `next` takes over. Does nothing (and destroys `next`) once closing. Owning-loop-only; the
  // caller takes no more bytes after it.
  void HandTo(std::unique_ptr<Session> next);

 protected:
  // Only the loop makes and destroys connections (see core/src/connection_state.h).
  Connection() = default;
  ~Connection() = default;
};

}  // namespace percore

#endif  // PERCORE_PROTOCOL_H_
