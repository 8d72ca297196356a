// hello_cores' WebSocket routes, on the binary as users run it (two loops): /ws/echo echoes text
// and binary up to 16 MiB, compressed when the client offers it; /ws/chat reaches every client,
// the sender included. The child is killed and reaped by its pid; every wait has a deadline.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "support/test_client.h"
#include "support/ws_client.h"

namespace percore {
namespace {

using percore::testing::WsClient;
using percore::testing::WsFrame;

constexpr std::chrono::seconds kTimeout(30);

// hello_cores on 127.0.0.1, any free port, two loops; its port once it listens.
class Child {
 public:
  Child() {
    int out[2];
    if (pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      execl(PERCORE_HELLO_CORES, "hello_cores", "--port", "0", "--address", "127.0.0.1",
            "--threads", "2", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    output_ = out[0];
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (port_ == 0 && std::chrono::steady_clock::now() < deadline) {
      char buffer[512];
      const ssize_t n = read(output_, buffer, sizeof(buffer));
      if (n <= 0) break;
      text.append(buffer, static_cast<size_t>(n));
      const size_t at = text.find("Listening on port ");
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        port_ = std::stoi(text.substr(at + 18));
      }
    }
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (output_ >= 0) close(output_);
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int output_ = -1;
  int port_ = 0;
};

TEST(HelloCoresWsTest, EchoSendsBackTextAndSixteenMiBOfBinaryCompressedWhenOffered) {
  Child child;
  ASSERT_NE(child.port(), 0) << "hello_cores did not start";
  WsClient client(child.port(), "/ws/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n");
  ASSERT_TRUE(client.upgraded()) << client.head();
  ASSERT_NE(client.head().find("permessage-deflate"), std::string::npos);
  ASSERT_TRUE(client.SendText("hi"));
  std::optional<WsFrame> text = client.Read(kTimeout);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(text->opcode, 1);
  EXPECT_EQ(text->payload, "hi");
  std::string big(16 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 / 4096);
  ASSERT_TRUE(client.Send({.opcode = 2, .payload = big}));
  std::optional<WsFrame> echo = client.Read(kTimeout);
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->opcode, 2);
  EXPECT_TRUE(echo->rsv1) << "compressed, as the client offered";
  percore::testing::ClientDeflate z;
  EXPECT_TRUE(z.Inflate(echo->payload) == big);
}

TEST(HelloCoresWsTest, ChatReachesEveryClientTheSenderIncluded) {
  Child child;
  ASSERT_NE(child.port(), 0) << "hello_cores did not start";
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 8; ++i) {  // spread over the two loops by the kernel
    clients.push_back(std::make_unique<WsClient>(child.port(), "/ws/chat"));
    ASSERT_TRUE(clients.back()->upgraded());
  }
  for (int sender = 0; sender < 2; ++sender) {
    const std::string text = "from " + std::to_string(sender);
    ASSERT_TRUE(clients[static_cast<size_t>(sender)]->SendText(text));
    for (auto& client : clients) EXPECT_EQ(client->ReadMessage(kTimeout), text);
  }
}

}  // namespace
}  // namespace percore
