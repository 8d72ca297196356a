// What the engine tells its loops. Written by the engine's threads, read by each loop once per
// iteration (relaxed loads: a flag seen one iteration late is fine, and the wake descriptor makes
// the loop look at once).
#ifndef PERCORE_SRC_CONTROL_H_
#define PERCORE_SRC_CONTROL_H_

#include <atomic>

namespace percore {

struct LoopControl {
  // Exit now, closing every connection.
  std::atomic<bool> stop{false};
  // Stop accepting, let requests in flight finish (their responses close their connections),
  // close idle connections, and exit once no connection is left.
  std::atomic<bool> draining{false};
  // Loops that have stopped accepting since the drain began: once all have, the engine closes
  // the listening sockets, so new connections are refused instead of waiting in a queue no
  // loop reads.
  std::atomic<int> stopped_accepting{0};
};

}  // namespace percore

#endif  // PERCORE_SRC_CONTROL_H_
