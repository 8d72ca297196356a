#include "support/test_client.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

namespace percore::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Reads what is available within the deadline into `buffer`; false on EOF, error or timeout.
bool ReadMore(int fd, std::string& buffer, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  int ready = poll(&p, 1, static_cast<int>(left.count()));
  if (ready < 0 && errno == EINTR) return ReadMore(fd, buffer, deadline);
  if (ready <= 0) return false;
  char chunk[65536];
  ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
  if (n < 0 && errno == EINTR) return ReadMore(fd, buffer, deadline);
  if (n <= 0) return false;
  buffer.append(chunk, static_cast<size_t>(n));
  return true;
}

sockaddr_in LoopbackAddress(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

}  // namespace

void Socket::Reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

int ConnectLocal(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr = LoopbackAddress(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string Get(std::string_view path) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::optional<HttpResponse> ReadResponse(int fd, std::string& buffer,
                                         std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    size_t consumed = 0;
    if (auto response = ParseResponse(buffer, &consumed)) {
      buffer.erase(0, consumed);
      return response;
    }
    if (!ReadMore(fd, buffer, deadline)) return std::nullopt;
  }
}

std::optional<HttpResponse> Fetch(int port, std::string_view request,
                                  std::chrono::milliseconds timeout) {
  Socket socket(ConnectLocal(port));
  if (!socket.ok() || !SendAll(socket.fd(), request)) return std::nullopt;
  std::string buffer;
  return ReadResponse(socket.fd(), buffer, timeout);
}

std::string ReadUntilClose(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string buffer;
  while (ReadMore(fd, buffer, deadline)) {
  }
  return buffer;
}

ReadToEndResult ReadToEnd(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  ReadToEndResult result;
  char chunk[65536];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.end = StreamEnd::kTimeout;
      return result;
    }
    pollfd p{fd, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      result.end = StreamEnd::kReset;
      return result;
    }
    if (ready == 0) continue;  // the deadline check above ends it
    ssize_t n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      result.data.append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      result.end = StreamEnd::kClosed;
      return result;
    } else if (errno != EINTR && errno != EAGAIN) {
      result.end = StreamEnd::kReset;
      return result;
    }
  }
}

bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

bool SetResetOnClose(int fd) {
  linger l{1, 0};
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0;
}

int CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the directory's own descriptor
}

int WaitForFdCount(int expected, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int count = CountOpenFds();
  while (count != expected && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    count = CountOpenFds();
  }
  return count;
}

