// Pure encoders and decoders for the small HTTP grammars a server meets around a request:
// percent-encoding, query strings, cookies, HTTP dates, Range, file types, Accept-Encoding and
// entity tags. None of them allocates except to append to a caller's string, none keeps state,
// and none throws: a malformed input is reported by the return value.
#ifndef PERCORE_HTTP_SRC_CODEC_H_
#define PERCORE_HTTP_SRC_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace percore::http {

// ---------------------------------------------------------------------------------------------
// Percent-encoding (RFC 3986 2.1) and application/x-www-form-urlencoded (WHATWG URL 5.1).

// Appends the decoded form of `in` to *out. With `plus_is_space` a '+' decodes to ' ', as in
// form-urlencoded query strings and bodies; in a path it is a literal '+'. Returns false on a
// '%' that is not followed by two hex digits, leaving *out with unspecified content. "%00"
// decodes to a NUL byte: whoever puts the result into a C string or a file name must check.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out);

// Whether PercentDecode would change `in`: it has a '%', or a '+' when `plus_is_space`. Lets a
// caller keep a view into the request instead of copying.
bool NeedsDecoding(std::string_view in, bool plus_is_space);

// Whether every '%' in `in` starts a "%XX" triplet.
bool ValidPercentEncoding(std::string_view in);

// Iterates the raw (still encoded) pairs of a query string such as "a=1&b=&c": each call takes
// the next pair from the front of *rest and returns true, or returns false when none is left.
// Only '&' separates pairs (';' was a pre-HTML5 alternative that WHATWG dropped). A pair
// without '=' has an empty value; empty pairs ("a=1&&b=2") are skipped. A key may be empty
// ("=v"); it is returned as is, for the caller to ignore or not.
bool NextQueryPair(std::string_view* rest, std::string_view* key, std::string_view* value);

// ---------------------------------------------------------------------------------------------
// Cookies (RFC 6265).

// Iterates the cookie-pairs of a Cookie header value ("a=1; b=2", RFC 6265 4.2.1) from the
// front of *rest. Tolerates what user agents and hand-written clients send beyond the grammar:
// a missing space after ';', OWS around names and values, empty pairs. The value has one pair
// of surrounding DQUOTEs removed: RFC 6265 4.1.1 lets a server quote a value, user agents then
// store and send the quotes (5.2), and servers conventionally strip them again. A pair without
// '=' comes back with an empty name and the whole pair as the value: that is how user agents
// following RFC 6265bis send a cookie whose name is empty.
bool NextCookie(std::string_view* rest, std::string_view* name, std::string_view* value);

// The value of the first cookie named exactly `name` (names are case-sensitive) in a Cookie
// header value, DQUOTEs removed, or empty if there is none. A present but empty cookie is also
// empty; use NextCookie to tell them apart.
std::string_view FindCookie(std::string_view cookie_header, std::string_view name);

// For writing Set-Cookie (RFC 6265 4.1.1): a cookie-name is an RFC 9110 token, a cookie-value
// is *cookie-octet, optionally in one pair of DQUOTEs (so no space, DQUOTE inside, ',', ';' or
// '\'; an empty value is valid).
bool IsCookieName(std::string_view name);
bool IsCookieValue(std::string_view value);

// ---------------------------------------------------------------------------------------------
// HTTP dates (RFC 9110 5.6.7). Computed with civil-calendar arithmetic, not gmtime/timegm/
// strftime, so they are thread-safe and ignore the locale and TZ.

// Appends the IMF-fixdate form, "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes). The format has a
// four-digit year, so times outside years 0000..9999 are clamped to that range.
void AppendHttpDate(int64_t unix_seconds, std::string* out);

// Parses IMF-fixdate and, as RFC 9110 5.6.7 says a recipient MUST, the obsolete RFC 850
// ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994") forms. Names
// are case-sensitive (RFC 9110: "HTTP-date is case sensitive"); the day name must be a valid
// one but is not checked against the date. A two-digit RFC 850 year 70..99 is 19xx and 00..69
// is 20xx: RFC 9110's "more than 50 years in the future" rule needs the clock, which would make
// this impure, and RFC 850 dates come from pre-2000 software anyway. Seconds may be 60 (leap
// second). Returns false on anything else.
bool ParseHttpDate(std::string_view s, int64_t* unix_seconds);

// ---------------------------------------------------------------------------------------------
// Range requests (RFC 9110 14).

enum class RangeResult {
  kNone,           // no Range header: 200 with the whole representation
  kOk,             // one satisfiable range: 206 with *first and *length
  kUnsatisfiable,  // 416 with "Content-Range: bytes */size"
  kIgnore,         // a Range the server may ignore (RFC 9110 14.2): 200 with the whole thing
};

