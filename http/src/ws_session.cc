#include "ws_session.h"

#include <algorithm>
#include <cstring>
#include <exception>

#include "session.h"

namespace percore::http {
namespace {

// How long our close frame waits for the client's before the connection is cut.
constexpr int64_t kCloseWaitMs = 5000;

size_t CloseBucket(uint16_t code) {
  for (size_t i = 0; i < std::size(kWsCloseCodes); ++i) {
    if (kWsCloseCodes[i] == code) return i;
  }
  return std::size(kWsCloseCodes);  // any other
}

// Debian's Abseil has a string_view of its own, which the map's lookups take.
absl::string_view Key(std::string_view topic) { return {topic.data(), topic.size()}; }

}  // namespace

WsLoop::WsLoop(HttpProtocol& protocol, Worker& worker)
    : protocol(protocol),
      worker(worker),
      stats(worker.stats()),
      topics(std::make_shared<WsTopics>()) {}

WsLoop::~WsLoop() = default;

ws::Deflater& WsLoop::SharedDeflater(int window_bits) {
  if (deflater_ == nullptr || deflater_bits_ != window_bits) {
    deflater_ = std::make_unique<ws::Deflater>(window_bits);
    deflater_bits_ = window_bits;
  }
  return *deflater_;
}

ws::Inflater& WsLoop::SharedInflater() {
  if (inflater_ == nullptr) inflater_ = std::make_unique<ws::Inflater>();
  return *inflater_;
}

void WsTopics::Subscribe(std::string_view topic, WsSession* session) {
  subscribers_[Key(topic)].push_back(session);
}

bool WsTopics::Unsubscribe(std::string_view topic, WsSession* session) {
  auto it = subscribers_.find(Key(topic));
  if (it == subscribers_.end()) return false;
  std::vector<WsSession*>& list = it->second;
  auto at = std::find(list.begin(), list.end(), session);
  if (at == list.end()) return false;
  // Order among subscribers means nothing: the last takes the place of the one leaving.
  *at = list.back();
  list.pop_back();
  if (list.empty()) subscribers_.erase(it);
  return true;
}

void WsTopics::Deliver(std::string_view topic, std::string_view frame, size_t payload) {
  auto it = subscribers_.find(Key(topic));
  if (it == subscribers_.end()) return;
  // Deliver() calls no callback, so the list cannot change under the loop.
  for (WsSession* session : it->second) session->Deliver(frame, payload);
}

WsSession::WsSession(WsLoop& loop, std::shared_ptr<const internal::WsEndpoint> endpoint, void* data,
                     std::optional<ws::Deflate> deflate, std::string protocol, Connection& conn)
    : loop_(loop),
      endpoint_(std::move(endpoint)),
      data_(data),
      conn_(conn),
      deflate_(std::move(deflate)),
      protocol_(std::move(protocol)),
      rules_(endpoint_->options.max_message_bytes) {
  auto link = std::make_shared<internal::WsLink>();
  link->session = this;
  link->loop_thread = std::this_thread::get_id();
  link->worker = loop.worker.ref();
  self_ = WebSocket(std::move(link));
  if (deflate_.has_value() && endpoint_->options.compression == WsCompression::kDedicated) {
    deflater_ = std::make_unique<ws::Deflater>(deflate_->server_max_window_bits);
    inflater_ = std::make_unique<ws::Inflater>();
  }
}

WsSession::~WsSession() {
  // The connection went without a close frame either way (a reset, a loop ending): 1006.
  if (state_ != State::kDone) Finish(1006, "");
  endpoint_->destroy_data(data_);
}

void WsSession::OnTakeOver(Connection&) {
  opened_ = true;
  LoopStats::Add(loop_.stats.ws_open, 1);
  in_call_ = true;
  ArmIdle();
  if (endpoint_->open) Call("open", [&] { endpoint_->open(self_); });
  in_call_ = false;
}

template <typename Fn>
void WsSession::Call(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    loop_.protocol.LogFailure("WebSocket", what, std::string("threw: ") + e.what());
    if (state_ != State::kDone) Fail(1011);
  } catch (...) {
    loop_.protocol.LogFailure("WebSocket", what, "threw");
    if (state_ != State::kDone) Fail(1011);
  }
}

void WsSession::ArmIdle() {
  const int64_t idle_ms = absl::ToInt64Milliseconds(endpoint_->options.idle_timeout);
  if (idle_ms > 0 && state_ == State::kOpen) {
    conn_.SetDeadline(loop_.worker.now_ms() + std::max<int64_t>(1, idle_ms / 2));
  }
}

