// The codecs of codec.h but HTTP dates (http_date.cc): percent-encoding, query strings, cookies,
// Range, file types, Accept-Encoding, entity tags and conditional requests.
#include "codec.h"

#include <algorithm>
#include <limits>

#include "ascii.h"

namespace percore::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 1*DIGIT into a uint64; false if empty, not all digits, or too large (never wraps).
bool ParseUint64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t value = 0;
  for (char c : s) {
    if (!IsDigit(c)) return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

bool EndsWithIgnoreCase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && EqualsIgnoreCase(s.substr(s.size() - suffix.size()), suffix);
}

// Takes the text up to the next `separator` off the front of *rest (all of it if there is
// none), OWS-trimmed.
std::string_view TakeElement(std::string_view* rest, char separator) {
  const size_t at = rest->find(separator);
  const std::string_view element = TrimOws(rest->substr(0, at));
  *rest = at == std::string_view::npos ? std::string_view() : rest->substr(at + 1);
  return element;
}

std::string_view StripDquotes(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return s.substr(1, s.size() - 2);
  return s;
}

// ---- Content types.

struct MimeEntry {
  std::string_view extension;  // lowercase
  std::string_view type;
};

// Sorted by extension for binary search (checked below). Text types say utf-8 because browsers
// otherwise guess the charset of text/plain and text/css; JSON has no charset parameter
// (RFC 8259 11) and JavaScript is text/javascript (RFC 9239).
constexpr MimeEntry kMimeTypes[] = {
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"avif", "image/avif"},
    {"bmp", "image/bmp"},
    {"css", "text/css; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"eot", "application/vnd.ms-fontobject"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/x-icon"},
    {"ics", "text/calendar; charset=utf-8"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"jsonld", "application/ld+json"},
    {"m4a", "audio/mp4"},
    {"map", "application/json"},
    {"md", "text/markdown; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"rss", "application/rss+xml"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xml", "application/xml"},
    {"zip", "application/zip"},
};

constexpr bool MimeTableIsSorted() {
  for (size_t i = 1; i < std::size(kMimeTypes); ++i) {
    if (!(kMimeTypes[i - 1].extension < kMimeTypes[i].extension)) return false;
  }
  return true;
}
static_assert(MimeTableIsSorted(), "kMimeTypes must be sorted by extension, without duplicates");

constexpr size_t kLongestExtension = 11;  // "webmanifest"

constexpr std::string_view kOctetStream = "application/octet-stream";

// ---- Accept-Encoding.

// The weight of an Accept-Encoding element from its parameters (the text after the first
// ';'): RFC 9110 12.4.2, qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ). No q
// means 1. False if a q parameter is malformed.
bool ParseWeightIsZero(std::string_view params, bool* zero) {
  *zero = false;
  while (!params.empty()) {
    std::string_view param = TakeElement(&params, ';');
    const size_t eq = param.find('=');
    if (eq == std::string_view::npos) continue;
    if (!EqualsIgnoreCase(TrimOws(param.substr(0, eq)), "q")) continue;
    const std::string_view q = TrimOws(param.substr(eq + 1));
    if (q.empty() || (q[0] != '0' && q[0] != '1')) return false;
    bool all_zero = q[0] == '0';
    if (q.size() > 1) {
      if (q[1] != '.' || q.size() > 5) return false;
      for (char c : q.substr(2)) {
        if (!IsDigit(c) || (q[0] == '1' && c != '0')) return false;
        if (c != '0') all_zero = false;
      }
    }
    *zero = all_zero;
  }
  return true;
}

}  // namespace

// ---- Percent-encoding.

bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->reserve(out->size() + in.size());  // decoding only shrinks
  const char* specials = plus_is_space ? "%+" : "%";
  size_t i = 0;
  while (i < in.size()) {
    const size_t special = in.find_first_of(specials, i);
    if (special == std::string_view::npos) {
      out->append(in.substr(i));
      return true;
    }
    out->append(in.substr(i, special - i));
    if (in[special] == '+') {
      out->push_back(' ');
      i = special + 1;
      continue;
    }
    if (special + 2 >= in.size()) return false;
    const int high = HexValue(in[special + 1]);
    const int low = HexValue(in[special + 2]);
    if (high < 0 || low < 0) return false;
    out->push_back(static_cast<char>(high * 16 + low));
    i = special + 3;
  }
  return true;
}

bool NeedsDecoding(std::string_view in, bool plus_is_space) {
  return in.find_first_of(plus_is_space ? "%+" : "%") != std::string_view::npos;
}

bool ValidPercentEncoding(std::string_view in) {
  for (size_t i = in.find('%'); i != std::string_view::npos; i = in.find('%', i + 3)) {
    if (i + 2 >= in.size() || HexValue(in[i + 1]) < 0 || HexValue(in[i + 2]) < 0) return false;
  }
  return true;
}

bool NextQueryPair(std::string_view* rest, std::string_view* key, std::string_view* value) {
  while (!rest->empty()) {
    const size_t amp = rest->find('&');
    const std::string_view pair = rest->substr(0, amp);
    *rest = amp == std::string_view::npos ? std::string_view() : rest->substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    *key = pair.substr(0, eq);
    *value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    return true;
  }
  return false;
}

