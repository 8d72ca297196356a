#include "ws_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ws_load {
namespace {

constexpr uint64_t kMaxMessage = 64 << 20;  // far past anything the modes send
constexpr int kHandshakesAtOnce = 128;      // so that the listener's backlog never overflows

uint32_t Rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

// xorshift64: masks and keys need not be secret here, only to vary (RFC 6455 5.3 asks for
// unpredictable masks against proxies' caches, which a loopback bench does not have).
uint64_t g_random = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(NowNs());
uint32_t Random32() {
  g_random ^= g_random << 13, g_random ^= g_random >> 7, g_random ^= g_random << 17;
  return static_cast<uint32_t>(g_random >> 16);
}

// The value of header field `name` in a response head, or "" when absent.
std::string HeaderValue(const std::string& head, std::string_view name) {
  for (size_t at = head.find("\r\n"); at != std::string::npos; at = head.find("\r\n", at + 2)) {
    const size_t start = at + 2;
    if (head.size() - start > name.size() && head[start + name.size()] == ':' &&
        strncasecmp(head.data() + start, name.data(), name.size()) == 0) {
      size_t v = start + name.size() + 1, end = head.find("\r\n", v);
      while (v < end && (head[v] == ' ' || head[v] == '\t')) ++v;
      while (end > v && (head[end - 1] == ' ' || head[end - 1] == '\t')) --end;
      return head.substr(v, end - v);
    }
  }
  return "";
}

std::string Errno() { return strerror(errno); }

std::string Where(const Conn& c) { return "connection " + std::to_string(c.index) + ": "; }

}  // namespace

void Die(const std::string& message) {
  fprintf(stderr, "ws_load: %s\n", message.c_str());
  exit(1);
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string Seconds(double s) {
  char out[32];
  snprintf(out, sizeof(out), "%g s", s);
  return out;
}

// FIPS 180-4, 6.1.2.
std::array<uint8_t, 20> Sha1(std::string_view data) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m(data);
  m.push_back('\x80');
  while (m.size() % 64 != 56) m.push_back('\0');
  const uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<char>(bits >> (i * 8)));
  for (size_t block = 0; block < m.size(); block += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const uint8_t*>(m.data() + block + i * 4);
      w[i] = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = Rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d), k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d, k = 0xCA62C1D6;
      }
      const uint32_t t = Rotl(a, 5) + f + e + k + w[i];
      e = d, d = c, c = Rotl(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  std::array<uint8_t, 20> out;
  for (int i = 0; i < 20; ++i) out[i] = static_cast<uint8_t>(h[i / 4] >> (24 - (i % 4) * 8));
  return out;
}

std::string Base64(const uint8_t* p, size_t n) {
  static const char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) |
                       (i + 2 < n ? p[i + 2] : 0);
    out += kDigits[v >> 18];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < n ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kDigits[v & 63] : '=';
  }
  return out;
}

Client::Client(const Options& o) : o_(o), epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_ < 0) Die("epoll_create1: " + Errno());
}

void Client::Connect(int count) {
  conns_.resize(static_cast<size_t>(count));  // never again: epoll's data are indexes
  const int64_t deadline = NowNs() + static_cast<int64_t>(o_.timeout * 1e9);
  int started = 0;
  while (opened_ < count) {
    while (started < count && started - opened_ < kHandshakesAtOnce) Start(started++);
    if (NowNs() > deadline) {
      Die(std::to_string(opened_) + " of " + std::to_string(count) + " connections open after " +
          Seconds(o_.timeout));
    }
    Poll(100);
  }
}

void Client::Poll(int timeout_ms) {
  epoll_event events[256];
  const int n = epoll_wait(epoll_, events, 256, timeout_ms);
  if (n < 0 && errno != EINTR) Die("epoll_wait: " + Errno());
  for (int i = 0; i < n; ++i) {
    Conn& c = conns_[events[i].data.u32];
    if (c.closed) continue;
    if (events[i].events & (EPOLLOUT | EPOLLERR)) Writable(c);
    if (!c.closed && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) Readable(c);
  }
}

