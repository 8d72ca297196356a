// ASCII helpers for HTTP tokens (header names, Connection and Transfer-Encoding values), and the
// character classes of RFC 9110's and RFC 9112's grammar as tables.
#ifndef PERCORE_HTTP_SRC_ASCII_H_
#define PERCORE_HTTP_SRC_ASCII_H_

#include <array>
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

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_ASCII_H_
