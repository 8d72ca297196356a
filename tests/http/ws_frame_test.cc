// The WebSocket frame layer against RFC 6455 (and RFC 7692's RSV1): a table of headers, bytes in
// and the header or the close code out, each also fed a byte at a time; unmasking in pieces;
// UTF-8 split at every byte; close payloads; the rules of fragmented messages.
#include "ws_frame.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace percore::http::ws {
namespace {

// A client's frame header: `b0` (FIN, RSV, opcode), the masked length in its form, the mask.
std::string Header(uint8_t b0, uint64_t length, int length_bytes = 0) {
  std::string h(1, static_cast<char>(b0));
  if (length_bytes == 0) length_bytes = length < 126 ? 1 : length <= 0xFFFF ? 2 : 8;
  if (length_bytes == 1) {
    h.push_back(static_cast<char>(0x80 | length));
  } else {
    h.push_back(static_cast<char>(0x80 | (length_bytes == 2 ? 126 : 127)));
    for (int i = length_bytes - 1; i >= 0; --i) h.push_back(static_cast<char>(length >> (8 * i)));
  }
  h.append("\x01\x02\x03\x04", 4);
  return h;
}

struct HeaderCase {
  const char* name;
  std::string bytes;
  bool rsv1_allowed;
  uint16_t refused_with;  // 0: accepted
  uint64_t length;        // when accepted
};

std::vector<HeaderCase> HeaderCases() {
  return {
      {"SmallText", Header(0x81, 5), false, 0, 5},
      {"EmptyBinary", Header(0x82, 0), false, 0, 0},
      {"Length125", Header(0x82, 125), false, 0, 125},
      {"Length126InTwoBytes", Header(0x82, 126), false, 0, 126},
      {"Length65535", Header(0x82, 65535), false, 0, 65535},
      {"Length65536InEightBytes", Header(0x82, 65536), false, 0, 65536},
      {"FragmentStart", Header(0x01, 3), false, 0, 3},
      {"Continuation", Header(0x80, 3), false, 0, 3},
      {"Ping125", Header(0x89, 125), false, 0, 125},
      {"CompressedWhenNegotiated", Header(0xC1, 4), true, 0, 4},
      {"Unmasked", std::string("\x81\x05", 2), false, kCloseProtocolError, 0},
      {"Rsv1WithoutCompression", Header(0xC1, 4), false, kCloseProtocolError, 0},
      {"Rsv2", Header(0xA1, 4), false, kCloseProtocolError, 0},
      {"Rsv3", Header(0x91, 4), true, kCloseProtocolError, 0},
      {"Rsv1OnAPing", Header(0xC9, 0), true, kCloseProtocolError, 0},
      {"ReservedDataOpcode3", Header(0x83, 0), false, kCloseProtocolError, 0},
      {"ReservedDataOpcode7", Header(0x87, 0), false, kCloseProtocolError, 0},
      {"ReservedControlOpcodeB", Header(0x8B, 0), false, kCloseProtocolError, 0},
      {"ReservedControlOpcodeF", Header(0x8F, 0), false, kCloseProtocolError, 0},
      {"FragmentedPing", Header(0x09, 0), false, kCloseProtocolError, 0},
      {"FragmentedClose", Header(0x08, 2), false, kCloseProtocolError, 0},
      {"Ping126", Header(0x89, 126), false, kCloseProtocolError, 0},
      {"CloseInTwoByteLength", Header(0x88, 2, 2), false, kCloseProtocolError, 0},
      {"TwoByteLengthBelow126", Header(0x82, 100, 2), false, kCloseProtocolError, 0},
      {"EightByteLengthBelow65536", Header(0x82, 65535, 8), false, kCloseProtocolError, 0},
      {"LengthTopBitSet", Header(0x82, uint64_t{1} << 63, 8), false, kCloseProtocolError, 0},
  };
}

class WsHeaderTest : public ::testing::TestWithParam<HeaderCase> {};

TEST_P(WsHeaderTest, WholeAndByteByByteAgree) {
  const HeaderCase& c = GetParam();
  FrameHeader header;
  const HeaderResult whole = ReadFrameHeader(c.bytes, c.rsv1_allowed, &header);
  if (c.refused_with != 0) {
    EXPECT_EQ(whole.kind, HeaderResult::kRefused);
    EXPECT_EQ(whole.close_code, c.refused_with);
  } else {
    ASSERT_EQ(whole.kind, HeaderResult::kDone);
    EXPECT_EQ(header.length, c.length);
    EXPECT_EQ(header.size, c.bytes.size());
    EXPECT_EQ(header.mask[0], 1);
    EXPECT_EQ(header.mask[3], 4);
  }
  // Every shorter prefix either waits for more or is refused as the whole is: never a header
  // read from fewer bytes than it has, never a different verdict.
  for (size_t n = 0; n < c.bytes.size(); ++n) {
    FrameHeader partial;
    const HeaderResult r = ReadFrameHeader(std::string_view(c.bytes).substr(0, n),
                                           c.rsv1_allowed, &partial);
    if (r.kind == HeaderResult::kRefused) {
      EXPECT_EQ(whole.kind, HeaderResult::kRefused) << n << " bytes";
      EXPECT_EQ(r.close_code, whole.close_code) << n << " bytes";
    } else {
      EXPECT_EQ(r.kind, HeaderResult::kNeedMore) << n << " bytes";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc6455, WsHeaderTest, ::testing::ValuesIn(HeaderCases()),
                         [](const ::testing::TestParamInfo<HeaderCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(WsFrameTest, WrittenHeadersUseTheFewestLengthBytes) {
  struct {
    uint64_t length;
    size_t size;
  } cases[] = {{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {uint64_t{1} << 32, 10}};
  for (const auto& c : cases) {
    char out[10];
    const size_t size = WriteFrameHeader(out, Opcode::kBinary, true, false, c.length);
    EXPECT_EQ(size, c.size) << c.length;
    EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x82);
    // Read back as a client's would be, with a mask bit and a mask added.
    std::string framed(out, size);
    framed[1] = static_cast<char>(framed[1] | 0x80);
    framed.append("\0\0\0\0", 4);
    FrameHeader header;
    ASSERT_EQ(ReadFrameHeader(framed, false, &header).kind, HeaderResult::kDone) << c.length;
    EXPECT_EQ(header.length, c.length);
  }
  char out[10];
  WriteFrameHeader(out, Opcode::kText, false, true, 1);
  EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x41);  // no FIN, RSV1, text
}

TEST(WsFrameTest, UnmaskingInPiecesEqualsUnmaskingWhole) {
  const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string payload;
  for (int i = 0; i < 100; ++i) payload.push_back(static_cast<char>(i * 7));
  std::string whole = payload;
  Unmask(whole.data(), whole.size(), mask, 0);
  for (size_t i = 0; i < payload.size(); ++i) {
    ASSERT_EQ(static_cast<uint8_t>(whole[i]), static_cast<uint8_t>(payload[i]) ^ mask[i % 4]);
  }
  for (size_t cut = 1; cut < payload.size(); cut += 3) {
    std::string pieces = payload;
    Unmask(pieces.data(), cut, mask, 0);
    Unmask(pieces.data() + cut, pieces.size() - cut, mask, cut);
    EXPECT_EQ(pieces, whole) << "cut at " << cut;
  }
  // RFC 6455 5.7's example: "Hello" masked with 37 fa 21 3d.
  std::string hello("\x7f\x9f\x4d\x51\x58", 5);
  Unmask(hello.data(), hello.size(), mask, 0);
  EXPECT_EQ(hello, "Hello");
}

struct Utf8Case {
  std::string bytes;
  bool valid;
};

TEST(WsUtf8Test, ValidAndInvalidTextAtEverySplit) {
  const Utf8Case cases[] = {
      {"", true},
      {"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", true},
      {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},  // "kosme"
      {"\xf0\x90\x80\x80", true},                              // U+10000
      {"\xf4\x8f\xbf\xbf", true},                              // U+10FFFF
      {"\xef\xbf\xbf", true},                                  // U+FFFF
      {"\xed\x9f\xbf", true},                                  // U+D7FF
      {"\xf4\x90\x80\x80", false},                             // past U+10FFFF
      {"\xed\xa0\x80", false},                                 // a surrogate
      {"\xc0\xaf", false},                                     // overlong '/'
      {"\xe0\x80\xaf", false},                                 // overlong, three bytes
      {"\xf0\x80\x80\xaf", false},                             // overlong, four bytes
      {"\x80", false},                                         // a lone continuation
      {"\xfe", false},
      {"\xce\xba\xe1\xbd", false},  // ends mid-character
      {"abc\xf5", false},
  };
  for (const Utf8Case& c : cases) {
    Utf8Validator whole;
    const bool ok = whole.Feed(c.bytes) && whole.Complete();
    EXPECT_EQ(ok, c.valid) << ::testing::PrintToString(c.bytes);
    for (size_t cut = 0; cut <= c.bytes.size(); ++cut) {
      Utf8Validator split;
      const bool first = split.Feed(std::string_view(c.bytes).substr(0, cut));
      const bool second = first && split.Feed(std::string_view(c.bytes).substr(cut));
      EXPECT_EQ(second && split.Complete(), c.valid) << ::testing::PrintToString(c.bytes) << cut;
    }
  }
  // Fails at the first byte no text can contain, before the sequence would end.
  Utf8Validator early;
  EXPECT_FALSE(early.Feed("\xf4\x90"));
  Utf8Validator ascii;
  EXPECT_TRUE(ascii.Feed(std::string(1000, 'a')));
  EXPECT_TRUE(ascii.Complete());
}

TEST(WsFrameTest, ClosePayloads) {
  auto close = [](uint16_t code, std::string_view reason = "") {
    std::string p;
    p.push_back(static_cast<char>(code >> 8));
    p.push_back(static_cast<char>(code & 0xff));
    p.append(reason);
    return p;
  };
  EXPECT_TRUE(ValidClosePayload(""));
  EXPECT_FALSE(ValidClosePayload("\x03"));  // one byte
  for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000,
                        4999}) {
    EXPECT_TRUE(ValidClosePayload(close(code, "bye"))) << code;
  }
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000}) {
    EXPECT_FALSE(ValidClosePayload(close(code))) << code;
  }
  EXPECT_FALSE(ValidClosePayload(close(1000, "\xce\xba\xe1\xbd")));  // reason not UTF-8
}

