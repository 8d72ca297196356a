// The io_uring backend: a few armed accepts, multishot receive into a provided-buffer ring, one
// send per connection in flight, one io_uring_submit_and_wait per loop iteration.
#ifndef PERCORE_SRC_IO_URING_BACKEND_H_
#define PERCORE_SRC_IO_URING_BACKEND_H_

#include <liburing.h>

#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "backend.h"
#include "percore/options.h"

namespace percore {

class Loop;

// What this backend keeps per connection, beside the loop's state.
struct IoUringConnection final : ConnectionState {
  bool reading : 1 = false;          // a receive is armed
  bool cancel_inflight : 1 = false;  // a cancel of the armed receive was submitted
  bool multishot : 1 = false;        // the first receive was armed (single-shot)
  bool has_pipe : 1 = false;         // it is sending a file: see IoUringBackend::pipes_
  bool file_in : 1 = false;          // the send in flight is a splice from the file into the pipe
  // It was paused or held once (it pipelines behind an answer that comes later, or reads its
  // answers slowly): every later receive is single-shot. A multishot receive goes on filling
  // buffers with whatever the peer sent until its cancel reaches the kernel, and the loop
  // must keep all of it; one single-shot receive brings at most one buffer.
  bool one_at_a_time : 1 = false;
};
static_assert(sizeof(IoUringConnection) == sizeof(ConnectionState), "in the tail padding");

class IoUringBackend final : public Backend {
 public:
  // Sets up the ring (on the calling thread, which must be the loop's) and its buffer ring, and
  // arms the accept on `listen_fd` and the read of `wake_fd`.
  static absl::StatusOr<std::unique_ptr<Backend>> Create(Loop& loop, const EngineOptions& options,
                                                         int listen_fd, int wake_fd);
  ~IoUringBackend() override;
  // Whether io_uring works here as percore uses it: a ring with its set-up flags, a buffer ring,
  // an accept and a multishot receive, tried for real on a loopback connection. The
  // error says what failed ("io_uring_setup: Operation not permitted").
  static absl::Status Probe(const EngineOptions& options);

  int Iterate(int64_t timeout_us) override;
  void StopAccepting() override;
  void CancelLoopOperations() override;
  bool Idle() const override { return accepts_armed_ == 0 && !wake_armed_; }
  bool Accepting() const override { return accepts_armed_ > 0; }
  ConnectionState* NewConnection() override { return new IoUringConnection; }
  ConnectionDeleter connection_deleter() const override {
    return [](ConnectionState* c) { delete static_cast<IoUringConnection*>(c); };
  }
  void Adopted(ConnectionState*) override {}  // marked dirty: its receive is armed like any other
  bool AddWatch(Watch* w) override;
  void RemoveWatch(Watch* w) override;

 private:
  // A single-shot poll, armed again after each report: level-triggered, as a client library
  // expects (a poll on a descriptor that is still ready completes at once).
  void ArmWatch(Watch* w);
  IoUringBackend(Loop& loop, const EngineOptions& options, int listen_fd, int wake_fd);
  absl::Status Init();
  io_uring_sqe* Sqe();
  void Reconcile(IoUringConnection* c);
  // Reconciles every connection on the loop's dirty list (queueing their operations).
  void ReconcileDirty();
  void ArmAccept();
  void ArmWake();
  void ArmReceive(IoUringConnection* c);
  void StartSend(IoUringConnection* c);
  // The next step of sending the current file range: into the pipe, or from it to the socket.
  void StartFileSend(IoUringConnection* c);
  // Gives c's pipe back once its file is sent (to spare_pipes_, or closed); `empty` false for
  // a pipe that may still hold bytes (the connection failed), which is always closed.
  void ReturnPipe(IoUringConnection* c, bool empty);
  // Releases `c` (nothing of it in flight), closing its pipe.
  void Release(IoUringConnection* c);
  void Dispatch(const io_uring_cqe* cqe);
  void ReturnBuffer(unsigned id);

  Loop& loop_;
  const EngineOptions& options_;
  const int listen_fd_;
  const int wake_fd_;
  io_uring ring_{};
  bool ring_ready_ = false;
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  char* buffers_ = nullptr;
  size_t buffers_bytes_ = 0;
  unsigned returned_buffers_ = 0;  // added to the buffer ring, not yet published to the kernel
  uint64_t wake_value_ = 0;        // the eventfd read lands here
  int accepts_armed_ = 0;
  bool wake_armed_ = false;
  bool accept_stopped_ = false;  // draining or shutting down: never re-armed
  bool loop_cancelled_ = false;
  int64_t accept_retry_ms_ = 0;
  // A file range goes out by splice: from the file into a pipe, then from the pipe into the
  // socket. Only a connection that is sending a file has one, here rather than in every
  // connection's state; once its file is sent the empty pipe goes to a few spares, so an idle
  // keep-alive client holds no descriptor but its socket, and the pipes' pages (counted against
  // the user's pipe quota, /proc/sys/fs/pipe-user-pages-soft) are not kept per client.
  struct Pipe {
    int read = -1;
    int write = -1;
    uint32_t size = 0;     // its capacity
    uint32_t in_pipe = 0;  // bytes of the file in it, not yet in the socket
  };
  absl::flat_hash_map<IoUringConnection*, Pipe> pipes_;
  std::vector<Pipe> spare_pipes_;
};

}  // namespace percore

#endif  // PERCORE_SRC_IO_URING_BACKEND_H_
