#include "listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace percore {
namespace {

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
};

absl::StatusOr<Address> ParseAddress(const std::string& address, int port) {
  Address out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out.length = sizeof(sockaddr_in);
    out.family = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    out.length = sizeof(sockaddr_in6);
    out.family = AF_INET6;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid listen address \"", address, "\": not an IPv4 or IPv6 literal"));
  }
  return out;
}

void SetPort(Address& address, int port) {
  if (address.family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&address.storage)->sin_port = htons(static_cast<uint16_t>(port));
  } else {
    reinterpret_cast<sockaddr_in6*>(&address.storage)->sin6_port =
        htons(static_cast<uint16_t>(port));
  }
}

absl::Status BindError(int err, const std::string& address, int port) {
  if (err == EADDRINUSE) {
    return absl::AlreadyExistsError(absl::StrCat("port ", port, " is already in use"));
  }
  return absl::ErrnoToStatus(err, absl::StrCat("bind ", address, ":", port));
}

// A socket bound to `address`; SO_REUSEPORT only when `reuse_port`.
absl::StatusOr<int> BoundSocket(const Address& address, bool reuse_port, const std::string& name,
                                int port) {
  int fd = socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  int one = 1;
  // SO_REUSEADDR: rebinding while old connections sit in TIME_WAIT is allowed.
  // TCP_NODELAY on the listener is inherited by every accepted socket (the kernel clones the
  // listener's tcp_sock), so no setsockopt per connection: responses are written whole, and Nagle
  // would only hold back the second of two pipelined responses for a delayed ACK.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
      (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
    int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, "setsockopt");
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) != 0) {
    int err = errno;
    close(fd);
    return BindError(err, name, port);
  }
  return fd;
}

absl::StatusOr<int> Listen(absl::StatusOr<int> fd, int backlog) {
  if (fd.ok() && listen(*fd, backlog) != 0) {
    int err = errno;
    close(*fd);
    return absl::ErrnoToStatus(err, "listen");
  }
  return fd;
}

}  // namespace

int BoundPort(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return -1;
  if (storage.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  if (storage.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  return -1;
}

absl::StatusOr<ListenerGroup> BindListeners(const std::string& address, int port, int count,
                                            int backlog) {
  absl::StatusOr<Address> addr = ParseAddress(address, port);
  if (!addr.ok()) return addr.status();

  // A SO_REUSEPORT bind succeeds next to another process's SO_REUSEPORT group of the same user,
  // silently sharing its traffic. A first bind without SO_REUSEPORT fails in that case, so a
  // port in use is reported instead of half-served. It also resolves port 0.
  absl::StatusOr<int> probe = BoundSocket(*addr, /*reuse_port=*/false, address, port);
  if (!probe.ok()) return probe.status();
  int bound_port = BoundPort(*probe);
  close(*probe);
  SetPort(*addr, bound_port);

  ListenerGroup group;
  group.port = bound_port;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<int> fd =
        Listen(BoundSocket(*addr, /*reuse_port=*/true, address, bound_port), backlog);
    if (!fd.ok()) {
      for (int open_fd : group.fds) close(open_fd);
      return fd.status();
    }
    group.fds.push_back(*fd);
  }
  return group;
}

}  // namespace percore
