// tls_handshakes: new TLS connections back to back against a local HTTPS server, each one
// handshake, one `GET /` with "Connection: close", its answer read to the server's close; a few
// in flight at once (--concurrency). scripts/bench runs it to measure new connections per second
// and the server's CPU per handshake, with full handshakes or with resumed ones.
//
//   tls_handshakes --port 8443 [--address 127.0.0.1] [--mode full|resumed] [--concurrency 8]
//                  [--duration 10] [--max-version 1.3|1.2] [--timeout 10]
//
// --mode resumed: each of the --concurrency slots is one client, as a browser: its connection
// offers the session the server gave that slot's last connection (a TLS 1.3 ticket read after
// the handshake, or a TLS 1.2 one); a slot's first connection makes a full handshake to get one.
// Not one session shared by the slots: OpenSSL's client marks a TLS 1.3 session used once its
// handshake is done, so the slots that opened before the renewed ticket came would make full
// handshakes, as many as the server's queue is long, and the figure would measure that queue.
// --mode full: no session offered. Prints one JSON line:
//   {"connections":N,"seconds":S,"connections_per_s":R,"resumed":K,"version":"TLSv1.3",
//    "cipher":"TLS_AES_256_GCM_SHA384","group":"X25519"}
// and exits 1 with a message on any failed connect, handshake, non-200 answer or on --timeout
// without progress. No certificate is verified (the bench's is self-signed).
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "http_head.h"

namespace {

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

[[noreturn]] void Die(const std::string& message) {
  unsigned long e = ERR_get_error();
  char text[256] = "";
  if (e != 0) ERR_error_string_n(e, text, sizeof(text));
  fprintf(stderr, "tls_handshakes: %s%s%s\n", message.c_str(), e != 0 ? ": " : "", text);
  exit(1);
}

enum class State { kConnecting, kHandshake, kWriting, kReading };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::kConnecting;
  std::string in;
  SSL_SESSION* session = nullptr;  // the newest session the server gave this slot
};

int OnNewSession(SSL* ssl, SSL_SESSION* session) {
  Conn* c = static_cast<Conn*>(SSL_get_app_data(ssl));
  if (c->session != nullptr) SSL_SESSION_free(c->session);
  c->session = session;
  return 1;  // we keep the reference
}