FrameHeader Frame(Opcode op, bool fin, uint64_t length, bool rsv1 = false) {
  FrameHeader h;
  h.opcode = op;
  h.fin = fin;
  h.length = length;
  h.rsv1 = rsv1;
  return h;
}

TEST(WsMessageTest, FragmentsWithControlFramesBetweenThem) {
  MessageRules rules(1 << 20);
  const FrameHeader first = Frame(Opcode::kText, false, 3);
  EXPECT_EQ(rules.OnHeader(first), 0);
  EXPECT_EQ(rules.OnData("\xce\xba\xe1"), 0);  // a character split across frames
  EXPECT_EQ(rules.OnFrameEnd(first), 0);
  EXPECT_TRUE(rules.in_message());
  const FrameHeader ping = Frame(Opcode::kPing, true, 0);
  EXPECT_EQ(rules.OnHeader(ping), 0);
  EXPECT_EQ(rules.OnFrameEnd(ping), 0);
  const FrameHeader last = Frame(Opcode::kContinuation, true, 2);
  EXPECT_EQ(rules.OnHeader(last), 0);
  EXPECT_EQ(rules.OnData("\xbd\xb9"), 0);
  EXPECT_EQ(rules.OnFrameEnd(last), 0);
  EXPECT_FALSE(rules.in_message());
  EXPECT_EQ(rules.opcode(), Opcode::kText);
}

