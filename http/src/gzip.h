// gzip (RFC 1952) of whole bodies with one zlib stream a loop reuses: deflateInit2 allocates
// about 256 KiB of window and hash tables, too much to pay per response.
#ifndef PERCORE_HTTP_SRC_GZIP_H_
#define PERCORE_HTTP_SRC_GZIP_H_

#include <zlib.h>

#include <string>
#include <string_view>

namespace percore::http {

class Gzip {
 public:
  Gzip() = default;
  ~Gzip();
  Gzip(const Gzip&) = delete;
  Gzip& operator=(const Gzip&) = delete;

  // Replaces *out with `in` compressed at `level` (1..9); false if zlib failed.
  bool Compress(std::string_view in, int level, std::string* out);

 private:
  z_stream stream_{};
  int level_ = 0;  // 0: no stream yet
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_GZIP_H_
