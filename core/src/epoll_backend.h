// The epoll backend, for where io_uring is blocked (Docker's default seccomp profile, RHEL 9's
// kernel.io_uring_disabled) or too old. Same per-loop design as io_uring: edge-triggered
// readiness for every connection registered once, nonblocking accept in batches, reads into one
// loop-owned buffer (an idle connection holds none), one write per connection per iteration,
// resumed on EPOLLOUT after a partial write.
#ifndef PERCORE_SRC_EPOLL_BACKEND_H_
#define PERCORE_SRC_EPOLL_BACKEND_H_

#include <sys/epoll.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "backend.h"

namespace percore {

class Loop;

// What this backend keeps per connection, beside the loop's state.
struct EpollConnection final : ConnectionState {
  bool readable : 1 = false;  // the socket may have unread bytes
  bool peer_hup : 1 = false;  // the peer's FIN (or an error) was reported
};
static_assert(sizeof(EpollConnection) == sizeof(ConnectionState), "in the tail padding");

class EpollBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(Loop& loop);
  ~EpollBackend() override;

  int Iterate(int64_t timeout_us) override;
  void StopAccepting() override;
  void CancelLoopOperations() override;
  bool Idle() const override { return true; }
  bool Accepting() const override { return false; }  // accept4() returns at once
  ConnectionState* NewConnection() override { return new EpollConnection; }
  ConnectionDeleter connection_deleter() const override {
    return [](ConnectionState* c) { delete static_cast<EpollConnection*>(c); };
  }
  void Adopted(ConnectionState* c) override { Register(static_cast<EpollConnection*>(c)); }
  bool AddWatch(Watch* w) override;
  void RemoveWatch(Watch* w) override;

 private:
  explicit EpollBackend(Loop& loop);
  absl::Status Init();
  void Reconcile(EpollConnection* c);
  // Sends the current output part: bytes, or a file range with sendfile().
  void Write(EpollConnection* c);
  // Reads what `c` has, up to a fair share per iteration; true if more may be left.
  bool Read(EpollConnection* c);
  void AcceptBatch();
  // Registers a new connection's socket.
  void Register(EpollConnection* c);
  void WatchListener(bool on);

  Loop& loop_;
  int epoll_fd_ = -1;
  std::vector<char> buffer_;  // every receive of the loop lands here
  std::vector<epoll_event> events_;
  std::vector<ConnectionState*> work_;    // the dirty list being reconciled
  std::vector<EpollConnection*> unread_;  // readable connections cut short for fairness
  bool listening_ = false;
  bool pwait2_ = true;  // until the kernel says it has no epoll_pwait2
  bool accept_stopped_ = false;
  int64_t accept_retry_ms_ = 0;
};

}  // namespace percore

#endif  // PERCORE_SRC_EPOLL_BACKEND_H_
