// Loop: one event loop, on one pinned thread, with its own backend, connections and buffers.
#ifndef PERCORE_SRC_LOOP_H_
#define PERCORE_SRC_LOOP_H_

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "backend.h"
#include "connection_state.h"
#include "control.h"
#include "percore/options.h"
#include "percore/protocol.h"
#include "percore/stats.h"

namespace percore {

// What testing::CrashLoop throws: the one exception the loop lets kill it (from a callback too).
struct InjectedCrash : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class TlsSource;

class Loop {
 public:
  // `engine` and `own` hold the orders for every loop and for this instance, read once per
  // iteration; writing to `wake_fd` (an eventfd the engine owns) interrupts the loop's wait.
  // `stats` (this instance's counters within `engine_stats`) outlive the loop.
  Loop(int id, int cpu, const EngineOptions& options, int listen_fd, int wake_fd,
       const LoopControl* engine, LoopControl* own, LoopStats* stats, EngineStats* engine_stats);
  // Releases every connection; the backend is gone first, so no kernel operation still points
  // at a connection's buffers.
  ~Loop();

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Takes the backend (created on this thread for this loop: IORING_SETUP_SINGLE_ISSUER ties
  // a ring to its creator) and makes the protocol. Must run on the loop's thread.
  absl::Status Init(const ProtocolFactory& factory, std::unique_ptr<Backend> backend);
  // Serves until the engine says stop, or says drain and the last connection is gone; then
  // closes every connection. Returns why the loop died, if it did: the backend's fatal error,
  // or an exception that escaped the loop's own code (a session's exceptions are its own).
  absl::Status Run();
  Worker& worker() { return worker_; }
  const EngineOptions& options() const { return options_; }
  int listen_fd() const { return listen_fd_; }
  int wake_fd() const { return wake_fd_; }

  // The work of one turn besides the backend's: the tick if due, posted jobs, due timers,
  // resumed connections, removed watches. Run() calls it each turn; so does the test harness.
  void RunDue();
  // The wait's bound in microseconds: to the next tick or timer, or 0 when work is ready.
  int64_t WaitUs() const;

  // What was freed since the last trim (Tick gives it back once nothing more is freed).
  size_t freed_bytes() const { return freed_bytes_; }
  // ---- Called by the backend, on the loop thread ----
  // Reads the clock into Worker::now_ms(). The backend calls it when its wait returns, so
  // deadlines set while completions are handled start from the time they arrived.
  void UpdateClock();
  // The backend is about to wait for the kernel: the loop is not busy (see
  // LoopStats::busy_since_ms); UpdateClock() marks it busy again when the wait returns.
  void BeginWait() { worker_.stats_->busy_since_ms.store(0, std::memory_order_relaxed); }
  // A new connection. The loop owns `fd` from here on; null if the loop is stopping.
  ConnectionState* OnAccepted(int fd);
  // Makes every connection speak TLS with `source`'s current certificates. Before Init().
  void UseTls(const TlsSource* source) { tls_ = source; }
  // Serves the idle connections a dead predecessor left (TakeOrphans()). After Init().
  void Adopt(const std::vector<int>& fds);
  // After Run() returned because the loop died: the sockets of its idle connections, which
  // were not closed, for the loop that replaces it.
  std::vector<int> TakeOrphans() { return std::move(orphans_); }
  // Bytes received on `c`; valid only during the call.
  void OnReceived(ConnectionState* c, std::string_view bytes);
  // The armed receive ended: 0 is the peer's FIN; a positive count (a multishot receive the
  // kernel ended after delivering bytes), -ENOBUFS and -ECANCELED only end this receive (the
  // loop re-arms it if still wanted); any other negative errno fails `c`.
  void OnReceiveEnded(ConnectionState* c, int result);
  // The send of c's current output part (IoBuffers::bytes() or file()) completed with `result`
  // bytes or a negative errno.
  void OnSent(ConnectionState* c, int result);
  // Connections whose state changed since the backend last looked; the backend clears it.
  std::vector<ConnectionState*>& dirty() { return dirty_; }
  // Whether connections wait for the loop's next turn (resumed, or handed over): a backend that
  // calls into sessions before it waits (epoll writes synchronously, and a send that completes
  // may resume a connection) must not sleep on them.
  bool HasResumed() const { return !resumed_.empty() || !successors_.empty(); }
  // Whether a connection's output should go before the loop turns to the next completion or
  // connection (and forgets it was asked): set when a TLS handshake step wrote its answer. A
  // handshake costs the CPU a fraction of a millisecond, and a batch of them answered only at
  // the end of the loop's turn would keep each client waiting for all of them.
  bool TakeUrgent() {
    if (!urgent_) return false;  // a load per completion, no store, on the plain path
    urgent_ = false;
    return true;
  }
  // Whether `c` should have a receive armed. Not after Close(false): the peer sends nothing more.
  static bool WantsRead(const ConnectionState* c) {
    return !c->releasing() && !c->peer_eof && !c->paused && !c->held &&
           c->life != Lifecycle::kClosingNow;
  }
  // Whether `c` has bytes to send and no send in flight.
  static bool WantsSend(const ConnectionState* c) {
    return !c->releasing() && !c->send_inflight && c->pending_output() > 0;
  }
  // Flags for sending c's output. The last output before a close goes with MSG_MORE: the kernel
  // holds the tail of it back (like TCP_CORK) until the close or half-close that follows as soon
  // as the send completes, and puts the FIN on that same segment: one packet to send, and for
  // the peer one to receive and acknowledge, instead of two.
  static int SendFlags(const ConnectionState* c) {
    // MSG_MORE lets the last answer share a packet with the FIN. Not under kernel TLS, which
    // would hold the record open for more and might never seal it if no close_notify follows.
    return c->closing() && !c->kernel_tls ? MSG_NOSIGNAL | MSG_MORE : MSG_NOSIGNAL;
  }
  // Moves a graceful close forward once output is sent: half-close, or release.
  void AdvanceClose(ConnectionState* c);
  // Kernel TLS: whether the kernel may still hold output that a FIN would cut off.
  bool KernelHoldsOutput(ConnectionState* c);
  // Closes the socket and destroys the connection. Only when nothing is in flight on it.
  void Release(ConnectionState* c);
  // Fails the connection: pending output is dropped, in-flight operations are cancelled, and
  // it is released once they complete.
  void Abort(ConnectionState* c);
  // Queues `c` for the backend (once per iteration).
  void MarkDirty(ConnectionState* c) {
    if (!c->dirty) {
      c->dirty = true;
      dirty_.push_back(c);
    }
  }
  // The connection's deadline passed: ends a linger, or tells the session. Tick() calls it;
  // tests call it directly.
  void ExpireDeadline(ConnectionState* c);
  // Stops accepting and tells every session the loop is draining. Run() calls it when the
  // engine drains; tests call it directly.
  void BeginDrain();
  // Called by Connection.
  void TakeBuffers(ConnectionState* c);
  void RequestClose(ConnectionState* c, bool linger);
  void Resume(ConnectionState* c);
  void HandOver(ConnectionState* c, std::unique_ptr<Session> next);
  // Called by Worker.
  TimerId AddTimer(absl::Duration delay, absl::AnyInvocable<void()> fn);
  bool CancelTimer(TimerId id);
  WatchId AddWatch(int fd, uint32_t events, absl::AnyInvocable<void(uint32_t)> fn);
  bool RemoveWatch(WatchId id);
  // Called by the backend: `w` is ready for `ready` (WatchEvent bits).
  void OnWatchReady(Watch* w, uint32_t ready);
  // testing::CrashLoop: the loop dies with `reason` once the current session call returns.
  void InjectCrash(std::string reason) { crash_reason_ = std::move(reason); }

 private:
  void Tick();
  // Runs the jobs posted from other threads, then the timers that are due.
  void RunPosted();
  void RunTimers();
  // Runs a posted job's, a timer's or a watch's callback (`what`): an exception it throws is
  // counted (LoopStats::callback_failures), logged at most once a second, and goes no further.
  void Guarded(std::string_view what, absl::FunctionRef<void()> fn);
  void CallbackFailed(std::string_view what, std::string_view error);
  // Queues `c` to get its unread bytes once neither the output limit nor the session holds them.
  void ScheduleResume(ConnectionState* c);
  void DeliverResumed();
  // Puts the sessions handed over (HandOver) in their connections' place, destroying the old.
  void TakeSuccessors();
  // The peer's FIN, for the session once every byte before it was delivered.
  void TellPeerClosed(ConnectionState* c);
  // Gives the output back to the pool once nothing waits in it.
  void MaybeReleaseBuffers(ConnectionState* c);
  // Makes the Connection of an accepted or adopted socket.
  ConnectionState* AddConnection(int fd);
  // Gives `c` the protocol's session: at once, or once its TLS handshake is done.
  void StartSession(ConnectionState* c);
  // Decrypts `bytes` in place (a view of the loop's plaintext buffer, empty if none): the
  // handshake's progress, the session it starts, a failure that closes. True if the peer sent
  // its close_notify after them.
  bool OpenTls(ConnectionState* c, std::string_view& bytes);
  // Kernel TLS: sends what TlsStream holds for the kernel if nothing is unsent before it.
  // False if the kernel refused it: the connection fails.
  bool FlushKernelTls(ConnectionState* c);
  // EngineOptions::proxy_protocol: takes the PROXY header off the start of `bytes`, keeping a
  // header cut short for the next read. True once it is done and bytes follow it (`bytes` is
  // then those); false while `bytes` was all header, or if the header is bad (it closes).
  bool TakeProxyHeader(ConnectionState* c, std::string_view& bytes);
  // OnReceived's plaintext: to the session, or kept while it cannot take them.
  void Deliver(ConnectionState* c, std::string_view bytes);
  // Hands `bytes` to the session; returns how many it took.
  size_t Offer(ConnectionState* c, std::string_view bytes);
  // The session took less than it was given: stop reading until the output is sent (paused)
  // or the session resumes (held).
  void Hold(ConnectionState* c);
  // After any call into a session: queue output, pause reading past the output limit.
  void AfterSession(ConnectionState* c);
  // Gives c's output buffers back to the pool.
  void ReleaseBuffers(ConnectionState* c);
  // Ends every connection; after a death (`died`), the idle ones are kept for the successor.
  void Shutdown(bool died);

  Worker worker_;
  const EngineOptions& options_;
  const int listen_fd_;
  const int wake_fd_;
  bool Stopping() const {
    return engine_->stop.load(std::memory_order_relaxed) ||
           own_->stop.load(std::memory_order_relaxed);
  }
  bool Draining() const {
    return engine_->draining.load(std::memory_order_relaxed) ||
           own_->draining.load(std::memory_order_relaxed);
  }

  const LoopControl* engine_;
  LoopControl* own_;  // read, but for stopped_accepting
  std::unique_ptr<Protocol> protocol_;
  const TlsSource* tls_ = nullptr;  // null: plain TCP
  std::string tls_plain_;           // what a receive decrypts to; kept at its largest size
  std::unique_ptr<Backend> backend_;
  Backend::ConnectionDeleter delete_connection_ = nullptr;
  ConnectionState* connections_ = nullptr;  // intrusive list head
  bool shutting_down_ = false;              // Shutdown() began: nothing new is taken on
  std::vector<ConnectionState*> dirty_;
  std::optional<std::string> crash_reason_;  // testing::CrashLoop
  ConnectionState* in_session_ = nullptr;    // whose session Deliver() is calling
  std::vector<ConnectionState*> resumed_;    // see ScheduleResume()
  // Connection::HandTo(): the sessions to take over, after the call that asked it returns.
  std::vector<std::pair<ConnectionState*, std::unique_ptr<Session>>> successors_;
  std::vector<absl::AnyInvocable<void()>> posted_;  // the batch RunPosted() is running
  int64_t callback_failure_logged_ms_ = 0;
  uint64_t callback_failures_unlogged_ = 0;
  // Timers: a min-heap of (due, id) over the live callbacks by id. A cancelled timer leaves its
  // heap entry, skipped when it comes up (or dropped when the heap is rebuilt).
  // Due times are in microseconds of the monotonic clock: a timer runs when due, not up to a
  // millisecond late, as the loop's millisecond clock would have it.
  struct TimerEntry {
    int64_t due_us;
    TimerId id;
    bool operator>(const TimerEntry& o) const {
      return due_us != o.due_us ? due_us > o.due_us : id > o.id;
    }
  };
  std::vector<TimerEntry> timer_heap_;
  absl::flat_hash_map<TimerId, absl::AnyInvocable<void()>> timers_;
  TimerId last_timer_ = 0;
  // Watched descriptors by id; removed ones stay until the backend lets go (FreeWatches()).
  absl::flat_hash_map<WatchId, std::unique_ptr<Watch>> watches_;
  std::vector<WatchId> removed_watches_;
  WatchId last_watch_ = 0;
  void FreeWatches();
  std::vector<int> orphans_;                             // see TakeOrphans()
  std::vector<std::unique_ptr<IoBuffers>> buffer_pool_;  // reused across responses
  bool urgent_ = false;                                  // see TakeUrgent
  size_t freed_bytes_ = 0;  // large output buffers and TLS handshakes freed since the last trim
  // Roughly what OpenSSL allocates for a handshake and frees when it ends or is abandoned.
  static constexpr size_t kTlsHandshakeScratch = 32 * 1024;
  size_t freed_at_last_tick_ = 0;
  int64_t next_tick_ms_ = 0;
  const int64_t tick_ms_;
  const int64_t linger_ms_;
};

}  // namespace percore

#endif  // PERCORE_SRC_LOOP_H_
