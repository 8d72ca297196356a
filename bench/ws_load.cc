// ws_load: the WebSocket load generator scripts/bench runs (wrk speaks no WebSocket). Plain
// sockets and epoll on one thread, as a client must speak RFC 6455: every frame it sends is
// masked (5.3), and the server's frames are read however the reads split them, with 7-, 16- or
// 64-bit lengths.
//
//   ws_load echo --port P [--path /ws/echo] [--connections 64] [--size 64] [--duration 10]
//                [--warmup 1] [--binary]
//   ws_load fanout --port P [--path /ws/chat] [--subscribers 1000] [--size 64]
//                  [--duration 10] [--rounds 0] [--warmup-rounds 20] [--settle 0.2]
//   either: [--address 127.0.0.1] [--timeout 10] [--go]
//
// echo: each connection does the opening handshake (the 101 and Sec-WebSocket-Accept checked),
// then keeps exactly one message of --size bytes in flight, each different, and checks that the
// echo is the same message. fanout: --subscribers connections and one publisher join the room
// (/ws/chat: what anyone sends, everyone receives, sender included); the publisher sends one
// message, waits until every connection has it and records the time from the send to the last
// receipt, then sends the next, for --rounds (0: no limit) or --duration seconds. It waits
// --settle seconds between the last handshake and the first message (see Fanout::Run).
//
// With --go it prints "ready" once every connection is open and warmed up, and waits for a line
// on stdin before measuring: the caller reads the server's CPU time from "go" to the result, not
// the handshakes'. The result, one JSON line on stdout, comes before the connections are closed
// (with a close frame each) for the same reason. The first error ends the run with exit code 1
// and a message on stderr: a refused connection or handshake, a wrong Sec-WebSocket-Accept, a
// close or reset by the server, a wrong echo, or a round not complete within --timeout (a
// subscriber missed a message). The sockets, handshakes and frames are bench/ws_client.{h,cc}.
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ws_client.h"

namespace ws_load {
namespace {

// Latencies in ns, summarized in microseconds.
std::string Percentiles(std::vector<int64_t> ns) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    if (ns.empty()) return 0.0;
    return ns[std::min(ns.size() - 1, static_cast<size_t>(q * ns.size()))] / 1e3;
  };
  char out[160];
  snprintf(out, sizeof(out),
           "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f", at(0.5),
           at(0.9), at(0.99), ns.empty() ? 0.0 : ns.back() / 1e3);
  return out;
}

// Waits for the caller's "go" (with --go) after saying "ready".
void ReadyGo(const Options& o) {
  if (!o.go) return;
  printf("ready\n");
  fflush(stdout);
  pollfd in = {0, POLLIN, 0};
  char line[64];
  if (poll(&in, 1, static_cast<int>(o.timeout * 1000)) != 1 || read(0, line, sizeof(line)) <= 0) {
    Die("no \"go\" on stdin within --timeout");
  }
}

class Echo : public Client {
 public:
  using Client::Client;

  void Run() {
    Connect(o_.connections);
    Phase(o_.warmup);
    ReadyGo(o_);
    latencies_.clear();
    latencies_.reserve(1 << 20);
    const int64_t ns = Phase(o_.duration);
    printf(
        "{\"mode\": \"echo\", \"connections\": %d, \"size\": %d, \"opcode\": \"%s\", "
        "\"messages\": %zu, \"seconds\": %.3f, \"messages_per_s\": %.1f, %s}\n",
        o_.connections, o_.size, o_.binary ? "binary" : "text", latencies_.size(), ns / 1e9,
        latencies_.size() / (ns / 1e9), Percentiles(latencies_).c_str());
    fflush(stdout);
  }

 private:
  // Every connection echoes for `seconds`; then none sends again and the echoes still in
  // flight come back (uncounted), so that the next phase starts from none in flight.
  int64_t Phase(double seconds) {
    const int64_t start = NowNs();
    end_ = start + static_cast<int64_t>(seconds * 1e9);
    for (Conn& c : conns_) SendNext(c);
    in_flight_ = o_.connections;
    int64_t last = start;  // when the last echo came back
    while (in_flight_ > 0) {
      const int64_t before = done_;
      Poll(10);
      const int64_t now = NowNs();
      if (done_ != before) last = now;
      if (now - last > static_cast<int64_t>(o_.timeout * 1e9)) {
        Die("no echo for " + Seconds(o_.timeout) + " (" + std::to_string(done_) +
            " echoed before)");
      }
    }
    return end_ - start;
  }