TEST(WsMessageTest, WhatTheRulesRefuse) {
  {
    MessageRules rules(1 << 20);  // a continuation with no message begun
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kContinuation, true, 1)), kCloseProtocolError);
  }
  {
    MessageRules rules(1 << 20);  // a new message inside a fragmented one
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kBinary, false, 1)), 0);
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kText, true, 1)), kCloseProtocolError);
  }
  {
    MessageRules rules(1 << 20);  // RSV1 on a continuation
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kText, false, 1, true)), 0);
    EXPECT_TRUE(rules.compressed());
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kContinuation, true, 1, true)), kCloseProtocolError);
  }
  {
    MessageRules rules(10);  // past the limit over two fragments
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kBinary, false, 6)), 0);
    EXPECT_EQ(rules.OnHeader(Frame(Opcode::kContinuation, true, 5)), kCloseTooBig);
  }
  {
    MessageRules rules(1 << 20);  // invalid UTF-8 fails at the byte, not at the end
    const FrameHeader text = Frame(Opcode::kText, true, 4);
    EXPECT_EQ(rules.OnHeader(text), 0);
    EXPECT_EQ(rules.OnData("a\xc0"), kCloseInvalidData);
  }
  {
    MessageRules rules(1 << 20);  // text that ends mid-character
    const FrameHeader text = Frame(Opcode::kText, true, 2);
    EXPECT_EQ(rules.OnHeader(text), 0);
    EXPECT_EQ(rules.OnData("\xce"), 0);
    EXPECT_EQ(rules.OnFrameEnd(text), kCloseInvalidData);
  }
  {
    MessageRules rules(1 << 20);  // binary is not text: any bytes
    const FrameHeader binary = Frame(Opcode::kBinary, true, 2);
    EXPECT_EQ(rules.OnHeader(binary), 0);
    EXPECT_EQ(rules.OnData("\xff\xfe"), 0);
    EXPECT_EQ(rules.OnFrameEnd(binary), 0);
  }
}

}  // namespace
}  // namespace percore::http::ws
