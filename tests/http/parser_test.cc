#include "parser.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "parser_checks.h"
#include "parser_head_checks.h"

namespace percore::http {
namespace {

using namespace std::literals;
// ---- The request line.

TEST(ParserRequestLineTest, Table) {
  ExpectAll({
      {Line("GET / HTTP/1.1"), kDone},
      {Line("G@T / HTTP/1.1"), 400},           // not a tchar
      {Line(" / HTTP/1.1"), 400},              // an empty method
      {"\r\n" + Line("GET / HTTP/1.1"), 400},  // empty lines before are the caller's
      {Line("GET  / HTTP/1.1"), 400},          // two SP: an empty target
      {Line("GET /  HTTP/1.1"), 400},
      {Line("GET  HTTP/1.1"), 400},
      {Line("GET\t/ HTTP/1.1"), 400},
      {Line("GET /\t HTTP/1.1"), 400},
      {Line("GET /a#b HTTP/1.1"), 400},  // a fragment is never sent
      {Line("GET /\x80 HTTP/1.1"), 400},
      {Line("GET /\x7f HTTP/1.1"), 400},
      {Line("GET /a\"{}|\\^`~!$&'()*+,;=:@?%20 HTTP/1.1"), kDone},  // visible ASCII
      {Line("GET / HTTP/1.1 extra"), 400},
      {Line("GET / HTTP/1.x"), 400},
      {Line("GET / HTTP/11"), 400},
      {Line("GET / HTTP/1.10"), 400},
      {Line("GET / http/1.1"), 400},  // HTTP-name is case-sensitive
      {Line("GET / HTTP/1."), 400},
      {Line("GET /"), 400},  // no version
      {Line("GET / HTTP/2.0"), 505},
      {Line("GET / HTTP/0.9"), 505},
      {Line("GET / HTTP/9.9"), 505},
      {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},  // a bare LF ends the line
      {"GET / HTTP/1.1\r\rHost: a\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n", kMore},
      {"GET / HT", kMore},
      {"", kMore},
  });
}

TEST(ParserRequestLineTest, Versions) {
  EXPECT_EQ(ExpectHead(H10(""), kDone).minor, 0);
  EXPECT_EQ(ExpectHead(Line("GET / HTTP/1.1"), kDone).minor, 1);
  EXPECT_EQ(ExpectHead(Line("GET / HTTP/1.2"), kDone).minor, 1);  // processed as 1.1
  EXPECT_EQ(ExpectHead(Line("GET / HTTP/1.9"), kDone).minor, 1);
  ExpectHead("GET / HTTP/1.2\r\n\r\n", 400);  // as 1.1: Host is required
}

TEST(ParserRequestLineTest, StandardMethods) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"}) {
    EXPECT_TRUE(ExpectHead(Line(m + " / HTTP/1.1"s), kDone).standard) << m;
  }
  for (const char* m : {"BREW", "get", "Get", "PROPFIND", "GETS", "M-SEARCH"}) {
    const Parsed p = ExpectHead(Line(m + " / HTTP/1.1"s), kDone);
    EXPECT_FALSE(p.standard) << m;
    EXPECT_EQ(p.method, m);
  }
  // An origin server, not a proxy; the method is a standard one all the same.
  EXPECT_TRUE(ExpectHead(Line("CONNECT a:80 HTTP/1.1"), 501).standard);
  EXPECT_EQ(ExpectHead(Line("CONNECT / HTTP/1.1"), 501).method, "CONNECT");
}

TEST(ParserRequestLineTest, TargetForms) {
  ExpectAll({
      {Line("OPTIONS * HTTP/1.1"), kDone},
      {Line("GET * HTTP/1.1"), 400},
      {Line("OPTIONS *x HTTP/1.1"), 400},
      {Line("GET //a HTTP/1.1"), kDone},
      {Line("GET /?x=1 HTTP/1.1"), kDone},
      {Line("GET http://a/b HTTP/1.1"), kDone},
      {Line("GET HTTPS://a:443 HTTP/1.1"), kDone},
      {Line("GET a+b.c-9://x/ HTTP/1.1"), kDone},
      {Line("GET abc HTTP/1.1"), 400},  // no slash, no scheme
      {Line("GET a:b HTTP/1.1"), 400},
      {Line("GET 9a://x/ HTTP/1.1"), 400},
      {Line("GET ://x/ HTTP/1.1"), 400},
      {Line("GET ?x HTTP/1.1"), 400},
      // RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
      {Line("GET z://x/ HTTP/1.1"), kDone},
      {Line("GET +a://x/ HTTP/1.1"), 400},
      {Line("GET -a://x/ HTTP/1.1"), 400},
      {Line("GET .a://x/ HTTP/1.1"), 400},
      // RFC 9110 4.2.1, 4.2.4: a host, and no userinfo.
      {Line("GET http:///x HTTP/1.1"), 400},
      {Line("GET http://?x HTTP/1.1"), 400},
      {Line("GET http://u@x/ HTTP/1.1"), 400},
      {Line("GET http://a?x HTTP/1.1"), kDone},
  });
}