// Whether `in` holds a whole 200 answer; dies on any other status.
bool AnswerComplete(const std::string& in) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  if (in.compare(0, 13, "HTTP/1.1 200 ") != 0)
    Die("unexpected answer: " + in.substr(0, in.find("\r\n")));
  const long length = ContentLength(in.substr(0, end + 2));
  if (length < 0) Die("answer without Content-Length");
  return in.size() >= end + 4 + static_cast<size_t>(length);
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "127.0.0.1";
  std::string mode = "full";
  std::string max_version = "1.3";
  int port = 0;
  long concurrency = 8;
  double duration = 10;
  double timeout = 10;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--port") port = atoi(value().c_str());
    else if (arg == "--address") address = value();
    else if (arg == "--mode") mode = value();
    else if (arg == "--concurrency") concurrency = atol(value().c_str());
    else if (arg == "--duration") duration = atof(value().c_str());
    else if (arg == "--max-version") max_version = value();
    else if (arg == "--timeout") timeout = atof(value().c_str());
    else Die("unknown argument " + arg + " (see the comment at the top of tls_handshakes.cc)");
  }
  if (port <= 0 || port > 65535) Die("--port must be 1-65535");
  if (mode != "full" && mode != "resumed") Die("--mode is full or resumed");
  if (max_version != "1.3" && max_version != "1.2") Die("--max-version is 1.3 or 1.2");
  if (concurrency <= 0 || duration <= 0) Die("--concurrency and --duration must be positive");
  const bool resume = mode == "resumed";

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) Die("bad --address " + address);

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, max_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_read_ahead(ctx, 1);  // a read per burst, not two per record: less client CPU
  if (resume) {
    // The client cache only calls OnNewSession; the session goes where we say.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, OnNewSession);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }

  const std::string request = "GET / HTTP/1.1\r\nHost: " + address + ":" + std::to_string(port) +
                              "\r\nConnection: close\r\n\r\n";
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Die("epoll_create1");
  std::vector<Conn> conns(static_cast<size_t>(concurrency));
  long done = 0, resumed = 0;
  std::string version, cipher, group;
  const double start = Now();
  const double end = start + duration;
  double progress = start;  // when a connection last finished

  // Opens a connection in slot `k`: a nonblocking connect, watched for writability.
  auto open = [&](size_t k) {
    Conn& c = conns[k];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) Die(std::string("socket: ") + strerror(errno));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
        errno != EINPROGRESS) {
      Die(std::string("connect: ") + strerror(errno));
    }
    c.state = State::kConnecting;
    c.in.clear();
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = k;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) Die("epoll_ctl add");
  };
  auto watch = [&](size_t k, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = k;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, conns[k].fd, &ev) != 0) Die("epoll_ctl mod");
  };
  auto finish = [&](size_t k) {
    Conn& c = conns[k];
    if (version.empty()) {
      version = SSL_get_version(c.ssl);
      cipher = SSL_get_cipher_name(c.ssl);
      const char* name = SSL_group_to_name(c.ssl, SSL_get_negotiated_group(c.ssl));
      group = name != nullptr ? name : "";
    }
    if (SSL_session_reused(c.ssl)) ++resumed;
    ++done;
    progress = Now();
    // The server has closed: no close_notify of ours to send, and without this SSL_free would
    // take the session for a failed one and make it not resumable.
    SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c.ssl);
    c.ssl = nullptr;
    close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
  };

  for (size_t k = 0; k < conns.size(); ++k) open(k);
  size_t live = conns.size();
  std::vector<epoll_event> events(conns.size());
  char buf[16384];
  while (live > 0) {
    if (Now() - progress > timeout) Die("no connection finished in " + std::to_string(timeout) +
                                        " s (" + std::to_string(done) + " done)");
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0 && errno != EINTR) Die(std::string("epoll_wait: ") + strerror(errno));
    for (int e = 0; e < n; ++e) {
      const size_t k = events[e].data.u64;
      Conn& c = conns[k];
      if (c.state == State::kConnecting) {
        int error = 0;
        socklen_t len = sizeof(error);
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) Die(std::string("connect: ") + strerror(error));
        c.ssl = SSL_new(ctx);
        if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) Die("SSL_new");
        SSL_set_tlsext_host_name(c.ssl, "localhost");
        SSL_set_app_data(c.ssl, &c);
        if (resume && c.session != nullptr) SSL_set_session(c.ssl, c.session);
        SSL_set_connect_state(c.ssl);
        c.state = State::kHandshake;
      }
      bool closed = false;
      for (bool progressed = true; progressed && !closed;) {
        progressed = false;
        int r = 0;
        // The error queue is the thread's: clear what another connection left in it.
        ERR_clear_error();
        if (c.state == State::kHandshake) {
          r = SSL_do_handshake(c.ssl);
          if (r == 1) c.state = State::kWriting, progressed = true;
        } else if (c.state == State::kWriting) {
          r = SSL_write(c.ssl, request.data(), static_cast<int>(request.size()));
          if (r > 0) c.state = State::kReading, progressed = true;
        } else {
          r = SSL_read(c.ssl, buf, sizeof(buf));
          if (r > 0) {
            c.in.append(buf, static_cast<size_t>(r));
            progressed = true;
            continue;
          }
        }
        if (progressed) continue;
        const int err = SSL_get_error(c.ssl, r);
        if (err == SSL_ERROR_WANT_READ) {
          watch(k, EPOLLIN);
        } else if (err == SSL_ERROR_WANT_WRITE) {
          watch(k, EPOLLOUT);
        } else if (c.state == State::kReading &&
                   (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL)) {
          // The server's close_notify, or its FIN (or a reset) after the answer.
          ERR_clear_error();
          if (!AnswerComplete(c.in)) Die("the server closed before its whole answer");
          finish(k);
          closed = true;
        } else {
          Die("TLS error " + std::to_string(err) + " in state " +
              std::to_string(static_cast<int>(c.state)));
        }
      }
      if (!closed) continue;
      --live;
      if (Now() < end) {  // the slot's next connection
        open(k);
        ++live;
      }
    }
  }
  const double seconds = Now() - start;
  printf("{\"connections\":%ld,\"seconds\":%.3f,\"connections_per_s\":%.1f,\"resumed\":%ld,"
         "\"version\":\"%s\",\"cipher\":\"%s\",\"group\":\"%s\"}\n",
         done, seconds, static_cast<double>(done) / seconds, resumed, version.c_str(),
         cipher.c_str(), group.c_str());
  for (Conn& c : conns) SSL_SESSION_free(c.session);  // null is fine
  SSL_CTX_free(ctx);
  return 0;
}
