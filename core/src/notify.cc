#include "notify.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"

namespace percore {

SystemdNotifier::SystemdNotifier() {
  const char* socket_name = getenv("NOTIFY_SOCKET");
  if (socket_name == nullptr || socket_name[0] == '\0') return;
  path_ = socket_name;
  if (path_[0] == '@') path_[0] = '\0';  // abstract namespace
  if (path_.size() >= sizeof(sockaddr_un::sun_path)) return;
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  uint64_t usec = 0;
  const char* watchdog = getenv("WATCHDOG_USEC");
  if (watchdog != nullptr && absl::SimpleAtoi(watchdog, &usec) && usec > 0) {
    watchdog_interval_ = absl::Microseconds(usec) / 2;
  }
}

SystemdNotifier::~SystemdNotifier() {
  if (fd_ >= 0) close(fd_);
}

void SystemdNotifier::Send(std::string_view state) {
  if (fd_ < 0) return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path_.copy(address.sun_path, path_.size());
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
  [[maybe_unused]] ssize_t sent = sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL,
                                         reinterpret_cast<sockaddr*>(&address), length);
}

}  // namespace percore
