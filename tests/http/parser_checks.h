// What parser_test.cc and parser_body_test.cc share: limits, a printable form of the input, and
// the check that an input parses the same however reads split it.
#ifndef PERCORE_TESTS_HTTP_PARSER_CHECKS_H_
#define PERCORE_TESTS_HTTP_PARSER_CHECKS_H_

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "parser.h"

namespace percore::http {

inline ParserLimits Limits(size_t header = 16 * 1024, size_t target = 8 * 1024,
                           size_t fields = 100) {
  return ParserLimits{.max_header_bytes = header, .max_target_bytes = target, .max_fields = fields};
}

// The first 160 bytes of `s`, CR, LF and other bytes outside visible ASCII escaped.
inline std::string Escape(std::string_view s) {
  std::string out;
  for (const unsigned char c : s.substr(0, 160)) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "\\x%02x", c);
    out += c == '\r'                 ? std::string("\\r")
           : c == '\n'               ? std::string("\\n")
           : (c < 0x20 || c >= 0x7f) ? std::string(hex)
                                     : std::string(1, static_cast<char>(c));
  }
  return s.size() > 160 ? out + "..." : out;
}

// Parses the head of `bytes` as the session keeps it: one buffer that grows `piece` bytes a call,
// until the head is done, failed, or the bytes run out.
inline RequestParser::Result FeedHead(RequestParser& parser, const std::string& bytes,
                                      size_t piece, const ParserLimits& limits) {
  RequestParser::Result result;
  size_t n = 0;
  do {
    n += std::min(piece, bytes.size() - n);
    result = parser.ParseHead(bytes.data(), n, limits);
  } while (result == RequestParser::Result::kMore && n < bytes.size());
  return result;
}

// `run(piece)` parses `input` in pieces of `piece` bytes: whole, then in pieces of 1, 2, 3, 7 and
// 64, each outcome as `describe` prints it the same as the whole's. Returns the whole's.
template <typename Run, typename Describe>
auto SameHoweverSplit(std::string_view input, Run run, Describe describe) {
  const auto whole = run(std::max<size_t>(input.size(), 1));
  for (const size_t piece : {1, 2, 3, 7, 64}) {
    EXPECT_EQ(describe(run(piece)), describe(whole))
        << "in pieces of " << piece << ": " << Escape(input);
  }
  return whole;
}

}  // namespace percore::http

#endif  // PERCORE_TESTS_HTTP_PARSER_CHECKS_H_
