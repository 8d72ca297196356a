#include "client_address.h"

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace percore::http {
namespace {

using namespace std::literals;

IpAddress Ip(std::string_view text) {
  IpAddress address;
  EXPECT_TRUE(ParseIp(text, &address)) << text;
  return address;
}

Cidr Range(std::string_view text) {
  Cidr range;
  EXPECT_TRUE(ParseCidr(text, &range)) << text;
  return range;
}

// ---- Addresses.

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

// ---- CIDR.

TEST(ParseCidrTest, Valid) {
  struct Case {
    std::string text;
    std::string base;
    int prefix;
    bool v4;
  };
  const std::vector<Case> cases = {
      {"10.0.0.0/8", "10.0.0.0", 8, true},
      {"10.1.2.3/8", "10.0.0.0", 8, true},  // host bits cleared
      {"192.168.1.255/23", "192.168.0.0", 23, true},
      {"127.0.0.1", "127.0.0.1", 32, true},
      {"0.0.0.0/0", "0.0.0.0", 0, true},
      {"255.255.255.255/0", "0.0.0.0", 0, true},
      {"1.2.3.4/32", "1.2.3.4", 32, true},
      {"1.2.3.4/31", "1.2.3.4", 31, true},
      {"1.2.3.5/31", "1.2.3.4", 31, true},
      {"10.0.0.0/008", "10.0.0.0", 8, true},
      {"::1", "::1", 128, false},
      {"::/0", "::", 0, false},
      {"2001:db8::/32", "2001:db8::", 32, false},
      {"2001:db8:abcd:ffff::/50", "2001:db8:abcd:c000::", 50, false},
      {"fe80::1/10", "fe80::", 10, false},
      {"::ffff:10.0.0.0/104", "10.0.0.0", 8, true},
      {"::ffff:10.1.2.3", "10.1.2.3", 32, true},
      {"::ffff:0.0.0.0/96", "0.0.0.0", 0, true},
  };
  for (const Case& c : cases) {
    Cidr range;
    ASSERT_TRUE(ParseCidr(c.text, &range)) << c.text;
    EXPECT_EQ(FormatIp(range.base), c.base) << c.text;
    EXPECT_EQ(range.prefix, c.prefix) << c.text;
    EXPECT_EQ(range.base.v4, c.v4) << c.text;
  }
}

TEST(ParseCidrTest, RejectsJunk) {
  for (std::string_view bad :
       {""sv, "/8"sv, "10.0.0.0/"sv, "10.0.0.0/33"sv, "10.0.0.0/-1"sv, "10.0.0.0/+8"sv,
        "10.0.0.0/8/8"sv, "10.0.0.0/0008"sv, "10.0.0.0/ 8"sv, "10.0.0.0 /8"sv, "10.0.0.0/8x"sv,
        "::/129"sv, "::/999"sv, "junk/8"sv, "10.0.0/8"sv, "::ffff:10.0.0.0/95"sv,
        "::ffff:10.0.0.0/129"sv, "[::1]/128"sv}) {
    Cidr range;
    range.prefix = 77;
    EXPECT_FALSE(ParseCidr(bad, &range)) << bad;
    EXPECT_EQ(range.prefix, 77) << bad;
  }
}

TEST(CidrContainsTest, Table) {
  struct Case {
    std::string range;
    std::string address;
    bool contains;
  };
  const std::vector<Case> cases = {
      {"10.0.0.0/8", "10.0.0.0", true},
      {"10.0.0.0/8", "10.255.255.255", true},
      {"10.0.0.0/8", "11.0.0.0", false},
      {"10.0.0.0/8", "9.255.255.255", false},
      {"192.168.0.0/23", "192.168.1.7", true},
      {"192.168.0.0/23", "192.168.2.0", false},
      {"172.16.0.0/12", "172.31.255.255", true},
      {"172.16.0.0/12", "172.32.0.0", false},
      {"1.2.3.4/32", "1.2.3.4", true},
      {"1.2.3.4/32", "1.2.3.5", false},
      {"0.0.0.0/0", "8.8.8.8", true},
      {"0.0.0.0/0", "::1", false},
      {"::/0", "::1", true},
      {"::/0", "2001:db8::1", true},
      {"::/0", "1.2.3.4", false},
      {"::/0", "::ffff:1.2.3.4", false},  // mapped addresses are IPv4
      {"10.0.0.0/8", "::ffff:10.1.1.1", true},
      {"::ffff:10.0.0.0/104", "10.9.9.9", true},
      {"::1/128", "::1", true},
      {"::1/128", "::2", false},
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/32", "2001:db9::", false},
      {"fe80::/10", "fe80::1", true},
      {"fe80::/10", "febf::1", true},
      {"fe80::/10", "fec0::1", false},
      {"2001:db8::1/127", "2001:db8::", true},
      {"2001:db8::1/127", "2001:db8::2", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(CidrContains(Range(c.range), Ip(c.address)), c.contains)
        << c.range << " " << c.address;
  }
}

// ---- X-Forwarded-For.

struct XffCase {
  std::vector<std::string_view> values;
  std::string_view peer;
  std::string_view expected;
};

TEST(ClientFromForwardedForTest, Table) {
  const std::vector<Cidr> trusted = {Range("10.0.0.0/8"), Range("127.0.0.1"), Range("::1"),
                                     Range("fd00::/8")};
  const std::vector<XffCase> cases = {
      // An untrusted peer's header is ignored altogether.
      {{"198.51.100.7"}, "203.0.113.9", "203.0.113.9"},
      {{"10.0.0.2"}, "203.0.113.9", "203.0.113.9"},
      {{}, "203.0.113.9", "203.0.113.9"},
      {{"198.51.100.7"}, "not-an-ip", "not-an-ip"},
      // Trusted peer.
      {{}, "10.0.0.1", "10.0.0.1"},
      {{""}, "10.0.0.1", "10.0.0.1"},
      {{"198.51.100.7"}, "10.0.0.1", "198.51.100.7"},
      {{"198.51.100.7"}, "127.0.0.1", "198.51.100.7"},
      // Entries left of the first untrusted one were written by the client: spoofable.
      {{"6.6.6.6, 198.51.100.7"}, "10.0.0.1", "198.51.100.7"},
      {{"10.0.0.99, 198.51.100.7"}, "10.0.0.1", "198.51.100.7"},
      {{"6.6.6.6, 198.51.100.7, 10.0.0.5"}, "10.0.0.1", "198.51.100.7"},
      {{"6.6.6.6,198.51.100.7,10.0.0.5,10.0.0.4"}, "10.0.0.1", "198.51.100.7"},
      // Every hop trusted: the leftmost.
      {{"10.0.0.3, 10.0.0.2"}, "10.0.0.1", "10.0.0.3"},
      // Several fields are one list, in order.
      {{"6.6.6.6", "198.51.100.7, 10.0.0.2"}, "10.0.0.1", "198.51.100.7"},
      {{"198.51.100.7", "10.0.0.2"}, "10.0.0.1", "198.51.100.7"},
      {{"6.6.6.6", "198.51.100.7", "10.0.0.2"}, "10.0.0.1", "198.51.100.7"},
      {{"10.0.0.9", "10.0.0.2"}, "10.0.0.1", "10.0.0.9"},
      {{"198.51.100.7", ""}, "10.0.0.1", "198.51.100.7"},
      // An entry that is not an address stops the walk at the last trusted hop.
      {{"198.51.100.7, garbage, 10.0.0.2"}, "10.0.0.1", "10.0.0.2"},
      {{"garbage"}, "10.0.0.1", "10.0.0.1"},
      {{"unknown, 10.0.0.2"}, "10.0.0.1", "10.0.0.2"},
      {{"1.1.1.1", "bad"}, "10.0.0.1", "10.0.0.1"},
      {{"garbage, 198.51.100.7"}, "10.0.0.1", "198.51.100.7"},
      {{"198.51.100.7, 10.0.0.2 10.0.0.3"}, "10.0.0.1", "10.0.0.1"},
      {{"[1.2.3.4]"}, "10.0.0.1", "10.0.0.1"},
      {{"198.51.100.7:"}, "10.0.0.1", "10.0.0.1"},
      {{"198.51.100.7:99999"}, "10.0.0.1", "10.0.0.1"},
      {{"198.51.100.7:08"}, "10.0.0.1", "10.0.0.1"},
      {{"[::1"}, "10.0.0.1", "10.0.0.1"},
      {{"[2001:db8::1]x"}, "10.0.0.1", "10.0.0.1"},
      {{"[2001:db8::1]:"}, "10.0.0.1", "10.0.0.1"},
      {{"_hidden"}, "10.0.0.1", "10.0.0.1"},  // RFC 7239 obfuscated identifiers
      // IPv6, brackets and ports.
      {{"2001:db8::1, fd00::2"}, "::1", "2001:db8::1"},
      {{"2001:db8::1"}, "::1", "2001:db8::1"},
      {{"[2001:db8::1]:443"}, "::1", "2001:db8::1"},
      {{"[2001:db8::1]"}, "::1", "2001:db8::1"},
      {{"[2001:db8::1], [fd00::7]:80"}, "::1", "2001:db8::1"},
      {{"2001:db8::1:80"}, "::1", "2001:db8::1:80"},  // unbracketed: all address
      {{"198.51.100.7:5678"}, "10.0.0.1", "198.51.100.7"},
      {{"10.0.0.2:80, 10.0.0.3:81"}, "10.0.0.1", "10.0.0.2"},
      {{"198.51.100.7, ::1"}, "10.0.0.1", "198.51.100.7"},
      // OWS and empty elements.
      {{"  198.51.100.7 ,, \t10.0.0.2  ,"}, "10.0.0.1", "198.51.100.7"},
      {{" , ,"}, "10.0.0.1", "10.0.0.1"},
      // A dual-stack socket reports IPv4 peers as mapped addresses.
      {{"198.51.100.7"}, "::ffff:10.0.0.1", "198.51.100.7"},
      {{"::ffff:10.0.0.2, 10.0.0.3"}, "10.0.0.1", "::ffff:10.0.0.2"},
      {{"::ffff:198.51.100.7, 10.0.0.3"}, "10.0.0.1", "::ffff:198.51.100.7"},
  };
  for (const XffCase& c : cases) {
    std::string description;
    for (std::string_view v : c.values) description.append("[").append(v).append("]");
    const std::string_view client = ClientFromForwardedFor(c.values, trusted, c.peer);
    EXPECT_EQ(client, c.expected) << description << " peer " << c.peer;
  }
}

TEST(ClientFromForwardedForTest, ResultPointsIntoTheInputs) {
  const std::vector<Cidr> trusted = {Range("10.0.0.0/8")};
  const std::string field = "6.6.6.6, [2001:db8::1]:443, 10.0.0.2";
  const std::string peer = "10.0.0.1";
  const std::vector<std::string_view> values = {field};
  const std::string_view client = ClientFromForwardedFor(values, trusted, peer);
  EXPECT_EQ(client, "2001:db8::1");
  EXPECT_EQ(client.data(), field.data() + field.find("2001"));
  const std::vector<std::string_view> none;
  EXPECT_EQ(ClientFromForwardedFor(none, trusted, peer).data(), peer.data());
}

TEST(ClientFromForwardedForTest, NoTrustedProxies) {
  const std::vector<std::string_view> values = {"198.51.100.7"};
  EXPECT_EQ(ClientFromForwardedFor(values, {}, "10.0.0.1"), "10.0.0.1");
}

// ---- PROXY protocol.

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
}  // namespace percore::http
