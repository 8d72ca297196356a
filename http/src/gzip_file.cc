// Compress()'s side of Response: what a cache needs to know (Vary, a weak ETag), a body
// gzipped whole, and a file's range gzipped piece by piece as its client reads it.
#include "gzip_file.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#include "codec.h"
#include "percore/http/middleware.h"
#include "session.h"

namespace percore::http {

using namespace std::string_view_literals;

namespace {

// What one step reads of the file and what deflate writes at most before it is handed to
// Write(): what a stalled client costs beyond the stream's bound, besides zlib's ~256 KiB.
constexpr size_t kPiece = 16 << 10;

}  // namespace

bool Response::Negotiate(uint64_t length) {
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

void Response::SendCompressed(std::string_view body) {
  std::string* zipped = session_->Gzip(body, compress_->level);
  if (zipped != nullptr && zipped->size() < body.size()) {
    fields_->append("Content-Encoding: gzip\r\n"sv);
    body = *zipped;
  }  // else as it is: the weak ETag is still true
  sent_ = true;
  if (AppendHead(Framing::kLength, body.size(), body.empty())) out_->append(body);
  if (zipped != nullptr) KeepSmall(*zipped);
}

bool Response::StreamsGzip(uint64_t length) {
  return length > kWholeGzipFile && length <= kMaxGzipFile && GzipsStream(length);
}

bool Response::GzipsStream(uint64_t length) {
  if (compress_ == nullptr || !Negotiate(length)) return false;
  // Said before a byte is deflated: the head goes out with the first piece.
  fields_->append("Content-Encoding: gzip\r\n"sv);
  return true;
}

GzipFileStream::GzipFileStream(DeferredResponse answer, int fd, uint64_t offset, uint64_t length)
    : answer_(std::move(answer)), fd_(fd), offset_(offset), left_(length) {}

GzipFileStream::~GzipFileStream() {
  if (deflating_) deflateEnd(&stream_);
  close(fd_);
}

void GzipFileStream::Start(DeferredResponse answer, int fd, uint64_t offset, uint64_t length,
                           int level, bool head) {
  if (head) {
    close(fd);
    answer.End();  // the head, chunked as GET's, and no body
    return;
  }
  auto self =
      std::shared_ptr<GzipFileStream>(new GzipFileStream(std::move(answer), fd, offset, length));
  // 15 + 16: the largest window, with a gzip header and trailer instead of zlib's.
  if (deflateInit2(&self->stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    self->Fail();
    return;
  }
  self->deflating_ = true;
  self->in_ = std::make_unique<char[]>(kPiece);
  self->out_ = std::make_unique<char[]>(kPiece);
  Pump(self);
}

void GzipFileStream::Pump(const std::shared_ptr<GzipFileStream>& self) {
  GzipFileStream& s = *self;
  z_stream& z = s.stream_;
  while (true) {
    if (z.avail_in == 0 && s.left_ > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(s.left_, kPiece));
      ssize_t n;
      do {
        n = pread(s.fd_, s.in_.get(), want, static_cast<off_t>(s.offset_));
      } while (n < 0 && errno == EINTR);
      if (n <= 0) {
        s.Fail();
        return;
      }
      s.offset_ += static_cast<uint64_t>(n);
      s.left_ -= static_cast<uint64_t>(n);
      z.next_in = reinterpret_cast<Bytef*>(s.in_.get());
      z.avail_in = static_cast<uInt>(n);
    }
    z.next_out = reinterpret_cast<Bytef*>(s.out_.get());
    z.avail_out = kPiece;
    // Z_FINISH once the whole range is read: deflate then drains it over as many calls as the
    // output takes, and ends with the gzip trailer.
    const int result = deflate(&z, s.left_ == 0 ? Z_FINISH : Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) {
      s.Fail();
      return;
    }
    const size_t produced = kPiece - z.avail_out;
    // Write() is false once the stream is full, or the connection is gone.
    const bool room = produced == 0 || s.answer_.Write(std::string_view(s.out_.get(), produced));
    if (result == Z_STREAM_END) {
      s.answer_.End();
      return;
    }
    if (!room) {
      // Kept by the callback alone; dropped with it if the connection goes first.
      s.answer_.OnWritable([self] { Pump(self); });
      return;
    }
  }
}

void GzipFileStream::Fail() {
  PendingResponse& pending = *answer_.state_;
  if (pending.session == nullptr) return;
  pending.conn->Close(false);
  // What went out of the body stays cut off: when the last handle goes, the answer ends with
  // the connection, as a streamed one does, rather than with a 500 after it.
  pending.streaming = true;
}

}  // namespace percore::http