size_t WsSession::OnData(Connection& conn, std::string_view bytes) {
  if (state_ == State::kDone) return bytes.size();  // closing: nothing more is read
  in_call_ = true;
  ping_sent_ = false;
  ArmIdle();
  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  while (state_ != State::kDone) {
    if (!in_frame_) {
      if (p == end) break;
      // A client that reads nothing: read no more from it until it reads, so that it cannot
      // make the server hold more than the bound for it. Past the engine's output limit the
      // loop itself holds the rest; past the endpoint's, the session waits for the output to
      // be sent (OnWritable) and resumes.
      if (conn.output_full()) break;
      if (conn.pending_output() > endpoint_->options.max_backpressure_bytes) {
        reading_held_ = true;
        WantDrain();
        break;
      }
      p += ReadHeader(p, end);
      if (!in_frame_) continue;  // refused (kDone), or the header waits for more
      whole_ = frame_.opcode != ws::Opcode::kContinuation && frame_.fin && !frame_.rsv1 &&
               !ws::IsControl(frame_.opcode) && static_cast<uint64_t>(end - p) >= frame_.length;
    }
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(static_cast<uint64_t>(end - p), frame_.length - offset_));
    TakePayload(p, n);
    p += n;
    if (state_ == State::kDone || offset_ < frame_.length) break;  // the rest comes later
    in_frame_ = false;
    EndFrame();
  }
  in_call_ = false;
  return state_ == State::kDone ? bytes.size() : static_cast<size_t>(p - bytes.data());
}

size_t WsSession::ReadHeader(const char* p, const char* end) {
  const bool rsv1 = deflate_.has_value();
  const size_t available = static_cast<size_t>(end - p);
  size_t taken;
  ws::HeaderResult result;
  if (header_size_ == 0) {
    result = ws::ReadFrameHeader(std::string_view(p, available), rsv1, &frame_);
    taken = result.kind == ws::HeaderResult::kDone ? frame_.size : available;
    if (result.kind == ws::HeaderResult::kNeedMore) {
      std::memcpy(header_, p, available);  // fewer than 14 bytes, or it would be whole
      header_size_ = static_cast<uint8_t>(available);
    }
  } else {
    const size_t add = std::min(available, sizeof(header_) - header_size_);
    std::memcpy(header_ + header_size_, p, add);
    result = ws::ReadFrameHeader(std::string_view(header_, header_size_ + add), rsv1, &frame_);
    if (result.kind == ws::HeaderResult::kDone) {
      taken = frame_.size - header_size_;
      header_size_ = 0;
    } else {
      taken = add;
      header_size_ = static_cast<uint8_t>(header_size_ + add);
    }
  }
  if (result.kind == ws::HeaderResult::kRefused) {
    Fail(result.close_code);
  } else if (result.kind == ws::HeaderResult::kDone) {
    if (const uint16_t code = rules_.OnHeader(frame_); code != 0) {
      Fail(code);
    } else {
      in_frame_ = true;
      offset_ = 0;
    }
  }
  return taken;
}

void WsSession::TakePayload(const char* p, size_t n) {
  if (ws::IsControl(frame_.opcode)) {
    control_.append(p, n);
    ws::Unmask(control_.data() + offset_, n, frame_.mask, offset_);
    offset_ += n;
    return;
  }
  // Where a piece goes, unmasked: for a whole uncompressed message, and for a piece the
  // connection's own inflater takes at once, the loop's scratch buffer; otherwise the message's
  // buffer, where it is gathered. A compressed message for the loop's shared inflater is
  // gathered too, and inflated whole at its end: the inflater serves every connection of the
  // loop, so no message may leave it half-way while another's begins.
  const bool piecewise = rules_.compressed() && inflater_ != nullptr;
  std::string& into = piecewise || (whole_ && !rules_.compressed()) ? loop_.scratch : message_;
  if (&into == &loop_.scratch) into.clear();
  const size_t at = into.size();
  into.append(p, n);
  ws::Unmask(into.data() + at, n, frame_.mask, offset_);
  offset_ += n;
  if (!rules_.compressed()) {
    if (const uint16_t code = rules_.OnData(std::string_view(into.data() + at, n)); code != 0) {
      Fail(code);
    }
    return;
  }
  if (!piecewise) return;
  const size_t before = message_.size();
  const ws::Inflater::Result result =
      inflater_->Inflate(into, endpoint_->options.max_message_bytes, &message_);
  if (const uint16_t code = CheckInflated(result, std::string_view(message_).substr(before),
                                          /*end=*/false);
      code != 0) {
    Fail(code);
  }
}

uint16_t WsSession::CheckInflated(ws::Inflater::Result result, std::string_view added, bool end) {
  // The UTF-8 of what was inflated first, then the size, then the data: each piece inflates as
  // far as the whole message would, so the verdict does not depend on how reads split it.
  const bool text = rules_.opcode() == ws::Opcode::kText;
  if (text && !inflated_utf8_.Feed(added)) return ws::kCloseInvalidData;
  if (result == ws::Inflater::Result::kTooBig) return ws::kCloseTooBig;
  if (result == ws::Inflater::Result::kBad) return ws::kCloseInvalidData;
  if (end && text && !inflated_utf8_.Complete()) return ws::kCloseInvalidData;
  return 0;
}

