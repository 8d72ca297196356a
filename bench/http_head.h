// What the bench's own clients (conn_holder, tls_handshakes) read of an answer's head.
#ifndef PERCORE_BENCH_HTTP_HEAD_H_
#define PERCORE_BENCH_HTTP_HEAD_H_

#include <strings.h>

#include <cstdlib>
#include <string>

// The Content-Length of a header block (found case-insensitively); -1 if absent.
inline long ContentLength(const std::string& head) {
  static const char kName[] = "\r\ncontent-length:";
  const size_t n = sizeof(kName) - 1;
  for (size_t i = 0; i + n <= head.size(); ++i) {
    if (strncasecmp(head.data() + i, kName, n) == 0) {
      return std::strtol(head.c_str() + i + n, nullptr, 10);
    }
  }
  return -1;
}

#endif  // PERCORE_BENCH_HTTP_HEAD_H_
