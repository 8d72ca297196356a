// permessage-deflate's two directions (RFC 7692 7.2): raw deflate, with neither zlib's nor
// gzip's wrapper. A message is compressed and flushed (Z_SYNC_FLUSH), and the flush's last four
// bytes (00 00 FF FF, an empty stored block) are left off the wire; the receiver puts them back
// before inflating the message's end. Without "no context takeover" each side keeps its window
// from one message to the next, which is what makes a stream of alike messages small.
#ifndef PERCORE_HTTP_SRC_WS_DEFLATE_H_
#define PERCORE_HTTP_SRC_WS_DEFLATE_H_

#include <zlib.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace percore::http::ws {

class Deflater {
 public:
  // `window_bits`: 9..15, what the handshake agreed (server_max_window_bits).
  explicit Deflater(int window_bits);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // Appends `message` compressed to *out; with `reset`, nothing of it is kept for the next
  // message (server_no_context_takeover). False if zlib failed (*out is then cut back).
  bool Compress(std::string_view message, bool reset, std::string* out);

 private:
  z_stream stream_{};
  bool ok_ = false;
};

class Inflater {
 public:
  Inflater();
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  enum class Result { kOk, kTooBig, kBad };
  // Appends to *out what `piece` of a compressed message inflates to: kTooBig as soon as *out
  // would pass `limit` bytes (a small message that inflates to gigabytes is refused after
  // `limit`, not after the gigabytes), kBad for data that is not deflate.
  Result Inflate(std::string_view piece, size_t limit, std::string* out);
  // The message ended: inflates the four bytes the sender left off.
  Result Finish(size_t limit, std::string* out);
  // Forgets the window (client_no_context_takeover, or a loop's shared inflater between
  // messages of different connections).
  void Reset();

 private:
  z_stream stream_{};
  bool ok_ = false;
};

}  // namespace percore::http::ws

#endif  // PERCORE_HTTP_SRC_WS_DEFLATE_H_
