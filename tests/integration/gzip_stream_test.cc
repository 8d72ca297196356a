// Compress() of a big file (issue #21): gzipped as its client reads it, chunked, so a client that
// reads nothing makes the server hold the stream's bound, a piece and one zlib stream, not the
// whole compressed file. The engine in-process with two loops on 127.0.0.1, once per backend;
// every wait has a deadline.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "percore/engine.h"
#include "percore/http/app.h"
#include "percore/http/middleware.h"
#include "percore/options.h"
#include "http/gzip_checks.h"
#include "support/backends.h"
#include "support/engine_test.h"
#include "support/test_client.h"

namespace percore {
namespace {

using percore::http::App;
using percore::http::Inflate;
using percore::http::Compress;
using percore::http::Request;
using percore::http::Response;
using percore::testing::ReadToEnd;
using percore::testing::ResidentKib;
using percore::testing::SendAll;
using percore::testing::Socket;
using percore::testing::StreamEnd;
using percore::testing::WaitUntil;
using std::chrono::milliseconds;

constexpr milliseconds kReadTimeout(20000);
constexpr size_t kFileBytes = 4 << 20;

// Pseudo-random words: 1,000 of 3 to 9 random letters, then drawn at random. Text that gzip
// makes about three times smaller (1.3 MB of 4 MiB), as a real page or log is, not a thousand.
std::string Words(size_t bytes) {
  uint64_t x = 0x9e3779b97f4a7c15;
  const auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  std::vector<std::string> vocabulary(1000);
  for (std::string& word : vocabulary) {
    for (size_t n = 3 + next() % 7; word.size() < n;) word += static_cast<char>('a' + next() % 26);
  }
  std::string s;
  s.reserve(bytes + 16);
  while (s.size() < bytes) {
    s += vocabulary[next() % vocabulary.size()];
    s += ' ';
  }
  s.resize(bytes);
  return s;
}

const std::string& FileContent() {
  static const std::string content = Words(kFileBytes);
  return content;
}

// A chunked body's data, or nullopt if it is malformed or has no last chunk.
std::optional<std::string> Dechunk(std::string_view body) {
  std::string data;
  while (true) {
    const size_t line_end = body.find("\r\n");
    if (line_end == std::string_view::npos) return std::nullopt;
    const size_t size = std::strtoul(std::string(body.substr(0, line_end)).c_str(), nullptr, 16);
    body.remove_prefix(line_end + 2);
    if (size == 0) return body == "\r\n" ? std::optional(data) : std::nullopt;
    if (body.size() < size + 2 || body.substr(size, 2) != "\r\n") return std::nullopt;
    data.append(body.substr(0, size));
    body.remove_prefix(size + 2);
  }
}

std::string GzipGet(std::string_view path) {
  return "GET " + std::string(path) +
         " HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
}

class GzipStreamTest : public percore::testing::EngineTest {
 protected:
  void SetUp() override {
    char name[] = "/tmp/percore_gzip_stream_XXXXXX";
    const int fd = mkstemp(name);
    ASSERT_GE(fd, 0);
    path_ = name;
    ASSERT_EQ(write(fd, FileContent().data(), kFileBytes), static_cast<ssize_t>(kFileBytes));
    close(fd);
    App app;
    app.Use(Compress());
    const std::string path = path_;
    app.Get("/words", [path](const Request&, Response& res) {
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("open");
      res.Type("text/plain").SendFile(fd, 0, kFileBytes);
    });
    // A range the file does not hold: it ends 1 MiB short, mid-way through the answer.
    app.Get("/short", [path](const Request&, Response& res) {
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("open");
      res.Type("text/plain").SendFile(fd, 1 << 20, kFileBytes);
    });
    ASSERT_NO_FATAL_FAILURE(Serve(app));
  }

  void TearDown() override {
    EngineTest::TearDown();
    if (!path_.empty()) unlink(path_.c_str());
  }

  // A client whose receive buffer is small: what it does not read stays with the server.
  Socket SmallWindowClient() {
    Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int small = 4096;
    setsockopt(socket.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(socket.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return socket;
  }

  // The server's end of `client`, found in this process's descriptors (the engine runs in it),
  // or -1 once `timeout` passes without it (the loop has not accepted it yet, or its backend
  // keeps sockets out of the descriptor table).
  static int ServerEndOf(const Socket& client, milliseconds timeout) {
    sockaddr_in local{}, server{};
    socklen_t length = sizeof(local);
    if (getsockname(client.fd(), reinterpret_cast<sockaddr*>(&local), &length) != 0) return -1;
    length = sizeof(server);
    if (getpeername(client.fd(), reinterpret_cast<sockaddr*>(&server), &length) != 0) return -1;
    int found = -1;
    WaitUntil(
        [&] {
          for (int fd = 3; fd < 4096 && found < 0; ++fd) {
            sockaddr_in mine{}, peer{};
            socklen_t n = sizeof(mine);
            if (fd == client.fd() || getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &n) != 0 ||
                n != sizeof(mine) || mine.sin_family != AF_INET ||
                mine.sin_port != server.sin_port) {
              continue;
            }
            n = sizeof(peer);
            if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &n) == 0 &&
                peer.sin_port == local.sin_port) {
              found = fd;
            }
          }
          return found >= 0;
        },
        timeout);
    return found;
  }

