// The HTTP/1.1 session: the parser driven over each read, pipelining, timeouts and dispatch to
// the router.
//
// Parsing keeps views, not copies. Every span of a message's header section is recorded as an
// offset from the message's first byte (`base`), so the views stay valid wherever those bytes
// live: in the receive buffer while the message is complete in it (the common case: no copy at
// all), or in `held` once the message spans reads. Only then are bytes copied: the header
// section into `held`, the body into `body`.
//
// All parse state of a message is one MessageState, owned by its connection's session from the
// first byte of a read until the read is done, and for as long as a message spans reads. The
// loop keeps finished ones in a pool for reuse, so an idle connection holds none and the
// request path allocates nothing; a state that failed or was cut off is reset when given back, so
// nothing of one connection's message can reach another's.
#ifndef PERCORE_HTTP_SRC_SESSION_H_
#define PERCORE_HTTP_SRC_SESSION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "client_address.h"
#include "date_cache.h"
#include "gzip.h"
#include "http_stream.h"
#include "parser.h"
#include "pending.h"
#include "percore/buffers.h"
#include "percore/http/options.h"
#include "percore/http/request.h"
#include "percore/http/router.h"
#include "percore/protocol.h"
#include "request_builder.h"
#include "ws_session.h"

namespace percore::http {

// The immutable configuration every loop of one App shares.
struct AppConfig {
  Router router;
  HttpOptions options;
  std::shared_ptr<const ErrorHandler> on_error;  // App::OnError; null for the default answers
  std::vector<Cidr> trusted;                     // HttpOptions::trust_proxy, parsed
  std::shared_ptr<internal::WsHub> hub;          // App::Publish's, shared with the App
};

// The state of one message being parsed, and of the read being parsed.
struct MessageState {
  RequestParser parser;
  std::string held;  // the header section of a message that spans reads
  std::string body;  // the body when it is not one piece next to the header section
  Span body_view;
  // The read being parsed: set at each OnData.
  Connection* conn = nullptr;
  const char* base = nullptr;  // the message's first byte
  uint64_t body_bytes = 0;
  uint64_t body_limit = 0;  // this message's: its route's, or HttpOptions::max_body_bytes
  uint64_t discarded = 0;   // body bytes read after the answer (RouteOptions::stream_body)
  bool in_message = false;
  bool headers_done = false;
  bool base_in_held = false;  // base points into held (else into the receive buffer)
  bool body_copied = false;
  bool expect_continue = false;  // "100 Continue" is still to be sent
  // RouteOptions::stream_body: the handler ran at the end of the header section; the body goes
  // to its reader (Response::OnBody) or, once the answer is given, is discarded.
  bool body_streamed = false;
  bool body_end_due = false;  // the body ended while its reader was absent or paused
  bool peer_closes = false;   // the last response closes because the client asked it to
  bool stopped = false;       // paused after a response (the output is full, or its answer comes
                              // later): the loop holds the rest of the read
  bool parsing = false;       // within OnData
  // The deferred answer of the message being parsed, until the message and its body are read
  // (a streamed body goes to its reader), or until the answer is complete.
  PendingResponse* pending = nullptr;
  // The answers not yet written, in request order (see Slot): the state stays with the session
  // while there are any. A deque, so that a slot stays where it is while others come and go.
  std::deque<Slot> slots;
  Slot* slot = nullptr;      // the message's, once it has one (until it leaves the queue)
  Slot* handling = nullptr;  // the slot whose handler runs: it stays until the handler returns
  // The route, found at the end of the header section (a router with body options) and kept
  // for Respond(): for a streamed body, which it answers at once, or when the route has no
  // parameters (theirs point into the target, which a later read may have moved to `held`).
  Router::Result route;
  bool routed = false;

