// The WebSocket frame layer (RFC 6455 section 5), without I/O: a frame header read from bytes
// as they arrive, the payload unmasked, a message put together from its fragments with control
// frames between them, and what the RFC says a server must refuse, each with the close code it
// names. UTF-8 of text messages and close reasons is checked as it arrives (Utf8Validator), so a
// bad byte fails the message at once rather than at its end.
//
// The first piece of the WebSocket issue (#25): the handshake, the session on the loop and
// permessage-deflate build on it.
#ifndef PERCORE_HTTP_SRC_WS_FRAME_H_
#define PERCORE_HTTP_SRC_WS_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace percore::http::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// The close codes a server sends for what it refuses (RFC 6455 7.4.1).
constexpr uint16_t kCloseNormal = 1000;
constexpr uint16_t kCloseGoingAway = 1001;
constexpr uint16_t kCloseProtocolError = 1002;
constexpr uint16_t kCloseInvalidData = 1007;  // text that is not UTF-8
constexpr uint16_t kCloseTooBig = 1009;

inline bool IsControl(Opcode op) { return (static_cast<uint8_t>(op) & 0x8) != 0; }

struct FrameHeader {
  bool fin = false;
  bool rsv1 = false;  // permessage-deflate's "compressed" bit, on a message's first frame
  Opcode opcode = Opcode::kContinuation;
  bool masked = false;
  uint8_t mask[4] = {0, 0, 0, 0};
  uint64_t length = 0;  // of the payload
  size_t size = 0;      // of the header itself: 2 to 14 bytes
};

// What ReadFrameHeader made of the bytes.
struct HeaderResult {
  enum Kind { kNeedMore, kDone, kRefused } kind = kNeedMore;
  uint16_t close_code = 0;  // for kRefused
};

// Reads a frame header from the start of `bytes`, as a server reads a client's frame: masked
// (5.1), no reserved bit but RSV1 when `rsv1_allowed` (a negotiated permessage-deflate), a known
// opcode (5.2), a control frame unfragmented and at most 125 bytes (5.5), a length in the fewest
// bytes and under 2^63 (5.2). A refused header is a protocol error (1002). kNeedMore until the
// whole header is there, however the bytes were split.
HeaderResult ReadFrameHeader(std::string_view bytes, bool rsv1_allowed, FrameHeader* header);

// Unmasks `n` bytes of a payload in place; `offset` is where they start in the payload, so a
// payload unmasked a piece at a time gives what unmasking it whole would.
void Unmask(char* data, size_t n, const uint8_t mask[4], uint64_t offset);

// Writes a server's frame header (unmasked, RFC 6455 5.1) for a payload of `length` bytes into
// `out` (at least 10 bytes); returns its size.
size_t WriteFrameHeader(char* out, Opcode opcode, bool fin, bool rsv1, uint64_t length);

// UTF-8 (RFC 3629) checked a piece at a time: no overlong forms, no surrogates, nothing past
// U+10FFFF. Feed() is false from the first byte that no valid text can contain, even when the
// sequence it belongs to is not complete yet; Complete() says whether the text ended between
// characters.
class Utf8Validator {
 public:
  bool Feed(std::string_view bytes);
  bool Complete() const { return state_ == kAccept; }
  void Reset() { state_ = kAccept; }

 private:
  // The states of the byte-by-byte check: between characters, or how many continuation bytes
  // are due and the range the next one must fall in.
  enum State : uint8_t {
    kAccept,
    kReject,
    kOne,           // one continuation byte (80..BF) due
    kTwo,           // two due, the next in 80..BF
    kTwoAfterE0,    // after E0: the next in A0..BF (no overlong form)
    kTwoAfterED,    // after ED: the next in 80..9F (no surrogate)
    kThree,         // three due, the next in 80..BF
    kThreeAfterF0,  // after F0: the next in 90..BF (no overlong form)
    kThreeAfterF4,  // after F4: the next in 80..8F (nothing past U+10FFFF)
  };
  struct ContinuationStep {
    uint8_t low;
    uint8_t high;
    State next;
  };
  static const ContinuationStep kContinuation[7];
  State state_ = kAccept;
};

// Whether a close frame's payload may be accepted (RFC 6455 5.5.1, 7.4): empty, or a code a
// peer may send (1000-1003, 1007-1011, 3000-4999) and a UTF-8 reason.
bool ValidClosePayload(std::string_view payload);

// A message put together from its frames, as far as the rules go: a continuation only within a
// fragmented message, a new data frame only outside one, control frames anywhere between
// fragments, RSV1 only on a message's first frame, a message no longer than the limit (1009).
// The payload itself is the caller's: this keeps the count and, for text, the UTF-8 check.
class MessageRules {
 public:
  explicit MessageRules(uint64_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Checks a frame's header against the message in progress: 0, or the close code to refuse
  // it with. A data frame opens a message (or goes on with it).
  uint16_t OnHeader(const FrameHeader& header);
  // Checks a piece of a data frame's payload, unmasked (for text: its UTF-8, unless the message
  // is compressed, whose text is checked after inflating): 0, or the close code.
  uint16_t OnData(std::string_view piece);
  // The data frame's payload ended: 0, or the close code (text that ends mid-character). Ends
  // the message when the frame had FIN.
  uint16_t OnFrameEnd(const FrameHeader& header);
  // Whether a message is in progress (a fragment was read, the last not yet).
  bool in_message() const { return in_message_; }
  // The message in progress: its first frame's opcode, and whether it is compressed.
  Opcode opcode() const { return opcode_; }
  bool compressed() const { return compressed_; }

 private:
  const uint64_t max_message_bytes_;
  uint64_t message_bytes_ = 0;
  Opcode opcode_ = Opcode::kContinuation;
  bool in_message_ = false;
  bool compressed_ = false;
  Utf8Validator utf8_;
};

}  // namespace percore::http::ws

#endif  // PERCORE_HTTP_SRC_WS_FRAME_H_