  std::string path_;
};

TEST_P(GzipStreamTest, ABigFileIsGzippedChunkedAndInflatesToTheFile) {
  Socket socket = SmallWindowClient();
  ASSERT_TRUE(SendAll(socket.fd(), GzipGet("/words")));
  const percore::testing::ReadToEndResult answer = ReadToEnd(socket.fd(), kReadTimeout);
  ASSERT_EQ(answer.end, StreamEnd::kClosed);
  const size_t head_end = answer.data.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::string head = answer.data.substr(0, head_end + 2);
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
  EXPECT_NE(head.find("\r\nTransfer-Encoding: chunked\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nContent-Encoding: gzip\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nVary: Accept-Encoding\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  const std::optional<std::string> gzipped =
      Dechunk(std::string_view(answer.data).substr(head_end + 4));
  ASSERT_TRUE(gzipped.has_value()) << "not a complete chunked body";
  EXPECT_LT(gzipped->size(), kFileBytes / 2);
  const std::optional<std::string> inflated = Inflate(*gzipped);
  ASSERT_TRUE(inflated.has_value()) << "not a complete gzip stream";
  EXPECT_TRUE(*inflated == FileContent()) << inflated->size() << " bytes";
}

// To HTTP/1.0, which has no chunks, the gzipped body ends with the connection.
TEST_P(GzipStreamTest, ToHttp10TheGzippedBodyEndsWithTheConnection) {
  Socket socket = SmallWindowClient();
  ASSERT_TRUE(SendAll(socket.fd(), "GET /words HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n"));
  const percore::testing::ReadToEndResult answer = ReadToEnd(socket.fd(), kReadTimeout);
  ASSERT_EQ(answer.end, StreamEnd::kClosed);
  const size_t head_end = answer.data.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::string head = answer.data.substr(0, head_end + 2);
  EXPECT_NE(head.find("\r\nContent-Encoding: gzip\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nConnection: close\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  const std::optional<std::string> inflated = Inflate(answer.data.substr(head_end + 4));
  ASSERT_TRUE(inflated.has_value()) << "not a complete gzip stream";
  EXPECT_TRUE(*inflated == FileContent());
}

// The old server compressed the file whole into each connection's output: about 1.3 MB per
// client that reads nothing, held until the send timeout. Now each holds the stream's 64 KiB,
// a piece and a zlib stream (~256 KiB); what the kernel's socket buffers hold is not resident.
TEST_P(GzipStreamTest, StalledReadersOfABigGzippedFileHoldLittleEach) {
  constexpr int kClients = 50;
  (void)FileContent();
  const long before = ResidentKib(getpid());
  std::vector<Socket> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(SmallWindowClient());
    // The server's send buffer pinned at 32 KiB, as on a host with many connections: loopback's
    // grows to megabytes, and would take in the whole answer whatever the server held.
    const int server_end = ServerEndOf(clients.back(), milliseconds(10000));
    if (server_end < 0 && GetParam() == BackendKind::kIoUring) {
      GTEST_SKIP() << "this io_uring backend keeps its sockets out of the descriptor table";
    }
    ASSERT_GE(server_end, 0);
    const int pinned = 32 * 1024;
    ASSERT_EQ(setsockopt(server_end, SOL_SOCKET, SO_SNDBUF, &pinned, sizeof(pinned)), 0);
    ASSERT_TRUE(SendAll(clients.back().fd(), GzipGet("/words")));
  }
  // Every answer has begun (its client has bytes to read), then stalls once its client's
  // window, the socket and what the server holds are full.
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::vector<pollfd> fds;
        for (const Socket& c : clients) fds.push_back({c.fd(), POLLIN, 0});
        return poll(fds.data(), fds.size(), 0) == kClients;
      },
      milliseconds(30000)));
  uint64_t last = 0;
  int unchanged = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        const uint64_t now = Total(&WorkerCounters::bytes_out);
        unchanged = now == last ? unchanged + 1 : 0;
        last = now;
        return unchanged >= 50;
      },
      milliseconds(30000)));
  const long growth_kib = ResidentKib(getpid()) - before;
  EXPECT_LT(growth_kib, kClients * 640) << "resident memory grew by " << growth_kib << " KiB";
  // Each stalled answer goes on once read: the first client's inflates to the file.
  const percore::testing::ReadToEndResult answer = ReadToEnd(clients[0].fd(), kReadTimeout);
  ASSERT_EQ(answer.end, StreamEnd::kClosed);
  const size_t head_end = answer.data.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::optional<std::string> gzipped =
      Dechunk(std::string_view(answer.data).substr(head_end + 4));
  ASSERT_TRUE(gzipped.has_value());
  const std::optional<std::string> inflated = Inflate(*gzipped);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_TRUE(*inflated == FileContent());
}

// A file shorter than its range fails the connection mid-way: the body has no last chunk, and
// the gzip stream no end.
TEST_P(GzipStreamTest, AFileShorterThanItsRangeFailsTheConnection) {
  Socket socket = SmallWindowClient();
  ASSERT_TRUE(SendAll(socket.fd(), GzipGet("/short")));
  const percore::testing::ReadToEndResult answer = ReadToEnd(socket.fd(), kReadTimeout);
  ASSERT_NE(answer.end, StreamEnd::kTimeout);
  const size_t head_end = answer.data.find("\r\n\r\n");
  if (head_end == std::string::npos) return;  // failed before the head: nothing was promised
  EXPECT_FALSE(Dechunk(std::string_view(answer.data).substr(head_end + 4)).has_value());
  // The server serves on.
  Socket next = SmallWindowClient();
  ASSERT_TRUE(SendAll(next.fd(), GzipGet("/words")));
  const percore::testing::ReadToEndResult whole = ReadToEnd(next.fd(), kReadTimeout);
  EXPECT_EQ(whole.end, StreamEnd::kClosed);
  EXPECT_NE(whole.data.find("\r\nContent-Encoding: gzip\r\n"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, GzipStreamTest, percore::testing::AllBackends(),
                         percore::testing::BackendTestName);

}  // namespace
}  // namespace percore
