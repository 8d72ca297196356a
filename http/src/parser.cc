// RequestParser's first half: the request line and the field lines of the header section (and of
// a trailer section, for parser_body.cc), with the framing fields they carry (see parser.h).
#include "parser.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cstring>

#include "ascii.h"

namespace percore::http {

namespace {

using Result = RequestParser::Result;

constexpr auto kRegName = CharClass([](int c) {
  return Alnum(c) ||
         std::string_view("-._~!$&'()*+,;=%").find(static_cast<char>(c)) != std::string_view::npos;
});
constexpr auto kIpLiteral = CharClass([](int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
         c == '.' || c == 'v' || c == 'V';
});


// The first byte in [p, end) not in `table`.
const char* Skip(const std::array<bool, 256>& table, const char* p, const char* end) {
  while (p < end && In(table, *p)) ++p;
  return p;
}

#ifdef __SSE2__
// The bytes of `b` in [lo, hi], as a vector mask. SSE2 compares only signed bytes, so the range
// is moved to start at -128 first: then "in range" is "less than -128 + its width".
__m128i InRange(__m128i b, char lo, char hi) {
  const __m128i moved = _mm_add_epi8(b, _mm_set1_epi8(static_cast<char>(-128 - lo)));
  return _mm_cmplt_epi8(moved, _mm_set1_epi8(static_cast<char>(-128 + (hi - lo) + 1)));
}
unsigned Mask(__m128i m) { return static_cast<unsigned>(_mm_movemask_epi8(m)); }
__m128i Load16(const char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
// Letters (either case: OR 0x20 makes an upper-case letter lower-case, and nothing else a
// letter), digits, '-' and '.': nearly every byte of a method, a field name or a host name.
unsigned NameMask(__m128i b) {
  const __m128i letter = InRange(_mm_or_si128(b, _mm_set1_epi8(0x20)), 'a', 'z');
  return Mask(_mm_or_si128(_mm_or_si128(letter, InRange(b, '0', '9')), InRange(b, '-', '.')));
}
#endif

// The first byte in [p, end) that is not a token byte: normally the SP after a method or the
// colon after a field name, found 16 bytes at a time; another token byte ('_', '!'...) goes on
// through the table from there.
const char* SkipToken(const char* p, const char* end) {
#ifdef __SSE2__
  for (; end - p >= 16; p += 16) {
    const unsigned other = ~NameMask(Load16(p)) & 0xffff;
    if (other != 0) {
      p += __builtin_ctz(other);
      break;
    }
  }
#endif
  return Skip(kToken, p, end);
}

// Host's usual form, a name or an IPv4 address and maybe ":port", checked 16 bytes at once. True
// only if it is valid; false leaves the answer to IsValidHost. It reads the 16 bytes that end
// where `host` ends: only when the message, from `base`, holds them all.
bool CommonHost(std::string_view host, const char* base) {
#ifdef __SSE2__
  const size_t n = host.size();
  const char* const last = host.data() + n;
  if (n == 0 || n > 16 || last - base < 16) return false;
  const __m128i b = Load16(last - 16);
  const unsigned in = 0xffffu << (16 - n) & 0xffff;  // the bits of host's bytes
  const unsigned colon = Mask(_mm_cmpeq_epi8(b, _mm_set1_epi8(':'))) & in;
  if (((NameMask(b) | colon) & in) != in) return false;
  if (colon == 0) return true;
  const int first = __builtin_ctz(colon);
  if (first == static_cast<int>(16 - n)) return false;  // no name before the port
  const unsigned port = in & 0xffffu << (first + 1);
  return (port & ~Mask(InRange(b, '0', '9'))) == 0;
#else
  (void)host;
  (void)base;
  return false;
#endif
}

// The first byte in [p, end) that cannot be in a field value: normally the CR ending the line.
// 16 bytes at a time where SSE2 is there (all of x86-64): a field value is most of a header.
const char* SkipFieldValue(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i ctl_max = _mm_set1_epi8(0x1f);
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i del = _mm_set1_epi8(0x7f);
  for (; end - p >= 16; p += 16) {
    const __m128i b = Load16(p);
    const __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(b, ctl_max), b);  // b <= 0x1f, unsigned
    const __m128i bad =
        _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(b, tab), ctl), _mm_cmpeq_epi8(b, del));
    const unsigned mask = Mask(bad);
    if (mask != 0) return p + __builtin_ctz(mask);
  }
#endif
  return Skip(kFieldValue, p, end);
}

