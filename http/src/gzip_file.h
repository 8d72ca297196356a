// Compress() for files. A file's range up to kWholeGzipFile is gzipped whole, as a body given to
// Send() is; a bigger one, up to kMaxGzipFile, is read a piece at a time as its client reads it
// (FilePump): each piece goes to Response::Write, whose gzip stage deflates it, and the next is
// read only once the stream has room (OnWritable, bounded by HttpOptions::stream_buffer_bytes).
// A client that reads nothing makes the server hold that bound, a piece and one zlib stream.
#ifndef PERCORE_HTTP_SRC_GZIP_FILE_H_
#define PERCORE_HTTP_SRC_GZIP_FILE_H_

#include <cstdint>
#include <memory>

#include "percore/http/response.h"

namespace percore::http {

struct PendingResponse;

// With Compress(), files up to this size are compressed; a bigger one goes as it is, without a
// copy (Connection::SendFile): gzip costs a loop far more CPU than sending does.
constexpr uint64_t kMaxGzipFile = 4 << 20;
// A file up to this size is compressed whole into the output: one piece, held no longer than
// the stream bound would hold a streamed one anyway. A bigger one is pumped, chunked.
constexpr uint64_t kWholeGzipFile = 64 << 10;

class FilePump {
 public:
  // Sends `length` bytes of `fd` from `offset` as `answer`'s streamed body; for a HEAD, the
  // head only. Takes `fd`.
  static void Start(std::shared_ptr<PendingResponse> answer, int fd, uint64_t offset,
                    uint64_t length);

  ~FilePump();
  FilePump(const FilePump&) = delete;
  FilePump& operator=(const FilePump&) = delete;

 private:
  FilePump(Response answer, int fd, uint64_t offset, uint64_t length);
  // Reads and writes until the stream is full (then again from OnWritable, which alone holds
  // `self` meanwhile: an aborted answer drops it, and with it the file) or the range is sent.
  static void Pump(const std::shared_ptr<FilePump>& self);

  Response answer_;
  const int fd_;
  uint64_t offset_;
  uint64_t left_;  // bytes of the range not read yet
  std::unique_ptr<char[]> piece_;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_GZIP_FILE_H_