  void SendNext(Conn& c) {
    // Each message differs (its number, then letters or bytes shifted by it), so an echo of an
    // earlier one, or of another connection's, is caught.
    const uint64_t seq = c.seq++;
    c.sent.resize(static_cast<size_t>(o_.size));
    const int head = snprintf(c.sent.data(), c.sent.size() + 1, "%d:%llu ", c.index,
                              static_cast<unsigned long long>(seq));
    for (size_t i = static_cast<size_t>(std::max(head, 0)); i < c.sent.size(); ++i) {
      c.sent[i] = static_cast<char>(o_.binary ? seq * 31 + i : 'a' + (seq + i) % 26);
    }
    c.sent_ns = NowNs();
    SendFrame(c, o_.binary ? kBinary : kText, c.sent);
  }

  void OnMessage(Conn& c, uint8_t op, std::string_view payload) override {
    if (c.sent_ns == 0 || op != (o_.binary ? kBinary : kText) || payload != c.sent) {
      Die("connection " + std::to_string(c.index) + ": wrong echo (" +
          std::to_string(payload.size()) + " bytes, opcode " + std::to_string(op) + ")");
    }
    const int64_t now = NowNs(), sent = c.sent_ns;
    c.sent_ns = 0;
    ++done_;
    if (now < end_) {
      latencies_.push_back(now - sent);
      SendNext(c);
    } else {
      --in_flight_;
    }
  }

  int64_t end_ = 0, done_ = 0;
  int in_flight_ = 0;
  std::vector<int64_t> latencies_;
};

class Fanout : public Client {
 public:
  using Client::Client;

  void Run() {
    receivers_ = o_.subscribers + 1;  // the publisher is in the room too
    Connect(receivers_);
    // hello_cores may subscribe a connection (its `open`) after its 101 has left, and a message
    // published in between does not reach it: the last connections get time to subscribe.
    for (const int64_t end = NowNs() + static_cast<int64_t>(o_.settle * 1e9); NowNs() < end;) {
      Poll(10);
    }
    for (int i = 0; i < o_.warmup_rounds; ++i) Round();
    ReadyGo(o_);
    latencies_.clear();
    const int64_t start = NowNs(), end = start + static_cast<int64_t>(o_.duration * 1e9);
    int rounds = 0;
    while ((o_.rounds == 0 || rounds < o_.rounds) && NowNs() < end) {
      latencies_.push_back(Round());
      ++rounds;
    }
    const double seconds = (NowNs() - start) / 1e9;
    printf(
        "{\"mode\": \"fanout\", \"subscribers\": %d, \"receivers\": %d, \"size\": %d, "
        "\"rounds\": %d, \"deliveries\": %lld, \"seconds\": %.3f, \"deliveries_per_s\": %.1f, "
        "%s}\n",
        o_.subscribers, receivers_, o_.size, rounds, static_cast<long long>(rounds) * receivers_,
        seconds, static_cast<double>(rounds) * receivers_ / seconds,
        Percentiles(latencies_).c_str());
    fflush(stdout);
  }

 private:
  // One message from the publisher (the last connection) to everyone: the ns it took.
  int64_t Round() {
    ++round_;
    expected_ = "round " + std::to_string(round_) + " ";
    expected_.resize(static_cast<size_t>(std::max(o_.size, 1)), '.');
    expected_.resize(static_cast<size_t>(o_.size));
    waiting_ = receivers_;
    const int64_t sent = NowNs();
    SendFrame(conns_.back(), kText, expected_);
    while (waiting_ > 0) {
      Poll(10);
      if (waiting_ > 0 && NowNs() - sent > static_cast<int64_t>(o_.timeout * 1e9)) {
        std::string missed;  // which, to tell a lost message from a slow loop
        for (const Conn& c : conns_) {
          if (c.seq != round_ && missed.size() < 60) {
            missed.append(" ").append(std::to_string(c.index));
          }
        }
        Die("round " + std::to_string(round_) + ": " + std::to_string(receivers_ - waiting_) +
            " of " + std::to_string(receivers_) + " connections received it within " +
            Seconds(o_.timeout) + "; not:" + missed + " (the publisher is " +
            std::to_string(receivers_ - 1) + ")");
      }
    }
    return last_ - sent;
  }

