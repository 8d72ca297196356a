#include "ws_frame.h"

#include <cstring>

namespace percore::http::ws {
namespace {

HeaderResult Refuse(uint16_t code) { return {HeaderResult::kRefused, code}; }

bool KnownOpcode(uint8_t op) { return op <= 0x2 || (op >= 0x8 && op <= 0xA); }

uint64_t BigEndian(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

HeaderResult ReadFrameHeader(std::string_view bytes, bool rsv1_allowed, FrameHeader* header) {
  // Each check looks only at bytes already there, in byte order: a header is refused at the
  // same byte however its bytes were split.
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.empty()) return {};
  const uint8_t op = p[0] & 0x0F;
  const bool rsv1 = (p[0] & 0x40) != 0;
  const bool control = (op & 0x8) != 0;
  // RSV2 and RSV3 mean nothing without an extension that defines them; RSV1 is
  // permessage-deflate's, on data frames only (RFC 7692 6.1).
  if ((p[0] & 0x30) != 0 || (rsv1 && (!rsv1_allowed || control))) {
    return Refuse(kCloseProtocolError);
  }
  if (!KnownOpcode(op)) return Refuse(kCloseProtocolError);
  const bool fin = (p[0] & 0x80) != 0;
  if (control && !fin) return Refuse(kCloseProtocolError);  // 5.5: never fragmented
  if (bytes.size() < 2) return {};
  if ((p[1] & 0x80) == 0) return Refuse(kCloseProtocolError);  // 5.1: a client masks
  const uint8_t length7 = p[1] & 0x7F;
  if (control && length7 > 125) return Refuse(kCloseProtocolError);
  size_t size = 2;
  uint64_t length = length7;
  if (length7 == 126) {
    if (bytes.size() < 4) return {};
    length = BigEndian(p + 2, 2);
    if (length < 126) return Refuse(kCloseProtocolError);  // not the fewest bytes
    size = 4;
  } else if (length7 == 127) {
    if (bytes.size() < 3) return {};
    if ((p[2] & 0x80) != 0) return Refuse(kCloseProtocolError);  // the top bit must be 0
    if (bytes.size() < 10) return {};
    length = BigEndian(p + 2, 8);
    if (length <= 0xFFFF) return Refuse(kCloseProtocolError);
    size = 10;
  }
  if (bytes.size() < size + 4) return {};
  header->fin = fin;
  header->rsv1 = rsv1;
  header->opcode = static_cast<Opcode>(op);
  header->masked = true;
  std::memcpy(header->mask, p + size, 4);
  header->length = length;
  header->size = size + 4;
  return {HeaderResult::kDone, 0};
}

void Unmask(char* data, size_t n, const uint8_t mask[4], uint64_t offset) {
  // The mask turned to start at `offset`, then eight bytes at a time.
  uint8_t turned[8];
  for (int i = 0; i < 8; ++i) turned[i] = mask[(offset + i) & 3];
  uint64_t word_mask;
  std::memcpy(&word_mask, turned, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    word ^= word_mask;
    std::memcpy(data + i, &word, 8);
  }
  for (; i < n; ++i) data[i] = static_cast<char>(data[i] ^ turned[i & 7]);
}

size_t WriteFrameHeader(char* out, Opcode opcode, bool fin, bool rsv1, uint64_t length) {
  auto* p = reinterpret_cast<unsigned char*>(out);
  p[0] = static_cast<unsigned char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) |
                                    static_cast<uint8_t>(opcode));
  if (length < 126) {
    p[1] = static_cast<unsigned char>(length);
    return 2;
  }
  int bytes = 8;
  p[1] = 127;
  if (length <= 0xFFFF) {
    bytes = 2;
    p[1] = 126;
  }
  for (int i = 0; i < bytes; ++i) {
    p[2 + i] = static_cast<unsigned char>(length >> (8 * (bytes - 1 - i)));
  }
  return 2 + static_cast<size_t>(bytes);
}

