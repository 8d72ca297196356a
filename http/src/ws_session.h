// A WebSocket connection (RFC 6455) once HTTP/1.1 has handed it over after the 101
// (Connection::HandTo), and each loop's WebSocket state.
//
// Frames are read as they come, across reads: a header that spans reads waits in 14 bytes of
// the session's; a payload is unmasked as it arrives. A whole unfragmented message in one read
// (the common case) is unmasked into the loop's scratch buffer and handed to the application
// from there: no per-connection buffer. Only a message that spans reads, is fragmented or is
// compressed is gathered in the session's own buffer, which goes back to small afterwards.
#ifndef PERCORE_HTTP_SRC_WS_SESSION_H_
#define PERCORE_HTTP_SRC_WS_SESSION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "percore/http/websocket.h"
#include "percore/protocol.h"
#include "percore/stats.h"
#include "ws_deflate.h"
#include "ws_frame.h"
#include "ws_handshake.h"

namespace percore::http {

class WsSession;
class HttpProtocol;

namespace internal {
// What a WebSocket handle points at: the session while it is open, and what any thread may read.
struct WsLink {
  WsSession* session = nullptr;  // null once closed; read and written on its loop only
  std::thread::id loop_thread;   // the loop's, fixed
  WorkerRef worker;              // fixed
};
}  // namespace internal

// One loop's subscriptions (WebSocket::Subscribe). Owning-loop-only; App::Publish reaches it
// through the hub (ws_hub.h).
class WsTopics {
 public:
  // The session keeps its own list of topics: it subscribes once to each.
  void Subscribe(std::string_view topic, WsSession* session);
  bool Unsubscribe(std::string_view topic, WsSession* session);
  // A frame published to `topic` (`payload` bytes of message): to each of its subscribers.
  void Deliver(std::string_view topic, std::string_view frame, size_t payload);

 private:
  absl::flat_hash_map<std::string, std::vector<WsSession*>> subscribers_;
};

// One loop's WebSocket state, made at its first upgrade. Owning-loop-only.
class WsLoop {
 public:
  WsLoop(HttpProtocol& protocol, Worker& worker);
  ~WsLoop();

  HttpProtocol& protocol;
  Worker& worker;
  LoopStats& stats;
  std::shared_ptr<WsTopics> topics;  // the hub keeps a weak reference
  std::string scratch;               // a whole message unmasked, for one callback
  std::string compressed;            // a message deflated, before its frame header
  // WsCompression::kShared: no context is kept either way, so one of each serves the loop.
  ws::Deflater& SharedDeflater(int window_bits);
  ws::Inflater& SharedInflater();

 private:
  std::unique_ptr<ws::Deflater> deflater_;
  int deflater_bits_ = 0;
  std::unique_ptr<ws::Inflater> inflater_;
};

class WsSession final : public percore::Session {
 public:
  // `data` is the endpoint's, made from the upgrade request; the session frees it.
  WsSession(WsLoop& loop, std::shared_ptr<const internal::WsEndpoint> endpoint, void* data,
            std::optional<ws::Deflate> deflate, std::string protocol, Connection& conn);
  ~WsSession() override;

  // The `open` callback, and the idle timeout armed.
  void OnTakeOver(Connection& conn) override;
  size_t OnData(Connection& conn, std::string_view bytes) override;
  // The idle timeout: a ping, then the cut; or the closing handshake that got no answer.
  void OnDeadline(Connection& conn) override;
  void OnPeerClosed(Connection& conn) override;
  void OnDrain(Connection& conn) override;
  void OnWritable(Connection& conn) override;

  // WebSocket's.
  WsSendStatus Send(std::string_view message, WsOpcode opcode);
  void Close(uint16_t code, std::string_view reason);
  void End();
  bool Subscribe(std::string_view topic);
  bool Unsubscribe(std::string_view topic);
  bool IsSubscribed(std::string_view topic) const;
  void* Data(const char* type) const { return type == endpoint_->type ? data_ : nullptr; }
  bool open() const { return state_ == State::kOpen; }
  size_t buffered() const { return conn_.pending_output(); }
  std::string_view protocol() const { return protocol_; }
  // A frame published to a topic this session is subscribed to.
  void Deliver(std::string_view frame, size_t payload);

 private:
  enum class State : uint8_t {
    kOpen,
    kClosing,  // our close frame is out: waiting for the client's
    kDone,     // closed: the `close` callback has run
  };
  // Reads a frame header from [p, end), or the rest of one held from earlier reads; returns the
  // bytes taken. in_frame_ is set once the header is whole.
  size_t ReadHeader(const char* p, const char* end);
  // A piece of the current frame's payload, masked.
  void TakePayload(const char* p, size_t n);
  // What inflating a piece of a compressed message came to (`added` to the message; `end`: its
  // last piece): 0, or the close code.
  uint16_t CheckInflated(ws::Inflater::Result result, std::string_view added, bool end);
  void EndFrame();
  void EndMessage();
  void OnControl();
  // Queues a frame; the loop sends it after the current call, or at once outside one.
  void WriteFrame(ws::Opcode opcode, std::string_view payload, bool compressed);
  // The connection is in violation: close frame with `code`, then the TCP close.
  void Fail(uint16_t code);
  // Queues a close frame with `code` (0: none) and `reason`.
  void SendClose(uint16_t code, std::string_view reason);
  // Once: the subscriptions go, the `close` callback runs, the handles go inert.
  void Finish(uint16_t code, std::string_view reason);
  // Runs a callback; one that throws is logged and the connection fails with 1011.
  template <typename Fn>
  void Call(const char* what, Fn&& fn);
  void ArmIdle();
  void WantDrain();
  void Flush();

  WsLoop& loop_;
  std::shared_ptr<const internal::WsEndpoint> endpoint_;
  void* data_;
  Connection& conn_;
  std::optional<ws::Deflate> deflate_;
  std::unique_ptr<ws::Deflater> deflater_;  // kDedicated: each connection's own
  std::unique_ptr<ws::Inflater> inflater_;
  std::string protocol_;
  WebSocket self_;  // what the callbacks get
  ws::MessageRules rules_;
  ws::FrameHeader frame_;
  uint64_t offset_ = 0;              // of the payload read, in the current frame
  std::string message_;              // a message gathered across frames or reads, or inflated
  std::string control_;              // a control frame's payload, up to 125 bytes
  ws::Utf8Validator inflated_utf8_;  // a compressed text message's, checked as it inflates
  std::vector<std::string> topics_;
  char header_[14];
  uint8_t header_size_ = 0;  // bytes of a header held from earlier reads
  State state_ = State::kOpen;
  bool in_frame_ = false;
  bool whole_ = false;      // the current frame is a whole message, whole in this read
  bool in_call_ = false;    // within a call from the loop: output goes after it anyway
  bool ping_sent_ = false;  // the idle timeout's ping, unanswered
  bool drain_wanted_ = false;
  bool reading_held_ = false;  // stopped reading past max_backpressure_bytes
  bool opened_ = false;        // took the connection over: `close` runs, as `open` did
  uint16_t close_sent_ = 0;    // the code of our close frame, once sent
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_WS_SESSION_H_