void Client::SendFrame(Conn& c, uint8_t op, std::string_view payload) {
  uint8_t h[14];
  size_t n = 0;
  const uint64_t len = payload.size();
  h[n++] = static_cast<uint8_t>(0x80 | op);
  if (len < 126) {
    h[n++] = static_cast<uint8_t>(0x80 | len);
  } else {  // the length in the fewest bytes, as 5.2 asks
    const int bytes = len < 65536 ? 2 : 8;
    h[n++] = bytes == 2 ? 0x80 | 126 : 0x80 | 127;
    for (int i = bytes - 1; i >= 0; --i) h[n++] = static_cast<uint8_t>(len >> (i * 8));
  }
  const uint32_t mask = Random32();
  memcpy(h + n, &mask, 4);
  n += 4;
  const size_t at = c.out.size() + n;
  c.out.append(reinterpret_cast<char*>(h), n).append(payload);
  for (size_t i = 0; i < len; ++i) c.out[at + i] ^= static_cast<char>(h[n - 4 + (i & 3)]);
  if (!c.writable_wanted) Flush(c);  // else the socket is full: EPOLLOUT sends it
}

int Client::CloseAll() {
  closing_ = true;
  for (Conn& c : conns_) {
    if (!c.closed) SendFrame(c, kClose, std::string_view("\x03\xe8", 2));  // 1000
  }
  const int64_t deadline = NowNs() + 2000000000;
  while (closed_ < static_cast<int>(conns_.size()) && NowNs() < deadline) Poll(50);
  const int left = static_cast<int>(conns_.size()) - closed_;
  for (Conn& c : conns_) {
    if (!c.closed) close(c.fd);
  }
  return left;
}

void Client::Start(int index) {
  Conn& c = conns_[static_cast<size_t>(index)];
  c.index = index;
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) Die("socket: " + Errno());
  const int one = 1;  // one small frame at a time: never wait for an ACK to send it
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o_.port));
  if (inet_pton(AF_INET, o_.address.c_str(), &addr.sin_addr) != 1) Die("bad --address");
  if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    Die(Where(c) + "connect: " + Errno());
  }
  uint8_t key[16];
  for (int i = 0; i < 16; i += 4) {
    const uint32_t r = Random32();
    memcpy(key + i, &r, 4);
  }
  const std::string key64 = Base64(key, 16);
  const auto digest = Sha1(key64 + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");  // RFC 6455 4.2.2
  c.accept = Base64(digest.data(), digest.size());
  c.out = "GET " + o_.path + " HTTP/1.1\r\nHost: " + o_.address + ":" + std::to_string(o_.port) +
          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key64 +
          "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  c.writable_wanted = true;  // the request goes once the connect completes
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = static_cast<uint32_t>(index);
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev) != 0) Die("epoll_ctl: " + Errno());
}

void Client::Watch(Conn& c, bool writable) {
  c.writable_wanted = writable;
  epoll_event ev{};
  ev.events = EPOLLIN | (writable ? EPOLLOUT : 0u);
  ev.data.u32 = static_cast<uint32_t>(c.index);
  if (epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev) != 0) Die("epoll_ctl: " + Errno());
}

void Client::Flush(Conn& c) {
  while (!c.out.empty()) {
    const ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {  // the socket is full: EPOLLOUT says when it is not
      if (!c.writable_wanted) Watch(c, true);
      return;
    }
    if (n < 0) return Gone(c, "send: " + Errno());
    c.out.erase(0, static_cast<size_t>(n));
  }
  if (c.writable_wanted) Watch(c, false);
}

void Client::Writable(Conn& c) {
  if (!c.open) {  // the connect finished, or failed
    int error = 0;
    socklen_t len = sizeof(error);
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) Die(Where(c) + "connect: " + strerror(error));
  }
  Flush(c);
}