// The first byte in [p, end) that cannot be in a request target: normally the SP after it. Sets
// *question, if null, to the first '?' seen, which may lie past the byte returned.
const char* SkipTarget(const char* p, const char* end, const char** question) {
#ifdef __SSE2__
  const __m128i space = _mm_set1_epi8(0x20);
  const __m128i tilde = _mm_set1_epi8(0x7e);
  const __m128i hash = _mm_set1_epi8('#');
  for (; end - p >= 16; p += 16) {
    const __m128i b = Load16(p);
    const __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(b, space), b);  // b <= 0x20
    const __m128i high = _mm_cmpeq_epi8(_mm_max_epu8(b, tilde), b);
    const __m128i bad = _mm_or_si128(_mm_or_si128(low, _mm_cmpeq_epi8(b, hash)),
                                     _mm_andnot_si128(_mm_cmpeq_epi8(b, tilde), high));
    const unsigned marks = Mask(_mm_cmpeq_epi8(b, _mm_set1_epi8('?')));
    if (marks != 0 && *question == nullptr) *question = p + __builtin_ctz(marks);
    const unsigned mask = Mask(bad);
    if (mask != 0) return p + __builtin_ctz(mask);
  }
#endif
  for (; p < end && In(kTargetByte, *p); ++p) {
    if (*p == '?' && *question == nullptr) *question = p;
  }
  return p;
}

bool IsStandardMethod(std::string_view m) {
  switch (m.size()) {
    case 3:
      return m == "GET" || m == "PUT";
    case 4:
      return m == "POST" || m == "HEAD";
    case 5:
      return m == "PATCH" || m == "TRACE";
    case 6:
      return m == "DELETE";
    case 7:
      return m == "OPTIONS" || m == "CONNECT";
    default:
      return false;
  }
}

// The elements of a comma-separated list (RFC 9110 5.6.1), OWS trimmed, empty ones skipped.
template <typename Visit>
bool ForEachElement(std::string_view list, Visit visit) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view element = TrimOws(list.substr(0, comma));
    if (!element.empty() && !visit(element)) return false;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return true;
}

// origin-form, or absolute-form with a scheme and an authority ("http://a/x"), or "*" (for
// OPTIONS alone, checked with the whole section: "PRI * HTTP/2.0" is the HTTP/2 preface, 505).
bool TargetForm(std::string_view target) {
  if (target[0] == '/' || target == "*") return true;
  size_t i = 0;
  while (i < target.size() && (Alnum(target[i]) || target[i] == '+' || target[i] == '-' ||
                               target[i] == '.')) {
    ++i;
  }
  const bool alpha = (target[0] | 0x20) >= 'a' && (target[0] | 0x20) <= 'z';
  if (!alpha || target.substr(i, 3) != "://") return false;
  // RFC 9110 4.2.1, 4.2.4: an http(s) URI has a host, and no userinfo.
  const size_t host = i + 3;
  const std::string_view authority = target.substr(host, target.find_first_of("/?", host) - host);
  return !authority.empty() && authority.find('@') == std::string_view::npos;
}

}  // namespace

