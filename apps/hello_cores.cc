// hello_cores: the demo and benchmark server, written only against percore's public headers.
//
//   ./hello_cores --port 3000                  # one loop per allowed CPU
//   ./hello_cores --port 3000 --cpus 0 --threads 1
//   curl localhost:3000/worker                 # which loop answered
//   ./hello_cores --port 3000 --guard          # engine in a child process, restarted if killed
//   ./hello_cores --static ./public            # GET /files/... from ./public
//   ./hello_cores --proxy_protocol             # behind HAProxy's send-proxy-v2: /ip is the client
//   ./hello_cores --tls_cert site.pem --tls_key site.key   # HTTPS (and wss://) only
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "percore/cpus.h"
#include "percore/engine.h"
#include "percore/guard.h"
#include "percore/http/app.h"
#include "percore/http/health.h"
#include "percore/http/middleware.h"
#include "percore/signals.h"
#include "percore/testing/fault.h"
#include "percore/thread_pool.h"
#include "percore/version.h"

ABSL_FLAG(int, port, 3000, "TCP port to listen on (0: any free port, printed at start-up)");
ABSL_FLAG(std::string, address, "0.0.0.0", "address to listen on (IPv4 or IPv6 literal)");
ABSL_FLAG(std::optional<int>, threads, std::nullopt,
          "number of event loops (default: one per allowed CPU, capped by the cgroup CPU quota)");
ABSL_FLAG(std::string, cpus, "", "CPUs to run loops on, like 0-3,6 (default: every allowed CPU)");
ABSL_FLAG(std::string, backend, "auto",
          "auto (io_uring when it works here, else epoll), io_uring or epoll");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(30),
          "on SIGTERM/SIGINT, how long requests in flight may take before their connections are "
          "closed (a second signal stops at once)");
ABSL_FLAG(absl::Duration, drain_delay, absl::Seconds(10),
          "on SIGTERM/SIGINT, the longest to keep serving while /readyz fails, for a load "
          "balancer to take the host out (0: stop accepting at once); must cover the balancer's "
          "check interval times its fall count");
ABSL_FLAG(int, drain_checks, 3,
          "a draining host is out of its load balancer once /readyz has failed this many times "
          "(the balancer's fall count) and --drain_idle passed without another request");
ABSL_FLAG(absl::Duration, drain_idle, absl::Seconds(1),
          "a draining host stops accepting once no request but readiness checks came for this "
          "long (and --drain_checks failed, if any check came)");
ABSL_FLAG(bool, enable_fault_routes, false,
          "serve /crash (the serving loop dies), /stall?ms=N (the loop blocks N ms) and /abort "
          "(the process aborts): for tests and demos only");
ABSL_FLAG(int, stall_ms, 1000,
          "log a worker stuck in one request for longer than this, with the request");
ABSL_FLAG(int, stuck_ms, 10000,
          "replace a worker stuck in one request for longer than this with a new loop on its "
          "CPU (0: never)");
ABSL_FLAG(absl::Duration, restart_backoff, absl::Milliseconds(100),
          "delay before restarting a worker (or, with --guard, the worker process) that died; "
          "grows 1.5x per death up to 15s, and starts over after 30s healthy");
ABSL_FLAG(bool, guard, false,
          "hold the listening sockets in a guard process and run the engine in a child process, "
          "restarted when it dies by a signal (SIGSEGV, SIGABRT, SIGKILL); connections that "
          "arrive meanwhile wait for the next child instead of being refused");
ABSL_FLAG(bool, stats, false,
          "print a per-worker table (requests/s, open connections, restarts) on stderr every "
          "second, like pm2 monit");
ABSL_FLAG(bool, log_requests, false, "print one line per request (buffered per loop)");
ABSL_FLAG(std::string, static, "", "serve the files of this directory under /files/");
ABSL_FLAG(std::vector<std::string>, trust_proxy, {},
          "comma-separated addresses or CIDR ranges of proxies whose X-Forwarded-For is believed "
          "(/ip)");
ABSL_FLAG(bool, proxy_protocol, false,
          "every connection starts with a PROXY protocol header (v1 or v2) giving the client's "
          "address; connections without one are closed");
ABSL_FLAG(bool, compress, true, "gzip answers worth compressing when the client accepts it");
ABSL_FLAG(std::vector<std::string>, tls_cert, {},
          "serve TLS (only) with this PEM certificate and its chain; repeat it for several "
          "certificates, chosen by the name the client asks for (SNI; the first by default)");
