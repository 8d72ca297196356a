// The WebSocket opening handshake against RFC 6455 4.2: SHA-1 against RFC 3174's vectors, the
// accept key against RFC 6455's example, and what an upgrade request must say.
#include "ws_handshake.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace percore::http::ws {
namespace {

std::string Hex(const std::array<uint8_t, 20>& digest) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

TEST(WsSha1Test, Rfc3174Vectors) {
  EXPECT_EQ(Hex(Sha1("")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(Hex(Sha1("abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(Hex(Sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  // A million bytes: many whole blocks; the 56-byte vector above needs a second padding block.
  EXPECT_EQ(Hex(Sha1(std::string(1000000, 'a'))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST(WsHandshakeTest, Rfc6455AcceptKey) {
  EXPECT_EQ(AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

std::vector<HeaderField> Upgrade() {
  return {{"Host", "server.example.com"},
          {"Upgrade", "websocket"},
          {"Connection", "Upgrade"},
          {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
          {"Sec-WebSocket-Version", "13"}};
}

TEST(WsHandshakeTest, TheRfcsExampleSwitches) {
  const Handshake h = CheckHandshake("GET", 1, Upgrade(), {});
  EXPECT_EQ(h.status, 101);
  EXPECT_EQ(h.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(h.protocol, "");
}

TEST(WsHandshakeTest, TokenListsAreReadOverEveryLineAndWithoutCase) {
  std::vector<HeaderField> fields = Upgrade();
  fields[1].value = "WebSocket";
  fields[2].value = "keep-alive";
  fields.push_back({"connection", " UPGRADE "});  // Firefox sends "keep-alive, Upgrade"
  EXPECT_EQ(CheckHandshake("GET", 1, fields, {}).status, 101);
}

TEST(WsHandshakeTest, WhatIsRefused) {
  EXPECT_EQ(CheckHandshake("POST", 1, Upgrade(), {}).status, 400);
  EXPECT_EQ(CheckHandshake("GET", 0, Upgrade(), {}).status, 400);  // HTTP/1.0
  struct Change {
    size_t field;
    std::string_view value;
    int status;
  } changes[] = {
      {1, "h2c", 400},                        // Upgrade without websocket
      {2, "keep-alive", 400},                 // Connection without upgrade
      {3, "dGhlIHNhbXBsZSBub25jZQ", 400},     // not padded: not 24 characters
      {3, "dGhlIHNhbXBsZSBub25jZQ=!", 400},   // not base64
      {3, "c2hvcnQ=", 400},                   // 5 bytes, not 16
      {4, "8", 426},                          // another version
      {4, "", 426},
  };
  for (const Change& c : changes) {
    std::vector<HeaderField> fields = Upgrade();
    fields[c.field].value = c.value;
    const Handshake h = CheckHandshake("GET", 1, fields, {});
    EXPECT_EQ(h.status, c.status) << fields[c.field].name << ": " << c.value;
    EXPECT_FALSE(h.error.empty());
  }
  std::vector<HeaderField> twice = Upgrade();
  twice.push_back({"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="});
  EXPECT_EQ(CheckHandshake("GET", 1, twice, {}).status, 400);
}

TEST(WsHandshakeTest, TheFirstOfferedSubprotocolTheServerSpeaks) {
  const std::vector<std::string> ours = {"chat", "superchat"};
  std::vector<HeaderField> fields = Upgrade();
  fields.push_back({"Sec-WebSocket-Protocol", "mqtt, superchat"});
  fields.push_back({"Sec-WebSocket-Protocol", "chat"});
  EXPECT_EQ(CheckHandshake("GET", 1, fields, ours).protocol, "superchat");
  std::vector<HeaderField> none = Upgrade();
  none.push_back({"Sec-WebSocket-Protocol", "mqtt, Chat"});  // names are case-sensitive
  const Handshake h = CheckHandshake("GET", 1, none, ours);
  EXPECT_EQ(h.status, 101);  // no subprotocol in common: the answer names none
  EXPECT_EQ(h.protocol, "");
}

std::optional<Deflate> Offer(std::string_view extensions, WsCompression mode) {
  const std::vector<HeaderField> fields = {{"Sec-WebSocket-Extensions", extensions}};
  return NegotiateDeflate(fields, mode);
}

TEST(WsDeflateTest, WhatIsAgreedPerMode) {
  // Chromium's and Firefox's offer.
  const std::string_view browser = "permessage-deflate; client_max_window_bits";
  std::optional<Deflate> d = Offer(browser, WsCompression::kDedicated);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->response, "permessage-deflate");
  EXPECT_FALSE(d->server_no_context_takeover);
  EXPECT_FALSE(d->client_no_context_takeover);
  EXPECT_EQ(d->server_max_window_bits, 15);
  d = Offer(browser, WsCompression::kShared);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  EXPECT_FALSE(Offer(browser, WsCompression::kOff).has_value());
  EXPECT_FALSE(Offer("", WsCompression::kDedicated).has_value());
}

TEST(WsDeflateTest, TheClientsLimitsAreHonouredAndEchoed) {
  std::optional<Deflate> d =
      Offer("permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            WsCompression::kDedicated);
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->server_no_context_takeover);
  EXPECT_EQ(d->server_max_window_bits, 10);
  EXPECT_EQ(d->response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
  d = Offer("permessage-deflate; server_max_window_bits=\"12\"", WsCompression::kDedicated);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->server_max_window_bits, 12);
}

TEST(WsDeflateTest, AnOfferThatCannotBeHonouredGivesWayToTheNext) {
  // zlib cannot deflate with a window of 8 bits: that offer is declined, the next taken.
  std::optional<Deflate> d = Offer(
      "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, Permessage-Deflate",
      WsCompression::kDedicated);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->server_max_window_bits, 15);
  EXPECT_EQ(d->response, "permessage-deflate");
}

TEST(WsDeflateTest, InvalidOffersAreDeclined) {
  for (std::string_view offer : {
           "permessage-deflate; foo",                                    // unknown
           "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
           "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
           "permessage-deflate; server_max_window_bits",                 // needs a value
           "permessage-deflate; server_max_window_bits=16",
           "permessage-deflate; server_max_window_bits=010",
           "permessage-deflate; client_max_window_bits=7",
           "permessage-deflate; client_no_context_takeover=1",           // takes no value
           "permessage-deflate; server_max_window_bits=\"1 0\"",
       }) {
    EXPECT_FALSE(Offer(offer, WsCompression::kDedicated).has_value()) << offer;
  }
}

}  // namespace
}  // namespace percore::http::ws