bool IsValidHost(std::string_view host) {
  const char* p = host.data();
  const char* const end = p + host.size();
  if (p == end) return false;
  if (*p == '[') {
    const char* close = p + 1;
    while (close < end && In(kIpLiteral, *close)) ++close;
    if (close == p + 1 || close == end || *close != ']') return false;
    p = close + 1;
  } else {
    // '%' stands for pct-encoded octets; their hex digits are reg-name characters too.
    const char* const begin = p;
    p = Skip(kRegName, p, end);
    if (p == begin) return false;
  }
  if (p == end) return true;
  if (*p++ != ':') return false;
  while (p < end && static_cast<unsigned char>(*p - '0') <= 9) ++p;
  return p == end;
}

void RequestParser::Reset() {
  std::vector<Field> fields = std::move(fields_);
  fields.clear();
  *this = RequestParser();
  fields_ = std::move(fields);
}

Result RequestParser::ParseHead(const char* base, size_t size, const ParserLimits& limits) {
  const char* const end = base + size;
  // Bytes at or past `limit` break max_header_bytes, but for the final empty line.
  const char* const limit = base + std::min(size, limits.max_header_bytes);
  const char* p = base + pos_;
  // The limit reached with the line unfinished: more bytes, or 431 if they are past it.
  auto more = [&](const char* q) {
    pos_ = static_cast<uint32_t>(q - base);
    return q < end ? Fail(431) : Result::kMore;
  };
  switch (state_) {
    case kStart:
      method_.offset = 0;
      state_ = kMethod;
      [[fallthrough]];
    case kMethod: {
      // Nearly every request starts "GET ": a word compared, no byte scanned.
      const bool get = p == base && limit - p >= 4 && Load32(p) == Load32("GET ");
      const char* q = get ? p + 3 : SkipToken(p, limit);
      if (q == limit) return more(q);
      if (*q != ' ' || q == base + method_.offset) return Fail(400);
      method_.length = static_cast<uint32_t>(q - base) - method_.offset;
      standard_method_ = get || IsStandardMethod({base, method_.length});
      p = q + 1;
      target_.offset = static_cast<uint32_t>(p - base);
      state_ = kTarget;
      [[fallthrough]];
    }
    case kTarget: {
      const char* question = question_ != 0 ? base + question_ : nullptr;
      const char* q = SkipTarget(p, limit, &question);
      if (question != nullptr && question < q) question_ = static_cast<uint32_t>(question - base);
      // 414 at the first byte past max_target_bytes, which comes before the header limit's
      // (or q would have stopped there).
      if (static_cast<size_t>(q - base - target_.offset) > limits.max_target_bytes) {
        return Fail(414);
      }
      if (q == limit) return more(q);
      if (*q != ' ' || q == base + target_.offset) return Fail(400);
      target_.length = static_cast<uint32_t>(q - base) - target_.offset;
      // Its form as soon as it ends; CONNECT's authority-form is answered 501 at the end.
      if (std::string_view(base + method_.offset, method_.length) != "CONNECT" &&
          !TargetForm(std::string_view(base + target_.offset, target_.length))) {
        return Fail(400);
      }
      p = q + 1;
      state_ = kVersion;
      [[fallthrough]];
    }
    case kVersion: {
      // "HTTP/" DIGIT "." DIGIT CRLF, checked as far as it has come.
      static constexpr std::string_view kShape = "HTTP/1.1\r\n";
      const char* const version = base + target_.end() + 1;
      const char* q = p;
      // Nearly always all ten bytes are there and say 1.1 or 1.0: a few word comparisons.
      if (q == version && limit - q >= 10 && std::memcmp(q, "HTTP/1.", 7) == 0 &&
          (q[7] == '1' || q[7] == '0') && q[8] == '\r' && q[9] == '\n') {
        q += 10;
      }
      for (; q < limit && q - version < 10; ++q) {
        const size_t i = static_cast<size_t>(q - version);
        const bool digit = *q >= '0' && *q <= '9';
        if (i == 5 || i == 7 ? !digit : *q != kShape[i]) return Fail(400);
      }
      if (q - version < 10) return more(q);
      if (version[5] != '1') return Fail(505);
      minor_ = version[7] == '0' ? 0 : 1;
      p = q;
      state_ = kLineStart;
      break;
    }
    default:
      break;
  }
  const Result result = ScanFields(state_, base, &p, limit, end, &limits);
  pos_ = static_cast<uint32_t>(p - base);
  if (result != Result::kDone) return result;
  head_size_ = pos_;
  return FinishHead(base);
}

