// percore/options.h — how an Engine is configured.
//
// Every field has a production default; an embedder usually sets only the port:
//
//   percore::EngineOptions options;
//   options.port = 3000;
//   options.cpus = {0, 1};   // empty: every CPU the process may run on
//
// Engine::Create() validates the whole struct and names the first bad field.
#ifndef PERCORE_OPTIONS_H_
#define PERCORE_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "percore/tls.h"

namespace percore {

class Engine;

// The kernel interface the loops use.
enum class BackendKind {
  kAuto,     // io_uring if a probe shows every feature percore uses works, else epoll
  kIoUring,  // io_uring or an error saying why not
  kEpoll,    // epoll, everywhere
};

// Engine configuration. A plain value type; copy it freely.
struct EngineOptions {
  // Address to listen on: an IPv4 or IPv6 literal ("0.0.0.0", "127.0.0.1", "::").
  std::string address = "0.0.0.0";
  // TCP port; 0 lets the kernel choose one (Engine::port() tells which).
  int port = 0;
  // CPUs to run loops on; empty means every CPU in the process's affinity mask
  // (sched_getaffinity, so taskset and cgroup cpusets are honoured). Each must be in that mask.
  std::vector<int> cpus;
  // Number of loops; 0 means one per CPU in `cpus` — and, when `cpus` is empty too, no more than
  // the cgroup CPU quota rounded up (percore::DefaultLoopCount(), as container runtimes set it).
  // Loop i is pinned to cpus[i % cpus.size()].
  int threads = 0;
  // Which backend the loops run; see BackendKind.
  BackendKind backend = BackendKind::kAuto;
  // listen() backlog of each loop's socket (the kernel caps it at net.core.somaxconn).
  int backlog = 4096;
  // Listening sockets to serve instead of binding `address` and `port`: one per loop (so
  // `threads` must be 0 or their number), bound with SO_REUSEPORT and listening, for example
  // inherited from a guard process (percore/guard.h). The engine owns them.
  std::vector<int> listen_fds;

  // Submission queue entries of each loop's io_uring (completion queue is 4x).
  unsigned ring_entries = 1024;
  // Provided receive buffers per loop, and the size of each. Shared by all connections of the
  // loop; a connection holds one only while its bytes are being handled. Count: power of two.
  unsigned recv_buffers = 512;
  size_t recv_buffer_size = 16 * 1024;

  // When a connection has more than this many bytes waiting to be sent, the loop stops reading
  // from it until they are sent: a peer that does not read cannot make the loop buffer without
  // bound.
  size_t max_pending_output = 1024 * 1024;
  // After the last response on a closing connection the loop half-closes (FIN) and keeps reading
  // and discarding for at most this long, so a peer's unread data does not turn the close into a
  // reset that destroys the response in flight (the lingering close of nginx).
  absl::Duration linger_timeout = absl::Seconds(2);
  // A connection whose pending output makes no progress for this long (the peer stopped
  // reading) is closed.
  absl::Duration send_timeout = absl::Seconds(60);
  // How often each loop checks connection deadlines and runs its protocol's periodic work.
  absl::Duration tick_interval = absl::Milliseconds(100);

  // Graceful shutdown (SIGTERM/SIGINT in Engine::Run(), or Engine::Drain()): readiness fails at
  // once and the loops keep serving until the host is out of its load balancer's rotation; then
  // they stop accepting, finish the requests in flight with "Connection: close" and close idle
  // connections; whatever is left after `shutdown_timeout` more is closed. The host counts as
  // taken out when nothing but readiness checks has been answered for `drain_idle` and, if any
  // readiness check came, after `drain_checks` of them failed (the balancer's fall count: it
  // has seen enough to mark the host down) — or, at the latest, after `drain_delay`, which
  // must cover the balancer's check interval times its fall count (HAProxy's defaults, inter 2s
  // and fall 3, need 6 s plus a check's timeout). A host nothing balances thus stops after
  // `drain_idle` of quiet. drain_delay 0 stops accepting at once. A loop retired by a rolling
  // restart (SIGHUP, Engine::Reload()) drains at once, bounded by `shutdown_timeout`.
  absl::Duration drain_delay = absl::Seconds(10);
  int drain_checks = 3;
  absl::Duration drain_idle = absl::Seconds(1);
  absl::Duration shutdown_timeout = absl::Seconds(30);
  // A loop that dies is restarted after a delay that starts here and grows 1.5x per death, up
  // to the maximum; it starts over once the loop has run 30 s.
  absl::Duration restart_backoff = absl::Milliseconds(100);
  absl::Duration max_restart_backoff = absl::Seconds(15);
  // A loop that dies `crash_loop_deaths` times within `crash_loop_window` makes the engine
  // report not ready (Engine::ready()) until those deaths are older than the window.
  int crash_loop_deaths = 5;
  absl::Duration crash_loop_window = absl::Seconds(60);

  // A loop busy for longer than this without returning to the kernel (stuck in one request) is
  // logged with what it was doing: "Worker 1 stalled for 1000ms in GET /slow".
  absl::Duration stall_timeout = absl::Seconds(1);
  // A loop busy for longer than this is replaced, so its share of new connections is served
  // again: a new loop on its CPU accepts on its listening socket, including the connections
  // that queued there meanwhile. If the stuck loop ever returns, it finishes its connections as
  // in a drain (bounded by shutdown_timeout) and exits. absl::InfiniteDuration() never replaces.
  absl::Duration stuck_timeout = absl::Seconds(10);

  // TLS on the port (percore/tls.h): off unless certificates are given.
  TlsOptions tls;
  // Every connection starts with a PROXY protocol header, version 1 or 2 (HAProxy's
  // `send-proxy`/`send-proxy-v2`, nginx's `proxy_protocol on`), whose source address is the
  // client's (Connection::client()); a connection without a valid one is closed unanswered. The
  // header comes before anything else, TLS's ClientHello included (HAProxy in `mode tcp`
  // passing TLS through). Only for a port no client reaches but the proxy: whoever connects can
  // say what address it likes. (A loop that dies closes such connections even when idle,
  // instead of handing them to its replacement, which would wait for a header already read.)
  bool proxy_protocol = false;

  // Called by Engine::Run() on its own thread once every loop serves (for start-up lines).
  std::function<void(const Engine&)> on_started;
  // Where the engine's log lines go ("Worker 1 died (...); restarting in 100 ms"); one call
  // per line, without the newline, from the supervising thread. Default: stderr.
  std::function<void(std::string_view)> log;
};

}  // namespace percore

#endif  // PERCORE_OPTIONS_H_
