// ASCII helpers for HTTP tokens (header names, Connection and Transfer-Encoding values), and the
// character classes of RFC 9110's and RFC 9112's grammar as tables.
#ifndef PERCORE_HTTP_SRC_ASCII_H_
#define PERCORE_HTTP_SRC_ASCII_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace percore::http {

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

inline char ToLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLowerAscii(a[i]) != ToLowerAscii(b[i])) return false;
  }
  return true;
}

inline std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A table of the bytes `in` accepts, made at compile time.
constexpr std::array<bool, 256> CharClass(bool (*in)(int c)) {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = in(c);
  return table;
}
inline constexpr bool Alnum(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
// RFC 9110 5.6.2: tchar.
inline constexpr auto kToken = CharClass([](int c) {
  return Alnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                         std::string_view::npos;
});
// RFC 9110 5.5: field-vchar, and SP and HTAB between them; obs-text (0x80-0xff) included.
inline constexpr auto kFieldValue =
    CharClass([](int c) { return c == '\t' || (c >= 0x20 && c != 0x7f); });
// RFC 9112 3.2: visible ASCII, without '#' (a fragment is never sent).
inline constexpr auto kTargetByte =
    CharClass([](int c) { return c > 0x20 && c < 0x7f && c != '#'; });
// RFC 9110 5.6.4: qdtext, and the second byte of a quoted-pair (the bytes of a field value).
inline constexpr auto kQdText = CharClass([](int c) {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x7e && c != '\\') || c >= 0x80;
});
inline constexpr auto kQuotedPair = kFieldValue;

inline bool In(const std::array<bool, 256>& table, char c) {
  return table[static_cast<unsigned char>(c)];
}

// Bytes as one word, for comparisons a word at a time.
inline uint32_t Load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline uint64_t Load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Whether `token` is `lower` (4 bytes or more, in lower case) in any case, a word at a time:
// OR 0x20 folds an upper-case letter, and no other token byte, onto a lower-case letter, and
// leaves '-' and digits as they are (only control bytes, never in a token, fold onto them).
template <size_t N>
bool TokenIs(std::string_view token, const char (&lower)[N]) {
  constexpr size_t n = N - 1;
  static_assert(n >= 4);
  if (token.size() != n) return false;
  const char* p = token.data();
  if constexpr (n < 8) {
    constexpr uint32_t fold = 0x20202020;
    return (Load32(p) | fold) == Load32(lower) &&
           (Load32(p + n - 4) | fold) == Load32(lower + n - 4);
  } else {
    constexpr uint64_t fold = 0x2020202020202020;
    bool same = (Load64(p + n - 8) | fold) == Load64(lower + n - 8);
    for (size_t i = 0; i + 8 < n; i += 8) {
      same = same && (Load64(p + i) | fold) == Load64(lower + i);
    }
    return same;
  }
}

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_ASCII_H_
