// The private I/O backend interface: one per loop, working per loop iteration, not per I/O call.
//
// The loop keeps all connection state (what to read, what to send, when to close) and lists the
// connections whose state changed in Loop::dirty(). Once per iteration the backend turns those
// into kernel operations, waits, and reports what completed through Loop::On*() calls. The only
// virtual call on the request path is Iterate(), once per iteration.
#ifndef PERCORE_SRC_BACKEND_H_
#define PERCORE_SRC_BACKEND_H_

namespace percore {

class Connection;

class Backend {
 public:
  virtual ~Backend() = default;
  // Hands the kernel what the loop queued, waits until something completes, `timeout_ms` passes
  // or the loop is woken, and reports completions to the loop. Returns 0, or a negative errno
  // that the loop cannot survive.
  virtual int Iterate(int timeout_ms) = 0;
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
  // A connection the loop took over from its dead predecessor (Loop::Adopt), as if accepted.
  virtual void Adopted(Connection* c) = 0;
};

}  // namespace percore

#endif  // PERCORE_SRC_BACKEND_H_
