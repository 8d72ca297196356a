#include "support/test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace percore::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Reads what is available within the deadline into `buffer`; false on EOF, error or timeout.
bool ReadMore(int fd, std::string& buffer, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  int ready = poll(&p, 1, static_cast<int>(left.count()));
  if (ready <= 0) return false;
  char chunk[65536];
  ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
  if (n <= 0) return false;
  buffer.append(chunk, static_cast<size_t>(n));
  return true;
}

}  // namespace

int ConnectLocal(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
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

std::optional<HttpResponse> ParseResponse(std::string_view data, size_t* consumed) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view head = data.substr(0, end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.substr(0, 9) != "HTTP/1.1 " || status_line.size() < 12) return std::nullopt;
  HttpResponse response;
  response.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  std::string_view rest = line_end == std::string_view::npos ? "" : head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    response.headers[Lower(line.substr(0, colon))] = std::string(value);
    if (eol == std::string_view::npos) break;
    rest.remove_prefix(eol + 2);
  }
  size_t length = 0;
  if (auto it = response.headers.find("content-length"); it != response.headers.end()) {
    length = std::strtoul(it->second.c_str(), nullptr, 10);
  }
  if (response.status / 100 == 1) length = 0;
  if (data.size() < end + 4 + length) return std::nullopt;
  response.body = std::string(data.substr(end + 4, length));
  *consumed = end + 4 + length;
  return response;
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

std::string ReadUntilClose(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string buffer;
  while (ReadMore(fd, buffer, deadline)) {
  }
  return buffer;
}

}  // namespace percore::testing