ABSL_FLAG(std::vector<std::string>, tls_key, {},
          "the PEM private key of each --tls_cert, in the same order");

namespace {

using percore::http::Request;
using percore::http::Response;

// What `hello_cores --help` prints above the flags: every route, one line each.
constexpr char kUsage[] = R"(percore demo server: one event loop per CPU on one port.

Usage: hello_cores [flags]

Routes:
  GET /                  Hello World!
  GET /worker            which loop answered: worker id, cpu and pid
  GET /json              {"message":"Hello, World!"}
  GET /ip                the client's address as percore sees it (PROXY header, trusted proxy)
  GET /tls               what TLS negotiated: version, cipher, SNI name, ALPN ({} over plain TCP)
  ANY /echo              the request body back, with its Content-Type
  GET /delay?ms=N        answered from a timer N ms later (0..60000)
  GET /stream?bytes=N    N bytes streamed with backpressure (up to 1 GiB; cut short by a drain)
  GET /offload?ms=N      N ms of CPU work on a thread pool (503 when its queue is full)
  GET /files/...         with --static DIR: the files of DIR
  GET /healthz           200 "ok" while the process serves
  GET /readyz            200 "ready", or 503 "not ready" (starting, crash-looping, draining)
  GET /metrics           the engine's counters, Prometheus text format
  GET /crash             with --enable_fault_routes: the serving loop dies (and is restarted)
  GET /stall?ms=N        with --enable_fault_routes: blocks the serving loop N ms
  GET /abort             with --enable_fault_routes: the process aborts
  anything else          404 {"error":"not found","path":...})";

// Streams `left` bytes of 'x' in 64 KiB pieces, as fast as the client reads: it stops when
// Write() says the output is full and goes on from OnWritable(). A drain (SIGTERM, a rolling
// restart) ends it early through OnClosing: the body was declared with its Length, so End()
// then closes the connection and the client sees a short body, a cut download it can retry,
// rather than a chunked end that would pass for the whole of it.
struct Streamer {
  Response response;
  uint64_t left;

  static void Start(const std::shared_ptr<Streamer>& self) {
    // The callback holds the streamer, which holds the answer: the answer drops it when it
    // completes or is aborted, so nothing is left in a cycle.
    self->response.OnClosing([self](Response&) {
      self->left = 0;
      self->response.End();
    });
    Pump(self);
  }

  static void Pump(const std::shared_ptr<Streamer>& self) {
    static const std::string piece(64 * 1024, 'x');
    while (self->left > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(self->left, piece.size()));
      self->left -= n;
      if (!self->response.Write(std::string_view(piece).substr(0, n))) {
        if (self->response.aborted()) return;
        self->response.OnWritable([self](Response&) { Pump(self); });
        return;
      }
    }
    self->response.End();
  }
};

// The `ms` query value of a request, 0..max; nullopt (and a 400 sent) otherwise.
std::optional<int> QueryMs(const Request& req, Response& res, int max) {
  int ms = 0;
  if (!absl::SimpleAtoi(std::string(req.Query("ms")), &ms) || ms < 0 || ms > max) {
    res.Status(400).Send("ms must be 0.." + std::to_string(max) + "\n");
    return std::nullopt;
  }
  return ms;
}

// Prints the live per-worker table to stderr once a second until `done`: requests/s from the
// difference of each loop's response counters, connections open now, restarts.
void PrintStats(const percore::Engine& engine, const std::atomic<bool>& done) {
  const percore::EngineStats& stats = engine.stats();
  std::vector<uint64_t> last(stats.size(), 0);
  for (size_t id = 0; id < stats.size(); ++id) last[id] = stats.Read(id).requests();
  auto next = std::chrono::steady_clock::now();
  while (!done.load()) {
    next += std::chrono::seconds(1);
    while (!done.load() && std::chrono::steady_clock::now() < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // to notice `done` promptly
    }
    std::string table = "worker  cpu   requests/s  connections  restarts\n";
    for (size_t id = 0; id < stats.size(); ++id) {
      const percore::WorkerCounters worker = stats.Read(id);
      char row[96];
      snprintf(row, sizeof(row), "%6zu  %3d  %11llu  %11llu  %8llu\n", id, worker.cpu,
               static_cast<unsigned long long>(worker.requests() - last[id]),
               static_cast<unsigned long long>(worker.active),
               static_cast<unsigned long long>(worker.restarts));
      table += row;
      last[id] = worker.requests();
    }
    table += engine.ready() ? "ready\n\n" : "not ready\n\n";
    // On a terminal the table is redrawn in place; to a file or pipe it is appended.
    if (isatty(STDERR_FILENO)) table = "\033[H\033[2J" + table;
    fputs(table.c_str(), stderr);
  }
}

