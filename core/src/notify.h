// The systemd notification protocol, spoken directly (no libsystemd): datagrams such as
// "READY=1" sent to the unix socket named by $NOTIFY_SOCKET ("@name" for the abstract namespace).
#ifndef PERCORE_SRC_NOTIFY_H_
#define PERCORE_SRC_NOTIFY_H_

#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace percore {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC; without NOTIFY_SOCKET every call does nothing.
  SystemdNotifier();
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  bool enabled() const { return fd_ >= 0; }
  // Sends one state line ("READY=1", "STOPPING=1"). Failures are ignored: the service manager
  // is an observer, and a server must not stop serving because it is gone.
  void Send(std::string_view state);
  // How often to send WATCHDOG=1: half of WATCHDOG_USEC; zero if no watchdog is asked for.
  absl::Duration watchdog_interval() const { return watchdog_interval_; }

 private:
  int fd_ = -1;
  std::string path_;  // sun_path, with a leading NUL for the abstract namespace
  absl::Duration watchdog_interval_;
};

}  // namespace percore

#endif  // PERCORE_SRC_NOTIFY_H_
