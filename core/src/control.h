// What the engine tells its loops. Written by the engine's threads, read by each loop once per
// iteration (relaxed loads: a flag seen one iteration late is fine, and the wake descriptor makes
// the loop look at once).
#ifndef PERCORE_SRC_CONTROL_H_
#define PERCORE_SRC_CONTROL_H_

#include <atomic>

namespace percore {

// Each loop instance reads two of these: the engine's, for every loop, and its own, so one
// instance can be retired (a rolling restart, a stuck loop replaced) while the others serve.
struct LoopControl {
  // Exit now, closing every connection.
  std::atomic<bool> stop{false};
  // Stop accepting, let requests in flight finish (their responses close their connections),
  // close idle connections, and exit once no connection is left.
  std::atomic<bool> draining{false};
  // Set by the loop (in its own control) once it has stopped accepting: when every loop has,
  // the engine closes the listening sockets, so new connections are refused instead of waiting
  // in a queue no loop reads.
  std::atomic<bool> stopped_accepting{false};
};

}  // namespace percore

#endif  // PERCORE_SRC_CONTROL_H_