TEST(ParserRequestLineTest, Spans) {
  const std::string in = "PATCH /x?y HTTP/1.1\r\nHost: a\r\nX-A: \t v 1 \t\r\nE:\r\n\r\nBODY";
  const Parsed p = ExpectHead(in, kDone);
  EXPECT_EQ(p.method, "PATCH");
  EXPECT_EQ(p.target, "/x?y");
  EXPECT_EQ(p.fields, (std::vector<std::string>{"Host|a", "X-A|v 1", "E|"}));
  // method, target, Host, X-A (value without the OWS around it), E (an empty value).
  EXPECT_EQ(p.spans, (std::vector<uint32_t>{0, 5, 6, 4, 21, 4, 27, 1, 30, 3, 37, 3, 44, 1, 46, 0}));
  EXPECT_EQ(p.head_size, in.size() - 4);  // up to "BODY"
}

// The query's '?' is found while the target is scanned, 16 bytes at a time: one past the
// target's end (in the same 16 bytes, or later) is not the target's.
TEST(ParserRequestLineTest, Question) {
  const std::string long_path = "/" + std::string(40, 'p');
  for (const auto& [target, question] : std::vector<std::pair<std::string, size_t>>{
           {"/", std::string::npos},
           {"/?", 1},
           {"/a?b?c", 2},
           {"?", 0},  // not origin-form: 400, but the request line ended
           {long_path, std::string::npos},
           {long_path + "?q", 41},
           {"/" + std::string(14, 'p') + "?", 15},
           {"/" + std::string(15, 'p') + "?", 16},
           {"http://a/b?c", 10}}) {
    const Parsed p = Parse(Line("GET " + target + " HTTP/1.1"));
    EXPECT_EQ(p.question, question) << target;
  }
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nA:?\r\nHost: a\r\n\r\n").question, std::string::npos);
  EXPECT_EQ(Parse("GET /x HTTP/1.1\r\nHost: a?\r\n\r\n").question, std::string::npos);
}

TEST(ParserRequestLineTest, RequestLineDone) {
  RequestParser parser;
  const std::string in = "GET / HTTP/1.1\r\nX : y\r\n";
  EXPECT_EQ(parser.ParseHead(in.data(), 15, Limits()), Result::kMore);
  EXPECT_FALSE(parser.request_line_done());
  EXPECT_EQ(parser.ParseHead(in.data(), 16, Limits()), Result::kMore);
  EXPECT_TRUE(parser.request_line_done());
  EXPECT_EQ(parser.ParseHead(in.data(), in.size(), Limits()), Result::kError);
  EXPECT_EQ(parser.status(), 400);
  EXPECT_TRUE(parser.request_line_done());
}

// ---- Field lines.

TEST(ParserFieldLineTest, Table) {
  ExpectAll({
      {H11("X : y\r\n"), 400},  // no whitespace before the colon
      {H11("X\t: y\r\n"), 400},
      {H11(": y\r\n"), 400},  // an empty name
      {H11("X(: y\r\n"), 400},
      {H11("X y\r\n"), 400},
      {H11("X: a\r\n b\r\n"), 400},  // obs-fold
      {H11("X: a\r\n\tb\r\n"), 400},
      {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},  // whitespace before the first field
      {"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", 400},
      {H11("X: \x80\xff\xc3\xa9 z\r\n"), kDone},  // obs-text
      {H11("X: a\tb\r\n"), kDone},
      {H11("X: a!~\"\\\r\n"), kDone},
      {H11("X: a\0b\r\n"s), 400},
      {H11("X: \0\r\n"s), 400},
      {H11("X: a\x1f\r\n"), 400},
      {H11("X: a\x7f\r\n"), 400},  // DEL
      {H11("X: a\rb\r\n"), 400},   // a bare CR
      {H11("X: a\r\r\n"), 400},
      {H11("X: a\nY: b\r\n"), 400},  // a bare LF
      {"GET / HTTP/1.1\r\nHost: a\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\n\n", 400},   // a bare LF ends the section
      {"GET / HTTP/1.1\r\nHost: a\r\n\rX", 400},  // "\r\n\r" and not LF
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\n\r", kMore},
      {"GET / HTTP/1.1\r\nHost: a\r\nX: b", kMore},
  });
}