Result RequestParser::ScanFields(State& state, const char* base, const char** at,
                                 const char* limit, const char* end, const ParserLimits* head) {
  const char* p = *at;
  auto more = [&](const char* q) {
    *at = q;
    return q < end ? Fail(431) : Result::kMore;
  };
  for (;;) {
    switch (state) {
      case kLineStart:
        if (p == limit) {
          // The empty line may end past the limit; nothing else may.
          if (p == end) return more(p);
          if (*p != '\r') return Fail(431);
        }
        if (*p == '\r') {
          ++p;
          state = kEmptyLf;
          continue;
        }
        // A field name is a token: not empty (':'), nor whitespace (obs-fold, or whitespace
        // before the first field, RFC 9112 2.2), nor a bare LF.
        if (!In(kToken, *p)) return Fail(400);
        if (head != nullptr && fields_.size() >= head->max_fields) return Fail(431);
        name_.offset = static_cast<uint32_t>(p - base);
        state = kName;
        [[fallthrough]];
      case kName: {
        // Host, in every request and nearly always first, takes one comparison of a word.
        const char* q = limit - p >= 5 && p[4] == ':' && TokenIs({p, 4}, "host")
                            ? p + 4
                            : SkipToken(p, limit);
        if (q == limit) return more(q);
        // RFC 9112 5.1: no whitespace between the name and the colon.
        if (*q != ':') return Fail(400);
        name_.length = static_cast<uint32_t>(q - base) - name_.offset;
        p = q + 1;
        state = kOws;
        [[fallthrough]];
      }
      case kOws:
        while (p < limit && (*p == ' ' || *p == '\t')) ++p;
        if (p == limit) return more(p);
        value_.offset = static_cast<uint32_t>(p - base);
        state = kValue;
        [[fallthrough]];
      case kValue: {
        const char* q = SkipFieldValue(p, limit);
        if (q == limit) return more(q);
        // A bare LF, a CTL or DEL: RFC 9112 2.2 and RFC 9110 5.5.
        if (*q != '\r') return Fail(400);
        p = q + 1;
        state = kLf;
        if (head != nullptr) {
          const char* value_end = q;
          const char* value_begin = base + value_.offset;
          while (value_end > value_begin && (value_end[-1] == ' ' || value_end[-1] == '\t')) {
            --value_end;
          }
          value_.length = static_cast<uint32_t>(value_end - value_begin);
          fields_.push_back(Field{name_, value_});
          const Result r = OnField(base, std::string_view(base + name_.offset, name_.length),
                                   std::string_view(value_begin, value_.length));
          if (r == Result::kError) return r;
        }
        [[fallthrough]];
      }
      case kLf:
        if (p == limit) return more(p);
        if (*p++ != '\n') return Fail(400);  // a bare CR
        state = kLineStart;
        continue;
      case kEmptyLf:
        if (p == end) return more(p);
        if (*p++ != '\n') return Fail(400);  // "\r\n\r" and not LF: never the section's end
        *at = p;
        return Result::kDone;
      default:
        return Fail(400);
    }
  }
}

