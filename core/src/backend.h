// The private I/O backend interface: one per loop, working per loop iteration, not per I/O call.
//
// The loop keeps the connection state every backend shares (what to read, what to send, when to
// close: ConnectionState) and lists the connections whose state changed in Loop::dirty(). Once per
// iteration the backend turns those into kernel operations, waits, and reports what completed
// through Loop::On*() calls. The only virtual call on the request path is Iterate(), once per
// iteration.
#ifndef PERCORE_SRC_BACKEND_H_
#define PERCORE_SRC_BACKEND_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "connection_state.h"
#include "percore/protocol.h"

namespace percore {

// A descriptor watched for readiness (Worker::Watch). Owned by the loop; a removed one is
// freed once no operation of the backend's points to it (`armed` false).
struct Watch {
  WatchId id = 0;
  int fd = -1;
  uint32_t events = 0;  // WatchEvent bits
  absl::AnyInvocable<void(uint32_t ready)> fn;
  bool removed = false;
  bool armed = false;  // io_uring: a poll is in flight
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Hands the kernel what the loop queued, waits until something completes, `timeout_us` passes
  // or the loop is woken, and reports completions to the loop. Returns 0, or a negative errno
  // that the loop cannot survive.
  virtual int Iterate(int64_t timeout_us) = 0;
  // Stops accepting: cancels the listener's operation for good. The socket stays open.
  virtual void StopAccepting() = 0;
  // Stops accepting and waking: cancels the listener's and the wake descriptor's operations.
  // The listening socket itself stays open (the engine owns it).
  virtual void CancelLoopOperations() = 0;
  // True when the backend holds no operation of its own (accept, wake) in flight.
  virtual bool Idle() const = 0;
  // True while an accept is in flight: after StopAccepting() one may still complete with a
  // connection the kernel took from the queue, which the loop must then serve.
  virtual bool Accepting() const = 0;
  // A connection's state, of the backend's own type (derived from ConnectionState, with the
  // flags only this backend needs); the loop fills it in, and destroys it with the deleter,
  // a plain function that outlives the backend (the loop's last connections go after it).
  virtual ConnectionState* NewConnection() = 0;
  using ConnectionDeleter = void (*)(ConnectionState*);
  virtual ConnectionDeleter connection_deleter() const = 0;
  // A connection the loop took over from its dead predecessor (Loop::Adopt), as if accepted.
  virtual void Adopted(ConnectionState* c) = 0;
  // Starts and stops watching `w->fd`, reporting readiness through Loop::OnWatchReady. Add
  // returns false if the descriptor cannot be watched. After Remove, nothing is reported and
  // `w->armed` goes false once the kernel holds nothing of it.
  virtual bool AddWatch(Watch* w) = 0;
  virtual void RemoveWatch(Watch* w) = 0;
};

}  // namespace percore

#endif  // PERCORE_SRC_BACKEND_H_
