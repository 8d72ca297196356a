// percore's HTTP/1.1 request parser: RFC 9112's grammar, strict, in one pass over the bytes.
//
// No callbacks: the header section is parsed where it lies, and what it holds comes back as
// spans (offsets from the message's first byte), so a caller that keeps those bytes together
// (the session keeps a header section that spans reads in one buffer) gets views, not copies.
// Both halves resume where the last call stopped, and each byte is looked at once: a line cut
// by the end of a read is not scanned again from its start. Every decision is a function of
// the bytes alone, never of where reads split them: the first fault in byte order wins, and a
// limit counts as broken at the first byte past it.
//
// What it refuses, and why, is the table in docs/http.md; parser_test.cc follows it rule by rule.
#ifndef PERCORE_HTTP_SRC_PARSER_H_
#define PERCORE_HTTP_SRC_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace percore::http {

// Offsets from the first byte of the message.
struct Span {
  uint32_t offset = 0;
  uint32_t length = 0;
  uint32_t end() const { return offset + length; }
};

struct ParserLimits {
  size_t max_header_bytes;  // request line and field lines, without the final empty line;
                            // also the trailer section, and a chunk's size line
  size_t max_target_bytes;
  size_t max_fields;
};

class RequestParser {
 public:
  enum class Result : uint8_t { kMore, kDone, kError };
  enum class Framing : uint8_t { kNone, kLength, kChunked };
  struct Field {
    Span name;
    Span value;  // without the whitespace around it
  };

  // Ready for a new message; the field list keeps its capacity.
  void Reset();

  // The header section. [base, base + size) is the message from its first byte (the method's:
  // empty lines before a request are the caller's to skip) as far as it has come: the bytes of
  // the last call and maybe more. kDone: head_size() bytes are the header section, its empty
  // line included, and everything below describes the request.
  Result ParseHead(const char* base, size_t size, const ParserLimits& limits);

  // The body, once the head is done: reads on from *at (moving it) towards `end`. A call that
  // finds body bytes stops there and returns kMore with *data on them; otherwise *data is
  // empty and it reads to `end` (kMore), to the body's end (kDone: the next message starts at
  // *at) or to a fault (kError).
  Result ParseBody(const char** at, const char* end, std::string_view* data,
                   const ParserLimits& limits);

  // The status of kError: 400, 414, 417, 431, 501 or 505.
  int status() const { return status_; }
  bool request_line_done() const { return state_ > kVersion; }
  Span method() const { return method_; }
  Span target() const { return target_; }
  // Where the target's query starts: its first '?', as an offset into the target, or npos.
  size_t question() const {
    return question_ != 0 ? question_ - target_.offset : std::string_view::npos;
  }
  const std::vector<Field>& fields() const { return fields_; }
  uint32_t head_size() const { return head_size_; }
  // 0 or 1: a later HTTP/1.x is processed as 1.1 (RFC 9110 6.2).
  int minor_version() const { return minor_; }
  // One of RFC 9110's methods or PATCH; another token is the router's to recognise (or 501).
  bool standard_method() const { return standard_method_; }
  // Whether the client lets the connection go on after this request (RFC 9112 9.3).
  bool keep_alive() const { return !close_ && (minor_ == 1 || keep_alive_token_); }
  // "Connection: upgrade" with an Upgrade field.
  bool upgrade() const { return connection_upgrade_ && upgrade_field_; }
  bool expect_continue() const { return expect_continue_; }
  Framing framing() const { return framing_; }
  uint64_t content_length() const { return content_length_; }
  // Of a Content-Length body: the bytes still to come.
  uint64_t body_remaining() const { return remaining_; }

 private:
  enum State : uint8_t {
    // The request line.
    kStart, kMethod, kTarget, kVersion,
    // Field lines, of the header or the trailer section.
    kLineStart, kName, kOws, kValue, kLf, kEmptyLf,
    // Chunked framing.
    kChunkSize, kExtBws, kExtNameStart, kExtName, kExtAfterName, kExtValueStart, kExtToken,
    kExtQuoted, kExtQuotedPair, kExtAfterQuoted, kChunkSizeLf, kChunkData, kChunkDataCr,
    kChunkDataLf, kTrailer, kBodyDone
  };
  Result Fail(int status) {
    status_ = status;
    return Result::kError;
  }
  // Field lines to the empty line, from `state`. `limit` (<= end) is the first byte past the
  // section's limit. With `head`, the fields are kept as spans from `base`, up to its
  // max_fields; without, they are only checked (a trailer section).
  Result ScanFields(State& state, const char* base, const char** at, const char* limit,
                    const char* end, const ParserLimits* head);
  // A complete field line of the header section (`base`: the message's first byte): the
  // fields that frame the message.
  Result OnField(const char* base, std::string_view name, std::string_view value);
  Result OnTransferEncoding(std::string_view value);
  // The end of the header section: what needs all of it.
  Result FinishHead(const char* base);
  Result ChunkLine(const char** at, const char* end, const ParserLimits& limits);

  std::vector<Field> fields_;
  Span method_, target_, name_, value_;
  uint64_t content_length_ = 0;
  uint64_t remaining_ = 0;     // of the body, or of the chunk
  uint32_t question_ = 0;      // the target's first '?', from the message's first byte; 0: none
  uint32_t head_size_ = 0;
  uint32_t pos_ = 0;           // where ParseHead goes on
  uint32_t line_bytes_ = 0;    // of the chunk size line or the trailer section so far
  uint16_t status_ = 0;
  State state_ = kStart;
  State trailer_state_ = kLineStart;
  Framing framing_ = Framing::kNone;
  uint8_t minor_ = 1;
  uint8_t host_count_ = 0;
  uint8_t chunked_count_ = 0;  // "chunked" among the transfer codings
  bool chunk_digits_ = false;  // the chunk size has a digit
  bool standard_method_ = false;
  bool content_length_seen_ = false;
  bool transfer_encoding_seen_ = false;
  bool chunked_last_ = false;   // the last transfer coding so far is chunked
  bool other_coding_ = false;   // a transfer coding other than chunked
  bool close_ = false, keep_alive_token_ = false, connection_upgrade_ = false;
  bool upgrade_field_ = false, expect_continue_ = false, expect_other_ = false;
};

// RFC 9112 3.2: Host = uri-host [ ":" port ] (RFC 3986 3.2.2).
bool IsValidHost(std::string_view host);

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_PARSER_H_