void WsSession::EndFrame() {
  if (ws::IsControl(frame_.opcode)) {
    OnControl();
    control_.clear();
    return;
  }
  if (const uint16_t code = rules_.OnFrameEnd(frame_); code != 0) return Fail(code);
  if (frame_.fin) EndMessage();
}

void WsSession::EndMessage() {
  const bool text = rules_.opcode() == ws::Opcode::kText;
  std::string_view message = whole_ ? std::string_view(loop_.scratch) : message_;
  if (rules_.compressed()) {
    const size_t limit = endpoint_->options.max_message_bytes;
    ws::Inflater::Result result;
    if (inflater_ != nullptr) {
      const size_t before = message_.size();
      result = inflater_->Finish(limit, &message_);
      message = message_;
      message.remove_prefix(before);  // for the check: what the end added
    } else {
      // The gathered message, inflated whole by the loop's inflater into the scratch buffer.
      ws::Inflater& shared = loop_.SharedInflater();
      loop_.scratch.clear();
      result = shared.Inflate(message_, limit, &loop_.scratch);
      if (result == ws::Inflater::Result::kOk) result = shared.Finish(limit, &loop_.scratch);
      shared.Reset();
      message = loop_.scratch;
    }
    const uint16_t code = CheckInflated(result, message, /*end=*/true);
    inflated_utf8_.Reset();
    // The client keeps no context only if it said so; a failed stream starts afresh too.
    if (inflater_ != nullptr && (code != 0 || deflate_->client_no_context_takeover)) {
      inflater_->Reset();
    }
    if (code != 0) return Fail(code);
    if (inflater_ != nullptr) message = message_;
  }
  LoopStats::Add(loop_.stats.ws_messages_in, 1);
  LoopStats::Add(loop_.stats.ws_bytes_in, message.size());
  const WsOpcode opcode = text ? WsOpcode::kText : WsOpcode::kBinary;
  if (endpoint_->message) {
    Call("message", [&] { endpoint_->message(self_, message, opcode); });
  }
  message_.clear();
  KeepSmall(message_);
}

void WsSession::OnControl() {
  switch (frame_.opcode) {
    case ws::Opcode::kPing:
      // Answered while we may still send: not after our close frame (5.5.1).
      if (state_ == State::kOpen) WriteFrame(ws::Opcode::kPong, control_, false);
      break;
    case ws::Opcode::kClose: {
      if (!ws::ValidClosePayload(control_)) return Fail(ws::kCloseProtocolError);
      uint16_t code = 1005;  // none given (7.1.5)
      std::string_view reason;
      if (control_.size() >= 2) {
        code = static_cast<uint16_t>((static_cast<unsigned char>(control_[0]) << 8) |
                                     static_cast<unsigned char>(control_[1]));
        reason = std::string_view(control_).substr(2);
      }
      // The client's close answers ours, or we echo its code (5.5.1); the server closes the
      // TCP connection first (7.1.1), once the frame is out.
      if (state_ == State::kOpen) SendClose(code == 1005 ? 0 : code, {});
      conn_.Close();
      Finish(code, reason);
      break;
    }
    default:
      break;  // a pong: the client is there, which the read itself showed
  }
}

void WsSession::WriteFrame(ws::Opcode opcode, std::string_view payload, bool compressed) {
  char header[10];
  const size_t size = ws::WriteFrameHeader(header, opcode, true, compressed, payload.size());
  std::string& out = conn_.output();
  out.append(header, size);
  out.append(payload);
  Flush();
}

void WsSession::Flush() {
  // Outside a call from the loop (a timer, a job, another connection's callback), the loop
  // learns of the output from Resume().
  if (!in_call_) conn_.Resume();
}

WsSendStatus WsSession::Send(std::string_view message, WsOpcode opcode) {
  if (state_ != State::kOpen) return WsSendStatus::kClosed;
  const WsOptions& options = endpoint_->options;
  if (conn_.pending_output() > options.max_backpressure_bytes) {
    LoopStats::Add(loop_.stats.ws_dropped, 1);
    WantDrain();
    return WsSendStatus::kDropped;
  }
  const ws::Opcode op = static_cast<ws::Opcode>(opcode);
  bool compressed = false;
  if (deflate_.has_value() && message.size() >= options.min_compress_bytes) {
    loop_.compressed.clear();
    const bool reset = deflater_ == nullptr || deflate_->server_no_context_takeover;
    ws::Deflater& deflater =
        deflater_ != nullptr ? *deflater_ : loop_.SharedDeflater(deflate_->server_max_window_bits);
    compressed = deflater.Compress(message, reset, &loop_.compressed);
  }
  WriteFrame(op, compressed ? std::string_view(loop_.compressed) : message, compressed);
  LoopStats::Add(loop_.stats.ws_messages_out, 1);
  LoopStats::Add(loop_.stats.ws_bytes_out, message.size());
  if (conn_.pending_output() > options.max_backpressure_bytes) {
    WantDrain();
    return WsSendStatus::kBuffered;
  }
  return WsSendStatus::kSent;
}

