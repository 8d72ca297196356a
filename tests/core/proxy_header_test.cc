// The PROXY protocol header parser (core/src/proxy_header.h), versions 1 and 2.
#include "proxy_header.h"

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace percore {
namespace {

using namespace std::literals;

constexpr size_t kUntouched = 9999;

ProxyParse Parse(std::string_view bytes, ProxyHeader* out, size_t* consumed) {
  *consumed = kUntouched;
  return ParseProxyHeader(bytes, out, consumed);
}

// Every proper prefix of a complete header asks for more, and the whole of it is done.
void ExpectMoreUntilDone(std::string_view header) {
  for (size_t n = 0; n < header.size(); ++n) {
    ProxyHeader out;
    out.source_ip = "untouched";
    size_t consumed = 0;
    ASSERT_EQ(Parse(header.substr(0, n), &out, &consumed), ProxyParse::kMore)
        << "prefix of " << n << " bytes";
    EXPECT_EQ(consumed, kUntouched);
    EXPECT_EQ(out.source_ip, "untouched");
  }
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(header, &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, header.size());
}

TEST(ProxyV1Test, Tcp4) {
  const std::string header = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  const std::string bytes = header + "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(bytes, &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, header.size());
  EXPECT_FALSE(out.local);
  EXPECT_EQ(out.source_ip, "192.168.0.1");
  EXPECT_EQ(out.source_port, 56324);
  EXPECT_EQ(out.dest_ip, "192.168.0.11");
  EXPECT_EQ(out.dest_port, 443);
  ExpectMoreUntilDone(header);
}

TEST(ProxyV1Test, Tcp6) {
  const std::string header = "PROXY TCP6 2001:DB8::1 2001:db8::2 0 65535\r\n";
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(header + "\x16\x03", &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, header.size());
  EXPECT_FALSE(out.local);
  EXPECT_EQ(out.source_ip, "2001:db8::1");  // canonical form
  EXPECT_EQ(out.source_port, 0);
  EXPECT_EQ(out.dest_ip, "2001:db8::2");
  EXPECT_EQ(out.dest_port, 65535);
  ExpectMoreUntilDone(header);

  ASSERT_EQ(Parse("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(out.source_ip, "192.0.2.1");
  EXPECT_EQ(out.dest_ip, "::1");
}

TEST(ProxyV1Test, LongestLines) {
  const std::string tcp6 =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  ASSERT_EQ(tcp6.size(), 104u);
  ExpectMoreUntilDone(tcp6);

  const std::string unknown =
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  ASSERT_EQ(unknown.size(), 107u);
  ExpectMoreUntilDone(unknown);

  // One byte more and the CRLF is past the limit; without a CRLF the limit ends the wait.
  ProxyHeader out;
  size_t consumed = 0;
  const std::string too_long = "PROXY UNKNOWN " + std::string(92, 'x') + "\r\n";
  ASSERT_EQ(too_long.size(), 108u);
  EXPECT_EQ(Parse(too_long, &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse(too_long.substr(0, 106), &out, &consumed), ProxyParse::kMore);
  EXPECT_EQ(Parse(too_long.substr(0, 107), &out, &consumed), ProxyParse::kBad);
  const std::string fits = "PROXY UNKNOWN " + std::string(91, 'x') + "\r\n";
  ASSERT_EQ(fits.size(), 107u);
  EXPECT_EQ(Parse(fits, &out, &consumed), ProxyParse::kDone);
}

TEST(ProxyV1Test, Unknown) {
  for (std::string_view header :
       {"PROXY UNKNOWN\r\n"sv, "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"sv,
        "PROXY UNKNOWN whatever the sender likes\r\n"sv, "PROXY UNKNOWN \r\n"sv}) {
    ProxyHeader out;
    size_t consumed = 0;
    ASSERT_EQ(Parse(std::string(header) + "GET /", &out, &consumed), ProxyParse::kDone) << header;
    EXPECT_TRUE(out.local);
    EXPECT_EQ(consumed, header.size());
    EXPECT_EQ(out.source_ip, "");
    ExpectMoreUntilDone(header);
  }
}

TEST(ProxyV1Test, RejectsMalformed) {
  for (std::string_view bad : {
           "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"sv,
           "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"sv,
           "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"sv,
           "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"sv,
           "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8\r\n"sv,
           "PROXY TCP4\r\n"sv,
           "PROXY\r\n"sv,
           "PROX\r\n"sv,
           "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"sv,
           "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n"sv,
           "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"sv,
           "PROXY TCP4 ::1 ::2 1 2\r\n"sv,
           "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"sv,
           "PROXY TCP6 ::1 1.2.3.4 1 2\r\n"sv,
           "PROXY TCP6 [::1] ::2 1 2\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"sv,
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"sv,
           "PROXY UNKNOWNX\r\n"sv,
           "PROXY UNKNOWN\rX\r\n"sv,
           "PROXY UNKNOWN\nX\r\n"sv,
           "PROXY UNKNOW\r\n"sv,
           "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n"sv,
           " PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"sv,
       }) {
    ProxyHeader out;
    size_t consumed = 0;
    EXPECT_EQ(Parse(bad, &out, &consumed), ProxyParse::kBad) << bad;
    EXPECT_EQ(consumed, kUntouched) << bad;
  }
}

TEST(ProxyV1Test, FailsBeforeTheEndOfTheLine) {
  // Each of these cannot begin a valid header, so the parser must not wait for a CRLF.
  for (std::string_view bad :
       {"PROXY TCP4 1.2.3.x"sv, "PROXY TCP4 1.2.3.4 5.6.7.8 123456"sv,
        "PROXY TCP4 1.2.3.4 5.6.7.8 01"sv, "PROXY TCP4 1.2.3.4 5.6.7.8 70000"sv, "PROXY TCP4 ::1"sv,
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "sv, "PROXY TCP4 1.2.3.4  "sv, "PROXY TCPX"sv,
        "PROXY UNKNOWNX"sv, "PROXY X"sv, "PROXYX"sv, "PROXY TCP6 2001:db8::g"sv,
        "PROXY TCP4 1234567890123456"sv, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"sv}) {
    ProxyHeader out;
    size_t consumed = 0;
    EXPECT_EQ(Parse(bad, &out, &consumed), ProxyParse::kBad) << bad;
  }
}

TEST(ProxyTest, HttpAndOtherProtocolsFailAtOnce) {
  for (std::string_view other :
       {"GET / HTTP/1.1\r\nHost: x\r\n\r\n"sv, "\x16\x03\x01\x02\x00\x01"sv, "SSH-2.0-x\r\n"sv,
        "\r\nGET / HTTP/1.1\r\n"sv, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"sv}) {
    // Find how many bytes it takes to refuse, then check every longer prefix agrees.
    size_t refused_at = 0;
    for (size_t n = 1; n <= other.size(); ++n) {
      ProxyHeader out;
      size_t consumed = 0;
      const ProxyParse result = Parse(other.substr(0, n), &out, &consumed);
      ASSERT_NE(result, ProxyParse::kDone) << other;
      if (result == ProxyParse::kBad && refused_at == 0) refused_at = n;
      if (refused_at != 0) {
        EXPECT_EQ(result, ProxyParse::kBad) << other << " at " << n;
      }
    }
    EXPECT_GE(refused_at, 1u) << other;
    EXPECT_LE(refused_at, 3u) << other;
  }
  ProxyHeader out;
  size_t consumed = 0;
  EXPECT_EQ(Parse("G", &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse("PO", &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse("P", &out, &consumed), ProxyParse::kMore);
  EXPECT_EQ(Parse("", &out, &consumed), ProxyParse::kMore);
}

// ---- Version 2.

constexpr std::string_view kSignature = "\r\n\r\n\0\r\nQUIT\n"sv;

std::string V2(uint8_t version_command, uint8_t family, std::string_view payload, int length = -1) {
  const size_t n = length < 0 ? payload.size() : static_cast<size_t>(length);
  std::string header(kSignature);
  header += static_cast<char>(version_command);
  header += static_cast<char>(family);
  header += static_cast<char>(n >> 8);
  header += static_cast<char>(n & 0xff);
  header += payload;
  return header;
}

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out += static_cast<char>(b);
  return out;
}

// 192.0.2.1:56324 -> 198.51.100.2:443
const std::string kTcp4Addresses = Bytes({192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb});

TEST(ProxyV2Test, Tcp4) {
  ASSERT_EQ(kSignature.size(), 12u);
  const std::string header = V2(0x21, 0x11, kTcp4Addresses);
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(header + "GET / HTTP/1.1\r\n", &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, 28u);
  EXPECT_FALSE(out.local);
  EXPECT_EQ(out.source_ip, "192.0.2.1");
  EXPECT_EQ(out.source_port, 56324);
  EXPECT_EQ(out.dest_ip, "198.51.100.2");
  EXPECT_EQ(out.dest_port, 443);
  ExpectMoreUntilDone(header);
}

TEST(ProxyV2Test, Tcp6) {
  std::string addresses = Bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  addresses += Bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2});  // mapped
  addresses += Bytes({0x00, 0x01, 0xff, 0xff});
  const std::string header = V2(0x21, 0x21, addresses);
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(header, &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, 16u + 36u);
  EXPECT_FALSE(out.local);
  EXPECT_EQ(out.source_ip, "2001:db8::1");
  EXPECT_EQ(out.source_port, 1);
  EXPECT_EQ(out.dest_ip, "198.51.100.2");
  EXPECT_EQ(out.dest_port, 65535);
  ExpectMoreUntilDone(header);
}

TEST(ProxyV2Test, LocalHealthCheck) {
  const std::string header = V2(0x20, 0x00, "");
  ProxyHeader out;
  out.source_ip = "stale";
  size_t consumed = 0;
  ASSERT_EQ(Parse(header + "GET /health HTTP/1.1\r\n", &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, 16u);
  EXPECT_TRUE(out.local);
  EXPECT_EQ(out.source_ip, "");  // the whole struct is replaced
  ExpectMoreUntilDone(header);

  // LOCAL ignores the family and whatever address block comes with it.
  for (uint8_t family : {0x11, 0x21, 0x31, 0xff, 0x00}) {
    const std::string with_block = V2(0x20, family, kTcp4Addresses);
    ASSERT_EQ(Parse(with_block, &out, &consumed), ProxyParse::kDone) << int{family};
    EXPECT_TRUE(out.local);
    EXPECT_EQ(consumed, 28u);
  }
}

TEST(ProxyV2Test, SkipsTlvs) {
  std::string payload = kTcp4Addresses;
  payload += Bytes({0x01, 0x00, 0x02, 'h', '2'});  // PP2_TYPE_ALPN
  payload += Bytes({0x04, 0x00, 0x03, 0, 0, 0});   // PP2_TYPE_NOOP
  const std::string header = V2(0x21, 0x11, payload);
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(header + "GET", &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, 16u + 12u + 5u + 6u);
  EXPECT_EQ(out.source_ip, "192.0.2.1");
  EXPECT_EQ(out.dest_port, 443);
  ExpectMoreUntilDone(header);
}

TEST(ProxyV2Test, NonTcpFamiliesAreLocal) {
  const std::vector<std::pair<uint8_t, std::string>> cases = {
      {0x00, ""},                     // UNSPEC
      {0x00, "whatever"},             // UNSPEC with bytes to skip
      {0x12, kTcp4Addresses},         // UDP over IPv4
      {0x22, std::string(36, '\0')},  // UDP over IPv6
      {0x31, std::string(216, 'x')},  // UNIX stream
      {0x32, std::string(216, 'x')},  // UNIX datagram
  };
  for (const auto& [family, payload] : cases) {
    ProxyHeader out;
    size_t consumed = 0;
    ASSERT_EQ(Parse(V2(0x21, family, payload), &out, &consumed), ProxyParse::kDone) << int{family};
    EXPECT_TRUE(out.local) << int{family};
    EXPECT_EQ(consumed, 16 + payload.size()) << int{family};
  }
}

TEST(ProxyV2Test, RejectsMalformed) {
  const std::vector<std::string> cases = {
      V2(0x11, 0x11, kTcp4Addresses),                // version 1 in binary form
      V2(0x31, 0x11, kTcp4Addresses),                // version 3
      V2(0x01, 0x11, kTcp4Addresses),                // version 0
      V2(0x22, 0x11, kTcp4Addresses),                // command 2
      V2(0x2f, 0x11, kTcp4Addresses),                // command 15
      V2(0x21, 0x41, kTcp4Addresses),                // family 4
      V2(0x21, 0x13, kTcp4Addresses),                // transport 3
      V2(0x21, 0x01, kTcp4Addresses),                // UNSPEC family with STREAM
      V2(0x21, 0x10, kTcp4Addresses),                // INET with UNSPEC transport
      V2(0x21, 0x11, kTcp4Addresses.substr(0, 11)),  // address block too short
      V2(0x21, 0x11, ""),                            // no addresses at all
      V2(0x21, 0x21, std::string(35, '\0')),         // IPv6 block too short
      V2(0x21, 0x21, kTcp4Addresses),                // IPv4-sized block for IPv6
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    ProxyHeader out;
    size_t consumed = 0;
    EXPECT_EQ(Parse(cases[i], &out, &consumed), ProxyParse::kBad) << i;
    EXPECT_EQ(consumed, kUntouched) << i;
  }
}

TEST(ProxyV2Test, BadBytesFailAsSoonAsTheyArrive) {
  // A wrong signature byte is refused with nothing after it.
  const std::string good = V2(0x21, 0x11, kTcp4Addresses);
  for (size_t i = 0; i < 12; ++i) {
    std::string bad = good.substr(0, i + 1);
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    ProxyHeader out;
    size_t consumed = 0;
    EXPECT_EQ(Parse(bad, &out, &consumed), ProxyParse::kBad) << i;
  }
  ProxyHeader out;
  size_t consumed = 0;
  EXPECT_EQ(Parse(std::string(kSignature) + "\x31", &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse(std::string(kSignature) + "\x21\x41", &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse(std::string(kSignature) + "\x21\x11", &out, &consumed), ProxyParse::kMore);
  // A length too large is refused from the 16 fixed bytes, before any of it is buffered.
  EXPECT_EQ(Parse(V2(0x21, 0x11, "", 2049), &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse(V2(0x20, 0x00, "", 0xffff), &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse(V2(0x21, 0x11, "", 2048), &out, &consumed), ProxyParse::kMore);
  EXPECT_EQ(Parse(V2(0x21, 0x11, "", 11), &out, &consumed), ProxyParse::kBad);
  EXPECT_EQ(Parse(V2(0x21, 0x11, kTcp4Addresses.substr(0, 5), 12), &out, &consumed),
            ProxyParse::kMore);
}

TEST(ProxyV2Test, LargestAllowedHeader) {
  const std::string header = V2(0x21, 0x11, kTcp4Addresses + std::string(2048 - 12, '\0'));
  ProxyHeader out;
  size_t consumed = 0;
  ASSERT_EQ(Parse(header, &out, &consumed), ProxyParse::kDone);
  EXPECT_EQ(consumed, 16u + 2048u);
  EXPECT_EQ(out.source_ip, "192.0.2.1");
}

// Random bytes and random mutations of valid headers: never a crash, and a kDone never
// consumes more than it was given.
TEST(ProxyTest, GarbageIsHandled) {
  std::mt19937 random(12345);
  const std::vector<std::string> seeds = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
      "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
      "PROXY UNKNOWN\r\n",
      V2(0x21, 0x11, kTcp4Addresses),
      V2(0x20, 0x00, ""),
  };
  int done = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = seeds[random() % seeds.size()];
    const int mutations = 1 + static_cast<int>(random() % 3);
    for (int m = 0; m < mutations; ++m) {
      bytes[random() % bytes.size()] = static_cast<char>(random() & 0xff);
    }
    bytes.resize(random() % (bytes.size() + 1));
    ProxyHeader out;
    size_t consumed = 0;
    if (Parse(bytes, &out, &consumed) == ProxyParse::kDone) {
      ++done;
      ASSERT_GT(consumed, 0u);
      ASSERT_LE(consumed, bytes.size());
    }
  }
  EXPECT_GT(done, 0);
}

}  // namespace
}  // namespace percore