  void OnMessage(Conn& c, uint8_t op, std::string_view payload) override {
    if (op != kText || payload != expected_ || c.seq == round_) {  // c.seq: its last round
      Die("connection " + std::to_string(c.index) + ": received " +
          std::string(payload.substr(0, 40)) + " while round " + std::to_string(round_) +
          "'s message was due, once");
    }
    c.seq = round_;
    last_ = NowNs();
    --waiting_;
  }

  int receivers_ = 0, waiting_ = 0;
  uint64_t round_ = 0;
  int64_t last_ = 0;
  std::string expected_;
  std::vector<int64_t> latencies_;
};

void RaiseFileLimit(rlim_t needed) {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
  limit.rlim_cur = std::min(needed, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < needed) Die("RLIMIT_NOFILE is too low for the connections asked");
}

Options Parse(int argc, char** argv) {
  Options o;
  if (argc < 2) Die("usage: ws_load echo|fanout --port P [options] (see bench/ws_load.cc)");
  o.mode = argv[1];
  const std::pair<const char*, int*> ints[] = {{"--port", &o.port},
                                               {"--connections", &o.connections},
                                               {"--subscribers", &o.subscribers},
                                               {"--size", &o.size},
                                               {"--rounds", &o.rounds},
                                               {"--warmup-rounds", &o.warmup_rounds}};
  const std::pair<const char*, double*> doubles[] = {{"--duration", &o.duration},
                                                     {"--warmup", &o.warmup},
                                                     {"--timeout", &o.timeout},
                                                     {"--settle", &o.settle}};
  const std::pair<const char*, std::string*> strings[] = {{"--path", &o.path},
                                                          {"--address", &o.address}};
  const std::pair<const char*, bool*> flags[] = {{"--binary", &o.binary}, {"--go", &o.go}};
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) Die(std::string(arg) + " needs a value");
      return argv[++i];
    };
    auto number = [&]() {
      char* end = nullptr;
      const char* text = value();
      const double v = strtod(text, &end);
      if (*end != '\0' || end == text || v < 0) Die("bad value for " + std::string(arg));
      return v;
    };
    bool known = false;
    for (auto& [name, to] : ints) {
      if (arg == name) *to = static_cast<int>(number()), known = true;
    }
    for (auto& [name, to] : doubles) {
      if (arg == name) *to = number(), known = true;
    }
    for (auto& [name, to] : strings) {
      if (arg == name) *to = value(), known = true;
    }
    for (auto& [name, to] : flags) {
      if (arg == name) *to = true, known = true;
    }
    if (!known) Die("unknown argument " + std::string(arg));
  }
  if (o.mode != "echo" && o.mode != "fanout") Die("the mode is echo or fanout");
  if (o.port <= 0 || o.port > 65535) Die("--port is required");
  if (o.path.empty()) o.path = o.mode == "echo" ? "/ws/echo" : "/ws/chat";
  if (o.connections < 1 || o.timeout <= 0) Die("bad --connections or --timeout");
  return o;
}

}  // namespace
}  // namespace ws_load

int main(int argc, char** argv) {
  const ws_load::Options o = ws_load::Parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  ws_load::RaiseFileLimit(static_cast<rlim_t>(std::max(o.connections, o.subscribers + 1)) + 64);
  int left = 0;
  if (o.mode == "echo") {
    ws_load::Echo echo(o);
    echo.Run();
    left = echo.CloseAll();
  } else {
    ws_load::Fanout fanout(o);
    fanout.Run();
    left = fanout.CloseAll();
  }
  // After the result: a server slow to close is worth a line, not a failed run.
  if (left > 0) fprintf(stderr, "ws_load: %d connections not closed by the server in 2 s\n", left);
  return 0;
}
