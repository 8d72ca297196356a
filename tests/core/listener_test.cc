// The listening sockets of the loops: one SO_REUSEPORT group per engine, and a port in use
// reported rather than shared.
#include "listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace percore {
namespace {

int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct Group {
  ListenerGroup group;
  ~Group() {
    for (int fd : group.fds) close(fd);
  }
};

TEST(ListenerTest, BindsOneSocketPerLoopOnOnePort) {
  absl::StatusOr<ListenerGroup> bound = BindListeners("127.0.0.1", 0, 3, 16);
  ASSERT_TRUE(bound.ok()) << bound.status();
  Group owner{*bound};
  ASSERT_EQ(bound->fds.size(), 3u);
  EXPECT_GT(bound->port, 0);
  for (int fd : bound->fds) {
    EXPECT_EQ(BoundPort(fd), bound->port);
    int reuse = 0, nodelay = 0;
    socklen_t length = sizeof(int);
    ASSERT_EQ(getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuse, &length), 0);
    ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &length), 0);
    EXPECT_EQ(reuse, 1);
    EXPECT_EQ(nodelay, 1);  // inherited by every accepted connection
  }
}

// Every connection lands in the accept queue of one socket of the group, and an accepted
// socket has TCP_NODELAY from its listener.
TEST(ListenerTest, ConnectionsAreAcceptedOnTheGroupsSockets) {
  absl::StatusOr<ListenerGroup> bound = BindListeners("127.0.0.1", 0, 2, 64);
  ASSERT_TRUE(bound.ok()) << bound.status();
  Group owner{*bound};
  constexpr int kConnections = 20;
  std::vector<int> clients;
  for (int i = 0; i < kConnections; ++i) {
    const int fd = ConnectTo(bound->port);
    ASSERT_GE(fd, 0) << "connection " << i;
    clients.push_back(fd);
  }
  int accepted = 0;
  while (accepted < kConnections) {
    pollfd fds[2] = {{bound->fds[0], POLLIN, 0}, {bound->fds[1], POLLIN, 0}};
    ASSERT_GT(poll(fds, 2, 10000), 0) << "only " << accepted << " connections accepted";
    for (const pollfd& p : fds) {
      if (!(p.revents & POLLIN)) continue;
      const int fd = accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
      ASSERT_GE(fd, 0);
      int nodelay = 0;
      socklen_t length = sizeof(nodelay);
      ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &length), 0);
      EXPECT_EQ(nodelay, 1);
      close(fd);
      ++accepted;
    }
  }
  for (int fd : clients) close(fd);
}

// A second group on the same port would silently share the first one's traffic: refused.
TEST(ListenerTest, PortOfAnotherGroupIsReportedInUse) {
  absl::StatusOr<ListenerGroup> first = BindListeners("127.0.0.1", 0, 1, 16);
  ASSERT_TRUE(first.ok()) << first.status();
  Group owner{*first};
  absl::StatusOr<ListenerGroup> second = BindListeners("127.0.0.1", first->port, 2, 16);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(second.status().message(),
            "port " + std::to_string(first->port) + " is already in use");
}

TEST(ListenerTest, BadAddressIsAnError) {
  absl::StatusOr<ListenerGroup> bound = BindListeners("not an address", 0, 1, 16);
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ListenerTest, BindsIpv6Loopback) {
  absl::StatusOr<ListenerGroup> bound = BindListeners("::1", 0, 2, 16);
  if (!bound.ok() && bound.status().code() != absl::StatusCode::kInvalidArgument) {
    GTEST_SKIP() << "no IPv6 loopback here: " << bound.status();
  }
  ASSERT_TRUE(bound.ok()) << bound.status();
  Group owner{*bound};
  EXPECT_EQ(bound->fds.size(), 2u);
  EXPECT_EQ(BoundPort(bound->fds[1]), bound->port);
}

TEST(ListenerTest, BoundPortOfAnythingButABoundSocketIsMinusOne) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  EXPECT_EQ(BoundPort(pipe_fds[0]), -1);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

}  // namespace
}  // namespace percore
