// What parser_test.cc and parser_fields_test.cc share: a header section parsed whole and in
// pieces, and what it told.
#ifndef PERCORE_TESTS_HTTP_PARSER_HEAD_CHECKS_H_
#define PERCORE_TESTS_HTTP_PARSER_HEAD_CHECKS_H_

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "parser.h"
#include "parser_checks.h"

namespace percore::http {

using Result = RequestParser::Result;
using Framing = RequestParser::Framing;

inline constexpr int kDone = 0;   // an expected status: the head is complete
inline constexpr int kMore = -1;  // an expected status: the head needs more bytes

// What the head of a message tells.
struct Parsed {
  Result head = Result::kMore;
  int status = 0;  // of kError
  std::string method, target;
  std::vector<std::string> fields;  // "name|value"
  std::vector<uint32_t> spans;      // method, target, then each field's name and value
  uint32_t head_size = 0;
  size_t question = 0;  // RequestParser::question()
  int minor = 0;
  bool standard = false, keep_alive = false, upgrade = false, expect_continue = false;
  Framing framing = Framing::kNone;
  uint64_t content_length = 0;
};

inline std::string Describe(const Parsed& p) {
  std::ostringstream s;
  s << "head " << static_cast<int>(p.head) << " status " << p.status << " [" << Escape(p.method)
    << "] [" << Escape(p.target) << "] head_size " << p.head_size << " ? " << p.question
    << " minor " << p.minor << " std " << p.standard << " ka " << p.keep_alive << " up " << p.upgrade << " 100 " << p.expect_continue
    << " framing " << static_cast<int>(p.framing) << " cl " << p.content_length << " spans";
  for (const uint32_t n : p.spans) s << ' ' << n;
  for (const std::string& f : p.fields) s << " {" << Escape(f) << '}';
  return s.str();
}

inline std::string View(std::string_view base, Span span) {
  return std::string(base.substr(span.offset, span.length));
}

// The head grows `piece` bytes a call over one buffer, as the session keeps it
// (parser_body_test.cc has the bodies).
inline Parsed Run(std::string_view input, size_t piece, const ParserLimits& limits) {
  const std::string bytes(input);
  RequestParser parser;
  Parsed out;
  out.head = FeedHead(parser, bytes, piece, limits);
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
  if (parser.request_line_done()) out.question = parser.question();
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
inline Parsed Parse(std::string_view input, const ParserLimits& limits = Limits()) {
  return SameHoweverSplit(
      input, [&](size_t piece) { return Run(input, piece, limits); }, Describe);
}

// The head's outcome: kDone, kMore or the status of kError.
inline Parsed ExpectHead(std::string_view input, int status,
                         const ParserLimits& limits = Limits()) {
  const Parsed p = Parse(input, limits);
  const int got = p.head == Result::kDone ? kDone : p.head == Result::kMore ? kMore : p.status;
  EXPECT_EQ(got, status) << Escape(input);
  if (p.head == Result::kError) {
    EXPECT_NE(p.status, 0) << Escape(input);
  }
  return p;
}

inline std::string H11(std::string_view fields) {
  return "GET / HTTP/1.1\r\nHost: a\r\n" + std::string(fields) + "\r\n";
}
inline std::string H10(std::string_view fields) {
  return "GET / HTTP/1.0\r\n" + std::string(fields) + "\r\n";
}
inline std::string Line(std::string_view line) { return std::string(line) + "\r\nHost: a\r\n\r\n"; }

struct Case {
  std::string input;
  int status;
};

inline void ExpectAll(const std::vector<Case>& cases, const ParserLimits& limits = Limits()) {
  for (const Case& c : cases) ExpectHead(c.input, c.status, limits);
}

}  // namespace percore::http

#endif  // PERCORE_TESTS_HTTP_PARSER_HEAD_CHECKS_H_
