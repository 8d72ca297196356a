#include "ws_deflate.h"

#include <algorithm>

namespace percore::http::ws {
namespace {

// What an output buffer grows by between calls into zlib.
constexpr size_t kStep = 16 * 1024;
// The end of a sync flush: left off the wire, put back before inflating a message's end.
constexpr unsigned char kFlushTail[4] = {0x00, 0x00, 0xFF, 0xFF};

}  // namespace

Deflater::Deflater(int window_bits) {
  // A negative window: raw deflate. memLevel 8 is zlib's default: about 256 KiB with a 32 KiB
  // window.
  ok_ = deflateInit2(&stream_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits, 8,
                     Z_DEFAULT_STRATEGY) == Z_OK;
}

Deflater::~Deflater() {
  if (ok_) deflateEnd(&stream_);
}

bool Deflater::Compress(std::string_view message, bool reset, std::string* out) {
  if (!ok_) return false;
  const size_t start = out->size();
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  stream_.avail_in = static_cast<uInt>(message.size());
  size_t used = start;
  // deflateBound covers the whole message, plus the flush's few bytes.
  out->resize(start + deflateBound(&stream_, message.size()) + 16);
  int rc;
  do {
    if (used == out->size()) out->resize(out->size() + kStep);
    stream_.next_out = reinterpret_cast<Bytef*>(out->data() + used);
    stream_.avail_out = static_cast<uInt>(out->size() - used);
    rc = deflate(&stream_, Z_SYNC_FLUSH);
    used = out->size() - stream_.avail_out;
  } while (rc == Z_OK && (stream_.avail_in > 0 || stream_.avail_out == 0));
  if ((rc != Z_OK && rc != Z_BUF_ERROR) || used - start < 4) {
    out->resize(start);
    deflateReset(&stream_);
    return false;
  }
  out->resize(used - 4);  // the flush's 00 00 FF FF
  if (reset) deflateReset(&stream_);
  return true;
}

Inflater::Inflater() { ok_ = inflateInit2(&stream_, -15) == Z_OK; }

Inflater::~Inflater() {
  if (ok_) inflateEnd(&stream_);
}

void Inflater::Reset() {
  if (ok_) inflateReset(&stream_);
}

Inflater::Result Inflater::Inflate(std::string_view piece, size_t limit, std::string* out) {
  if (!ok_) return Result::kBad;
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
  stream_.avail_in = static_cast<uInt>(piece.size());
  bool more = true;  // input left, or output that did not fit
  while (more) {
    if (out->size() > limit) return Result::kTooBig;
    // Room up to one byte past the limit: a message that needs it is too big.
    const size_t used = out->size();
    out->resize(used + std::min(kStep, limit + 1 - used));
    stream_.next_out = reinterpret_cast<Bytef*>(out->data() + used);
    stream_.avail_out = static_cast<uInt>(out->size() - used);
    const int rc = inflate(&stream_, Z_SYNC_FLUSH);
    const bool full = stream_.avail_out == 0;
    out->resize(out->size() - stream_.avail_out);
    if (rc == Z_STREAM_END) {
      // The sender ended its stream (a final block), which RFC 7692 7.2.3.3 allows: what
      // follows starts afresh.
      inflateReset(&stream_);
    } else if (rc == Z_BUF_ERROR) {
      break;  // nothing more to do with this input: the rest of the message follows
    } else if (rc != Z_OK) {
      return Result::kBad;
    }
    more = stream_.avail_in > 0 || full;
  }
  return out->size() > limit ? Result::kTooBig : Result::kOk;
}

Inflater::Result Inflater::Finish(size_t limit, std::string* out) {
  return Inflate(std::string_view(reinterpret_cast<const char*>(kFlushTail), 4), limit, out);
}

}  // namespace percore::http::ws
