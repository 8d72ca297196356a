// percore/ip_address.h: addresses parsed, mapped IPv4 folded, and printed canonically.
#include "percore/ip_address.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace percore {
namespace {

using namespace std::literals;

IpAddress Ip(std::string_view text) {
  IpAddress address;
  EXPECT_TRUE(ParseIp(text, &address)) << text;
  return address;
}

TEST(ParseIpTest, IPv4) {
  const IpAddress a = Ip("192.0.2.17");
  EXPECT_TRUE(a.v4);
  EXPECT_EQ(a.bytes[0], 192);
  EXPECT_EQ(a.bytes[1], 0);
  EXPECT_EQ(a.bytes[2], 2);
  EXPECT_EQ(a.bytes[3], 17);
  for (int i = 4; i < 16; ++i) EXPECT_EQ(a.bytes[i], 0) << i;
  EXPECT_TRUE(Ip("0.0.0.0").v4);
  EXPECT_EQ(Ip("255.255.255.255").bytes[3], 255);
}

TEST(ParseIpTest, IPv6) {
  const IpAddress loopback = Ip("::1");
  EXPECT_FALSE(loopback.v4);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(loopback.bytes[i], 0) << i;
  EXPECT_EQ(loopback.bytes[15], 1);
  const IpAddress doc = Ip("2001:DB8::a:1");
  EXPECT_FALSE(doc.v4);
  EXPECT_EQ(doc.bytes[0], 0x20);
  EXPECT_EQ(doc.bytes[1], 0x01);
  EXPECT_EQ(doc.bytes[2], 0x0d);
  EXPECT_EQ(doc.bytes[3], 0xb8);
  EXPECT_EQ(doc.bytes[13], 0x0a);
  EXPECT_EQ(doc.bytes[15], 0x01);
  EXPECT_FALSE(Ip("::").v4);
}

TEST(ParseIpTest, MappedIPv4IsIPv4) {
  EXPECT_EQ(Ip("::ffff:1.2.3.4"), Ip("1.2.3.4"));
  EXPECT_EQ(Ip("::FFFF:10.0.0.1"), Ip("10.0.0.1"));
  EXPECT_EQ(Ip("0:0:0:0:0:ffff:102:304"), Ip("1.2.3.4"));
  EXPECT_TRUE(Ip("::ffff:0.0.0.0").v4);
  // Not mapped: IPv4-compatible (deprecated) and NAT64 forms stay IPv6.
  EXPECT_FALSE(Ip("::1.2.3.4").v4);
  EXPECT_FALSE(Ip("64:ff9b::1.2.3.4").v4);
  EXPECT_FALSE(Ip("::fffe:1.2.3.4").v4);
}

TEST(ParseIpTest, RejectsJunk) {
  for (std::string_view bad : {""sv,
                               "1.2.3"sv,
                               "1.2.3.4.5"sv,
                               "01.2.3.4"sv,
                               "1.2.3.04"sv,
                               "256.0.0.1"sv,
                               " 1.2.3.4"sv,
                               "1.2.3.4 "sv,
                               "[::1]"sv,
                               "1.2.3.4:80"sv,
                               "fe80::1%eth0"sv,
                               "::g"sv,
                               "1::2::3"sv,
                               "1.2.3.4\0junk"sv,
                               "::1\0"sv,
                               "localhost"sv,
                               "0x7f.0.0.1"sv,
                               "-1.0.0.0"sv,
                               "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555"sv,
                               "0000000000000000000000000000000000000000000000000001"sv}) {
    IpAddress address;
    address.bytes[0] = 42;
    EXPECT_FALSE(ParseIp(bad, &address)) << bad;
    EXPECT_EQ(address.bytes[0], 42) << bad;  // untouched on failure
  }
}

TEST(FormatIpTest, Canonical) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1.2.3.4", "1.2.3.4"},
      {"0.0.0.0", "0.0.0.0"},
      {"::1", "::1"},
      {"::", "::"},
      {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
      {"::ffff:1.2.3.4", "1.2.3.4"},
      {"fe80::1:2", "fe80::1:2"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(FormatIp(Ip(in)), out) << in;
}

TEST(IpFromBytesTest, FoldsMappedAddresses) {
  const uint8_t v4[4] = {192, 0, 2, 1};
  EXPECT_EQ(IpFromBytes(v4, false), Ip("192.0.2.1"));
  const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
  EXPECT_EQ(IpFromBytes(mapped, true), Ip("192.0.2.1"));
  const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(IpFromBytes(v6, true), Ip("2001:db8::1"));
}

TEST(ParsePortTest, DecimalWithoutLeadingZeros) {
  uint16_t port = 7;
  EXPECT_TRUE(ParsePort("0", &port));
  EXPECT_EQ(port, 0);
  EXPECT_TRUE(ParsePort("65535", &port));
  EXPECT_EQ(port, 65535);
  for (std::string_view bad : {""sv, "00"sv, "080"sv, "65536"sv, "123456"sv, "+1"sv, "1 "sv}) {
    port = 7;
    EXPECT_FALSE(ParsePort(bad, &port)) << bad;
    EXPECT_EQ(port, 7) << bad;
  }
}

}  // namespace
}  // namespace percore