// Interprets a Range header value for a representation of `size` bytes. "bytes=a-b",
// "bytes=a-" and "bytes=-n" (the last n bytes) are understood; the unit is case-insensitive
// and OWS around '=' and ',' is tolerated, as are empty list elements (RFC 9110 5.6.1).
// RFC 9110 14.2 lets a server ignore Range, so anything this server does not serve as one
// 206 is kIgnore rather than an error: another unit, invalid syntax, last-pos < first-pos,
// numbers beyond uint64, and more than one range (multipart/byteranges is not implemented,
// and ignoring also defeats many-small-ranges amplification). A single valid range is
// kUnsatisfiable if it starts at or after `size` or is "bytes=-0" (RFC 9110 14.1.1, 15.5.17).
// For size 0 RFC 9110 14.1.1 still calls a non-zero suffix range satisfiable, but no
// Content-Range can describe an empty part, so that is kIgnore (a 200 with the empty body).
// A last-pos past the end is clamped to size - 1. *first and *length are set only for kOk.
RangeResult ParseRange(std::string_view header, uint64_t size, uint64_t* first, uint64_t* length);

// ---------------------------------------------------------------------------------------------
// Content types and codings.

// The Content-Type for a file by its extension (case-insensitive) from a table of common web
// types; text types carry "; charset=utf-8". "application/octet-stream" for anything else,
// including no extension and dotfiles such as ".bashrc". Only the last path segment counts.
std::string_view MimeTypeFor(std::string_view path);

// Whether compressing a response of this Content-Type is worth it: text/*, JSON, JavaScript,
// XML and their "+json"/"+xml" suffix types (RFC 6839), SVG and WebAssembly. Images, audio,
// video, fonts and archives are already compressed. Parameters are ignored; case-insensitive.
bool IsCompressible(std::string_view content_type);

// Whether an Accept-Encoding value (RFC 9110 12.5.3) allows a gzip response: "gzip" or its
// alias "x-gzip" (RFC 9110 8.4.1.3) with q > 0, or "*" with q > 0 when gzip is not listed. An
// explicit q=0 for either gzip name wins over everything else. Codings and "q" are
// case-insensitive; an element with a malformed qvalue is ignored; an empty header is false
// (RFC 9110 12.5.3 then prefers identity, which is always safe).
bool AcceptsGzip(std::string_view accept_encoding);

// ---------------------------------------------------------------------------------------------
// Entity tags (RFC 9110 8.8.3, 13.1.2).

// Whether an If-None-Match value matches `etag` (a full entity-tag, such as "\"5e-1a\"" or
// "W/\"x\""), so the server answers 304 (GET/HEAD) or 412. Uses the weak comparison RFC 9110
// 13.1.2 requires here: W/ prefixes are ignored on both sides. "*" matches any etag; call this
// only when the representation exists. A malformed list stops at the bad element: no match
// beyond it, which at worst sends a full response.
bool IfNoneMatchMatches(std::string_view if_none_match, std::string_view etag);

// Whether an If-Match value matches `etag`, so the request may go on (else 412). Uses the
// strong comparison RFC 9110 13.1.1 requires: a weak tag on either side never matches. "*"
// matches any etag (the representation exists: call this only then). A malformed list stops
// at the bad element, as for IfNoneMatchMatches: no match beyond it, which gives a 412.
bool IfMatchMatches(std::string_view if_match, std::string_view etag);

// Appends an nginx-style strong validator for a file: "\"<mtime hex>-<size hex>\"", lowercase
// hex. A negative mtime is written as its two's-complement uint64 so the tag stays unique.
void AppendEtag(int64_t mtime_seconds, uint64_t size, std::string* out);

// ---------------------------------------------------------------------------------------------
// Conditional requests (RFC 9110 13).

// A request's conditional header fields; empty when absent.
struct ConditionalFields {
  std::string_view if_match;
  std::string_view if_unmodified_since;
  std::string_view if_none_match;
  std::string_view if_modified_since;
};

enum class Precondition {
  kPass,         // perform the method: answer as without the conditions
  kNotModified,  // 304
  kFailed,       // 412
};

// Evaluates the preconditions of a GET or HEAD in RFC 9110 13.2.2's order (steps 1 to 4, Range
// and If-Range being the caller's step 5) against the selected representation's validators:
// `etag` (empty if it has none) and `last_modified` (null if it has none), at `now` on the
// server's clock. If-Match fails by strong comparison; If-Unmodified-Since only counts without
// If-Match and when it parses; If-None-Match matches by weak comparison (304); If-Modified-Since
// only counts without If-None-Match, when it parses and is not later than `now` (13.1.3: such a
// date is invalid). Call it only when the answer would otherwise be 2xx (13.2.1).
Precondition EvaluatePreconditions(const ConditionalFields& fields, std::string_view etag,
                                   const int64_t* last_modified, int64_t now);

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_CODEC_H_