uint64_t RaiseFdLimit(uint64_t wanted) {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = std::min<rlim_t>(wanted, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

namespace {

// One connection of RunConnections().
struct ClientConnection {
  int fd = -1;
  bool connected = false;
  bool finished = false;  // every response in, or failed
  bool failed = false;
  int index = 0;    // the request in flight (or next)
  std::string out;  // bytes of that request not yet sent
  size_t out_offset = 0;
  std::string in;       // bytes received and not yet parsed
  uint32_t events = 0;  // what epoll watches
};

class ConnectionsDriver {
 public:
  explicit ConnectionsDriver(const ConnectionsOptions& options) : options_(options) {}

  ~ConnectionsDriver() {
    for (ClientConnection& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  ConnectionsResult Run() {
    const auto deadline = Clock::now() + options_.timeout;
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      Note("epoll_create1: " + std::string(strerror(errno)));
      return result_;
    }
    conns_.resize(static_cast<size_t>(options_.connections));
    for (int i = 0; i < options_.connections; ++i) Connect(i);
    std::vector<epoll_event> events(256);
    while (unfinished_ > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        result_.timed_out = true;
        Note("timed out with " + std::to_string(unfinished_) + " connections unfinished");
        break;
      }
      int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(std::min<int64_t>(left.count(), 100)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Note("epoll_wait: " + std::string(strerror(errno)));
        break;
      }
      for (int i = 0; i < n; ++i) Handle(static_cast<int>(events[i].data.u32), events[i].events);
    }
    for (const ClientConnection& c : conns_) {
      if (c.finished && !c.failed) ++result_.completed;
    }
    return result_;
  }

 private:
  void Note(std::string message) {
    if (result_.errors.size() < 10) result_.errors.push_back(std::move(message));
  }

  void Fail(int i, const std::string& why) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    if (c.finished) return;
    Note("connection " + std::to_string(i) + ", request " + std::to_string(c.index) + ": " + why);
    c.failed = true;
    Finish(i);
  }

  void Finish(int i) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    c.finished = true;
    --unfinished_;
    if (c.fd >= 0 && c.events != 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    c.events = 0;
  }

  void Watch(int i, uint32_t events) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    if (c.events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(epoll_fd_, c.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
    c.events = events;
  }

  void Connect(int i) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    ++unfinished_;
    if (options_.requests_per_connection <= 0) {
      Finish(i);
      return;
    }
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c.fd < 0) {
      Fail(i, "socket: " + std::string(strerror(errno)));
      return;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr = LoopbackAddress(options_.port);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
        errno != EINPROGRESS) {
      Fail(i, "connect: " + std::string(strerror(errno)));
      return;
    }
    c.out = options_.make_request(i, 0);
    c.out_offset = 0;
    Watch(i, EPOLLOUT | EPOLLIN);  // EPOLLOUT: the connect completed
  }

  void Handle(int i, uint32_t events) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    if (c.finished) return;
    if (!c.connected) {
      int error = 0;
      socklen_t length = sizeof(error);
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        Fail(i, "connect: " + std::string(strerror(error)));
        return;
      }
      if ((events & (EPOLLOUT | EPOLLIN)) == 0) {
        Fail(i, "connect failed (events " + std::to_string(events) + ")");
        return;
      }
      c.connected = true;
      ++result_.connected;
    }
    if ((events & EPOLLIN) != 0 || (events & (EPOLLHUP | EPOLLERR)) != 0) {
      if (!Receive(i)) return;
    }
    if (c.out_offset < c.out.size()) Send(i);
  }

  // Sends what the connection can take; watches for writability when some is left.
  void Send(int i) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    while (c.out_offset < c.out.size()) {
      ssize_t n =
          send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_offset += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        Watch(i, EPOLLIN | EPOLLOUT);
        return;
      } else {
        Fail(i, "send: " + std::string(strerror(errno)));
        return;
      }
    }
    Watch(i, EPOLLIN);
  }

  // Reads and checks responses; false if the connection finished or failed.
  bool Receive(int i) {
    ClientConnection& c = conns_[static_cast<size_t>(i)];
    char chunk[16384];
    while (true) {
      ssize_t n = recv(c.fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        c.in.append(chunk, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof(chunk)) break;
      } else if (n == 0) {
        Fail(i, "the server closed the connection");
        return false;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN) {
        break;
      } else {
        Fail(i, "recv: " + std::string(strerror(errno)));
        return false;
      }
    }
    while (!c.in.empty()) {
      size_t consumed = 0;
      std::optional<HttpResponse> response = ParseResponse(c.in, &consumed);
      if (!response) {
        if (c.in.find("\r\n\r\n") != std::string::npos && c.in.compare(0, 9, "HTTP/1.1 ") != 0) {
          Fail(i, "malformed response: " + c.in.substr(0, 80));
          return false;
        }
        break;  // incomplete
      }
      c.in.erase(0, consumed);
      ++result_.responses;
      if (c.out_offset < c.out.size()) {
        Fail(i, "a response arrived before its request was sent");
        return false;
      }
      std::string why = options_.check_response(i, c.index, *response);
      if (!why.empty()) {
        ++result_.bad_responses;
        Fail(i, why);
        return false;
      }
      ++c.index;
      if (c.index == options_.requests_per_connection) {
        if (!c.in.empty()) {
          Fail(i, "bytes after the last response: " + c.in.substr(0, 80));
          return false;
        }
        Finish(i);
        return false;
      }
      if (!c.in.empty()) {
        Fail(i, "bytes before the next request was sent: " + c.in.substr(0, 80));
        return false;
      }
      c.out = options_.make_request(i, c.index);
      c.out_offset = 0;
    }
    return true;
  }

  const ConnectionsOptions& options_;
  int epoll_fd_ = -1;
  std::vector<ClientConnection> conns_;
  int unfinished_ = 0;
  ConnectionsResult result_;
};

}  // namespace

ConnectionsResult RunConnections(const ConnectionsOptions& options) {
  ConnectionsDriver driver(options);
  return driver.Run();
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

LoadClient::LoadClient(Options options) : options_(std::move(options)) {
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Run(); });
}

void LoadClient::Stop() {
  stop_.store(true);
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

std::vector<std::string> LoadClient::errors() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return errors_;
}

void LoadClient::Fail(const std::string& what, bool refused) {
  failures_.fetch_add(1);
  if (refused) refused_.fetch_add(1);
  std::lock_guard<std::mutex> lock(mutex_);
  if (errors_.size() < 10) errors_.push_back(what);
}

void LoadClient::Run() {
  const std::string request = Get(options_.path);
  Socket socket;
  std::string buffer;
  while (!stop_.load()) {
    if (!socket.ok()) {
      const int fd = ConnectLocal(options_.port);
      if (fd < 0) {
        const int error = errno;
        Fail(std::string("connect: ") + strerror(error), error == ECONNREFUSED);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // paces retries only
        continue;
      }
      socket = Socket(fd);
      buffer.clear();
    }
    std::optional<HttpResponse> response;
    if (SendAll(socket.fd(), request)) {
      response = ReadResponse(socket.fd(), buffer, std::chrono::milliseconds(10000));
    }
    if (!response.has_value()) {
      Fail(std::string("no response: ") + strerror(errno), false);
      socket.Reset();
      continue;
    }
    responses_.fetch_add(1);
    if (response->status != 200) Fail("status " + std::to_string(response->status), false);
    if (options_.connection_per_request || response->Header("connection") == "close") {
      socket.Reset();
    }
  }
}

long ResidentKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

}  // namespace percore::testing
