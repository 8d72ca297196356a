// percore/http/response.h — the answer a handler writes.
//
//   app.Post("/items", [](const Request& req, Response& res) {
//     res.Status(201).Type("application/json").Set("Location", "/items/7").Send("{\"id\":7}");
//   });
//
// Send() writes status line, Date, Content-Type, Content-Length, the fields set with Set() and the
// body straight into the connection's output buffer: no allocation for a small response. A
// handler must answer (Send, SendFile) or keep the response to answer later with Defer(); one
// that returns having done neither gets a 500, and a line on stderr says so:
//
//   app.Get("/later", [](const Request& req, Response& res) {
//     req.worker().After(absl::Milliseconds(50),
//                        [later = res.Defer()]() mutable { later.Send("done"); });
//   });
//
// From another thread, the answer goes back through its loop, moved there with the job:
// later.worker().Post([later = std::move(later), result]() mutable { later.Send(result); }).
// Requests pipelined behind a deferred one are handled at once, and their answers wait behind
// it, so answers always go out in request order (up to HttpOptions::max_queued_responses per
// connection: past it, the connection reads nothing more until the first goes).
// Owning-loop-only.
#ifndef PERCORE_HTTP_RESPONSE_H_
#define PERCORE_HTTP_RESPONSE_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "percore/protocol.h"

namespace percore::http {

class FilePump;
struct PendingResponse;
class ResponseCore;

namespace internal {
// What a Response's accessors read, first in its core (ResponseCore derives from it), so that
// they are inline: middleware asks sent() and deferred() at every next().
struct ResponseOutcome {
  int status_ = 200;
  bool sent_ = false;
  bool deferred_ = false;  // handed to a handle by Defer(): this one sends nothing more
};
}  // namespace internal

// The attributes of a cookie set with Response::Cookie (RFC 6265 4.1.2).
struct CookieOptions {
  enum class SameSite { kUnset, kLax, kStrict, kNone };
  std::string_view path = "/";
  std::string_view domain;  // empty: the host that set it only
  int64_t max_age = -1;     // seconds; -1 for a cookie that ends with the browser session
  bool secure = false;      // HTTPS only
  bool http_only = true;    // hidden from scripts (Express's res.cookie defaults to false)
  SameSite same_site = SameSite::kLax;  // kNone needs `secure` (browsers drop it otherwise)
};

// The answer to one request. The handler gets it by reference; to answer after the handler
// returns, it keeps it with Defer(), which hands it a handle of the same type to move where the
// answer will be given (a timer's callback, a coroutine, a job posted back from a pool). The
// handle is move-only: one owner answers. Once its connection is gone or the answer is complete,
// what it is asked to do does nothing (Write() returns false); it never points at freed memory.
// If the connection goes before the answer is complete (the client left, a timeout, the loop
// closing it; for a streamed one, before End()), OnAborted's callback runs once. When the loop
// begins to drain, OnClosing's callback runs once. A handle dropped without an answer answers
// 500. Owning-loop-only, except that a handle may be destroyed on any thread (it is then handed
// to its loop to be destroyed there).
class Response {
 public:
  // A handle kept with Defer() moves; moving the handler's own Response defers it as Defer()
  // does. A moved-from Response does nothing.
  Response(Response&& other);
  Response& operator=(Response&& other);
  Response(const Response&) = delete;
  Response& operator=(const Response&) = delete;
  ~Response() {
    if (pending_ != nullptr) Release();
  }

  // Sets the status code (200 by default). Throws std::invalid_argument outside 200..599.
  Response& Status(int code);
  // Adds a header field. Throws std::invalid_argument if either part contains CR, LF or NUL, if
  // the name is empty, or for the fields the server writes itself (Date, Content-Length,
  // Transfer-Encoding, Connection other than "close"). "Connection: close" closes the
  // connection after this response; "Content-Type" is Type().
  Response& Set(std::string_view name, std::string_view value);
  // Sets Content-Type (default "text/plain; charset=utf-8" when the body is not empty).
  Response& Type(std::string_view content_type);
  // Adds `field` to Vary (one Vary line, fields not repeated): the answer depends on it.
  Response& Vary(std::string_view field);
  // Adds a Set-Cookie field. Throws std::invalid_argument for a name that is not a token, a
  // value outside RFC 6265's cookie-octets, a path or domain with ';' or controls, or
  // SameSite=None without Secure.
  Response& Cookie(std::string_view name, std::string_view value,
                   const CookieOptions& options = {});
  // Asks the client to drop the cookie (empty value, Max-Age=0): `options`' path and domain
  // must be those it was set with.
  Response& ClearCookie(std::string_view name, const CookieOptions& options = {});
  // `fn(status)` runs once the answer is complete: written to the connection, or, for a
  // deferred one, when it is sent (0 if the connection went first). For logging and timing
  // in middleware; exceptions it throws are ignored.
  Response& OnFinish(absl::AnyInvocable<void(int status)> fn);
  // Answers with a redirect to `location` (302 Found by default; 301, 303, 307 and 308 too).
  // Throws std::invalid_argument for another status or a location with controls.
  void Redirect(std::string_view location, int status = 302);
  // Answers with `value` serialised, as application/json (include <nlohmann/json.hpp>).
  void Json(const nlohmann::json& value);
  // Writes the whole response with `body`. Only the first call counts. For HEAD requests the body
  // is left out and Content-Length still gives its length. A 2xx answer to GET or HEAD with an
  // ETag or Last-Modified set is a 304 or a 412 instead when the request's preconditions say so
  // (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since; RFC 9110 13.2.2); other
  // methods must check them before they act.
  void Send(std::string_view body);
  // Writes the response with `length` bytes of the file `fd` from `offset` as its body
  // (Content-Length), sent without a copy through user space (Connection::SendFile); with
  // Compress(), gzipped (see Compress: a big file is chunked, an answer that goes on after the
  // handler returns, counted and logged when it ends, as a deferred one is). The
  // response owns `fd` from here on, and closes it once sent (at once for HEAD, or after the
  // first Send). The file must hold the range: if it turns out shorter, the connection fails.
  // Preconditions as for Send().
  void SendFile(int fd, uint64_t offset, uint64_t length);
  // Whether the answer was written (Send, SendFile, Redirect, Json; for a streamed one, the
  // first Write()).
  bool sent() const { return core_ != nullptr && outcome().sent_; }
  // Whether the answer comes later: this is a handle kept with Defer(), or the handler's
  // Response that Defer() was called on.
  bool deferred() const { return pending_ != nullptr || (core_ != nullptr && outcome().deferred_); }
  // The status code (0 once moved from).
  int status() const { return core_ != nullptr ? outcome().status_ : 0; }
  // Keeps the answer past the handler's return: the returned handle gives it (the fields set
  // so far go with it), and this Response sends nothing more. The Request's views are not
  // kept: copy what the answer needs. Throws std::logic_error after Send() or a first
  // Defer(), and on a handle.
  Response Defer();

