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
//     percore::http::DeferredResponse later = res.Defer();
//     req.worker().After(absl::Milliseconds(50), [later]() mutable { later.Send("done"); });
//   });
//
// From another thread, the answer goes through the loop: later.worker().Post([later]() mutable {
// later.Send(result); }). Requests pipelined behind a deferred one are handled at once, and their
// answers wait behind it, so answers always go out in request order (up to
// HttpOptions::max_queued_responses per connection: past it, the connection reads nothing more
// until the first goes). Owning-loop-only.
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

class DeferredResponse;
class HttpSession;
class Request;
struct PendingResponse;
struct Slot;
struct CompressOptions;
struct FinishHooks;
class GzipFileStream;
enum class Precondition;

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

// The response to one request.
class Response {
 public:
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
  // Whether the answer was written (Send, SendFile, Redirect, Json).
  bool sent() const { return sent_; }
  // Whether Defer() was called: the answer comes later.
  bool deferred() const { return deferred_; }
  // The status code.
  int status() const { return status_; }
  // Keeps the response past the handler's return, to be answered later through the returned
  // handle (the fields set so far go with it); this Response is done. The Request's views are
  // not kept: copy what the answer needs. Throws std::logic_error after Send() or a first
  // Defer().
  DeferredResponse Defer();

 private:
  friend class ResponseWriter;
  friend class HttpSession;
  friend struct PendingResponse;
  friend class Compressor;
  friend class DeferredResponse;  // a deferred file gzipped as its client reads it
  Response(std::string* out, std::string* fields, std::string_view date_line, bool head, bool close,
           bool http10, bool http10_keep_alive)
      : out_(out),
        fields_(fields),
        date_line_(date_line),
        head_(head),
        close_(close),
        http10_(http10),
        http10_keep_alive_(http10_keep_alive) {}
  // How a body's end is known.
  enum class Framing { kLength, kChunked, kClose };
  // Writes the status line and the header section; whether a body may follow (not for HEAD,
  // 204, 304).
  bool AppendHead(Framing framing, uint64_t length, bool empty_body);
  // The field line `name` starts at in fields_, or npos.
  size_t FindField(std::string_view name) const;
  // With Compress(): sets what a cache needs for a body of `length` bytes (Vary; a weak ETag
  // when gzipped) and says whether to gzip it. For a 304 too, which carries the validators the
  // 200 would have (RFC 9110 15.4.5).
  bool Negotiate(uint64_t length);
  // Writes the response with `body` gzipped (as it is, if gzip would not make it smaller).
  void SendCompressed(std::string_view body);
  // With Compress(): whether a file's range of `length` bytes is gzipped piece by piece as the
  // client reads it (GzipFileStream) rather than whole; sets what Negotiate() sets, and
  // Content-Encoding, when it is.
  bool StreamsGzip(uint64_t length);
  // With Compress(): whether a body of `length` bytes (UINT64_MAX: not known), streamed, is
  // deflated as it is written; sets what Negotiate() sets, and Content-Encoding, when it is.
  bool GzipsStream(uint64_t length);
  // RFC 9110 13.2.2 for a 2xx answer to GET or HEAD with validators set: answers 304 or 412
  // and returns true, or returns false for the answer to go on. `length` is the body's the
  // 200 would have, `file` whether it is a file's (Compress() has a bound for those). The
  // request's fields are looked at once: a later call returns false.
  bool AnswerPreconditions(uint64_t length, bool file);
  // What AnswerPreconditions() would decide, the request's fields left for it: kPass where
  // they do not apply.
  Precondition CheckPreconditions() const;
  // Defer(): a copy of the request's conditional fields, which end with the handler.
  void KeepConditions();
  struct KeptConditions;

  std::string* out_;
  std::string* fields_;  // extra header fields, a loop-owned scratch buffer
  std::string_view date_line_;
  size_t type_offset_ = 0;  // the Content-Type line within fields_
  size_t type_length_ = 0;
  int status_ = 200;
  bool head_;
  bool close_;
  bool http10_;
  bool http10_keep_alive_;
  bool sent_ = false;
  bool deferred_ = false;
  bool body_unread_ = false;  // the request's body is still arriving (RouteOptions::stream_body)
  bool validators_ = false;   // ETag or Last-Modified was set
  // The request's conditional fields: its own until Defer(), a copy for a deferred answer.
  const Request* request_ = nullptr;
  std::shared_ptr<const KeptConditions> kept_conditions_;
  Connection* conn_ = nullptr;                 // for SendFile()
  Slot* slot_ = nullptr;  // where SendFile() queues a file while an answer ahead is due
  HttpSession* session_ = nullptr;             // for Defer()
  FinishHooks* finish_ = nullptr;              // OnFinish()
  const CompressOptions* compress_ = nullptr;  // set by the Compress() middleware
  bool gzip_accepted_ = false;                 // the request's Accept-Encoding allows gzip
};

