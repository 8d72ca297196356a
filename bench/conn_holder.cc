// conn_holder: opens N keep-alive connections to a local HTTP server, sends one `GET /` on each,
// reads each response, prints "ready N" and holds them open until stdin closes or SIGTERM/SIGINT.
// scripts/bench uses it to measure a server's resident memory per idle connection, and (with
// --path /worker against hello_cores) how the kernel spread connections over the loops: for
// responses whose body says "worker <id>" it prints "worker <id> <connections>" before "ready".
//
//   conn_holder --port 8080 --connections 10000 [--address 127.0.0.1] [--path /]
//               [--inflight 256] [--timeout 60] [--tls]
//
// --tls: each connection first makes a TLS handshake (OpenSSL, TLS 1.2 or 1.3, no certificate
// verified) and sends its GET over it; the server's memory per idle TLS connection. Each client
// SSL is kept, so the connection stays valid (and its buffers are the server's business).
//
// Connects are nonblocking, at most --inflight unfinished at once (so the server's accept queue
// is not overrun and SYNs are not dropped), driven by poll(). Any failed connection or a response
// that is not 2xx makes it exit 1 with a message; --timeout bounds the whole set-up.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "http_head.h"

namespace {

volatile sig_atomic_t g_stop = 0;

void OnSignal(int) { g_stop = 1; }

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

[[noreturn]] void Die(const std::string& message) {
  fprintf(stderr, "conn_holder: %s\n", message.c_str());
  exit(1);
}

enum class State { kConnecting, kHandshake, kSending, kReading, kDone };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;  // with --tls
  State state = State::kConnecting;
  size_t sent = 0;
  std::string in;
};

// Whether `in` holds one complete response; fails on anything but a 2xx with Content-Length.
// Sets `body` to the response's body once it is complete.
bool ResponseComplete(const std::string& in, size_t index, std::string* body) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  if (in.compare(0, 9, "HTTP/1.1 ") != 0 || in.size() < 12 || in[9] != '2') {
    Die("connection " + std::to_string(index) +
        ": unexpected response: " + in.substr(0, in.find("\r\n")));
  }
  const long length = ContentLength(in.substr(0, end + 2));
  if (length < 0) Die("connection " + std::to_string(index) + ": response without Content-Length");
  if (in.size() < end + 4 + static_cast<size_t>(length)) return false;
  *body = in.substr(end + 4, static_cast<size_t>(length));
  return true;
}

// The id in a hello_cores /worker body ("Hello World from worker 3 (cpu 3, pid 7)"), or -1.
long WorkerId(const std::string& body) {
  const size_t at = body.find("worker ");
  if (at == std::string::npos) return -1;
  char* end = nullptr;
  const long id = strtol(body.c_str() + at + 7, &end, 10);
  return end == body.c_str() + at + 7 ? -1 : id;
}