void WsSession::Deliver(std::string_view frame, size_t payload) {
  if (state_ != State::kOpen) return;
  if (conn_.pending_output() > endpoint_->options.max_backpressure_bytes) {
    LoopStats::Add(loop_.stats.ws_dropped, 1);
    WantDrain();
    return;
  }
  conn_.output().append(frame);
  LoopStats::Add(loop_.stats.ws_messages_out, 1);
  LoopStats::Add(loop_.stats.ws_bytes_out, payload);
  Flush();
}

void WsSession::WantDrain() {
  if (drain_wanted_) return;
  drain_wanted_ = true;
  conn_.NotifyWritable();
}

void WsSession::OnWritable(Connection& conn) {
  drain_wanted_ = false;
  if (reading_held_) {
    reading_held_ = false;
    conn.Resume();  // the rest of what the client sent
  }
  if (state_ != State::kOpen || !endpoint_->drain) return;
  in_call_ = true;
  Call("drain", [&] { endpoint_->drain(self_); });
  in_call_ = false;
}

void WsSession::SendClose(uint16_t code, std::string_view reason) {
  std::string payload;
  if (code != 0) {
    payload.push_back(static_cast<char>(code >> 8));
    payload.push_back(static_cast<char>(code & 0xFF));
    payload.append(reason.substr(0, 123));  // a control frame's payload is at most 125 bytes
  }
  WriteFrame(ws::Opcode::kClose, payload, false);
  close_sent_ = code == 0 ? 1005 : code;
}

void WsSession::Close(uint16_t code, std::string_view reason) {
  if (state_ != State::kOpen) return;
  SendClose(code, reason);
  state_ = State::kClosing;
  conn_.SetDeadline(loop_.worker.now_ms() + kCloseWaitMs);
  Flush();
}

void WsSession::End() {
  if (state_ == State::kDone) return;
  conn_.Close(/*linger=*/false);
  Flush();
  Finish(1006, "");
}

void WsSession::Fail(uint16_t code) {
  if (state_ == State::kOpen) SendClose(code, {});
  conn_.Close();
  Finish(code, "");
}

void WsSession::OnDeadline(Connection&) {
  if (state_ == State::kOpen && !ping_sent_) {
    ping_sent_ = true;
    WriteFrame(ws::Opcode::kPing, {}, false);
    ArmIdle();
    return;
  }
  // No pong within the idle timeout, or no answer to our close frame.
  End();
}

void WsSession::OnPeerClosed(Connection& conn) {
  if (state_ == State::kDone) return;
  conn.Close();
  Finish(1006, "");
}

void WsSession::OnDrain(Connection&) {
  in_call_ = true;
  Close(ws::kCloseGoingAway, "server going away");
  in_call_ = false;
}

void WsSession::Finish(uint16_t code, std::string_view reason) {
  if (state_ == State::kDone) return;
  state_ = State::kDone;
  for (const std::string& topic : topics_) loop_.topics->Unsubscribe(topic, this);
  topics_.clear();
  if (opened_) {  // else the connection went before the session took it over
    LoopStats::Add(loop_.stats.ws_closes[CloseBucket(code)], 1);
    loop_.stats.ws_open.store(loop_.stats.ws_open.load(std::memory_order_relaxed) - 1,
                              std::memory_order_relaxed);
    if (endpoint_->close) Call("close", [&] { endpoint_->close(self_, code, reason); });
  }
  self_.link_->session = nullptr;  // every handle goes inert
}

bool WsSession::Subscribe(std::string_view topic) {
  if (state_ != State::kOpen || IsSubscribed(topic)) return false;
  topics_.emplace_back(topic);
  loop_.topics->Subscribe(topic, this);
  return true;
}

bool WsSession::Unsubscribe(std::string_view topic) {
  auto it = std::find(topics_.begin(), topics_.end(), topic);
  if (it == topics_.end()) return false;
  topics_.erase(it);
  return loop_.topics->Unsubscribe(topic, this);
}

bool WsSession::IsSubscribed(std::string_view topic) const {
  return std::find(topics_.begin(), topics_.end(), topic) != topics_.end();
}

}  // namespace percore::http