  // Clears the per-message fields, keeping the buffers' capacity.
  void Reset();
};

inline std::string_view View(const char* base, Span span) {
  return std::string_view(base + span.offset, span.length);
}

class HttpSession;

// The per-loop half: the Date line, the request log, buffers lent to one call at a time.
class HttpProtocol final : public percore::Protocol {
 public:
  HttpProtocol(std::shared_ptr<const AppConfig> config, Worker& worker);
  ~HttpProtocol() override;
  std::unique_ptr<percore::Session> NewSession(Connection& conn) override;
  void OnTick() override;
  // A handler or a WebSocket callback failed (threw, or returned without answering): one line
  // on stderr, at most one a second.
  void LogFailure(std::string_view method, std::string_view path, const std::string& what);
  // This loop's WebSocket state, made at the first upgrade.
  WsLoop& WebSockets();
  // What every kind of session does with a request once its Request and Response are made:
  // the middleware chain and the route, or the error answers, whatever the handler throws.
  void Dispatch(const Request& req, Response& res, const ResponseCore& core,
                const Router::Result& route);
  // Answers `error` through the error hook, or with the default answer.
  void SendError(const Request& req, Response& res, const Error& error);
  // Counts a response by status class in the loop's stats, and logs it when asked to.
  void CountResponse(int status);
  void LogResponse(std::string_view method, std::string_view path, int status);
  // HttpStream::Gzip and HttpStream::Client, for every kind of session.
  std::string* Gzip(std::string_view body, int level);
  PeerAddress Client(const Request& req, PeerAddress from) const;

 private:
  friend class HttpSession;
  friend class H2Session;
  friend class H2Stream;
  void DispatchInline(const Request& req, Response& res, const ResponseCore& core,
                      const Router::Result& route);
  // The end of the middleware chain: the route's handler, or 404, 405 or OPTIONS.
  static void RunRoute(void* dispatch);
  // An exception escaped the chain: answered through the error hook if nothing was yet.
  void HandleException(const Request& req, Response& res, std::exception_ptr e);
  void FlushLog();
  // A MessageState between messages, from the pool when it has one.
  std::unique_ptr<MessageState> TakeState();
  // Takes `state` (leaving it null) into the pool.
  void GiveBack(std::unique_ptr<MessageState>& state);

  std::shared_ptr<const AppConfig> config_;
  Worker& worker_;
  // The timeouts in milliseconds, converted once: deadlines are set twice per request.
  const int64_t header_timeout_ms_;
  const int64_t body_timeout_ms_;
  const int64_t idle_timeout_ms_;
  const ParserLimits limits_;
  DateCache date_;
  std::vector<std::unique_ptr<MessageState>> state_pool_;
  // Filled and used within one Respond() call.
  std::vector<HeaderField> headers_;  // views handed to the handler
  std::vector<RouteParam> params_;
  std::string fields_;  // Response::Set() fields of the response being written
  FinishHooks finish_;  // Response::OnFinish() of the request being handled
  // A deferred answer is kept alive until the handler's chain returns: its Response may
  // still be used (OnFinish after next()).
  std::shared_ptr<PendingResponse> deferring_;
  std::unique_ptr<class Gzip> gzip_;  // made on first use
  std::unique_ptr<WsLoop> ws_;        // made on first use
  std::string gzipped_;
  std::string allow_;
  std::string log_;
  int64_t failure_logged_ms_ = 0;
  uint64_t failures_unlogged_ = 0;
};

// The per-connection half.
class HttpSession final : public percore::Session, public HttpStream {
 public:
  HttpSession(HttpProtocol& protocol, Connection& conn);
  size_t OnData(Connection& conn, std::string_view bytes) override;
  void OnDeadline(Connection& conn) override;
  void OnDrain(Connection& conn) override;
  // Can be handed to another loop's fresh session: between messages.
  bool Idle() const override { return !leading_cr_ && BetweenMessages(); }
  ~HttpSession() override;

  // HttpStream: see http_stream.h.
  std::shared_ptr<PendingResponse> Defer(ResponseCore& res) override;
  void SendPending(PendingResponse& pending, std::string_view body) override;
  void SendPendingFile(PendingResponse& pending, int fd, uint64_t offset, uint64_t length) override;
  bool WritePart(PendingResponse& pending, std::string_view chunk) override;
  void EndParts(PendingResponse& pending) override;
  void WhenWritable(PendingResponse& pending, absl::AnyInvocable<void(Response&)> fn) override;
  void ReadBody(PendingResponse& pending,
                absl::AnyInvocable<void(Response&, std::string_view, bool)> fn) override;
  void ContinueBody(PendingResponse& pending) override;
  void Fail(PendingResponse& pending) override;
  void Dropped(PendingResponse& pending) override;
  bool Draining() const override { return protocol_.worker_.draining(); }
  bool UnreadBodyCloses() const override;
  std::string* Gzip(std::string_view body, int level) override {
    return protocol_.Gzip(body, level);
  }
  PeerAddress Client(const Request& req, PeerAddress from) const override {
    return protocol_.Client(req, from);
  }
  Connection* SwitchProtocols(ResponseCore& res, std::string_view fields) override;
  WsLoop& WebSockets() override { return protocol_.WebSockets(); }
  // Appends a piece of a streamed body where the answer writes, chunked if it is.
  void AppendPart(PendingResponse& pending, std::string_view piece);
  // Whether a streamed answer may write more now (HttpOptions::stream_buffer_bytes): what its
  // slot holds, or, at the head, what waits in the output.
  bool StreamHasRoom(const PendingResponse& pending) const;
  void OnWritable(Connection& conn) override;
  // The client's FIN: see pending_response.cc.
  void OnPeerClosed(Connection& conn) override;

