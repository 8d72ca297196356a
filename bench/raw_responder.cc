// raw_responder: the floor scripts/bench measures percore against. One thread, level-triggered
// epoll and a fixed answer: for each read it counts the "\r\n\r\n" request terminators (one split
// across reads counts once) and writes one buffer holding that many copies of a fixed response,
// the size of hello_cores' answer to GET /. No parsing, no routing, no allocation per request, so
// its CPU time per request is close to what the kernel's TCP path alone costs on this machine.
// A measuring stick, not a server.
//
//   raw_responder [--port 0] [--address 127.0.0.1]
//
// Prints "Listening on port N" once listening (0 picks a free port); exits 0 on SIGTERM/SIGINT.
// A read holding "Connection: close" (case-sensitive) gets its last answer marked so (wrk reuses
// a connection its answer did not say would close) and the connection closed once it is written.
// What the socket does not take is kept and finished on EPOLLOUT, reading nothing more from that
// connection meanwhile.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

// 129 bytes, as hello_cores answers GET / (148 with "Connection: close", as hello_cores too).
constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\r\nHello World!";
constexpr std::string_view kCloseResponse =
    "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    "Hello World!";
static_assert(kResponse.size() == 129 && kCloseResponse.size() == 148);
constexpr std::string_view kTerminator = "\r\n\r\n";
constexpr std::string_view kClose = "Connection: close";

volatile sig_atomic_t g_stop = 0;

void OnSignal(int) { g_stop = 1; }

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "raw_responder: %s: %s\n", what, strerror(errno));
  exit(1);
}

struct Conn {
  int matched = 0;       // bytes of "\r\n\r\n" matched at the end of the previous read
  bool closing = false;  // close once the answers so far are written
  bool writing = false;  // waiting for EPOLLOUT instead of EPOLLIN
  std::string pending;   // answers the socket has not taken yet
};

void Watch(int epfd, int op, int fd, uint32_t events) {
  epoll_event e{};
  e.events = events;
  e.data.fd = fd;
  if (epoll_ctl(epfd, op, fd, &e) != 0) Die("epoll_ctl");
}

// Counts the terminators in [p, end), carrying a partial match across calls in *matched.
int CountTerminators(const char* p, const char* end, int* matched) {
  int count = 0;
  while (p < end) {
    if (*matched == 0) {
      p = static_cast<const char*>(memchr(p, '\r', static_cast<size_t>(end - p)));
      if (p == nullptr) break;
    }
    const char c = *p++;
    if (c == kTerminator[*matched]) {
      if (++*matched == 4) {
        ++count;
        *matched = 0;
      }
    } else {
      *matched = c == '\r' ? 1 : 0;
    }
  }
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (arg == "--address" && i + 1 < argc) {
      address = argv[++i];
    } else {
      fprintf(stderr, "usage: raw_responder [--port 0] [--address 127.0.0.1]\n");
      return 2;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (port < 0 || port > 65535 || inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    fprintf(stderr, "raw_responder: bad --port %d or --address %s\n", port, address.c_str());
    return 2;
  }

  // SIGTERM/SIGINT are blocked except inside epoll_pwait, so none is lost between the g_stop
  // check and the wait.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigset_t stop_signals, wait_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, &wait_mask);

  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0) Die("socket");
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // accepted sockets inherit it
  socklen_t addr_len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("bind");
  if (listen(listener, 4096) != 0) Die("listen");
  if (getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) Die("getsockname");
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) Die("epoll_create1");
  Watch(epfd, EPOLL_CTL_ADD, listener, EPOLLIN);
  printf("Listening on port %d\n", ntohs(addr.sin_port));
  fflush(stdout);

  std::vector<Conn> conns;  // by file descriptor
  std::vector<epoll_event> events(256);
  std::vector<char> in(64 * 1024);
  auto drop = [&](int fd) {
    close(fd);  // also leaves the epoll set
    conns[static_cast<size_t>(fd)] = Conn{};
  };
  while (!g_stop) {
    const int n = epoll_pwait(epfd, events.data(), static_cast<int>(events.size()), -1, &wait_mask);
    if (n < 0 && errno != EINTR) Die("epoll_pwait");
    for (int k = 0; k < n; ++k) {
      const int fd = events[k].data.fd;
      while (fd == listener) {
        const int cfd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (cfd < 0 && errno != EINTR && errno != ECONNABORTED) Die("accept4");
        if (cfd < 0) continue;
        if (static_cast<size_t>(cfd) >= conns.size()) conns.resize(static_cast<size_t>(cfd) + 1);
        conns[static_cast<size_t>(cfd)] = Conn{};
        Watch(epfd, EPOLL_CTL_ADD, cfd, EPOLLIN);
      }
      if (fd == listener) continue;
      Conn& c = conns[static_cast<size_t>(fd)];
      if (c.pending.empty()) {  // else this is EPOLLOUT (or an error it shows): send the rest
        const ssize_t r = recv(fd, in.data(), in.size(), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) {  // EOF or error
          drop(fd);
          continue;
        }
        if (memmem(in.data(), static_cast<size_t>(r), kClose.data(), kClose.size())) {
          c.closing = true;
        }
        for (int i = CountTerminators(in.data(), in.data() + r, &c.matched); i > 0; --i) {
          c.pending += c.closing && i == 1 ? kCloseResponse : kResponse;
        }
        if (c.pending.empty()) continue;  // no complete request yet
      }
      const ssize_t w = send(fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        drop(fd);
        continue;
      }
      if (w > 0) c.pending.erase(0, static_cast<size_t>(w));
      if (c.pending.empty() && c.closing) {
        drop(fd);
        continue;
      }
      if (c.pending.empty() == c.writing) {  // the socket's buffer filled up, or has room again
        c.writing = !c.pending.empty();
        Watch(epfd, EPOLL_CTL_MOD, fd, c.writing ? EPOLLOUT : EPOLLIN);
      }
    }
  }
  return 0;
}
