// Listening sockets: one SO_REUSEPORT socket per loop, all bound to one address and port.
#ifndef PERCORE_SRC_LISTENER_H_
#define PERCORE_SRC_LISTENER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace percore {

struct ListenerGroup {
  std::vector<int> fds;  // the caller owns them
  int port = 0;          // the bound port (resolved when 0 was asked for)
};

// Binds `count` listening sockets to address:port with SO_REUSEPORT, so the kernel spreads new
// connections over them by a hash of the 4-tuple. Fails with a one-line message if the port is in
// use, including by another process's SO_REUSEPORT group.
absl::StatusOr<ListenerGroup> BindListeners(const std::string& address, int port, int count,
                                            int backlog);

// The port `fd` is bound to; -1 if it is not a bound socket.
int BoundPort(int fd);

}  // namespace percore

#endif  // PERCORE_SRC_LISTENER_H_