int Fail(const std::string& message) {
  fprintf(stderr, "hello_cores: %s\n", message.c_str());
  return 1;
}

// Runs the engine until it stops; the process's exit code.
int Serve(percore::http::App& app, const percore::EngineOptions& options) {
  // Blocked before any thread exists, so that every thread inherits it: a signal is taken by
  // Engine::Run(), never delivered to (and by default ending the process from) another thread.
  const percore::BlockedSignals signals({SIGINT, SIGTERM, SIGHUP});
  absl::StatusOr<std::unique_ptr<percore::Engine>> engine = app.Listen(options);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));
  std::atomic<bool> done{false};
  std::thread stats_printer;
  if (absl::GetFlag(FLAGS_stats)) {
    stats_printer = std::thread(PrintStats, std::cref(**engine), std::cref(done));
  }
  absl::Status status = (*engine)->Run();
  done.store(true);
  if (stats_printer.joinable()) stats_printer.join();
  if (!status.ok()) return Fail(std::string(status.message()));
  printf("Supervisor %d stopped\n", static_cast<int>(getpid()));
  fflush(stdout);
  // Not `return`: a loop thread still stuck in a request (Engine::Run() gave up on it) would
  // hold the engine's destructor; the process ends with it instead.
  std::exit(0);
}

// Abseil keeps the last of a repeated flag; these flags take every occurrence instead, as one
// comma-separated value ("--tls_cert a.pem --tls_cert=b.pem" is "--tls_cert=a.pem,b.pem").
std::vector<char*> JoinRepeated(int argc, char** argv, const std::vector<std::string>& names) {
  static std::vector<std::string> joined;  // the merged arguments, alive as long as argv
  std::vector<char*> args;
  std::vector<std::string> values(names.size());
  bool positional = false;  // after "--"
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    positional = positional || arg == "--";
    size_t which = names.size();
    for (size_t n = 0; n < names.size() && !positional; ++n) {
      if (arg.starts_with("--" + names[n] + "=") || arg == "--" + names[n]) which = n;
    }
    if (which == names.size()) {
      args.push_back(argv[i]);
      continue;
    }
    const size_t equals = arg.find('=');
    std::string value(equals == arg.npos ? (i + 1 < argc ? argv[++i] : "")
                                         : arg.substr(equals + 1));
    values[which] += (values[which].empty() ? "" : ",") + value;
  }
  joined.clear();
  for (size_t n = 0; n < names.size(); ++n) {
    if (!values[n].empty()) joined.push_back("--" + names[n] + "=" + values[n]);
  }
  for (std::string& arg : joined) args.push_back(arg.data());
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  // The engine never raises SIGPIPE on its loops (it blocks it there); this program also writes
  // its own lines to stdout, which may be a pipe whose reader died: a write there must fail
  // with EPIPE rather than end the server.
  signal(SIGPIPE, SIG_IGN);
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage;  // --version (Abseil's own flag) prints this and exits 0
  usage.version_string = [] { return std::string("hello_cores " PERCORE_VERSION "\n"); };
  // --help lists the flags of this file under "Flags:", not under the build machine's path of
  // it; Abseil asks contains_help_flags of the name normalize_filename gave.
  usage.normalize_filename = [](absl::string_view file) {
    return std::string(absl::EndsWith(file, "apps/hello_cores.cc") ? "hello_cores" : file);
  };
  usage.contains_help_flags = [](absl::string_view file) { return file == "hello_cores"; };
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> args = JoinRepeated(argc, argv, {"tls_cert", "tls_key"});
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());

  percore::EngineOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.port = absl::GetFlag(FLAGS_port);
  if (std::optional<int> threads = absl::GetFlag(FLAGS_threads); threads.has_value()) {
    if (*threads < 1) return Fail("--threads must be at least 1, got " + std::to_string(*threads));
    options.threads = *threads;
  }
  if (std::string cpus = absl::GetFlag(FLAGS_cpus); !cpus.empty()) {
    absl::StatusOr<std::vector<int>> list = percore::ParseCpuList(cpus);
    if (!list.ok()) return Fail("--cpus: " + std::string(list.status().message()));
    options.cpus = *list;
  }

  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend == "auto") {
    options.backend = percore::BackendKind::kAuto;
  } else if (backend == "io_uring") {
    options.backend = percore::BackendKind::kIoUring;
  } else if (backend == "epoll") {
    options.backend = percore::BackendKind::kEpoll;
  } else {
    return Fail("--backend must be auto, io_uring or epoll, got \"" + backend + "\"");
  }

  // The options are checked once, by Engine::Create() (or RunGuarded()): an error names the field.
  options.stall_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_stall_ms));
  const int stuck_ms = absl::GetFlag(FLAGS_stuck_ms);
  options.stuck_timeout = stuck_ms == 0 ? absl::InfiniteDuration() : absl::Milliseconds(stuck_ms);
  options.restart_backoff = absl::GetFlag(FLAGS_restart_backoff);
  options.shutdown_timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  options.drain_delay = absl::GetFlag(FLAGS_drain_delay);
  options.drain_checks = absl::GetFlag(FLAGS_drain_checks);
  options.drain_idle = absl::GetFlag(FLAGS_drain_idle);
  options.proxy_protocol = absl::GetFlag(FLAGS_proxy_protocol);

  const std::vector<std::string> certs = absl::GetFlag(FLAGS_tls_cert);
  const std::vector<std::string> keys = absl::GetFlag(FLAGS_tls_key);
  if (certs.size() != keys.size()) return Fail("give one --tls_key for each --tls_cert");
  for (size_t i = 0; i < certs.size(); ++i) options.tls.certificates.push_back({certs[i], keys[i]});

  percore::http::HttpOptions http;
  http.log_requests = absl::GetFlag(FLAGS_log_requests);
  http.trust_proxy = absl::GetFlag(FLAGS_trust_proxy);
  percore::http::App app(http);
  if (absl::GetFlag(FLAGS_compress)) app.Use(percore::http::Compress());
  if (const std::string dir = absl::GetFlag(FLAGS_static); !dir.empty()) {
    try {
      app.Use("/files", percore::http::Static(dir));
    } catch (const std::invalid_argument& e) {
      return Fail(std::string("--static: ") + e.what());
    }
  }
  // An unknown path gets a JSON 404; every other error the default answer.
  app.OnError([](const Request& req, Response& res, const percore::http::Error& error) {
    if (error.status != 404) return;
    res.Status(404).Json({{"error", "not found"}, {"path", req.path()}});
  });
  app.Get("/", [](const Request&, Response& res) { res.Send("Hello World!"); });
  app.Get("/json", [](const Request&, Response& res) { res.Json({{"message", "Hello, World!"}}); });
  // The client's address as percore sees it: from the PROXY header or a trusted proxy's
  // X-Forwarded-For, else the connection's peer.
  // What TLS negotiated for this connection: {} over plain TCP.
  app.Get("/tls", [](const Request& req, Response& res) {
    nlohmann::json info = nlohmann::json::object();
    if (std::optional<percore::TlsInfo> tls = req.tls()) {
      info = {{"version", tls->version},
              {"cipher", tls->cipher},
              {"sni", tls->server_name},
              {"alpn", tls->alpn},
              {"resumed", tls->resumed}};
    }
    res.Json(info);
  });
  app.Get("/ip", [](const Request& req, Response& res) {
    const percore::PeerAddress client = req.client();
    const percore::PeerAddress peer = req.peer();
    res.Json({{"client", client.ip}, {"port", client.port}, {"peer", peer.ip}});
  });
  app.Get("/worker", [](const Request& req, Response& res) {
    res.Send("Hello World from worker " + std::to_string(req.worker_id()) + " (cpu " +
             std::to_string(req.cpu()) + ", pid " + std::to_string(getpid()) + ")\n");
  });
  app.All("/echo", [](const Request& req, Response& res) {
    std::string_view type = req.Header("content-type");
    res.Type(type.empty() ? "application/octet-stream" : type).Send(req.body());
  });
  // Answered from a timer, N ms later: the loop serves everything else meanwhile.
  app.Get("/delay", [](const Request& req, Response& res) {
    const std::optional<int> ms = QueryMs(req, res, 60000);
    if (!ms.has_value()) return;
    req.worker().After(absl::Milliseconds(*ms), [later = res.Defer(), ms = *ms]() mutable {
      later.Send("delayed " + std::to_string(ms) + " ms");
    });
  });
  // N bytes streamed with backpressure: memory stays bounded however slowly the client reads.
  app.Get("/stream", [](const Request& req, Response& res) {
    uint64_t bytes = 0;
    if (!absl::SimpleAtoi(std::string(req.Query("bytes")), &bytes) || bytes > (uint64_t{1} << 30)) {
      res.Status(400).Send("bytes must be 0..1073741824\n");
      return;
    }
    auto streamer = std::make_shared<Streamer>(Streamer{res.Defer(), bytes});
    streamer->response.Type("application/octet-stream").Length(bytes);
    Streamer::Start(streamer);
  });
  // N ms of CPU work on a thread pool, answered through the loop when done. A bounded queue: a
  // job that finds it full is refused, and the request gets a 503 instead of waiting without
  // bound.
  app.Get("/offload", [](const Request& req, Response& res) {
    const std::optional<int> ms = QueryMs(req, res, 60000);
    if (!ms.has_value()) return;
    // Made on first use, in the process that serves (with --guard, the child: threads made
    // before the fork would not be in it); it lives as long as the process.
    static percore::ThreadPool* pool =
        new percore::ThreadPool({.threads = 2, .max_queued = 1024, .name = "offload"});
    // Shared with the job, so that a refused job (destroyed by Submit) leaves it here to answer.
    auto later = std::make_shared<Response>(res.Defer());
    const bool queued = pool->Submit([later, ms = *ms] {
      const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
      uint64_t spins = 0;
      while (std::chrono::steady_clock::now() < end) ++spins;  // the CPU work
      later->worker().Post([later, ms, spins] {
        later->Send("offloaded " + std::to_string(ms) + " ms (" + std::to_string(spins) +
                    " spins)");
      });
    });
    if (!queued) later->Status(503).Set("Retry-After", "1").Send("work queue full\n");
  });

  // WebSocket: every message back as it came (permessage-deflate when the client offers it),
  // and a chat room that spans every loop: what anyone sends, everyone receives.
  percore::http::WsOptions echo_options;
  echo_options.compression = percore::http::WsCompression::kShared;
  app.Ws("/ws/echo", {.message = [](percore::http::WebSocket& ws, std::string_view message,
                                    percore::http::WsOpcode opcode) { ws.Send(message, opcode); },
                      .options = echo_options});
  app.Ws("/ws/chat",
         {.open = [](percore::http::WebSocket& ws) { ws.Subscribe("chat"); },
          .message =
              [&app](percore::http::WebSocket&, std::string_view message,
                     percore::http::WsOpcode opcode) { app.Publish("chat", message, opcode); }});

  percore::http::MountHealthRoutes(app);
  if (absl::GetFlag(FLAGS_enable_fault_routes)) {
    app.Get("/crash", [](const Request& req, Response& res) {
      percore::testing::CrashLoop(req.worker(), "crash requested by /crash");
      res.Send("crashing worker " + std::to_string(req.worker_id()));
    });
    app.Get("/stall", [](const Request& req, Response& res) {
      const std::optional<int> ms = QueryMs(req, res, 600000);
      if (!ms.has_value()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(*ms));  // blocks the whole loop
      res.Send("stalled worker " + std::to_string(req.worker_id()) + " for " + std::to_string(*ms) +
               " ms");
    });
    app.Get("/abort", [](const Request&, Response&) { std::abort(); });
  }

  // The engine's own lines (a worker died and restarts, draining) go to stdout with the rest.
  options.log = [](std::string_view line) {
    printf("%.*s\n", static_cast<int>(line.size()), line.data());
    fflush(stdout);
  };
  options.on_started = [](const percore::Engine& engine) {
    if (engine.loops_note().empty()) {
      printf("Supervisor %d is running\n", static_cast<int>(getpid()));
    } else {  // "... is running 1 loop (cgroup CPU quota 1.0 of 2 CPUs)"
      printf("Supervisor %d is running %zu loop%s (%s)\n", static_cast<int>(getpid()),
             engine.workers().size(), engine.workers().size() == 1 ? "" : "s",
             engine.loops_note().c_str());
    }
    if (!engine.backend_note().empty()) printf("%s\n", engine.backend_note().c_str());
    for (const percore::WorkerInfo& w : engine.workers()) {
      printf("Worker %d started on cpu %d (%s)\n", w.id, w.cpu,
             std::string(engine.backend_name()).c_str());
    }
    printf("Listening on port %d\n", engine.port());
    fflush(stdout);
  };
  if (!absl::GetFlag(FLAGS_guard)) return Serve(app, options);
  absl::StatusOr<int> code = percore::RunGuarded(
      options, [&app](const percore::EngineOptions& child) { return Serve(app, child); });
  if (!code.ok()) return Fail(std::string(code.status().message()));
  return *code;
}
