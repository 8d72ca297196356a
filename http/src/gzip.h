// gzip (RFC 1952) of whole bodies with one zlib stream a loop reuses: deflateInit2 allocates
// about 256 KiB of window and hash tables, too much to pay per response. A body streamed piece
// by piece has a stream of its own (GzipStream) for as long as it lasts.
#ifndef PERCORE_HTTP_SRC_GZIP_H_
#define PERCORE_HTTP_SRC_GZIP_H_

#include <zlib.h>

#include <optional>
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

// One body deflated as it is written (Response::Write with Compress()). Each piece is
// flushed (Z_SYNC_FLUSH): what was written reaches the client at once and decodes there, as an
// event stream needs, at some cost in ratio. About 256 KiB of zlib state while it lasts.
class GzipStream {
 public:
  explicit GzipStream(int level);
  ~GzipStream();
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  // `in` deflated and flushed, or, for Finish(), the rest and the gzip trailer: a view of a
  // buffer of this stream's, valid until the next call; nullopt if zlib failed.
  std::optional<std::string_view> Write(std::string_view in) { return Run(in, Z_SYNC_FLUSH); }
  std::optional<std::string_view> Finish() { return Run({}, Z_FINISH); }

 private:
  std::optional<std::string_view> Run(std::string_view in, int flush);
  z_stream stream_{};
  bool ok_ = false;  // deflateInit2 succeeded
  std::string out_;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_GZIP_H_
