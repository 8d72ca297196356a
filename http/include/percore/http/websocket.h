// percore/http/websocket.h — WebSocket endpoints (RFC 6455, with RFC 7692's permessage-deflate)
// and publish/subscribe that reaches every loop.
//
//   struct Member {
//     std::string name;
//   };
//   percore::http::App app;
//   app.Ws<Member>("/chat", {
//       .upgrade = [](const percore::http::Request& req, Member& member) {
//         member.name = std::string(req.Query("name"));
//       },
//       .open = [](percore::http::WebSocket& ws) { ws.Subscribe("chat"); },
//       .message = [&app](percore::http::WebSocket& ws, std::string_view text,
//                         percore::http::WsOpcode opcode) {
//         app.Publish("chat", ws.data<Member>()->name + ": " + std::string(text), opcode);
//       },
//   });
//
// A WebSocket route is a GET route: middleware runs on the upgrade request first (an auth
// middleware can refuse it with a 401 before the handshake), then `upgrade` may fill the
// connection's data from the request or refuse it by throwing HttpError; the 101 follows, and
// the connection belongs to the WebSocket from then on, on the loop that accepted it. Each
// loop calls the same callbacks, each on its own thread, at the same time (as handlers).
//
// App::Publish reaches every subscriber of the topic on every loop, from any thread: one copy
// of the framed message is shared by every loop, and each loop's subscribers receive the
// messages of one publisher in the order they were published.
#ifndef PERCORE_HTTP_WEBSOCKET_H_
#define PERCORE_HTTP_WEBSOCKET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "percore/protocol.h"

namespace percore::http {

class Request;

// The kind of a data message.
enum class WsOpcode : uint8_t { kText = 1, kBinary = 2 };

// What WebSocket::Send did with a message.
enum class WsSendStatus : uint8_t {
  kSent,      // queued, and what waits for the client is within max_backpressure_bytes
  kBuffered,  // queued, past max_backpressure_bytes: send more once `drain` is called
  kDropped,   // not sent: more than max_backpressure_bytes were already waiting
  kClosed,    // not sent: the WebSocket is closing or closed, or this is not its loop
};

// How an endpoint compresses (permessage-deflate), when the client offers it: not at all; with
// one deflater and inflater per loop and no context kept between messages ("shared": little
// memory, less compression for a stream of alike messages); or with a window of its own per
// connection and direction (about 300 KiB a connection, the best ratio).
enum class WsCompression : uint8_t { kOff, kShared, kDedicated };

// An endpoint's limits and settings.
struct WsOptions {
  // A message longer than this, decompressed, closes the connection with 1009.
  size_t max_message_bytes = 16 << 20;
  // Bytes waiting for a slow client past which Send() returns kBuffered, and beyond which it
  // drops messages (kDropped). Publish drops over it too.
  size_t max_backpressure_bytes = 1 << 20;
  // A connection that sends nothing for half of this is pinged; one that still sends nothing
  // (not even the pong) by the end of it is cut off (its close code is 1006). Zero: never.
  absl::Duration idle_timeout = absl::Seconds(120);
  WsCompression compression = WsCompression::kOff;
  // Messages shorter than this go uncompressed even when compression was agreed: deflate
  // costs more than it saves on a few bytes.
  size_t min_compress_bytes = 64;
  // The subprotocols spoken (Sec-WebSocket-Protocol): the first the client offers that is
  // here is chosen. Empty: none is answered.
  std::vector<std::string> protocols;
};

namespace internal {
struct WsLink;
class WsHub;
std::shared_ptr<WsHub> NewWsHub();
template <typename T>
struct WsTypeTag {
  static constexpr char id = 0;
};
}  // namespace internal

// A handle to one WebSocket connection. Callbacks get it by reference; a copy may be kept (in a
// room's list, a timer, a job) and outlives the connection harmlessly: once the connection has
// closed, every call does nothing (Send returns kClosed). Calls from a thread other than the
// connection's loop do nothing either: go through worker().Post. Copies are cheap (a shared
// pointer). Owning-loop-only, but for worker(), which any thread may call.
class WebSocket {
 public:
  WebSocket() = default;
  // Sends one message (text must be UTF-8): see WsSendStatus.
  WsSendStatus Send(std::string_view message, WsOpcode opcode = WsOpcode::kText) const;
  // Starts the closing handshake with `code` (1000, 3000..4999 for the application's own) and
  // a reason of at most 123 bytes: the `close` callback runs once the client answers (or after
  // 5 seconds without an answer).
  void Close(uint16_t code = 1000, std::string_view reason = {}) const;
  // Cuts the connection at once, without the closing handshake (the client sees 1006).
  void End() const;
  // Subscribes to `topic` on this loop: App::Publish to it reaches this connection. False if
  // subscribed already, or closed. Subscriptions end with the connection.
  bool Subscribe(std::string_view topic) const;
  bool Unsubscribe(std::string_view topic) const;
  bool IsSubscribed(std::string_view topic) const;
  // The connection's own data: the type given to App::Ws, made when it upgraded. Null once
  // closed, off its loop, or for another type.
  template <typename T>
  T* data() const {
    return static_cast<T*>(DataOf(&internal::WsTypeTag<T>::id));
  }
  // Whether the connection is open: neither side has begun to close it.
  bool open() const;
  // The bytes waiting to be sent to the client.
  size_t buffered() const;
  // The subprotocol chosen at the handshake, or empty.
  std::string_view protocol() const;
  // The connection's loop, to Post work to it from other threads. Thread-safe.
  const WorkerRef& worker() const;

