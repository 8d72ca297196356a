#include "gzip.h"

namespace percore::http {

Gzip::~Gzip() {
  if (level_ != 0) deflateEnd(&stream_);
}

bool Gzip::Compress(std::string_view in, int level, std::string* out) {
  if (in.size() > (uInt{1} << 30)) return false;  // zlib counts in 32 bits
  if (level_ != level) {
    if (level_ != 0) deflateEnd(&stream_);
    level_ = 0;
    stream_ = z_stream{};
    // 15 + 16: the largest window, with a gzip header and trailer instead of zlib's.
    if (deflateInit2(&stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return false;
    }
    level_ = level;
  } else {
    deflateReset(&stream_);
  }
  // deflateBound() counts the gzip wrapper too: one call with Z_FINISH always completes.
  out->resize(deflateBound(&stream_, static_cast<uLong>(in.size())));
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  stream_.avail_in = static_cast<uInt>(in.size());
  stream_.next_out = reinterpret_cast<Bytef*>(out->data());
  stream_.avail_out = static_cast<uInt>(out->size());
  const int result = deflate(&stream_, Z_FINISH);
  out->resize(stream_.total_out);
  return result == Z_STREAM_END;
}

GzipStream::GzipStream(int level) {
  ok_ = deflateInit2(&stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
}

GzipStream::~GzipStream() {
  if (ok_) deflateEnd(&stream_);
}

std::optional<std::string_view> GzipStream::Run(std::string_view in, int flush) {
  constexpr size_t kStep = 16 << 10;
  out_.clear();
  if (!ok_ || in.size() > (uInt{1} << 30)) return std::nullopt;  // zlib counts in 32 bits
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  stream_.avail_in = static_cast<uInt>(in.size());
  // A flush is complete once deflate leaves room in the output; a finish, at Z_STREAM_END.
  for (;;) {
    const size_t before = out_.size();
    out_.resize(before + kStep);
    stream_.next_out = reinterpret_cast<Bytef*>(out_.data() + before);
    stream_.avail_out = kStep;
    const int result = deflate(&stream_, flush);
    out_.resize(before + kStep - stream_.avail_out);
    if (result == Z_STREAM_END) return out_;
    if (result != Z_OK && result != Z_BUF_ERROR) return std::nullopt;
    if (flush != Z_FINISH && stream_.avail_out != 0 && stream_.avail_in == 0) return out_;
  }
}

}  // namespace percore::http
