// Setting up an io_uring and its provided-buffer ring, and IoUringBackend::Probe: whether
// io_uring works here, tried for real on a loopback connection.
#include "io_uring_setup.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "io_uring_backend.h"

namespace percore {

absl::Status SetUpRing(io_uring* ring, unsigned entries) {
  const unsigned base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  const unsigned attempts[] = {
      base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      base | IORING_SETUP_SINGLE_ISSUER,
      base,
      0,
  };
  int ret = -EINVAL;
  for (unsigned flags : attempts) {
    io_uring_params params{};
    params.flags = flags;
    params.cq_entries = entries * 4;
    ret = io_uring_queue_init_params(entries, ring, &params);
    if (ret != -EINVAL) break;
  }
  if (ret < 0) return absl::ErrnoToStatus(-ret, "io_uring_setup");
  // Lets io_uring_enter skip the fd table lookup on every call.
  io_uring_register_ring_fd(ring);
  return absl::OkStatus();
}

absl::StatusOr<io_uring_buf_ring*> SetUpBufferRing(io_uring* ring, unsigned count) {
  const size_t bytes = sizeof(io_uring_buf) * count;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (memory == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap buffer ring");
  auto* buf_ring = static_cast<io_uring_buf_ring*>(memory);
  io_uring_buf_ring_init(buf_ring);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(memory);
  reg.ring_entries = count;
  reg.bgid = kBufferGroup;
  int ret = io_uring_register_buf_ring(ring, &reg, 0);
  if (ret < 0) {
    munmap(memory, bytes);
    return absl::ErrnoToStatus(-ret, "io_uring_register_buf_ring");
  }
  return buf_ring;
}

namespace {

// A completion's fields, copied out of the ring (io_uring_cqe itself ends in a flexible array,
// which absl::StatusOr cannot hold).
struct Completion {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
};

// Waits up to a second for one completion with `user_data`.
absl::StatusOr<Completion> WaitFor(io_uring* ring, uint64_t user_data) {
  for (int i = 0; i < 10; ++i) {
    __kernel_timespec timeout{0, 100 * 1000 * 1000};
    io_uring_cqe* cqe = nullptr;
    int ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &timeout, nullptr);
    if (ret < 0 && ret != -ETIME && ret != -EINTR)
      return absl::ErrnoToStatus(-ret, "io_uring_enter");
    if (cqe != nullptr) {
      const Completion copy{cqe->user_data, cqe->res, cqe->flags};
      io_uring_cqe_seen(ring, cqe);
      if (copy.user_data == user_data) return copy;
    }
  }
  return absl::DeadlineExceededError("io_uring: no completion within 1 s");
}

// The probe's part that needs a ring: accept and multishot receive on loopback.
absl::Status ProbeOperations(io_uring* ring) {
  absl::StatusOr<io_uring_buf_ring*> buf_ring = SetUpBufferRing(ring, 8);
  if (!buf_ring.ok()) return buf_ring.status();
  char buffers[8][64];
  for (unsigned id = 0; id < 8; ++id) {
    io_uring_buf_ring_add(*buf_ring, buffers[id], sizeof(buffers[id]), id,
                          io_uring_buf_ring_mask(8), id);
  }
  io_uring_buf_ring_advance(*buf_ring, 8);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int accepted = -1;
  absl::Status status;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  if (listener < 0 || client < 0 ||
      bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 4) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &length) != 0 ||
      connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    status = absl::ErrnoToStatus(errno, "io_uring probe: loopback socket");
  }
  if (status.ok()) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    io_uring_prep_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, 1);
    absl::StatusOr<Completion> cqe = WaitFor(ring, 1);
    if (!cqe.ok()) {
      status = cqe.status();
    } else if (cqe->res < 0) {
      status = absl::ErrnoToStatus(-cqe->res, "accept");
    } else {
      accepted = cqe->res;
    }
  }
  if (status.ok()) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    io_uring_prep_recv_multishot(sqe, accepted, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, 2);
    if (send(client, "x", 1, MSG_NOSIGNAL) != 1) {
      status = absl::ErrnoToStatus(errno, "io_uring probe: send");
    } else {
      absl::StatusOr<Completion> cqe = WaitFor(ring, 2);
      if (!cqe.ok()) {
        status = cqe.status();
      } else if (cqe->res < 0) {
        status = absl::ErrnoToStatus(-cqe->res, "multishot receive");
      } else if (cqe->res != 1 || (cqe->flags & IORING_CQE_F_BUFFER) == 0) {
        status = absl::InternalError("multishot receive: unexpected completion");
      }
    }
  }
  // Closing the ring (by the caller) cancels what is still armed; then the sockets can go.
  io_uring_unregister_buf_ring(ring, kBufferGroup);
  munmap(*buf_ring, sizeof(io_uring_buf) * 8);
  for (int fd : {listener, client, accepted}) {
    if (fd >= 0) close(fd);
  }
  return status;
}

}  // namespace

absl::Status IoUringBackend::Probe(const EngineOptions& options) {
  io_uring ring;
  absl::Status status = SetUpRing(&ring, 8);
  if (!status.ok()) return status;
  status = ProbeOperations(&ring);
  io_uring_queue_exit(&ring);
  return status;
}

}  // namespace percore
