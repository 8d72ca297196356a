// The systemd notification protocol: datagrams to $NOTIFY_SOCKET, a path or an abstract name,
// and the watchdog interval from $WATCHDOG_USEC. Each test runs in its own process (ctest), so
// the environment it sets is its own.
#include "notify.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace percore {
namespace {

// A datagram socket bound to `name` (a leading '@': the abstract namespace), as systemd's.
class Receiver {
 public:
  explicit Receiver(const std::string& name) : fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::string path = name;
    if (path[0] == '@') path[0] = '\0';
    std::memcpy(address.sun_path, path.data(), path.size());
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&address),
                  static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size())) == 0;
  }
  ~Receiver() { close(fd_); }
  bool bound() const { return bound_; }
  // The next datagram, or nothing within 5 s.
  std::optional<std::string> Next() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return std::nullopt;
    char buffer[256];
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n < 0) return std::nullopt;
    return std::string(buffer, static_cast<size_t>(n));
  }

 private:
  int fd_;
  bool bound_ = false;
};

TEST(NotifyTest, WithoutNotifySocketNothingIsSent) {
  unsetenv("NOTIFY_SOCKET");
  setenv("WATCHDOG_USEC", "2000000", 1);
  SystemdNotifier notifier;
  EXPECT_FALSE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_interval(), absl::ZeroDuration());
  notifier.Send("READY=1");  // does nothing, and does not fail
}

TEST(NotifyTest, SendsStateLinesToASocketPath) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("percore-notify-" + std::to_string(getpid())))
          .string();
  unlink(path.c_str());
  Receiver receiver(path);
  ASSERT_TRUE(receiver.bound()) << path << ": " << strerror(errno);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  unsetenv("WATCHDOG_USEC");
  SystemdNotifier notifier;
  EXPECT_TRUE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_interval(), absl::ZeroDuration());
  notifier.Send("READY=1");
  notifier.Send("STOPPING=1");
  EXPECT_EQ(receiver.Next(), "READY=1");
  EXPECT_EQ(receiver.Next(), "STOPPING=1");
  unlink(path.c_str());
}

TEST(NotifyTest, AbstractSocketAndHalfTheWatchdogTimeout) {
  const std::string name = "@percore-notify-" + std::to_string(getpid());
  Receiver receiver(name);
  ASSERT_TRUE(receiver.bound()) << strerror(errno);
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  setenv("WATCHDOG_USEC", "3000000", 1);
  SystemdNotifier notifier;
  EXPECT_EQ(notifier.watchdog_interval(), absl::Milliseconds(1500));
  notifier.Send("WATCHDOG=1");
  EXPECT_EQ(receiver.Next(), "WATCHDOG=1");
}

TEST(NotifyTest, UnreadableWatchdogTimeoutAsksForNoWatchdog) {
  const std::string name = "@percore-notify-bad-" + std::to_string(getpid());
  Receiver receiver(name);
  ASSERT_TRUE(receiver.bound());
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  setenv("WATCHDOG_USEC", "soon", 1);
  SystemdNotifier notifier;
  EXPECT_TRUE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_interval(), absl::ZeroDuration());
}

}  // namespace
}  // namespace percore
