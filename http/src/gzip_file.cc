// Compress()'s side of a response: what a cache needs to know (Vary, a weak ETag), a body
// gzipped whole, and a file's range read piece by piece into the streamed body's gzip stage.
#include "gzip_file.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#include "codec.h"
#include "percore/http/middleware.h"
#include "pending.h"
#include "percore/buffers.h"

namespace percore::http {

using namespace std::string_view_literals;

namespace {

// What one step reads of the file and hands to Write(): what a stalled client costs beyond the
// stream's bound, besides zlib's ~256 KiB.
constexpr size_t kPiece = 16 << 10;

}  // namespace

bool ResponseCore::Negotiate(uint64_t length) {
  // The Content-Type line's value, or the default type.
  const std::string_view type =
      type_length_ != 0 ? std::string_view(*fields_).substr(type_offset_ + 14, type_length_ - 16)
                        : std::string_view("text/plain");
  // A body this small is never compressed, for any client: nothing varies (nginx's rule too).
  if (length < compress_->min_bytes || status_ == 204 || status_ == 206 || !IsCompressible(type) ||
      FindField("content-encoding") != std::string::npos) {
    return false;
  }
  // Whether a cache may give this answer to a client depends on its Accept-Encoding, whether
  // or not this one is compressed.
  Vary("Accept-Encoding");
  // HEAD too: its fields are GET's (RFC 9110 9.3.2), gzip's Content-Length included, so its
  // body is compressed as well and then left out.
  if (!gzip_accepted_) return false;
  // The gzipped bytes are not the file's: a strong validator would claim they are (RFC 9110
  // 8.8.3), so it becomes weak, as nginx makes it; a 304 carries the validator the 200 had.
  if (const size_t etag = FindField("etag"); etag != std::string::npos) {
    const size_t value = fields_->find_first_not_of(' ', fields_->find(':', etag) + 1);
    if (fields_->compare(value, 2, "W/") != 0) {
      fields_->insert(value, "W/");
      if (type_length_ != 0 && type_offset_ > etag) type_offset_ += 2;
    }
  }
  return status_ != 304;
}

void ResponseCore::SendCompressed(std::string_view body) {
  std::string* zipped = stream_->Gzip(body, compress_->level);
  if (zipped != nullptr && zipped->size() < body.size()) {
    fields_->append("Content-Encoding: gzip\r\n"sv);
    body = *zipped;
  }  // else as it is: the weak ETag is still true
  sent_ = true;
  if (WriteHead(body.size(), body.empty()).body) out_->append(body);
  if (zipped != nullptr) KeepSmall(*zipped);
}

bool ResponseCore::StreamsGzip(uint64_t length) {
  // Negotiate() again at the first Write() sets nothing twice.
  return length > kWholeGzipFile && length <= kMaxGzipFile && compress_ != nullptr &&
         Negotiate(length);
}

bool ResponseCore::GzipsStream(uint64_t length) {
  if (compress_ == nullptr || !Negotiate(length)) return false;
  // Said before a byte is deflated: the head goes out with the first piece.
  fields_->append("Content-Encoding: gzip\r\n"sv);
  return true;
}

FilePump::FilePump(Response answer, int fd, uint64_t offset, uint64_t length)
    : answer_(std::move(answer)), fd_(fd), offset_(offset), left_(length) {}

FilePump::~FilePump() { close(fd_); }

void FilePump::Start(std::shared_ptr<PendingResponse> answer, int fd, uint64_t offset,
                     uint64_t length) {
  if (answer->response.head_) {
    close(fd);
    Response(std::move(answer)).End();  // the head, chunked as GET's, and no body
    return;
  }
  auto self = std::shared_ptr<FilePump>(new FilePump(Response(std::move(answer)), fd, offset,
                                                     length));
  self->piece_ = std::make_unique<char[]>(kPiece);
  Pump(self);
}

void FilePump::Pump(const std::shared_ptr<FilePump>& self) {
  FilePump& s = *self;
  while (s.left_ > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(s.left_, kPiece));
    ssize_t n;
    do {
      n = pread(s.fd_, s.piece_.get(), want, static_cast<off_t>(s.offset_));
    } while (n < 0 && errno == EINTR);
    PendingResponse& pending = *s.answer_.pending_;
    if (n <= 0) {
      // Shorter than its range: the client was promised a whole body, so its connection
      // fails, as a failed file send's does.
      if (pending.stream != nullptr) pending.stream->Fail(pending);
      return;
    }
    s.offset_ += static_cast<uint64_t>(n);
    s.left_ -= static_cast<uint64_t>(n);
    // Write() is false once the stream is full, or the connection is gone.
    if (!s.answer_.Write(std::string_view(s.piece_.get(), static_cast<size_t>(n)))) {
      if (pending.stream == nullptr) return;
      // Kept by the callback alone; dropped with it if the connection goes first.
      s.answer_.OnWritable([self](Response&) { Pump(self); });
      return;
    }
  }
  s.answer_.End();
}

}  // namespace percore::http
