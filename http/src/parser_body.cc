// RequestParser's second half: a request's body, by Content-Length or chunked, with the chunk
// lines, their extensions and the trailer section checked as they arrive.
#include <algorithm>

#include "ascii.h"
#include "parser.h"

namespace percore::http {

using Result = RequestParser::Result;

Result RequestParser::ParseBody(const char** at, const char* end, std::string_view* data,
                                const ParserLimits& limits) {
  *data = {};
  if (framing_ != Framing::kChunked) {
    if (remaining_ == 0) return Result::kDone;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, end - *at));
    *data = std::string_view(*at, n);
    *at += n;
    remaining_ -= n;
    return Result::kMore;
  }
  while (*at < end || state_ == kBodyDone) {
    switch (state_) {
      case kChunkData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, end - *at));
        *data = std::string_view(*at, n);
        *at += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = kChunkDataCr;
        return Result::kMore;
      }
      case kChunkDataCr:
      case kChunkDataLf:
        // RFC 9112 7.1: exactly CRLF after a chunk's data.
        if (*(*at)++ != (state_ == kChunkDataCr ? '\r' : '\n')) return Fail(400);
        state_ = state_ == kChunkDataCr ? kChunkDataLf : kChunkSize;
        line_bytes_ = 0;
        chunk_digits_ = false;
        break;
      case kTrailer: {
        // The trailer section: field lines as in the header section, not kept, bounded as it.
        const char* begin = *at;
        const char* limit = begin + std::min<size_t>(limits.max_header_bytes - line_bytes_,
                                                     static_cast<size_t>(end - begin));
        const Result r = ScanFields(trailer_state_, begin, at, limit, end, nullptr);
        line_bytes_ += static_cast<uint32_t>(*at - begin);
        if (r == Result::kDone) {
          state_ = kBodyDone;
          return r;
        }
        if (r == Result::kError) return r;
        break;
      }
      case kBodyDone:
        return Result::kDone;
      default: {
        const Result r = ChunkLine(at, end, limits);
        if (r == Result::kError) return r;
        break;
      }
    }
  }
  return Result::kMore;
}

Result RequestParser::ChunkLine(const char** at, const char* end, const ParserLimits& limits) {
  // RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS chunk-ext-name
  // [ BWS "=" BWS chunk-ext-val ] ), the value a token or a quoted-string. The extensions are
  // checked and skipped; the line is bounded as a header section is.
  const auto ws = [](char c) { return c == ' ' || c == '\t'; };
  for (const char* p = *at; p < end; ++p) {
    const char c = *p;
    // The line's bytes before its CRLF count.
    if (c != '\r' && state_ != kChunkSizeLf && ++line_bytes_ > limits.max_header_bytes) {
      return Fail(431);
    }
    switch (state_) {
      case kChunkSize: {
        const int digit = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
        if (digit >= 0) {
          if ((remaining_ >> 60) != 0) return Fail(400);  // the size overflows
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(digit);
          chunk_digits_ = true;
          continue;
        }
        if (!chunk_digits_) return Fail(400);
        if (c == ';') {
          state_ = kExtNameStart;
        } else if (ws(c)) {
          state_ = kExtBws;
        } else if (c == '\r') {
          state_ = kChunkSizeLf;
        } else {
          return Fail(400);
        }
        continue;
      }
      case kExtBws:
        if (c == ';') {
          state_ = kExtNameStart;
        } else if (!ws(c)) {
          return Fail(400);
        }
        continue;
      case kExtNameStart:
      case kExtValueStart:
        if (state_ == kExtValueStart && c == '"') {
          state_ = kExtQuoted;
        } else if (In(kToken, c)) {
          state_ = state_ == kExtNameStart ? kExtName : kExtToken;
        } else if (!ws(c)) {
          return Fail(400);
        }
        continue;
      case kExtName:
      case kExtAfterName:
        if (c == '=') {
          state_ = kExtValueStart;
        } else if (c == ';') {
          state_ = kExtNameStart;
        } else if (ws(c)) {
          state_ = kExtAfterName;
        } else if (state_ == kExtName && c == '\r') {
          state_ = kChunkSizeLf;
        } else if (state_ != kExtName || !In(kToken, c)) {
          return Fail(400);
        }
        continue;
      case kExtToken:
      case kExtAfterQuoted:
        if (c == ';') {
          state_ = kExtNameStart;
        } else if (ws(c)) {
          state_ = kExtBws;
        } else if (c == '\r') {
          state_ = kChunkSizeLf;
        } else if (state_ != kExtToken || !In(kToken, c)) {
          return Fail(400);
        }
        continue;
      case kExtQuoted:
        if (c == '"') {
          state_ = kExtAfterQuoted;
        } else if (c == '\\') {
          state_ = kExtQuotedPair;
        } else if (!In(kQdText, c)) {
          return Fail(400);
        }
        continue;
      case kExtQuotedPair:
        if (!In(kQuotedPair, c)) return Fail(400);
        state_ = kExtQuoted;
        continue;
      case kChunkSizeLf:
        if (c != '\n') return Fail(400);
        *at = p + 1;
        line_bytes_ = 0;
        if (remaining_ == 0) {  // the last chunk: the trailer section follows
          state_ = kTrailer;
          trailer_state_ = kLineStart;
        } else {
          state_ = kChunkData;
        }
        return Result::kMore;
      default:
        return Fail(400);
    }
  }
  *at = end;
  return Result::kMore;
}

}  // namespace percore::http
