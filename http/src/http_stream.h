// What a request and its answer need of the connection they came on, and nothing else of it: the
// HTTP/1.1 session (HttpSession, one message at a time) implements it, and an HTTP/2 stream is
// to. Request, Response and the answer kept for later (PendingResponse) call only this.
#ifndef PERCORE_HTTP_SRC_HTTP_STREAM_H_
#define PERCORE_HTTP_SRC_HTTP_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "percore/http/response.h"
#include "percore/protocol.h"

namespace percore::http {

class Request;
class ResponseCore;
class WsLoop;
struct PendingResponse;

class HttpStream {
 public:
  // Response::Defer(): the answer of the request being handled comes later, through the
  // returned state.
  virtual std::shared_ptr<PendingResponse> Defer(ResponseCore& res) = 0;
  // The deferred answer, whole: written, counted and logged; the requests after it go on.
  virtual void SendPending(PendingResponse& pending, std::string_view body) = 0;
  virtual void SendPendingFile(PendingResponse& pending, int fd, uint64_t offset,
                               uint64_t length) = 0;
  // A streamed one (Response::Write, End): false once the stream is full.
  virtual bool WritePart(PendingResponse& pending, std::string_view chunk) = 0;
  virtual void EndParts(PendingResponse& pending) = 0;
  // Response::OnWritable: `fn` runs once the stream has room.
  virtual void WhenWritable(PendingResponse& pending, absl::AnyInvocable<void(Response&)> fn) = 0;
  // Response::OnBody and ResumeBody: hands the body read so far to the reader, then reads on.
  virtual void ReadBody(PendingResponse& pending,
                        absl::AnyInvocable<void(Response&, std::string_view, bool)> fn) = 0;
  virtual void ContinueBody(PendingResponse& pending) = 0;
  // The answer cannot be completed (a file shorter than its range, zlib failing mid-body): the
  // client was promised more than it will get, so the connection fails.
  virtual void Fail(PendingResponse& pending) = 0;
  // Every handle was dropped without an answer (a handler that threw after Defer(), say): a
  // 500, or, once a streamed head is out, a cut-off body and a close.
  virtual void Dropped(PendingResponse& pending) = 0;
  // Whether the loop is draining (Response::OnClosing).
  virtual bool Draining() const = 0;
  // Whether an answer written now must close the connection: a streamed body is unread, and
  // more of it is to come than HttpOptions::max_discard_bytes (its Content-Length says so), or
  // its client waits for "100 Continue".
  virtual bool UnreadBodyCloses() const = 0;
  // `body` gzipped at `level` into a loop-owned buffer (valid until the next call), or null.
  virtual std::string* Gzip(std::string_view body, int level) = 0;
  // Request::client(), from the connection's client (Connection::client()).
  virtual PeerAddress Client(const Request& req, PeerAddress from) const = 0;
  // Answers the request being handled with 101 (its fields, then `fields`) and returns the
  // connection, for the caller to hand to the protocol it switches to; nothing after the request
  // is read as HTTP. Throws HttpError, having written nothing, where it cannot: 503 while
  // draining, 400 behind answers still due or with a body.
  virtual Connection* SwitchProtocols(ResponseCore& res, std::string_view fields) = 0;
  // The loop's WebSocket state.
  virtual WsLoop& WebSockets() = 0;

 protected:
  ~HttpStream() = default;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_HTTP_STREAM_H_