// For each state from kOne on (in their order), the range the next byte must fall in.
const Utf8Validator::ContinuationStep Utf8Validator::kContinuation[] = {
    {0x80, 0xBF, kAccept},  // kOne
    {0x80, 0xBF, kOne},     // kTwo
    {0xA0, 0xBF, kOne},     // kTwoAfterE0
    {0x80, 0x9F, kOne},     // kTwoAfterED
    {0x80, 0xBF, kTwo},     // kThree
    {0x90, 0xBF, kTwo},     // kThreeAfterF0
    {0x80, 0x8F, kTwo},     // kThreeAfterF4
};

bool Utf8Validator::Feed(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* const end = p + bytes.size();
  State s = state_;
  while (p < end && s != kReject) {
    if (s == kAccept) {
      // ASCII, the common case, eight bytes at a time.
      while (end - p >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);
        if ((word & 0x8080808080808080ULL) != 0) break;
        p += 8;
      }
      if (p == end) break;
    }
    const unsigned char c = *p++;
    if (s != kAccept) {
      // A continuation byte due: in its range, on to the next state.
      const ContinuationStep& step = kContinuation[s - kOne];
      s = c >= step.low && c <= step.high ? step.next : kReject;
    } else if (c < 0x80) {
      s = kAccept;
    } else if (c >= 0xC2 && c <= 0xDF) {
      s = kOne;
    } else if (c == 0xE0) {
      s = kTwoAfterE0;
    } else if (c == 0xED) {
      s = kTwoAfterED;
    } else if (c >= 0xE1 && c <= 0xEF) {
      s = kTwo;
    } else if (c == 0xF0) {
      s = kThreeAfterF0;
    } else if (c >= 0xF1 && c <= 0xF3) {
      s = kThree;
    } else if (c == 0xF4) {
      s = kThreeAfterF4;
    } else {
      s = kReject;  // 80..C1 (a continuation, or an overlong lead), F5..FF
    }
  }
  state_ = s;
  return s != kReject;
}

bool ValidClosePayload(std::string_view payload) {
  if (payload.empty()) return true;
  if (payload.size() == 1) return false;  // a code is two bytes
  const uint16_t code =
      static_cast<uint16_t>(BigEndian(reinterpret_cast<const unsigned char*>(payload.data()), 2));
  // 1004 is reserved; 1005, 1006 and 1015 are for reports, never sent (7.4.1); 3000-4999 are
  // for libraries and applications (7.4.2).
  const bool valid_code = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
                          (code >= 3000 && code <= 4999);
  if (!valid_code) return false;
  Utf8Validator reason;
  return reason.Feed(payload.substr(2)) && reason.Complete();
}

uint16_t MessageRules::OnHeader(const FrameHeader& header) {
  if (IsControl(header.opcode)) return 0;  // allowed between fragments (5.4)
  if (header.opcode == Opcode::kContinuation) {
    if (!in_message_ || header.rsv1) return kCloseProtocolError;
  } else {
    if (in_message_) return kCloseProtocolError;  // a new message inside a fragmented one
    in_message_ = true;
    opcode_ = header.opcode;
    compressed_ = header.rsv1;
    message_bytes_ = 0;
    utf8_.Reset();
  }
  if (header.length > max_message_bytes_ - message_bytes_) return kCloseTooBig;
  message_bytes_ += header.length;
  return 0;
}

uint16_t MessageRules::OnData(std::string_view piece) {
  if (opcode_ == Opcode::kText && !compressed_ && !utf8_.Feed(piece)) return kCloseInvalidData;
  return 0;
}

uint16_t MessageRules::OnFrameEnd(const FrameHeader& header) {
  if (IsControl(header.opcode) || !header.fin) return 0;
  in_message_ = false;
  if (opcode_ == Opcode::kText && !compressed_ && !utf8_.Complete()) return kCloseInvalidData;
  return 0;
}

}  // namespace percore::http::ws
