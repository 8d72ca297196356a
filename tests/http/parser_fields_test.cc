// The fields that frame a message or its connection: Host, Content-Length, Transfer-Encoding,
// Connection, Upgrade and Expect (parser_test.cc has the request line, field lines and limits).
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "parser.h"
#include "parser_head_checks.h"

namespace percore::http {
namespace {

using namespace std::literals;

// The fields that frame a message are told by their names in any case, compared a word at a
// time: a name one byte off, or with '_' for '-', is another field.
TEST(ParserFramingFieldsTest, FramingNamesInAnyCaseNotNearMisses) {
  EXPECT_EQ(ExpectHead(H11("CONTENT-length: 5\r\n"), kDone).content_length, 5u);
  EXPECT_EQ(ExpectHead(H11("Content-Lengti: 5\r\n"), kDone).framing, Framing::kNone);
  EXPECT_EQ(ExpectHead(H11("Content_Length: 5\r\n"), kDone).framing, Framing::kNone);
  EXPECT_EQ(ExpectHead(H11("Dontent-Length: 5\r\n"), kDone).framing, Framing::kNone);
  EXPECT_EQ(ExpectHead(H11("TRANSFER-ENCODING: chunked\r\n"), kDone).framing, Framing::kChunked);
  EXPECT_EQ(ExpectHead(H11("Transfer-Encodinf: chunked\r\n"), kDone).framing, Framing::kNone);
  EXPECT_FALSE(ExpectHead(H11("cOnNeCtIoN: close\r\n"), kDone).keep_alive);
  EXPECT_TRUE(ExpectHead(H11("Connectiom: close\r\n"), kDone).keep_alive);
  EXPECT_TRUE(ExpectHead(H11("EXPECT: 100-continue\r\n"), kDone).expect_continue);
  EXPECT_FALSE(ExpectHead(H11("Expecu: 100-continue\r\n"), kDone).expect_continue);
  ExpectHead("GET / HTTP/1.1\r\nHOST: a\r\n\r\n", kDone);
  ExpectHead("GET / HTTP/1.1\r\nHosu: a\r\n\r\n", 400);  // no Host
  ExpectHead("GET / HTTP/1.1\r\nHost_: a\r\n\r\n", 400);
  ExpectHead("GET / HTTP/1.1\r\nXHost: a\r\n\r\n", 400);
}

// ---- Host.

TEST(ParserHostTest, Table) {
  ExpectAll({
      {"GET / HTTP/1.1\r\n\r\n", 400},  // missing in 1.1
      {"GET / HTTP/1.1\r\nX: a\r\n\r\n", 400},
      {H10(""), kDone},  // absent in 1.0
      {H10("Host: a\r\n"), kDone},
      {H11("Host: a\r\n"), 400},  // twice
      {H11("hOsT: a\r\n"), 400},
      {H10("Host: a\r\nHost: a\r\n"), 400},
      {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},  // an empty value
      {"GET / HTTP/1.1\r\nHost:  \t \r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a:xx\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", kDone},
      {"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", kDone},
      {"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", kDone},
      {"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", kDone},
      {"GET / HTTP/1.1\r\nHost: a-b_c~d%41!$&'()*+,;=\r\n\r\n", kDone},
      {"GET http://a/ HTTP/1.1\r\n\r\n", 400},  // absolute-form needs Host all the same
  });
}

// The usual host ("name" or "1.2.3.4", maybe with ":port") is checked 16 bytes at once; every
// other form goes through the grammar (IsValidHost). Both must give the grammar's answer: hosts
// of up to 20 bytes, half of them made of the bytes of the usual form alone, half of the bytes
// that matter to either.
TEST(ParserHostTest, WordAtATimeAgreesWithTheGrammar) {
  const std::string usual = "a1Z.-:";
  const std::string any = "a1Z.-:[]%@_~/";
  std::mt19937 random(12345);
  int valid = 0;
  const int hosts = 20000;
  for (int i = 0; i < hosts; ++i) {
    const std::string& alphabet = i % 2 == 0 ? usual : any;
    std::string host(random() % 21, ' ');
    for (char& c : host) c = alphabet[random() % alphabet.size()];
    const bool grammar = IsValidHost(host);
    valid += grammar;
    ExpectHead("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n", grammar ? kDone : 400);
  }
  EXPECT_GT(valid, hosts / 10);  // both answers well represented
  EXPECT_LT(valid, hosts - hosts / 10);
}

// RFC 9112 3.2: more than one Host is a 400, however many (a count that wrapped at 256 took 257
// as one). max_header_fields has no upper bound.
TEST(ParserHostTest, ManyHostFields) {
  std::string hosts;
  for (int i = 0; i < 256; ++i) hosts += "Host: a\r\n";
  const ParserLimits limits = Limits(64 * 1024, 8 * 1024, 1000);
  ExpectHead(H11(hosts), 400, limits);  // 257
  ExpectHead(H10(hosts), 400, limits);  // 256
}

// ---- Content-Length.

TEST(ParserContentLengthTest, Invalid) {
  for (const char* value : {"5, 5", "5,", "-1", "+1", "abc", "0x10", "1 2", "", "  ",
                            "100000000000000000000" /* 21 digits */, "99999999999999999999999"}) {
    ExpectHead(H11("Content-Length: "s + value + "\r\n"), 400);
  }
  ExpectHead(H11("Content-Length: 5\r\nContent-Length: 5\r\n"), 400);
  ExpectHead(H11("Content-Length: 5\r\ncontent-length: 6\r\n"), 400);
}

TEST(ParserContentLengthTest, Framing) {
  const std::pair<std::string, uint64_t> lengths[] = {
      {"Content-Length: 005", 5},
      {"CONTENT-LENGTH:\t42 ", 42},
      {"Content-Length: 000000000000000000000000007", 7},
      {"Content-Length: 1000000000000000000", 1000000000000000000}};
  for (const auto& [field, n] : lengths) {
    const Parsed p = ExpectHead(H11(field + "\r\n"), kDone);
    EXPECT_EQ(p.framing, Framing::kLength) << field;
    EXPECT_EQ(p.content_length, n) << field;
  }
  EXPECT_EQ(ExpectHead(H11("Content-Length: 0\r\n"), kDone).framing, Framing::kNone);
  EXPECT_EQ(ExpectHead(H11(""), kDone).framing, Framing::kNone);
  EXPECT_EQ(ExpectHead(H10("Content-Length: 3\r\n"), kDone).framing, Framing::kLength);
}

// ---- Transfer-Encoding.

TEST(ParserTransferEncodingTest, Table) {
  ExpectAll({
      {H11("Transfer-Encoding: gzip\r\n"), 400},
      {H11("Transfer-Encoding: chunked, gzip\r\n"), 400},
      {H11("Transfer-Encoding: chunked, chunked\r\n"), 400},
      {H11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400},
      {H11("Transfer-Encoding: gzip, chunked\r\n"), 501},
      {H11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501},
      {H11("Transfer-Encoding:\r\n"), 400},
      {H11("Transfer-Encoding: ,\r\n"), 400},
      {H11("Transfer-Encoding: ch@nked\r\n"), 400},
      {H11("Transfer-Encoding: \"chunked\"\r\n"), 400},
      {H11("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"), 400},
      {H11("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"), 400},
      {H11("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"), 400},
      {H10("Transfer-Encoding: chunked\r\n"), 400},
      {H10("Transfer-Encoding: gzip, chunked\r\n"), 400},
  });
}

TEST(ParserTransferEncodingTest, Chunked) {
  for (const char* te :
       {"chunked", "CHUNKED", "Chunked", " chunked ", ", chunked,", "chunked;a=1"}) {
    const Parsed p = ExpectHead(H11("Transfer-Encoding: "s + te + "\r\n"), kDone);
    EXPECT_EQ(p.framing, Framing::kChunked) << te;
  }
}

// RFC 9112 7: chunked is applied once, however many times it is repeated (a count that wrapped
// at 256 took 257 as once).
TEST(ParserTransferEncodingTest, ChunkedManyTimes) {
  std::string codings = "chunked";
  for (int i = 0; i < 256; ++i) codings += ", chunked";
  ExpectHead(H11("Transfer-Encoding: " + codings + "\r\n"), 400);
}

// ---- Connection, Upgrade and Expect.

TEST(ParserConnectionTest, KeepAliveAndUpgrade) {
  EXPECT_TRUE(ExpectHead(H11(""), kDone).keep_alive);
  EXPECT_FALSE(ExpectHead(H11("Connection: close\r\n"), kDone).keep_alive);
  EXPECT_FALSE(ExpectHead(H11("Connection: foo, Close\r\n"), kDone).keep_alive);
  EXPECT_FALSE(ExpectHead(H11("Connection: foo\r\nConnection: ,close,\r\n"), kDone).keep_alive);
  EXPECT_TRUE(ExpectHead(H11("Connection: closed\r\n"), kDone).keep_alive);
  EXPECT_FALSE(ExpectHead(H10(""), kDone).keep_alive);
  EXPECT_TRUE(ExpectHead(H10("Connection: keep-alive\r\n"), kDone).keep_alive);
  EXPECT_TRUE(ExpectHead(H10("Connection: x, Keep-Alive\r\n"), kDone).keep_alive);
  EXPECT_FALSE(ExpectHead(H10("Connection: keep-alive, close\r\n"), kDone).keep_alive);

  EXPECT_TRUE(ExpectHead(H11("Connection: upgrade\r\nUpgrade: websocket\r\n"), kDone).upgrade);
  EXPECT_TRUE(
      ExpectHead(H11("Upgrade: h2c\r\nConnection: keep-alive, Upgrade\r\n"), kDone).upgrade);
  EXPECT_FALSE(ExpectHead(H11("Connection: upgrade\r\n"), kDone).upgrade);
  EXPECT_FALSE(ExpectHead(H11("Upgrade: websocket\r\n"), kDone).upgrade);
  EXPECT_FALSE(ExpectHead(H11("Connection: upgrade\r\nUpgradx: websocket\r\n"), kDone).upgrade);
  EXPECT_FALSE(ExpectHead(H11("Connection: upgrades\r\nUpgrade: websocket\r\n"), kDone).upgrade);
}

TEST(ParserExpectTest, Continue) {
  EXPECT_FALSE(ExpectHead(H11(""), kDone).expect_continue);
  EXPECT_TRUE(ExpectHead(H11("Expect: 100-continue\r\n"), kDone).expect_continue);
  EXPECT_TRUE(ExpectHead(H11("Expect:  100-Continue \r\n"), kDone).expect_continue);
  EXPECT_FALSE(ExpectHead(H10("Expect: 100-continue\r\n"), kDone).expect_continue);  // ignored
  ExpectHead(H11("Expect: 200-ok\r\n"), 417);
  ExpectHead(H11("Expect: 100-continue\r\nExpect: x\r\n"), 417);
  ExpectHead(H10("Expect: 200-ok\r\n"), kDone);
  ExpectHead(H11("Expect: x\r\nContent-Length: 1, 1\r\n"), 400);  // a fault in the bytes first
  // Expect = #expectation (RFC 9110 10.1.1), its empty elements ignored (5.6.1.2).
  EXPECT_TRUE(ExpectHead(H11("Expect: 100-continue,\r\n"), kDone).expect_continue);
  EXPECT_TRUE(ExpectHead(H11("Expect: , 100-continue ,,\r\n"), kDone).expect_continue);
  EXPECT_FALSE(ExpectHead(H11("Expect:\r\n"), kDone).expect_continue);
  ExpectHead(H11("Expect: 100-continue, x\r\n"), 417);
  ExpectHead(H11("Expect: x, 100-continue\r\n"), 417);
}

}  // namespace
}  // namespace percore::http