void RaiseFileLimit(size_t needed) {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur >= needed) return;
  if (limit.rlim_max < needed) {
    rlimit raised = {needed, needed};  // root may raise the hard limit (CAP_SYS_RESOURCE)
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  }
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < needed) {
    Die("RLIMIT_NOFILE is " + std::to_string(limit.rlim_cur) + ", need " + std::to_string(needed));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  std::string path = "/";
  int port = 0;
  long connections = 0;
  long inflight = 256;
  long timeout_s = 60;
  bool tls = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--port") {
      port = atoi(value().c_str());
    } else if (arg == "--connections") {
      connections = atol(value().c_str());
    } else if (arg == "--address") {
      address = value();
    } else if (arg == "--path") {
      path = value();
    } else if (arg == "--inflight") {
      inflight = atol(value().c_str());
    } else if (arg == "--timeout") {
      timeout_s = atol(value().c_str());
    } else if (arg == "--tls") {
      tls = true;
    } else {
      Die("unknown argument " + arg +
          " (usage: conn_holder --port P --connections N [--address A] [--path /] "
          "[--inflight 256] [--timeout 60] [--tls])");
    }
  }
  if (port <= 0 || port > 65535) Die("--port must be 1-65535");
  if (connections <= 0) Die("--connections must be positive");
  if (inflight <= 0) Die("--inflight must be positive");

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) Die("bad --address " + address);

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  RaiseFileLimit(static_cast<size_t>(connections) + 64);
  SSL_CTX* ctx = nullptr;
  if (tls) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) Die("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }

  const std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: " + address + ":" + std::to_string(port) + "\r\n\r\n";
  std::vector<Conn> conns(static_cast<size_t>(connections));
  const int64_t deadline = NowMs() + timeout_s * 1000;
  size_t next = 0;  // next connection to open
  size_t done = 0;
  std::vector<pollfd> pfds;
  std::vector<size_t> active;  // indexes of opened, unfinished connections
  char buf[4096];
  std::string body;
  std::map<long, long> per_worker;  // worker id -> connections it answered

  while (done < conns.size()) {
    if (g_stop) Die("interrupted after " + std::to_string(done) + " connections");
    if (NowMs() > deadline) {
      Die("timed out after " + std::to_string(timeout_s) + " s with " + std::to_string(done) +
          " of " + std::to_string(conns.size()) + " connections ready");
    }
    while (next < conns.size() && active.size() < static_cast<size_t>(inflight)) {
      Conn& c = conns[next];
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) Die("socket: " + std::string(strerror(errno)));
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
          errno != EINPROGRESS) {
        Die("connect #" + std::to_string(next) + ": " + strerror(errno));
      }
      active.push_back(next++);
    }
    pfds.clear();
    for (size_t index : active) {
      const Conn& c = conns[index];
      pfds.push_back({c.fd, static_cast<short>(c.state == State::kConnecting ||
                                                   c.state == State::kSending ? POLLOUT : POLLIN),
                      0});
    }
    const int n = poll(pfds.data(), pfds.size(), 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("poll: " + std::string(strerror(errno)));
    }
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      const size_t index = active[k];
      Conn& c = conns[index];
      if (c.state == State::kConnecting) {
        int error = 0;
        socklen_t len = sizeof(error);
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) Die("connect #" + std::to_string(index) + ": " + strerror(error));
        c.state = State::kSending;
        if (tls) {
          c.ssl = SSL_new(ctx);
          if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) Die("SSL_new failed");
          SSL_set_tlsext_host_name(c.ssl, "localhost");
          SSL_set_connect_state(c.ssl);
          c.state = State::kHandshake;
        }
      }
      if (c.state == State::kHandshake) {
        // Waits for the server's flight (POLLIN); our own flights are small enough to be sent
        // at once.
        // OpenSSL's error queue is the thread's, not the connection's: an error another
        // connection left there would make this one's SSL_get_error() report it.
        ERR_clear_error();
        const int r = SSL_do_handshake(c.ssl);
        if (r == 1) {
          c.state = State::kSending;
        } else if (const int err = SSL_get_error(c.ssl, r); err != SSL_ERROR_WANT_READ) {
          Die("TLS handshake #" + std::to_string(index) + " failed (" + std::to_string(err) +
              ", " + ERR_error_string(ERR_get_error(), nullptr) + ")");
        }
        if (c.state == State::kHandshake) continue;
      }
      if (c.state == State::kSending) {
        const ssize_t w =
            c.ssl != nullptr
                ? SSL_write(c.ssl, request.data(), static_cast<int>(request.size()))
                : send(c.fd, request.data() + c.sent, request.size() - c.sent, MSG_NOSIGNAL);
        if (c.ssl != nullptr && w <= 0) Die("SSL_write #" + std::to_string(index) + " failed");
        if (w < 0 && errno != EAGAIN)
          Die("send #" + std::to_string(index) + ": " + strerror(errno));
        if (w > 0) c.sent += static_cast<size_t>(w);
        if (c.sent == request.size()) c.state = State::kReading;
        continue;
      }
      if (c.state == State::kReading) {
        ssize_t r = 0;
        if (c.ssl != nullptr) {
          ERR_clear_error();
          r = SSL_read(c.ssl, buf, sizeof(buf));
          if (r <= 0) {
            const int err = SSL_get_error(c.ssl, static_cast<int>(r));
            if (err == SSL_ERROR_WANT_READ) continue;
            if (err != SSL_ERROR_ZERO_RETURN && err != SSL_ERROR_SYSCALL)
              Die("SSL_read #" + std::to_string(index) + " failed (" + std::to_string(err) + ")");
            r = 0;
          }
        } else {
          r = recv(c.fd, buf, sizeof(buf), 0);
        }
        if (r == 0) Die("connection #" + std::to_string(index) + " closed by the server");
        if (r < 0) {
          if (errno == EAGAIN) continue;
          Die("recv #" + std::to_string(index) + ": " + strerror(errno));
        }
        c.in.append(buf, static_cast<size_t>(r));
        if (ResponseComplete(c.in, index, &body)) {
          if (const long id = WorkerId(body); id >= 0) ++per_worker[id];
          c.state = State::kDone;
          std::string().swap(c.in);
          ++done;
        }
      }
    }
    // Drop finished connections from the active set (order does not matter).
    for (size_t k = 0; k < active.size();) {
      if (conns[active[k]].state == State::kDone) {
        active[k] = active.back();
        active.pop_back();
      } else {
        ++k;
      }
    }
  }

  for (const auto& [id, n] : per_worker) printf("worker %ld %ld\n", id, n);
  printf("ready %zu\n", conns.size());
  fflush(stdout);

  // Hold until stdin reaches EOF or a signal arrives. A connection the server closes meanwhile
  // is reported (the measurement would be wrong) but does not end the hold.
  pfds.clear();
  pfds.push_back({STDIN_FILENO, POLLIN, 0});
  while (!g_stop) {
    const int n = poll(pfds.data(), 1, 200);
    if (n < 0 && errno != EINTR) Die("poll: " + std::string(strerror(errno)));
    if (n > 0) {
      const ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) break;
    }
  }
  long closed = 0;
  for (Conn& c : conns) {
    char probe;
    if (recv(c.fd, &probe, 1, MSG_DONTWAIT | MSG_PEEK) == 0) ++closed;
    close(c.fd);
  }
  printf("closed-by-server %ld\n", closed);
  return 0;
}
