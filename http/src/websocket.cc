// The WebSocket handle, the upgrade of a request (App::Ws) and App::Publish.
#include "percore/http/websocket.h"

#include <memory>
#include <string>

#include "percore/http/app.h"
#include "response_writer.h"
#include "session.h"
#include "ws_handshake.h"
#include "ws_hub.h"
#include "ws_session.h"

namespace percore::http {
namespace {

// The session behind a handle, if it is open (or closing) and this is its loop's thread; the
// thread is checked first, as `session` is only ever read on it.
WsSession* Live(const std::shared_ptr<internal::WsLink>& link) {
  if (link == nullptr || link->loop_thread != std::this_thread::get_id()) return nullptr;
  return link->session;
}

// The route handler of a WebSocket endpoint: the handshake's checks, the endpoint's data,
// the 101, and the connection handed to a WsSession.
void Upgrade(const std::shared_ptr<const internal::WsEndpoint>& endpoint, const Request& req,
             Response& res) {
  const ws::Handshake handshake = ws::CheckHandshake(req.method(), req.version_minor(),
                                                     req.headers(), endpoint->options.protocols);
  if (handshake.status != 101) {
    if (handshake.status == 426) res.Set("Sec-WebSocket-Version", "13");
    throw HttpError(handshake.status, std::string(handshake.error));
  }
  std::optional<ws::Deflate> deflate =
      ws::NegotiateDeflate(req.headers(), endpoint->options.compression);
  // Made before the 101: `upgrade` may refuse by throwing.
  std::unique_ptr<void, void (*)(void*)> data(endpoint->make_data(req), endpoint->destroy_data);
  std::string fields = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  fields.append(handshake.accept).append("\r\n");
  if (!handshake.protocol.empty()) {
    fields.append("Sec-WebSocket-Protocol: ").append(handshake.protocol).append("\r\n");
  }
  if (deflate.has_value()) {
    fields.append("Sec-WebSocket-Extensions: ").append(deflate->response).append("\r\n");
  }
  ResponseCore& core = *ResponseWriter::Core(res);
  WsLoop& loop = core.stream_->WebSockets();
  Connection* conn = core.stream_->SwitchProtocols(core, fields);
  conn->HandTo(std::make_unique<WsSession>(loop, endpoint, data.release(), std::move(deflate),
                                           handshake.protocol, *conn));
}

}  // namespace

WsSendStatus WebSocket::Send(std::string_view message, WsOpcode opcode) const {
  WsSession* s = Live(link_);
  return s != nullptr ? s->Send(message, opcode) : WsSendStatus::kClosed;
}

void WebSocket::Close(uint16_t code, std::string_view reason) const {
  if (WsSession* s = Live(link_)) s->Close(code, reason);
}

void WebSocket::End() const {
  if (WsSession* s = Live(link_)) s->End();
}

bool WebSocket::Subscribe(std::string_view topic) const {
  WsSession* s = Live(link_);
  return s != nullptr && s->Subscribe(topic);
}

bool WebSocket::Unsubscribe(std::string_view topic) const {
  WsSession* s = Live(link_);
  return s != nullptr && s->Unsubscribe(topic);
}

bool WebSocket::IsSubscribed(std::string_view topic) const {
  WsSession* s = Live(link_);
  return s != nullptr && s->IsSubscribed(topic);
}

void* WebSocket::DataOf(const char* type) const {
  WsSession* s = Live(link_);
  return s != nullptr ? s->Data(type) : nullptr;
}

bool WebSocket::open() const {
  WsSession* s = Live(link_);
  return s != nullptr && s->open();
}

size_t WebSocket::buffered() const {
  WsSession* s = Live(link_);
  return s != nullptr ? s->buffered() : 0;
}

std::string_view WebSocket::protocol() const {
  WsSession* s = Live(link_);
  return s != nullptr ? s->protocol() : std::string_view();
}

const WorkerRef& WebSocket::worker() const {
  static const WorkerRef kNone;
  return link_ != nullptr ? link_->worker : kNone;
}

App& App::WsRoute(std::string_view pattern, std::shared_ptr<const internal::WsEndpoint> endpoint) {
  return Get(pattern, [endpoint = std::move(endpoint)](const Request& req, Response& res) {
    Upgrade(endpoint, req, res);
  });
}

void App::Publish(std::string_view topic, std::string_view message, WsOpcode opcode) const {
  hub_->Publish(topic, message, opcode);
}

WsLoop& HttpProtocol::WebSockets() {
  if (ws_ == nullptr) {
    ws_ = std::make_unique<WsLoop>(*this, worker_);
    config_->hub->Attach(worker_.id(), worker_.ref(), ws_->topics);
  }
  return *ws_;
}

Connection* HttpSession::SwitchProtocols(ResponseCore& res, std::string_view fields) {
  MessageState& st = *state_;
  if (Draining()) throw HttpError(503, "the server is shutting down");
  if (res.slot_ != nullptr) {
    throw HttpError(400, "a protocol switch must not follow requests whose answers are due");
  }
  if (st.parser.framing() == RequestParser::Framing::kChunked ||
      (st.parser.framing() == RequestParser::Framing::kLength && st.parser.content_length() > 0)) {
    throw HttpError(400, "a protocol switch request has no body");
  }
  std::string& out = *res.out_;
  out.append("HTTP/1.1 101 Switching Protocols\r\n");
  out.append(*res.fields_);
  out.append(fields);
  out.append("\r\n");
  res.status_ = 101;
  res.sent_ = true;
  res.close_ = false;
  // The rest of the read is the new protocol's: the loop keeps it for the session taking over.
  Stop();
  return st.conn;
}

}  // namespace percore::http
