// Setting up an io_uring and its provided-buffer ring: shared by IoUringBackend::Init and
// IoUringBackend::Probe.
#ifndef PERCORE_SRC_IO_URING_SETUP_H_
#define PERCORE_SRC_IO_URING_SETUP_H_

#include <liburing.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace percore {

constexpr unsigned short kBufferGroup = 0;

// Creates `ring` on the calling thread, which must be the loop's: SINGLE_ISSUER ties the ring to
// it. COOP_TASKRUN lets completion work wait for this thread's next syscall instead of
// interrupting it. Older kernels refuse these flags with EINVAL: fall back to fewer.
//
// Not DEFER_TASKRUN: on the 6.18 kernel this was developed on, a multishot receive that is
// cancelled (to stop reading from a peer that does not read its responses) and armed again later
// can miss the peer's reset with DEFER_TASKRUN, leaving the connection held until a timeout
// (ServerTest.ClientDisconnectingMidResponseLeavesServerServing failed 1 run in 6; with
// COOP_TASKRUN, 0 in 30).
absl::Status SetUpRing(io_uring* ring, unsigned entries);

// Maps and registers a provided-buffer ring of `count` entries as kBufferGroup: the kernel picks
// a buffer for each receive completion, so an idle connection holds none. The ring is shared
// memory we fill and the kernel consumes.
absl::StatusOr<io_uring_buf_ring*> SetUpBufferRing(io_uring* ring, unsigned count);

}  // namespace percore

#endif  // PERCORE_SRC_IO_URING_SETUP_H_
