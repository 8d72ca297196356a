// hello_cores' WebSocket routes, on the binary as users run it (two loops): /ws/echo echoes text
// and binary up to 16 MiB, compressed when the client offers it; /ws/chat reaches every client,
// the sender included. The child is killed and reaped by its pid; every wait has a deadline.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "support/child_process.h"
#include "support/test_client.h"
#include "support/ws_client.h"

namespace percore {
namespace {

using percore::testing::HelloCores;
using percore::testing::WsClient;
using percore::testing::WsFrame;

constexpr std::chrono::seconds kTimeout(30);

// hello_cores as users run it, two loops.
HelloCores Start() {
  return HelloCores(PERCORE_HELLO_CORES, {"--threads", "2"},
                    std::chrono::duration_cast<std::chrono::milliseconds>(kTimeout));
}

TEST(HelloCoresWsTest, EchoSendsBackTextAndSixteenMiBOfBinaryCompressedWhenOffered) {
  HelloCores child = Start();
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
  HelloCores child = Start();
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
