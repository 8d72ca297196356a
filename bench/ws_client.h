// The client side of RFC 6455 that bench/ws_load drives: connections over plain sockets in one
// epoll set on one thread, the opening handshake (the 101 and Sec-WebSocket-Accept checked with
// a SHA-1 of our own, not the server's), masked frames out (5.3), and the server's frames in,
// whole however the reads split them, with 7-, 16- or 64-bit lengths and fragments gathered.
// What a message means is the mode's: a subclass's OnMessage.
#ifndef PERCORE_BENCH_WS_CLIENT_H_
#define PERCORE_BENCH_WS_CLIENT_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ws_load {

// Prints "ws_load: <message>" on stderr and exits 1: the first error ends a bench run.
[[noreturn]] void Die(const std::string& message);
int64_t NowNs();                // CLOCK_MONOTONIC
std::string Seconds(double s);  // "2.5 s"
std::array<uint8_t, 20> Sha1(std::string_view data);
std::string Base64(const uint8_t* p, size_t n);

struct Options {
  std::string mode, address = "127.0.0.1", path;
  int port = 0, connections = 64, subscribers = 1000, size = 64, rounds = 0, warmup_rounds = 20;
  double duration = 10, warmup = 1, timeout = 10, settle = 0.2;
  bool binary = false, go = false;
};

enum : uint8_t { kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10 };

struct Conn {
  int index = 0, fd = -1;
  bool open = false, closed = false, writable_wanted = false;
  std::string accept;   // the Sec-WebSocket-Accept the server must answer
  std::string in, out;  // bytes read and not yet taken; bytes waiting for the socket
  std::string message;  // a fragmented message, gathered
  uint8_t message_op = 0;
  std::string sent;     // echo: the message in flight
  int64_t sent_ns = 0;  // echo: when it went (0: none in flight)
  uint64_t seq = 0;     // echo: messages sent on it; fanout: the last round it received
};

class Client {
 public:
  explicit Client(const Options& o);
  virtual ~Client() = default;

  // Opens `count` connections to o.path and does their handshakes, a bounded number at a time;
  // dies if they are not all open within o.timeout.
  void Connect(int count);
  // Waits for events once (at most `timeout_ms`) and handles them.
  void Poll(int timeout_ms);
  // Sends one masked frame (opcode `op`, FIN set).
  void SendFrame(Conn& c, uint8_t op, std::string_view payload);
  // Sends a close frame on every connection and waits (at most 2 s) for the server to close
  // them; returns how many it did not.
  int CloseAll();

 protected:
  // A whole data message (text or binary) the server sent on `c`; `payload` lives until the
  // call returns.
  virtual void OnMessage(Conn& c, uint8_t op, std::string_view payload) = 0;

  const Options& o_;
  std::vector<Conn> conns_;

 private:
  void Start(int index);
  void Watch(Conn& c, bool writable);
  void Flush(Conn& c);
  void Writable(Conn& c);
  void Readable(Conn& c);
  void Gone(Conn& c, const std::string& why);
  bool Handshake(Conn& c);
  size_t Frame(Conn& c, size_t at);

  const int epoll_;
  int opened_ = 0, closed_ = 0;
  bool closing_ = false;
};

}  // namespace ws_load

#endif  // PERCORE_BENCH_WS_CLIENT_H_
