#include "client_address.h"

#include <cstdint>
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

}  // namespace
}  // namespace percore::http