 private:
  // A streamed body's piece: to its reader, kept for it, or discarded. A status to reject the
  // request with, or 0.
  int TakeBody(const char* at, size_t length);
  // Calls the reader; false if it threw (the request then fails with a 500).
  bool DeliverBody(PendingResponse& pending, std::string_view chunk, bool last);
  // Stops parsing here: the loop keeps the rest of the read, and no deadline runs until the
  // session goes on.
  void Stop();
  // Ends the request in progress with `status` (unless its answer has begun) and closes.
  void Reject(Connection& conn, int status);
  // The deferred answer of the message being parsed will never be given: OnAborted's callback
  // runs. Its slot stays, done, for what the connection says last.
  void AbortPending();
  // No answer in the queue will be given: OnFinish(0) and OnAborted run; files close.
  void DropSlots();
  // Where a deferred answer writes: the connection's output at the head of the queue, else its
  // slot.
  std::string& OutputOf(PendingResponse& pending);
  bool AtHead(const Slot& slot) const { return &state_->slots.front() == &slot; }
  // Writes out the complete answers at the head of the queue, up to the first one still to
  // come, which becomes the head; closes after one that closes. Then the loop sends them and
  // hands over the input it kept.
  void Advance(Connection& conn);
  // Whether requests behind the queued answers wait unread: the queue is at its bound
  // (HttpOptions::max_queued_responses, max_queued_response_bytes), its last answer closes, or
  // the loop drains.
  bool QueueBlocks() const { return !state_->slots.empty() && QueueFull(); }
  bool QueueFull() const;
  // The slot of the message being parsed: null while the queue is empty (its answers are
  // written straight to the output), else its own, at the back (made on first use).
  static Slot* NextSlot(MessageState& st) {
    if (st.slot == nullptr && !st.slots.empty()) st.slot = &st.slots.emplace_back();
    return st.slot;
  }
  // An error percore finds itself once the request line is known (a header field has begun):
  // answered through the error hook (App::OnError), as a handler's error is; the connection
  // closes.
  // Written to `slot` when answers ahead of it are due, else to the output.
  void SendOwnError(Connection& conn, int status, Slot* slot);
  // The parse of a read, from *at towards `end`, moving *at: the header section, then the body
  // and the message's end. Each returns a status to reject the request with, or 0.
  int ReadHead(const char** at, const char* end);
  int OnHeadersComplete(const char** at, const char* end);
  int ParseBody(const char** at, const char* end);
  int OnBody(std::string_view data);
  int OnMessageComplete();
  // The request's fields as the handler sees them, in the loop's scratch list.
  void FillHeaders(const MessageState& st);
  void Respond(MessageState& st, const char* base);
  void KeepUnfinished(const char* end);
  // The read began with HTTP/2's preface: hands the connection to an HTTP/2 session, which gets
  // the preface's bytes. False where HTTP/2 is not to be spoken.
  bool TakeOverHttp2(Connection& conn);
  void SetDeadline(int64_t timeout_ms);
  // Around a deferred answer: where it is written, and what follows once it is complete.
  void BeginPending(PendingResponse& pending);
  void FinishPending(PendingResponse& pending, bool close);
  // No request begun and no answer pending.
  bool BetweenMessages() const {
    return state_ == nullptr || (!InMessage() && state_->slots.empty());
  }
  bool InMessage() const { return state_ != nullptr && state_->in_message; }
  PendingResponse* Pending() const { return state_ != nullptr ? state_->pending : nullptr; }

  // While draining, how long an idle keep-alive connection stays open for a request already on
  // its way (see OnDrain).
  static constexpr int64_t kDrainIdleCloseMs = 250;

  HttpProtocol& protocol_;
  bool leading_cr_ = false;  // a CR before a request (or between two): its LF is due
  bool answered_ = false;    // a request was handled: HTTP/2's preface can no longer come
  // While a read is parsed, a message spans reads, or an answer is deferred.
  std::unique_ptr<MessageState> state_;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_SESSION_H_
