// A file's range gzipped as its client reads it (Response::SendFile with Compress()). A piece
// of the file is read and deflated only while the answer's stream has room (DeferredResponse::
// Write and OnWritable, bounded by HttpOptions::stream_buffer_bytes), so a client that reads
// nothing makes the server hold that bound, a piece and one zlib stream: not the whole
// compressed file, which it used to hold until the send timeout, or for ever with a trickle.
#ifndef PERCORE_HTTP_SRC_GZIP_FILE_H_
#define PERCORE_HTTP_SRC_GZIP_FILE_H_

#include <zlib.h>

#include <cstdint>
#include <memory>

#include "percore/http/response.h"

namespace percore::http {

// With Compress(), files up to this size are compressed; a bigger one goes as it is, without a
// copy (Connection::SendFile): gzip costs a loop far more CPU than sending does.
constexpr uint64_t kMaxGzipFile = 4 << 20;
// A file up to this size is compressed whole into the output, as a body given to Send() is:
// one piece, held no longer than the stream bound would hold a streamed one anyway. A bigger
// one is streamed (GzipFileStream), chunked.
constexpr uint64_t kWholeGzipFile = 64 << 10;

class GzipFileStream {
 public:
  // Sends `length` bytes of `fd` from `offset` gzipped at `level` as `answer`'s body, whose
  // fields (Content-Encoding included) are set; for a HEAD (`head`), the head only. Takes `fd`.
  static void Start(DeferredResponse answer, int fd, uint64_t offset, uint64_t length, int level,
                    bool head);

  ~GzipFileStream();
  GzipFileStream(const GzipFileStream&) = delete;
  GzipFileStream& operator=(const GzipFileStream&) = delete;

 private:
  GzipFileStream(DeferredResponse answer, int fd, uint64_t offset, uint64_t length);
  // Reads, deflates and writes until the stream is full (then again from OnWritable, which
  // alone holds `self` meanwhile: an aborted answer drops it, and with it the zlib stream and
  // the file) or the body is complete.
  static void Pump(const std::shared_ptr<GzipFileStream>& self);
  // The file is shorter than its range, or zlib failed: the client was promised a whole gzip
  // stream, so its connection fails, as a failed file send's does.
  void Fail();

  DeferredResponse answer_;
  const int fd_;
  uint64_t offset_;
  uint64_t left_;  // bytes of the range not read yet
  z_stream stream_{};
  bool deflating_ = false;  // deflateInit2 succeeded: deflateEnd is due
  std::unique_ptr<char[]> in_;
  std::unique_ptr<char[]> out_;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_GZIP_FILE_H_
