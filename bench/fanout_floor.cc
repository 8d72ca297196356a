// fanout_floor: what a publish to N subscribers costs the kernel alone on this machine, the floor
// under scripts/bench's WebSocket fan-out. One thread opens N loopback TCP connections to itself,
// then, round after round, writes one 66-byte WebSocket frame (a 64-byte message) to each
// connection's server end with a plain send() (the least any server can do: no framing, no
// event loop, no buffering), and reads them all back on the client ends. It prints the time the
// N sends took, per round (median and p99), and per send: on loopback a send also delivers into
// the receiver's socket, which is most of a delivery's cost.
//
//   fanout_floor [--subscribers 1000] [--rounds 200]
//
// Pin it as the bench pins a server (taskset -c 0): the reads run on the same CPU, after the
// sends, and are not counted.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int subscribers = 1000, rounds = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--subscribers") == 0) subscribers = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      listen(listener, 4096) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    Die("listen");
  }
  std::vector<int> servers, clients;
  for (int i = 0; i < subscribers; ++i) {
    const int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, reinterpret_cast<sockaddr*>(&address), length) != 0) {
      Die("connect (raise the descriptor limit: ulimit -n)");
    }
    const int server = accept(listener, nullptr, nullptr);
    if (server < 0) Die("accept");
    const int one = 1;
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    clients.push_back(client);
    servers.push_back(server);
  }
  // A server's unmasked text frame: FIN + text, a 7-bit length of 64, the message.
  std::string frame = "\x81\x40" + std::string(64, 'm');
  std::vector<double> round_us;
  char buffer[256];
  for (int r = 0; r < rounds; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int fd : servers) {
      if (send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(frame.size())) {
        Die("send");
      }
    }
    const auto end = std::chrono::steady_clock::now();
    round_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    for (int fd : clients) {
      size_t got = 0;
      while (got < frame.size()) {
        const ssize_t n = recv(fd, buffer, frame.size() - got, 0);
        if (n <= 0) Die("recv");
        got += static_cast<size_t>(n);
      }
    }
  }
  std::sort(round_us.begin(), round_us.end());
  const double median = round_us[round_us.size() / 2];
  const double p99 = round_us[std::min(round_us.size() - 1, round_us.size() * 99 / 100)];
  std::printf(
      "%d sends of a 64-byte message: median %.2f ms, p99 %.2f ms a round; %.2f us a send\n",
      subscribers, median / 1000, p99 / 1000, median / subscribers);
  return 0;
}