// ---- Cookies.

bool NextCookie(std::string_view* rest, std::string_view* name, std::string_view* value) {
  while (!rest->empty()) {
    const std::string_view pair = TakeElement(rest, ';');
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      *name = std::string_view();
      *value = StripDquotes(pair);
    } else {
      *name = TrimOws(pair.substr(0, eq));
      *value = StripDquotes(TrimOws(pair.substr(eq + 1)));
    }
    return true;
  }
  return false;
}

std::string_view FindCookie(std::string_view cookie_header, std::string_view name) {
  if (name.empty()) return {};  // a nameless cookie cannot be asked for by name
  std::string_view cookie_name, cookie_value;
  while (NextCookie(&cookie_header, &cookie_name, &cookie_value)) {
    if (cookie_name == name) return cookie_value;
  }
  return {};
}

bool IsCookieName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return In(kToken, c); });
}

bool IsCookieValue(std::string_view value) {
  if (!value.empty() && value.front() == '"') {
    if (value.size() < 2 || value.back() != '"') return false;
    value = value.substr(1, value.size() - 2);
  }
  // cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E: US-ASCII without controls,
  // whitespace, DQUOTE, comma, semicolon and backslash.
  for (char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\') return false;
  }
  return true;
}

// ---- Ranges.

RangeResult ParseRange(std::string_view header, uint64_t size, uint64_t* first, uint64_t* length) {
  std::string_view rest = TrimOws(header);
  if (rest.empty()) return RangeResult::kNone;
  const size_t eq = rest.find('=');
  if (eq == std::string_view::npos) return RangeResult::kIgnore;
  // RFC 9110 14.1: range units are case-insensitive.
  if (!EqualsIgnoreCase(TrimOws(rest.substr(0, eq)), "bytes")) return RangeResult::kIgnore;
  rest.remove_prefix(eq + 1);

  // range-set = 1#range-spec; RFC 9110 5.6.1.2 has recipients skip empty list elements.
  std::string_view spec;
  while (!rest.empty()) {
    const std::string_view element = TakeElement(&rest, ',');
    if (element.empty()) continue;
    if (!spec.empty()) return RangeResult::kIgnore;  // a second range: no multipart here
    spec = element;
  }
  if (spec.empty()) return RangeResult::kIgnore;

  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return RangeResult::kIgnore;
  const std::string_view first_text = spec.substr(0, dash);
  const std::string_view last_text = spec.substr(dash + 1);

  if (first_text.empty()) {
    // suffix-range = "-" suffix-length: the last suffix-length bytes, all of them if fewer.
    uint64_t suffix = 0;
    if (!ParseUint64(last_text, &suffix)) return RangeResult::kIgnore;
    if (suffix == 0) return RangeResult::kUnsatisfiable;
    if (size == 0) return RangeResult::kIgnore;
    *length = std::min(suffix, size);
    *first = size - *length;
    return RangeResult::kOk;
  }

  // int-range = first-pos "-" [ last-pos ]
  uint64_t first_pos = 0;
  uint64_t last_pos = std::numeric_limits<uint64_t>::max();
  if (!ParseUint64(first_text, &first_pos)) return RangeResult::kIgnore;
  if (!last_text.empty()) {
    if (!ParseUint64(last_text, &last_pos)) return RangeResult::kIgnore;
    if (last_pos < first_pos) return RangeResult::kIgnore;  // invalid per RFC 9110 14.1.1
  }
  if (first_pos >= size) return RangeResult::kUnsatisfiable;
  last_pos = std::min(last_pos, size - 1);
  *first = first_pos;
  *length = last_pos - first_pos + 1;
  return RangeResult::kOk;
}

// ---- Content types and codings.

std::string_view MimeTypeFor(std::string_view path) {
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const size_t dot = name.rfind('.');
  // No dot, or only leading dots (".bashrc"): no extension.
  if (dot == std::string_view::npos || name.find_first_not_of('.') > dot) return kOctetStream;
  const std::string_view extension = name.substr(dot + 1);
  if (extension.empty() || extension.size() > kLongestExtension) return kOctetStream;
  char lower[kLongestExtension];
  for (size_t i = 0; i < extension.size(); ++i) lower[i] = ToLowerAscii(extension[i]);
  const std::string_view key(lower, extension.size());
  const auto* end = std::end(kMimeTypes);
  const auto* it = std::lower_bound(
      std::begin(kMimeTypes), end, key,
      [](const MimeEntry& entry, std::string_view k) { return entry.extension < k; });
  return it != end && it->extension == key ? it->type : kOctetStream;
}