// The server closed or reset `c`: expected only once we have sent our close frame.
void Client::Gone(Conn& c, const std::string& why) {
  if (!closing_) Die(Where(c) + why);
  close(c.fd);
  c.closed = true;
  ++closed_;
}

void Client::Readable(Conn& c) {
  char buffer[65536];
  const ssize_t n = recv(c.fd, buffer, sizeof(buffer), 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) return Gone(c, n == 0 ? "the server closed the connection" : "recv: " + Errno());
  c.in.append(buffer, static_cast<size_t>(n));
  if (!c.open && !Handshake(c)) return;
  // Every whole frame read so far; a partial one stays in c.in for the next read.
  size_t at = 0;
  while (!c.closed) {
    const size_t used = Frame(c, at);
    if (used == 0) break;
    at += used;
  }
  if (!c.closed) c.in.erase(0, at);
}

// Checks the server's 101 once its head is whole; false until then.
bool Client::Handshake(Conn& c) {
  const size_t end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.in.size() > 16384) Die(Where(c) + "no end to the handshake's answer");
    return false;
  }
  const std::string head = c.in.substr(0, end + 2);
  if (head.compare(0, 13, "HTTP/1.1 101 ") != 0) {
    Die(Where(c) + "the handshake was answered " + head.substr(0, head.find("\r\n")));
  }
  if (strcasecmp(HeaderValue(head, "upgrade").c_str(), "websocket") != 0 ||
      HeaderValue(head, "sec-websocket-accept") != c.accept) {
    Die(Where(c) + "wrong Upgrade or Sec-WebSocket-Accept in:\n" + head);
  }
  if (!HeaderValue(head, "sec-websocket-extensions").empty()) {
    Die(Where(c) + "an extension the client did not offer:\n" + head);
  }
  c.in.erase(0, end + 4);  // what follows the head is frames already
  c.open = true;
  ++opened_;
  return true;
}

// Reads the frame at `at` of c.in if it is whole: returns the bytes it took, or 0.
size_t Client::Frame(Conn& c, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(c.in.data() + at);
  const size_t available = c.in.size() - at;
  if (available < 2) return 0;
  if (p[0] & 0x70) Die(Where(c) + "reserved bits set, with no extension agreed");
  if (p[1] & 0x80) Die(Where(c) + "a masked frame from the server (RFC 6455 5.1)");
  const bool fin = p[0] & 0x80;
  const uint8_t op = p[0] & 0x0F;
  uint64_t len = p[1] & 0x7F;
  size_t header = 2;
  if (len >= 126) {
    header = len == 126 ? 4 : 10;
    if (available < header) return 0;
    len = 0;
    for (size_t i = 2; i < header; ++i) len = (len << 8) | p[i];
  }
  if (len > kMaxMessage) Die(Where(c) + "a frame of " + std::to_string(len) + " bytes");
  if (available - header < len) return 0;  // the rest comes in a later read
  const std::string_view payload(c.in.data() + at + header, len);
  if (op == kPing) {
    SendFrame(c, kPong, payload);
  } else if (op == kClose) {
    if (closing_) {  // the server's answer to ours: it closes the TCP connection next
      Gone(c, "");
      return 0;
    }
    const int code = len >= 2 ? (p[header] << 8) | p[header + 1] : 1005;
    Die(Where(c) + "the server closed with code " + std::to_string(code));
  } else if (op == kText || op == kBinary || op == 0) {
    if (op != 0) c.message_op = op;
    if (op != 0 && fin) {
      OnMessage(c, op, payload);  // whole in one frame: no copy
    } else {
      c.message.append(payload);
      if (fin) {
        OnMessage(c, c.message_op, c.message);
        c.message.clear();
      }
    }
  } else if (op != kPong) {
    Die(Where(c) + "unknown opcode " + std::to_string(op));
  }
  return header + len;
}

}  // namespace ws_load
