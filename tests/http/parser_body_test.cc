#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "parser_checks.h"
#include "parser.h"

// RequestParser::ParseBody, rule by rule (RFC 9112 6 and 7); parser_test.cc has the head.
namespace percore::http {
namespace {

using namespace std::literals;
using Result = RequestParser::Result;
using Framing = RequestParser::Framing;

constexpr int kDone = 0;   // an expected status: the body is complete
constexpr int kMore = -1;  // an expected status: the body needs more bytes

const std::string kChunkedHead = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

// What a parse of one message tells about its body.
struct Parsed {
  Result head = Result::kMore;
  Result result = Result::kMore;  // of the body when the head is done, else the head's
  int status = 0;                 // of kError
  uint32_t head_size = 0;
  size_t fields = 0;
  Framing framing = Framing::kNone;
  std::string body;
  std::vector<std::string> pieces;  // the body as ParseBody returned it
  size_t next = 0;                  // where the next message starts, after the body's kDone
};

std::string Describe(const Parsed& p) {
  std::ostringstream s;
  s << "head " << static_cast<int>(p.head) << " result " << static_cast<int>(p.result) << " status "
    << p.status << " head_size " << p.head_size << " fields " << p.fields << " framing "
    << static_cast<int>(p.framing) << " next " << p.next << " body [" << Escape(p.body) << "]";
  return s.str();
}

// The head grows `piece` bytes a call over one buffer; then the body comes in pieces of `piece`
// bytes, each a buffer of its own whose views are used before the next.
Parsed Run(std::string_view input, size_t piece, const ParserLimits& limits) {
  const std::string bytes(input);
  RequestParser parser;
  Parsed out;
  out.head = FeedHead(parser, bytes, piece, limits);
  out.result = out.head;
  out.head_size = parser.head_size();
  out.fields = parser.fields().size();
  out.framing = parser.framing();
  if (out.head == Result::kDone) {
    size_t offset = parser.head_size();
    for (;;) {
      const std::string chunk = bytes.substr(offset, std::min(piece, bytes.size() - offset));
      const char* at = chunk.data();
      std::string_view data;
      do {
        out.result = parser.ParseBody(&at, chunk.data() + chunk.size(), &data, limits);
        out.body += data;
        if (!data.empty()) out.pieces.emplace_back(data);
      } while (out.result == Result::kMore && !data.empty());
      offset += static_cast<size_t>(at - chunk.data());
      if (out.result != Result::kMore || offset == bytes.size()) break;
      if (at != chunk.data() + chunk.size()) {
        ADD_FAILURE() << "kMore with no data short of the end: " << Escape(input);
        break;
      }
    }
    if (out.result == Result::kDone) out.next = offset;
  }
  if (out.result == Result::kError) out.status = parser.status();
  return out;
}

// `input` parsed whole, and the same however it is split.
Parsed Parse(std::string_view input, const ParserLimits& limits = Limits()) {
  return SameHoweverSplit(
      input, [&](size_t piece) { return Run(input, piece, limits); }, Describe);
}

std::string View(const char* base, Span span) {
  return std::string(base + span.offset, span.length);
}

// ---- Chunked bodies.

// The body of a request framed as chunked; `body` empty unless kDone or kMore.
Parsed ExpectChunked(std::string_view chunks, int status, std::string_view body = "",
                     const ParserLimits& limits = Limits()) {
  const std::string in = kChunkedHead + std::string(chunks);
  const Parsed p = Parse(in, limits);
  EXPECT_EQ(p.head, Result::kDone) << Escape(in);
  const int got = p.result == Result::kDone ? kDone : p.result == Result::kMore ? kMore : p.status;
  EXPECT_EQ(got, status) << Escape(chunks);
  if (status == kDone || status == kMore) {
    EXPECT_EQ(p.body, body) << Escape(chunks);
  }
  if (status == kDone) {
    EXPECT_EQ(p.next, in.size()) << Escape(chunks);
  }
  return p;
}

TEST(ParserChunkedTest, Pieces) {
  const Parsed p = ExpectChunked("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", kDone, "abcde");
  EXPECT_EQ(p.pieces, (std::vector<std::string>{"abc", "de"}));
  EXPECT_EQ(p.framing, Framing::kChunked);
}

TEST(ParserChunkedTest, Sizes) {
  ExpectChunked("A\r\n0123456789\r\n0\r\n\r\n", kDone, "0123456789");
  ExpectChunked("a\r\n0123456789\r\nB\r\n0123456789b\r\n0\r\n\r\n", kDone, "01234567890123456789b");
  ExpectChunked("0003\r\nabc\r\n000\r\n\r\n", kDone, "abc");
  ExpectChunked("00000000000000000000001\r\nx\r\n0\r\n\r\n", kDone, "x");
  ExpectChunked("0\r\n\r\n", kDone, "");
  ExpectChunked("ffffffffffffffff\r\nab", kMore, "ab");  // 16 hex digits: the largest
  ExpectChunked("10000000000000000\r\n", 400);           // 17
  ExpectChunked("0ffffffffffffffff0\r\n", 400);
  ExpectChunked("\r\n", 400);  // no hex digit
  ExpectChunked(";a\r\n", 400);
  ExpectChunked("x\r\n", 400);
  ExpectChunked("-1\r\n", 400);
  ExpectChunked("0x5\r\n", 400);
  ExpectChunked("3\n", 400);  // a bare LF
  ExpectChunked("3\rX", 400);
  ExpectChunked("3\r\nab", kMore, "ab");
}

TEST(ParserChunkedTest, Extensions) {
  ExpectChunked("3;a=b\r\nabc\r\n0;flag\r\n\r\n", kDone, "abc");
  ExpectChunked("3;x=\"q s\"\r\nabc\r\n0\r\n\r\n", kDone, "abc");
  ExpectChunked("3;x=\"a\\\"b\\\\\"\r\nabc\r\n0\r\n\r\n", kDone, "abc");  // quoted-pairs
  ExpectChunked("3;x=\"\"\r\nabc\r\n0\r\n\r\n", kDone, "abc");
  ExpectChunked("3;x=\"\x80\t!#[]~\"\r\nabc\r\n0\r\n\r\n", kDone, "abc");
  ExpectChunked("3 ;a = b\r\nabc\r\n0\r\n\r\n", kDone, "abc");  // BWS
  ExpectChunked("3\t; a=b ;c; d=\"e\" \t;f\r\nabc\r\n0\r\n\r\n", kDone, "abc");
  ExpectChunked("5;=x\r\n", 400);
  ExpectChunked("5 \r\n", 400);  // trailing whitespace without ';'
  ExpectChunked("5 x\r\n", 400);
  ExpectChunked("5;\r\n", 400);
  ExpectChunked("5;a=\r\n", 400);
  ExpectChunked("5;a \r\n", 400);
  ExpectChunked("5;a b\r\n", 400);
  ExpectChunked("5;a=b c\r\n", 400);
  ExpectChunked("5;a=b=c\r\n", 400);
  ExpectChunked("5;a@=b\r\n", 400);
  ExpectChunked("5;a=\"b\"c\r\n", 400);
  ExpectChunked("5;a=\"unterminated\r\n", 400);
  ExpectChunked("5;a=\"\x7f\"\r\n", 400);
  ExpectChunked("5;a=\"\\\x01\"\r\n", 400);
  ExpectChunked("5;a=b\n", 400);
}

// Every byte in an extension's name, token value, quoted-string and quoted-pair.
TEST(ParserChunkedTest, EveryByteInAnExtension) {
  for (int b = 0; b < 256; ++b) {
    const std::string c(1, static_cast<char>(b));
    SCOPED_TRACE(b);
    const bool tchar =
        (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(b)) != std::string_view::npos;
    const bool qdtext =
        b == '\t' || b == ' ' || b == 0x21 || (b >= 0x23 && b <= 0x7e && b != '\\') || b >= 0x80;
    const int token = tchar || b == ';' ? kDone : 400;  // ';' starts another extension
    ExpectChunked("1;a" + c + "b=c\r\nx\r\n0\r\n\r\n", token, "x");
    ExpectChunked("1;a=b" + c + "c\r\nx\r\n0\r\n\r\n", token, "x");
    ExpectChunked("1;a=\"b" + c + "c\"\r\nx\r\n0\r\n\r\n", qdtext || b == '\\' ? kDone : 400, "x");
    ExpectChunked("1;a=\"\\" + c + "\"\r\nx\r\n0\r\n\r\n",
                  b == '\t' || (b >= 0x20 && b != 0x7f) ? kDone : 400, "x");
  }
}

TEST(ParserChunkedTest, ChunkDataEnd) {
  ExpectChunked("3\r\nabcX\r\n0\r\n\r\n", 400);
  ExpectChunked("3\r\nabc\rX0\r\n\r\n", 400);
  ExpectChunked("3\r\nabc\n0\r\n\r\n", 400);
  ExpectChunked("3\r\nabcd\r\n0\r\n\r\n", 400);
  ExpectChunked("3\r\nabc\r", kMore, "abc");
}

TEST(ParserChunkedTest, Trailers) {
  const Parsed p = ExpectChunked("1\r\nx\r\n0\r\nX: y\r\nZ:\r\n\r\n", kDone, "x");
  EXPECT_EQ(p.fields, 2u);  // the head's: trailer fields are not kept
  ExpectChunked("0\r\n y\r\n\r\n", 400);
  ExpectChunked("0\r\nX: y\r\n z\r\n\r\n", 400);  // obs-fold
  ExpectChunked("0\r\nX: y\n\r\n", 400);          // a bare LF
  ExpectChunked("0\r\n\n", 400);
  ExpectChunked("0\r\n\rX", 400);
  ExpectChunked("0\r\nX : y\r\n\r\n", 400);
  ExpectChunked("0\r\n: y\r\n\r\n", 400);
  ExpectChunked("0\r\nX: a\0b\r\n\r\n"s, 400);
  ExpectChunked("0\r\nX: y\r\n", kMore);
}

TEST(ParserChunkedTest, Limits) {
  const ParserLimits limits = Limits(100, 8);
  ASSERT_LT(kChunkedHead.size(), 100u);
  // A size line of max_header_bytes before its CRLF is taken; a longer one is not.
  ExpectChunked("3;" + std::string(98, 'a') + "\r\nabc\r\n0\r\n\r\n", kDone, "abc", limits);
  ExpectChunked("3;" + std::string(99, 'a') + "\r\nabc\r\n0\r\n\r\n", 431, "", limits);
  ExpectChunked(std::string(101, '0') + "3\r\n", 431, "", limits);
  ExpectChunked("3;" + std::string(200, 'a'), 431, "", limits);  // before the line ends
  // The trailer section as the header section: its lines with their CRLFs.
  const std::string line = "X: " + std::string(45, 'a') + "\r\n";  // 50 bytes
  ExpectChunked("0\r\n" + line + line + "\r\n", kDone, "", limits);
  ExpectChunked("0\r\n" + line + "Y" + line + "\r\n", 431, "", limits);
  ExpectChunked("0\r\nX: " + std::string(95, 'a') + "\r\n\r\n", kDone, "", limits);
  ExpectChunked("0\r\nX: " + std::string(96, 'a') + "\r\n\r\n", 431, "", limits);
}

TEST(ParserBodyTest, NextMessage) {
  const std::string next = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  std::string in = kChunkedHead + "2\r\nab\r\n0\r\nT: 1\r\n\r\n" + next;
  Parsed p = Parse(in);
  EXPECT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.body, "ab");
  EXPECT_EQ(p.next, in.size() - next.size());
  in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + next;
  p = Parse(in);
  EXPECT_EQ(p.result, Result::kDone);
  EXPECT_EQ(p.body, "hello");
  EXPECT_EQ(p.pieces, (std::vector<std::string>{"hello"}));
  EXPECT_EQ(p.next, in.size() - next.size());
  p = Parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel");
  EXPECT_EQ(p.result, Result::kMore);
  EXPECT_EQ(p.body, "hel");
}

TEST(ParserBodyTest, ContentLengthCountsDown) {
  const std::string in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloX";
  const ParserLimits limits = Limits();
  RequestParser parser;
  ASSERT_EQ(parser.ParseHead(in.data(), in.size(), limits), Result::kDone);
  EXPECT_EQ(parser.body_remaining(), 5u);
  const char* at = in.data() + parser.head_size();
  std::string_view data = "x";
  EXPECT_EQ(parser.ParseBody(&at, at, &data, limits), Result::kMore);
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(parser.ParseBody(&at, at + 2, &data, limits), Result::kMore);
  EXPECT_EQ(data, "he");
  EXPECT_EQ(parser.body_remaining(), 3u);
  EXPECT_EQ(parser.ParseBody(&at, in.data() + in.size(), &data, limits), Result::kMore);
  EXPECT_EQ(data, "llo");
  EXPECT_EQ(parser.body_remaining(), 0u);
  EXPECT_EQ(parser.ParseBody(&at, in.data() + in.size(), &data, limits), Result::kDone);
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(*at, 'X');
}

// ---- Reset.

TEST(ParserResetTest, ReadyForTheNextMessage) {
  const ParserLimits limits = Limits();
  // Two messages in one buffer, as a pipelining client sends them.
  const std::string in = kChunkedHead + "1\r\nx\r\n0\r\n\r\n" +
                         "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "BAD\r\n\r\n";
  RequestParser parser;
  ASSERT_EQ(parser.ParseHead(in.data(), in.size(), limits), Result::kDone);
  const char* at = in.data() + parser.head_size();
  std::string_view data;
  Result result = Result::kMore;
  for (int i = 0; i < 10 && result == Result::kMore; ++i) {
    result = parser.ParseBody(&at, in.data() + in.size(), &data, limits);
  }
  ASSERT_EQ(result, Result::kDone);
  ASSERT_EQ(parser.framing(), Framing::kChunked);

  parser.Reset();
  EXPECT_TRUE(parser.fields().empty());
  EXPECT_FALSE(parser.request_line_done());
  EXPECT_EQ(parser.framing(), Framing::kNone);
  EXPECT_EQ(parser.head_size(), 0u);
  const char* base = at;
  ASSERT_EQ(parser.ParseHead(base, static_cast<size_t>(in.data() + in.size() - base), limits),
            Result::kDone);
  EXPECT_EQ(View(base, parser.target()), "/b");
  ASSERT_EQ(parser.fields().size(), 1u);
  EXPECT_EQ(View(base, parser.fields()[0].value), "keep-alive");
  EXPECT_EQ(parser.minor_version(), 0);
  EXPECT_TRUE(parser.keep_alive());
  EXPECT_EQ(parser.framing(), Framing::kNone);
  at = base + parser.head_size();
  ASSERT_EQ(parser.ParseBody(&at, in.data() + in.size(), &data, limits), Result::kDone);

  parser.Reset();
  base = at;
  ASSERT_EQ(std::string_view(base, 7), "BAD\r\n\r\n");
  EXPECT_EQ(parser.ParseHead(base, 7, limits), Result::kError);
  EXPECT_EQ(parser.status(), 400);
  parser.Reset();
  EXPECT_EQ(parser.status(), 0);
  const std::string again = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parser.ParseHead(again.data(), again.size(), limits), Result::kDone);
  EXPECT_EQ(parser.minor_version(), 1);
  EXPECT_TRUE(parser.keep_alive());
  EXPECT_EQ(parser.fields().size(), 1u);
}

}  // namespace
}  // namespace percore::http
