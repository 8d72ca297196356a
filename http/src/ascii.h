// ASCII helpers for HTTP tokens (header names, Connection and Transfer-Encoding values).
#ifndef PERCORE_HTTP_SRC_ASCII_H_
#define PERCORE_HTTP_SRC_ASCII_H_

#include <string_view>

namespace percore::http {

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

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_ASCII_H_