  // What follows is for a handle kept with Defer(): on the handler's Response, each throws
  // std::logic_error. On a moved-from one, each does nothing (worker() is an empty WorkerRef).

  // Declares the length of a body streamed with Write(): Content-Length instead of chunked.
  // Before the first Write() only.
  Response& Length(uint64_t bytes);
  // Streams the body piece by piece: the first call sends the head (Transfer-Encoding: chunked,
  // or the Length() given; to HTTP/1.0, the body ends with the connection). Returns false once
  // more than HttpOptions::stream_buffer_bytes (64 KiB) waits to be sent: `chunk` is kept, but
  // the producer should wait for OnWritable() before writing more, so a slow reader costs at
  // most that much memory. Returns false, and does nothing, once aborted.
  bool Write(std::string_view chunk);
  // Ends a body streamed with Write(): the answer is complete. A declared Length() that was not
  // met closes the connection instead (the client sees a short body).
  void End();
  // `fn(res)` runs once when what waits has been sent after Write() returned false; at once if
  // nothing waits. Dropped if the connection goes first.
  //
  // OnWritable, OnBody and OnClosing hand their callback the answer (`res`, another handle to
  // it, valid during the call), and keep it until it is complete or the connection goes: the
  // handle that registered them may be dropped.
  void OnWritable(absl::AnyInvocable<void(Response& res)> fn);
  // For a route with RouteOptions::stream_body: `fn(res, chunk, last)` gets the request body as
  // it arrives, de-chunked, then `last` true once with an empty chunk (a view valid during the
  // call only). What arrived before the call is handed over at once. The first call asks an
  // "Expect: 100-continue" client for its body. Answering first (a 401, a 413) is allowed: the
  // rest of the body is then discarded (see RouteOptions). A body beyond the route's limit
  // fails the request with 413 (OnAborted runs). On a route without stream_body the body was
  // in Request::body(): `fn(res, "", true)` runs at once.
  void OnBody(absl::AnyInvocable<void(Response& res, std::string_view chunk, bool last)> fn);
  // Stops handing over the body (it waits in the kernel, and TCP holds the client back) until
  // ResumeBody(); no body timeout runs meanwhile. For a reader whose own sink is slow.
  void PauseBody();
  void ResumeBody();
  // `fn` runs once if the connection goes before the answer is complete, a streamed one
  // included (the client left mid-stream: a Server-Sent-Events hub drops the subscriber there);
  // at once if it already went. Registered once the answer is complete, it never runs.
  void OnAborted(absl::AnyInvocable<void()> fn);
  // Whether the connection went before the answer was complete.
  bool aborted() const;
  // `fn(res)` runs once when the loop of this answer begins to drain: Engine::Drain(), SIGTERM,
  // or a rolling restart (SIGHUP) replacing that loop. A long-lived answer (an event stream, a long
  // poll) should then end soon: End() a chunked stream after a last piece, Send() a long poll's
  // answer. Otherwise the drain waits for it, up to EngineOptions::shutdown_timeout. At once if
  // the drain has begun; never once the answer is complete or aborted. An exception it throws
  // is ignored (the drain goes on).
  void OnClosing(absl::AnyInvocable<void(Response& res)> fn);
  // The loop the answer belongs to, for work done on other threads to come back: a copy, so
  // that the handle may be moved into the job posted with it. Thread-safe.
  WorkerRef worker() const;

 private:
  friend class ResponseWriter;
  friend class FilePump;  // fails the connection of a file that turns out short
  explicit Response(ResponseCore* core);
  explicit Response(std::shared_ptr<PendingResponse> pending);
  const internal::ResponseOutcome& outcome() const { return *core_; }
  // The core itself (http/src/response_core.h defines these two).
  ResponseCore* core() const;
  // Send() on a handle: through its stream.
  void SendLater(std::string_view body);
  // Drops the handle's state on its loop: one dropped on another thread is handed there.
  void Release();
  // A handle's state, null once moved from; throws std::logic_error on the handler's Response.
  PendingResponse* Later(const char* what) const;

  internal::ResponseOutcome* core_;  // a ResponseCore: status and fields; null once moved from
  std::shared_ptr<PendingResponse> pending_;  // a handle's: the answer it gives
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_RESPONSE_H_