 private:
  friend class WsSession;
  explicit WebSocket(std::shared_ptr<internal::WsLink> link) : link_(std::move(link)) {}
  void* DataOf(const char* type) const;
  std::shared_ptr<internal::WsLink> link_;
};

// The data of an endpoint whose connections keep none.
struct NoWsData {};

// An endpoint's callbacks (each optional) and options. The callbacks are called on the
// connection's loop; a WebSocket they get is valid as a reference during the call, a copy for
// as long as it is kept. An exception thrown by one is logged and cuts the connection off with
// close code 1011.
template <typename T = NoWsData>
struct WsBehavior {
  // Before the 101, with the connection's data made (T{}): fill it from the request, or throw
  // HttpError to refuse the upgrade with that status.
  absl::AnyInvocable<void(const Request& req, T& data) const> upgrade;
  // The connection is open.
  absl::AnyInvocable<void(WebSocket& ws) const> open;
  // A whole message: `message` is valid during the call only.
  absl::AnyInvocable<void(WebSocket& ws, std::string_view message, WsOpcode opcode) const> message;
  // What was buffered past max_backpressure_bytes has been sent: the client reads again.
  absl::AnyInvocable<void(WebSocket& ws) const> drain;
  // The connection closed, once: with the code the client sent (1005 if it sent none), the one
  // percore closed it with for a violation (1002, 1007, 1009...) or 1001 when draining, or 1006
  // when it ended without a close frame. The data is still there; the handle then goes inert.
  absl::AnyInvocable<void(WebSocket& ws, uint16_t code, std::string_view reason) const> close;
  WsOptions options;
};

namespace internal {
// An endpoint with its data's type erased, as App::Ws stores it.
struct WsEndpoint {
  absl::AnyInvocable<void(WebSocket&) const> open;
  absl::AnyInvocable<void(WebSocket&, std::string_view, WsOpcode) const> message;
  absl::AnyInvocable<void(WebSocket&) const> drain;
  absl::AnyInvocable<void(WebSocket&, uint16_t, std::string_view) const> close;
  WsOptions options;
  // Makes a connection's data from its upgrade request (or throws); `destroy` frees it.
  absl::AnyInvocable<void*(const Request&) const> make_data;
  void (*destroy_data)(void*) = nullptr;
  const char* type = nullptr;
};

template <typename T>
std::shared_ptr<const WsEndpoint> EraseBehavior(WsBehavior<T> behavior) {
  auto endpoint = std::make_shared<WsEndpoint>();
  endpoint->open = std::move(behavior.open);
  endpoint->message = std::move(behavior.message);
  endpoint->drain = std::move(behavior.drain);
  endpoint->close = std::move(behavior.close);
  endpoint->options = std::move(behavior.options);
  endpoint->make_data = [upgrade = std::move(behavior.upgrade)](const Request& req) -> void* {
    auto data = std::make_unique<T>();
    if (upgrade) upgrade(req, *data);
    return data.release();
  };
  endpoint->destroy_data = [](void* data) { delete static_cast<T*>(data); };
  endpoint->type = &WsTypeTag<T>::id;
  return endpoint;
}
}  // namespace internal

}  // namespace percore::http

#endif  // PERCORE_HTTP_WEBSOCKET_H_
