#include "parser.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "parser_checks.h"

namespace percore::http {
namespace {

using namespace std::literals;
using Result = RequestParser::Result;
using Framing = RequestParser::Framing;

constexpr int kDone = 0;   // an expected status: the head is complete
constexpr int kMore = -1;  // an expected status: the head needs more bytes

// What the head of a message tells.
struct Parsed {
  Result head = Result::kMore;
  int status = 0;  // of kError
  std::string method, target;
  std::vector<std::string> fields;  // "name|value"
  std::vector<uint32_t> spans;      // method, target, then each field's name and value
  uint32_t head_size = 0;
  int minor = 0;
  bool standard = false, keep_alive = false, upgrade = false, expect_continue = false;
  Framing framing = Framing::kNone;
  uint64_t content_length = 0;
};

std::string Describe(const Parsed& p) {
  std::ostringstream s;
  s << "head " << static_cast<int>(p.head) << " status " << p.status << " [" << Escape(p.method)
    << "] [" << Escape(p.target) << "] head_size " << p.head_size << " minor " << p.minor << " std "
    << p.standard << " ka " << p.keep_alive << " up " << p.upgrade << " 100 " << p.expect_continue
    << " framing " << static_cast<int>(p.framing) << " cl " << p.content_length << " spans";
  for (const uint32_t n : p.spans) s << ' ' << n;
  for (const std::string& f : p.fields) s << " {" << Escape(f) << '}';
  return s.str();
}

std::string View(std::string_view base, Span span) {
  return std::string(base.substr(span.offset, span.length));
}

// The head grows `piece` bytes a call over one buffer, as the session keeps it
// (parser_body_test.cc has the bodies).
Parsed Run(std::string_view input, size_t piece, const ParserLimits& limits) {
  const std::string bytes(input);
  RequestParser parser;
  Parsed out;
  size_t n = 0;
  do {
    n += std::min(piece, bytes.size() - n);
    out.head = parser.ParseHead(bytes.data(), n, limits);
  } while (out.head == Result::kMore && n < bytes.size());
  out.method = View(bytes, parser.method());
  out.target = View(bytes, parser.target());
  out.spans = {parser.method().offset, parser.method().length, parser.target().offset,
               parser.target().length};
  for (const RequestParser::Field& f : parser.fields()) {
    out.fields.push_back(View(bytes, f.name) + "|" + View(bytes, f.value));
    out.spans.insert(out.spans.end(),
                     {f.name.offset, f.name.length, f.value.offset, f.value.length});
  }
  out.head_size = parser.head_size();
  out.minor = parser.minor_version();
  out.standard = parser.standard_method();
  out.keep_alive = parser.keep_alive();
  out.upgrade = parser.upgrade();
  out.expect_continue = parser.expect_continue();
  out.framing = parser.framing();
  out.content_length = parser.content_length();
  if (out.head == Result::kError) out.status = parser.status();
  return out;
}

// `input` parsed whole, and the same however it is split.
Parsed Parse(std::string_view input, const ParserLimits& limits = Limits()) {
  return SameHoweverSplit(
      input, [&](size_t piece) { return Run(input, piece, limits); }, Describe);
}

// The head's outcome: kDone, kMore or the status of kError.
Parsed ExpectHead(std::string_view input, int status, const ParserLimits& limits = Limits()) {
  const Parsed p = Parse(input, limits);
  const int got = p.head == Result::kDone ? kDone : p.head == Result::kMore ? kMore : p.status;
  EXPECT_EQ(got, status) << Escape(input);
  if (p.head == Result::kError) {
    EXPECT_NE(p.status, 0) << Escape(input);
  }
  return p;
}

std::string H11(std::string_view fields) {
  return "GET / HTTP/1.1\r\nHost: a\r\n" + std::string(fields) + "\r\n";
}
std::string H10(std::string_view fields) {
  return "GET / HTTP/1.0\r\n" + std::string(fields) + "\r\n";
}
std::string Line(std::string_view line) { return std::string(line) + "\r\nHost: a\r\n\r\n"; }

struct Case {
  std::string input;
  int status;
};

void ExpectAll(const std::vector<Case>& cases, const ParserLimits& limits = Limits()) {
  for (const Case& c : cases) ExpectHead(c.input, c.status, limits);
}

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