// An answer that comes later (Response::Defer). Copies share it: the first Send() of any copy
// answers. If the connection goes before the answer is complete (the client left, a timeout,
// the loop closing it; for a streamed one, before End()), OnAborted's callback runs once, and
// Send() and Write() do nothing. When the loop begins to drain, OnClosing's callback runs once.
// If every copy is dropped without an answer, the request gets a 500. Owning-loop-only, except that a copy may be destroyed on any
// thread (the last one is then handed to the loop to be destroyed there).
class DeferredResponse {
 public:
  DeferredResponse(const DeferredResponse&) = default;
  DeferredResponse(DeferredResponse&&) = default;
  DeferredResponse& operator=(const DeferredResponse&) = default;
  DeferredResponse& operator=(DeferredResponse&&) = default;
  ~DeferredResponse();

  // As Response's.
  DeferredResponse& Status(int code);
  DeferredResponse& Set(std::string_view name, std::string_view value);
  DeferredResponse& Type(std::string_view content_type);
  DeferredResponse& Vary(std::string_view field);
  DeferredResponse& Cookie(std::string_view name, std::string_view value,
                           const CookieOptions& options = {});
  DeferredResponse& OnFinish(absl::AnyInvocable<void(int status)> fn);
  void Send(std::string_view body);
  void Json(const nlohmann::json& value);
  void SendFile(int fd, uint64_t offset, uint64_t length);
  // Declares the length of a body streamed with Write(): Content-Length instead of chunked.
  // Before the first Write() only.
  DeferredResponse& Length(uint64_t bytes);
  // Streams the body piece by piece: the first call sends the head (Transfer-Encoding: chunked,
  // or the Length() given; to HTTP/1.0, the body ends with the connection). Returns false once
  // more than HttpOptions::stream_buffer_bytes (64 KiB) waits to be sent: `chunk` is kept, but
  // the producer should wait for OnWritable() before writing more, so a slow reader costs at
  // most that much memory. Returns false, and does nothing, once aborted.
  bool Write(std::string_view chunk);
  // Ends a body streamed with Write(): the answer is complete. A declared Length() that was not
  // met closes the connection instead (the client sees a short body).
  void End();
  // `fn` runs once when what waits has been sent after Write() returned false; at once if
  // nothing waits. Dropped if the connection goes first.
  void OnWritable(absl::AnyInvocable<void()> fn);
  // For a route with RouteOptions::stream_body: `fn(chunk, last)` gets the request body as it
  // arrives, de-chunked, then `last` true once with an empty chunk (a view valid during the
  // call only). What arrived before the call is handed over at once. The first call asks an
  // "Expect: 100-continue" client for its body. Answering first (a 401, a 413) is allowed: the
  // rest of the body is then discarded (see RouteOptions). A body beyond the route's limit
  // fails the request with 413 (OnAborted runs). On a route without stream_body the body was
  // in Request::body(): `fn("", true)` runs at once.
  void OnBody(absl::AnyInvocable<void(std::string_view chunk, bool last)> fn);
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
  // `fn` runs once when the loop of this answer begins to drain: Engine::Drain(), SIGTERM, or a
  // rolling restart (SIGHUP) replacing that loop. A long-lived answer (an event stream, a long
  // poll) should then end soon: End() a chunked stream after a last piece, Send() a long poll's
  // answer. Otherwise the drain waits for it, up to EngineOptions::shutdown_timeout. At once if
  // the drain has begun; never once the answer is complete or aborted. An exception it throws
  // is ignored (the drain goes on).
  void OnClosing(absl::AnyInvocable<void()> fn);
  // Whether this answer was sent.
  bool sent() const;
  // The loop the answer belongs to, for work done on other threads to come back. Thread-safe.
  const WorkerRef& worker() const;

 private:
  friend class Response;
  friend class GzipFileStream;  // fails the connection of a file that turns out short
  explicit DeferredResponse(std::shared_ptr<PendingResponse> state) : state_(std::move(state)) {}
  std::shared_ptr<PendingResponse> state_;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_RESPONSE_H_