Result RequestParser::OnField(const char* base, std::string_view name, std::string_view value) {
  // Only the fields that frame the message or the connection, told apart by length first.
  switch (name.size()) {
    case 4:
      if (TokenIs(name, "host")) {
        host_count_ = host_count_ < 2 ? host_count_ + 1 : 2;  // one, or more than one
        if (!CommonHost(value, base) && !IsValidHost(value)) return Fail(400);
      }
      break;
    case 6:
      if (TokenIs(name, "expect")) {
        // RFC 9110 10.1.1: a list of expectations.
        ForEachElement(value, [this](std::string_view expectation) {
          (EqualsIgnoreCase(expectation, "100-continue") ? expect_continue_ : expect_other_) = true;
          return true;
        });
      }
      break;
    case 7:
      if (TokenIs(name, "upgrade")) upgrade_field_ = true;
      break;
    case 10:
      if (TokenIs(name, "connection")) {
        ForEachElement(value, [this](std::string_view option) {
          if (EqualsIgnoreCase(option, "close")) close_ = true;
          if (EqualsIgnoreCase(option, "keep-alive")) keep_alive_token_ = true;
          if (EqualsIgnoreCase(option, "upgrade")) connection_upgrade_ = true;
          return true;
        });
      }
      break;
    case 14:
      if (TokenIs(name, "content-length")) {
        // RFC 9112 6.3: 1*DIGIT, once. A list ("5, 5") or a second field is refused, as nginx
        // does, rather than merged: a proxy in front may have read it otherwise.
        if (content_length_seen_ || value.empty()) return Fail(400);
        content_length_seen_ = true;
        uint64_t n = 0;
        for (char c : value) {
          if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) return Fail(400);
          n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        content_length_ = n;
      }
      break;
    case 17:
      if (TokenIs(name, "transfer-encoding")) return OnTransferEncoding(value);
      break;
    default:
      break;
  }
  return Result::kMore;
}

Result RequestParser::OnTransferEncoding(std::string_view value) {
  transfer_encoding_seen_ = true;
  // transfer-coding = token *( OWS ";" OWS transfer-parameter ): only the name matters here.
  const bool ok = ForEachElement(value, [this](std::string_view coding) {
    const std::string_view name = TrimOws(coding.substr(0, coding.find(';')));
    if (name.empty() || SkipToken(name.data(), name.data() + name.size()) != name.end()) {
      return false;
    }
    const bool chunked = EqualsIgnoreCase(name, "chunked");
    if (chunked && chunked_count_ < 2) ++chunked_count_;  // once, or more than once
    chunked_last_ = chunked;
    other_coding_ |= !chunked;
    return true;
  });
  return ok ? Result::kMore : Fail(400);
}

Result RequestParser::FinishHead(const char* base) {
  const std::string_view method(base + method_.offset, method_.length);
  // An origin server, not a proxy: CONNECT (and its authority-form target) is not implemented.
  if (method == "CONNECT") return Fail(501);
  if (std::string_view(base + target_.offset, target_.length) == "*" && method != "OPTIONS") {
    return Fail(400);
  }
  // RFC 9112 3.2: one Host in HTTP/1.1, at most one in HTTP/1.0.
  if (host_count_ > 1 || (minor_ == 1 && host_count_ == 0)) return Fail(400);
  if (transfer_encoding_seen_) {
    // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, and with Content-Length
    // it is a smuggling attempt or a broken client. 6.3: without chunked as the final coding,
    // once (7), the body's end is unknown.
    if (minor_ == 0 || content_length_seen_) return Fail(400);
    if (chunked_count_ != 1 || !chunked_last_) return Fail(400);
    // A coding percore does not implement before the final chunked: RFC 9112 6.1 SHOULD 501.
    if (other_coding_) return Fail(501);
    framing_ = Framing::kChunked;
    state_ = kChunkSize;
  } else {
    framing_ = content_length_ > 0 ? Framing::kLength : Framing::kNone;
    remaining_ = content_length_;
    state_ = kBodyDone;
  }
  // RFC 9110 10.1.1: an expectation other than 100-continue MAY get 417; HTTP/1.0 has none.
  if (minor_ == 0) expect_continue_ = false;
  if (minor_ == 1 && expect_other_) return Fail(417);
  return Result::kDone;
}

}  // namespace percore::http