bool IsCompressible(std::string_view content_type) {
  const std::string_view media_type = TrimOws(content_type.substr(0, content_type.find(';')));
  const size_t slash = media_type.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == media_type.size()) {
    return false;
  }
  const std::string_view type = media_type.substr(0, slash);
  const std::string_view subtype = media_type.substr(slash + 1);
  if (EqualsIgnoreCase(type, "text")) return true;
  // Structured syntax suffixes (RFC 6839) cover image/svg+xml, application/ld+json and friends.
  if (EndsWithIgnoreCase(subtype, "+json") || EndsWithIgnoreCase(subtype, "+xml")) return true;
  if (!EqualsIgnoreCase(type, "application")) return false;
  return EqualsIgnoreCase(subtype, "json") || EqualsIgnoreCase(subtype, "javascript") ||
         EqualsIgnoreCase(subtype, "xml") || EqualsIgnoreCase(subtype, "wasm");
}

bool AcceptsGzip(std::string_view accept_encoding) {
  bool gzip_wanted = false;
  bool gzip_refused = false;
  bool any_wanted = false;
  bool any_refused = false;
  while (!accept_encoding.empty()) {
    const std::string_view element = TakeElement(&accept_encoding, ',');
    if (element.empty()) continue;
    const size_t semicolon = element.find(';');
    const std::string_view coding = TrimOws(element.substr(0, semicolon));
    bool zero = false;
    if (semicolon != std::string_view::npos &&
        !ParseWeightIsZero(element.substr(semicolon + 1), &zero)) {
      continue;
    }
    if (EqualsIgnoreCase(coding, "gzip") || EqualsIgnoreCase(coding, "x-gzip")) {
      (zero ? gzip_refused : gzip_wanted) = true;
    } else if (coding == "*") {
      (zero ? any_refused : any_wanted) = true;
    }
  }
  if (gzip_refused) return false;
  return gzip_wanted || (any_wanted && !any_refused);
}

// ---- Entity tags.

namespace {

// Whether the entity-tag list `list` (or "*") has `etag`: by RFC 9110 8.8.3.2's strong
// comparison (neither tag weak, the same opaque-tag) or its weak one (the opaque-tags match,
// whatever W/ says).
bool EntityTagListHas(std::string_view list, std::string_view etag, bool strong) {
  std::string_view rest = TrimOws(list);
  if (rest == "*") return true;
  // The weak indicator is case-sensitive (%s"W/").
  if (etag.substr(0, 2) == "W/") {
    if (strong) return false;
    etag.remove_prefix(2);
  }
  while (true) {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t' || rest.front() == ',')) {
      rest.remove_prefix(1);
    }
    if (rest.empty()) return false;
    const bool weak = rest.substr(0, 2) == "W/";
    if (weak) rest.remove_prefix(2);
    // opaque-tag = DQUOTE *etagc DQUOTE; etagc excludes DQUOTE but not ',', so the list cannot
    // be split on commas first.
    if (rest.empty() || rest.front() != '"') return false;
    const size_t close = rest.find('"', 1);
    if (close == std::string_view::npos) return false;
    if (!(strong && weak) && rest.substr(0, close + 1) == etag) return true;
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() != ' ' && rest.front() != '\t' && rest.front() != ',') {
      return false;
    }
  }
}

}  // namespace

bool IfNoneMatchMatches(std::string_view if_none_match, std::string_view etag) {
  return EntityTagListHas(if_none_match, etag, /*strong=*/false);
}

bool IfMatchMatches(std::string_view if_match, std::string_view etag) {
  return EntityTagListHas(if_match, etag, /*strong=*/true);
}

void AppendEtag(int64_t mtime_seconds, uint64_t size, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char text[2 + 16 + 1 + 16];
  size_t n = 0;
  const auto append_hex = [&](uint64_t value) {
    int shift = 60;
    while (shift > 0 && (value >> shift) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) text[n++] = kHex[(value >> shift) & 0xf];
  };
  text[n++] = '"';
  append_hex(static_cast<uint64_t>(mtime_seconds));
  text[n++] = '-';
  append_hex(size);
  text[n++] = '"';
  out->append(text, n);
}

// ---- Conditional requests.

Precondition EvaluatePreconditions(const ConditionalFields& fields, std::string_view etag,
                                   const int64_t* last_modified, int64_t now) {
  int64_t date = 0;
  // Steps 1 and 2: the client's copy must still be the current one, or it may not go on.
  if (!fields.if_match.empty()) {
    if (!IfMatchMatches(fields.if_match, etag)) return Precondition::kFailed;
  } else if (!fields.if_unmodified_since.empty() && last_modified != nullptr &&
             ParseHttpDate(fields.if_unmodified_since, &date) && *last_modified > date) {
    return Precondition::kFailed;
  }
  // Steps 3 and 4: the client's copy is still the current one, so it need not be sent again.
  if (!fields.if_none_match.empty()) {
    return IfNoneMatchMatches(fields.if_none_match, etag) ? Precondition::kNotModified
                                                          : Precondition::kPass;
  }
  if (!fields.if_modified_since.empty() && last_modified != nullptr &&
      ParseHttpDate(fields.if_modified_since, &date) && date <= now && *last_modified <= date) {
    return Precondition::kNotModified;
  }
  return Precondition::kPass;
}

}  // namespace percore::http