TEST(ParserFieldLineTest, ValuesWithoutSurroundingWhitespace) {
  EXPECT_EQ(ExpectHead(H11("X:v\r\n"), kDone).fields[1], "X|v");
  EXPECT_EQ(ExpectHead(H11("X: \t v \t w\t \r\n"), kDone).fields[1], "X|v \t w");
  EXPECT_EQ(ExpectHead(H11("X: \t \r\n"), kDone).fields[1], "X|");
  EXPECT_EQ(ExpectHead(H11("Y-Z: \x80 \xff \r\n"), kDone).fields[1], "Y-Z|\x80 \xff");
}

TEST(ParserFieldLineTest, FieldCount) {
  const ParserLimits limits = Limits(16 * 1024, 8 * 1024, 3);
  EXPECT_EQ(ExpectHead(H11("A: 1\r\nB: 2\r\n"), kDone, limits).fields.size(), 3u);
  ExpectHead(H11("A: 1\r\nB: 2\r\nC: 3\r\n"), 431, limits);
  ExpectHead(H11("A: 1\r\nB: 2\r\nC"), 431, limits);  // at the first byte of one too many
}

// RFC 9110 5.6.2.
bool Tchar(int b) {
  return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(b)) != std::string_view::npos;
}

// Every byte in a method, a field name, and at every offset of a target and a field value: of a
// 16-byte block and after the last (those are scanned a block at a time where SSE2 is there).
TEST(ParserByteClassTest, EveryByteEverywhere) {
  for (int b = 0; b < 256; ++b) {
    const std::string c(1, static_cast<char>(b));
    SCOPED_TRACE(b);
    ExpectHead(Line(c + "ET / HTTP/1.1"), Tchar(b) ? kDone : 400);
    ExpectHead(H11("X" + c + "Y: v\r\n"), Tchar(b) || b == ':' ? kDone : 400);
    for (size_t at = 0; at < 34; ++at) {
      std::string target = "/" + std::string(33, 't');
      target.replace(at, 1, at == 0 ? "/" : c);
      ExpectHead(Line("GET " + target + " HTTP/1.1"),
                 at == 0 || (b > 0x20 && b < 0x7f && b != '#') ? kDone : 400);
      std::string value(34, 'v');
      value[at] = c[0];
      ExpectHead(H11("X: " + value + "\r\n"), b == '\t' || (b >= 0x20 && b != 0x7f) ? kDone : 400);
    }
  }
}

// ---- Limits.

TEST(ParserLimitsTest, Target) {
  const ParserLimits limits = Limits(16 * 1024, 4);
  EXPECT_EQ(ExpectHead(Line("GET /abc HTTP/1.1"), kDone, limits).target, "/abc");
  ExpectHead(Line("GET /abcd HTTP/1.1"), 414, limits);
  ExpectHead("GET /abcd", 414, limits);  // at the first byte past it, before the line ends
  ExpectHead(Line("GET /abc# HTTP/1.1"), 400, limits);
}

TEST(ParserLimitsTest, HeaderSection) {
  // The request line (16 bytes) and a field line (7), with their CRLFs: 23 bytes.
  const std::string section = "GET / HTTP/1.0\r\nX: yy\r\n";
  ASSERT_EQ(section.size(), 23u);
  EXPECT_EQ(ExpectHead(section + "\r\n", kDone, Limits(23, 8)).head_size, 25u);
  ExpectHead(section + "\r\n", 431, Limits(22, 8));
  ExpectHead("GET / HTTP/1.0\r\nX: yyy\r\n\r\n", 431, Limits(23, 8));
  ExpectHead("GET / HTTP/1.0\r\nX: yyyyyyy", 431, Limits(23, 8));  // before the line ends
  ExpectHead("GET / HTTP/1.0\r\n\r\n", kDone, Limits(16, 8));
  ExpectHead("GET / HTTP/1.0\r\n\r\n", 431, Limits(15, 8));
  ExpectHead(section + "\r", kMore, Limits(23, 8));
  ExpectHead(section + "\rX", 400, Limits(23, 8));
  ExpectHead(section + "X", 431, Limits(23, 8));
}

TEST(ParserLimitsTest, FirstBrokenInByteOrderWins) {
  // The target starts at byte 4; its limit of 4 breaks at byte 8.
  const std::string in = Line("GET /abcdefgh HTTP/1.1");
  ExpectHead(in, 414, Limits(9, 4));
  ExpectHead(in, 431, Limits(7, 4));
  // A fault before either limit wins over both.
  ExpectHead(Line("G(T /abcdefgh HTTP/1.1"), 400, Limits(7, 4));
  // A fault past the header limit is not reached.
  ExpectHead(H10("X: abcdefghij\0\r\n"s), 431, Limits(24, 8));
  ExpectHead(H10("X: a\0bcdefghij\r\n"s), 400, Limits(24, 8));
}

}  // namespace
}  // namespace percore::http
