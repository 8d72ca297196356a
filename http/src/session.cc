#include "session.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string_view>

#include "ascii.h"
#include "codec.h"
#include "errors.h"
#include "h2_session.h"
#include "percore/stats.h"
#include "response_writer.h"

namespace percore::http {

using namespace std::string_view_literals;
using Result = RequestParser::Result;

namespace {

// States kept in a loop's pool (each keeps its buffers small: percore/buffers.h).
constexpr size_t kMaxPooledStates = 256;

}  // namespace

void MessageState::Reset() {
  parser.Reset();
  body.clear();
  body_view = Span{};
  body_bytes = 0;
  body_limit = 0;
  discarded = 0;
  in_message = headers_done = base_in_held = body_copied = false;
  body_streamed = body_end_due = expect_continue = routed = false;
  pending = nullptr;
  slot = handling = nullptr;
}

HttpProtocol::HttpProtocol(std::shared_ptr<const AppConfig> config, Worker& worker)
    : config_(std::move(config)),
      worker_(worker),
      header_timeout_ms_(absl::ToInt64Milliseconds(config_->options.header_timeout)),
      body_timeout_ms_(absl::ToInt64Milliseconds(config_->options.body_timeout)),
      idle_timeout_ms_(absl::ToInt64Milliseconds(config_->options.idle_timeout)),
      limits_{.max_header_bytes = config_->options.max_header_bytes,
              .max_target_bytes = config_->options.max_target_bytes,
              .max_fields = config_->options.max_header_fields} {
  headers_.reserve(32);
  fields_.reserve(256);
}

HttpProtocol::~HttpProtocol() { FlushLog(); }

std::unique_ptr<percore::Session> HttpProtocol::NewSession(Connection& conn) {
  // ALPN chose HTTP/2 during the handshake (App::Listen offers it first).
  if (config_->options.http2.enabled) {
    if (std::optional<TlsInfo> tls = conn.tls(); tls.has_value() && tls->alpn == "h2") {
      return std::make_unique<H2Session>(*this, conn, std::string());
    }
  }
  return std::make_unique<HttpSession>(*this, conn);
}

void HttpProtocol::OnTick() {
  date_.Update(time(nullptr));
  FlushLog();
}

void HttpProtocol::LogFailure(std::string_view method, std::string_view path,
                              const std::string& what) {
  // At most a line a second per loop: a handler that fails on every request must not turn
  // the loop into a writer of stderr.
  const int64_t now = worker_.now_ms();
  if (failure_logged_ms_ != 0 && now - failure_logged_ms_ < 1000) {
    ++failures_unlogged_;
    return;
  }
  std::string line = "percore: worker " + std::to_string(worker_.id()) + ": " +
                     std::string(method) + " " + std::string(path) + ": " + what;
  if (failures_unlogged_ > 0) {
    line += " (and " + std::to_string(failures_unlogged_) + " more failures since the last line)";
  }
  line += "\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
  failure_logged_ms_ = now;
  failures_unlogged_ = 0;
}

void HttpProtocol::FlushLog() {
  size_t done = 0;
  while (done < log_.size()) {
    ssize_t n = write(STDOUT_FILENO, log_.data() + done, log_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // stdout is gone or full: drop the lines rather than stall the loop
    done += static_cast<size_t>(n);
  }
  log_.clear();
}

namespace {

// Out of line: inlined, a MessageState's construction makes TakeState() save and restore more
// registers on every call, where it runs only while the pool is empty.
[[gnu::noinline]] std::unique_ptr<MessageState> NewState() {
  return std::make_unique<MessageState>();
}

}  // namespace

std::unique_ptr<MessageState> HttpProtocol::TakeState() {
  if (state_pool_.empty()) return NewState();
  std::unique_ptr<MessageState> st = std::move(state_pool_.back());
  state_pool_.pop_back();
  st->held.clear();
  return st;
}

void HttpProtocol::GiveBack(std::unique_ptr<MessageState>& state) {
  std::unique_ptr<MessageState> st = std::move(state);
  if (state_pool_.size() >= kMaxPooledStates) return;
  // A state goes back between messages, clean but for the per-message fields that the start of
  // a message resets; one that failed or was cut off mid-message is reset now, so that nothing
  // of it reaches the connection that takes it next.
  if (st->in_message) st->Reset();
  // A large request's buffers are not worth keeping: the pool holds small ones.
  KeepSmall(st->held);
  KeepSmall(st->body);
  state_pool_.push_back(std::move(st));
}

HttpSession::HttpSession(HttpProtocol& protocol, Connection& conn) : protocol_(protocol) {
  // Until the first byte of a request, a connection is idle.
  conn.SetDeadline(conn.worker().now_ms() + protocol.idle_timeout_ms_);
}

void HttpSession::SetDeadline(int64_t timeout_ms) {
  state_->conn->SetDeadline(protocol_.worker_.now_ms() + timeout_ms);
}

size_t HttpSession::OnData(Connection& conn, std::string_view bytes) {
  HttpProtocol& h = protocol_;
  if (state_ != nullptr) {
    // A streamed body waits with the loop while its reader is absent or paused; so do requests
    // behind a queue of answers at its bound.
    const PendingResponse* pending = Pending();
    if (pending != nullptr && (!pending->on_body || pending->body_paused)) return 0;
    if (!state_->in_message && QueueBlocks()) return 0;
  }
  if (state_ == nullptr) state_ = h.TakeState();
  MessageState& st = *state_;
  st.parsing = true;
  st.conn = &conn;
  st.peer_closes = false;
  st.stopped = false;
  if (st.base_in_held) st.base = st.held.data();
  if (st.in_message && st.headers_done) SetDeadline(h.body_timeout_ms_);
  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  int status = 0;
  while (status == 0 && !st.stopped && !conn.closing()) {
    if (!st.in_message) {
      // RFC 9112 2.2: empty lines (CRLF) between requests are skipped, and do not begin one.
      if (p < end && (leading_cr_ || *p == '\r')) {
        if (leading_cr_ && *p != '\n') status = 400;
        leading_cr_ = !leading_cr_;
        ++p;
        continue;
      }
      if (p == end) break;
      // The header deadline is set only if the section spans reads (KeepUnfinished): one that
      // is whole in this read needs none.
      st.Reset();
      st.in_message = true;
      st.base = p;
    }
    if (!st.headers_done) {
      status = ReadHead(&p, end);
    } else {
      status = ParseBody(&p, end);
    }
    if (!st.in_message && st.peer_closes && conn.closing() && p == end) {
      // The client said this request is its last ("Connection: close", or HTTP/1.0 without
      // keep-alive) and sent nothing after it: no lingering for its FIN, as nginx does.
      conn.Close(/*linger=*/false);
    }
    if (st.in_message && p == end) break;
  }
  size_t consumed = bytes.size();
  if (status == 505) {
    // The preface's bytes go to the HTTP/2 session: from the message's first byte in this
    // read, or, for a message begun in an earlier read, all of `held` (this read's too).
    const size_t first =
        st.base_in_held ? bytes.size() : static_cast<size_t>(st.base - bytes.data());
    if (TakeOverHttp2(conn)) return first;
  }
  if (status != 0) {
    Reject(conn, status);
  } else if (st.stopped) {
    // The rest waits with the loop until the client has read enough of the answers (no
    // deadline runs against it meanwhile: the loop times the send instead), or until the
    // deferred answer is given.
    consumed = static_cast<size_t>(p - bytes.data());
    if (st.in_message) KeepUnfinished(end);  // a streamed body's reader paused
  } else if (st.in_message && !conn.closing()) {
    KeepUnfinished(end);
  }
  // The state stays with a message that spans reads or an answer to come; otherwise it goes
  // back to the pool. After a response that closes, the rest of the input is not read.
  st.parsing = false;
  if (st.pending == nullptr && st.slots.empty() && (!st.in_message || conn.closing())) {
    h.GiveBack(state_);
  }
  return consumed;
}

bool HttpSession::TakeOverHttp2(Connection& conn) {
  // RFC 9113 3.3: a client that knows the server speaks HTTP/2 begins the connection with its
  // preface, whose first line reads as a request line of version 2.0 (the parser's 505). Not
  // after a request, nor on a TLS port: there ALPN decides.
  MessageState& st = *state_;
  // The parser read the request line whole to find its version: "PRI" and "*" say its length.
  static constexpr std::string_view kPrefaceLine = "PRI * HTTP/2.0\r\n";
  if (View(st.base, st.parser.method()) != "PRI" || View(st.base, st.parser.target()) != "*" ||
      std::string_view(st.base, kPrefaceLine.size()) != kPrefaceLine) {
    return false;
  }
  if (!protocol_.config_->options.http2.enabled || answered_ || conn.tls().has_value()) {
    return false;
  }
  std::string early = st.base_in_held ? std::move(st.held) : std::string();
  st.in_message = false;
  st.parsing = false;
  protocol_.GiveBack(state_);
  conn.HandTo(std::make_unique<H2Session>(protocol_, conn, std::move(early)));
  return true;
}

int HttpSession::ReadHead(const char** at, const char* end) {
  MessageState& st = *state_;
  Result result;
  size_t held_before = 0;
  if (st.base_in_held) {
    // The header section began in an earlier read: it is joined to what is held, so that its
    // spans stay offsets from one buffer.
    held_before = st.held.size();
    st.held.append(*at, static_cast<size_t>(end - *at));
    st.base = st.held.data();
    result = st.parser.ParseHead(st.base, st.held.size(), protocol_.limits_);
  } else {
    result = st.parser.ParseHead(st.base, static_cast<size_t>(end - st.base), protocol_.limits_);
  }
  if (result == Result::kError) return st.parser.status();
  if (result == Result::kMore) {
    *at = end;
    return 0;
  }
  const size_t head = st.parser.head_size();
  if (st.base_in_held) {
    *at += head - held_before;
    st.held.resize(head);  // what followed the section is read from the receive buffer
  } else {
    *at = st.base + head;
  }
  st.headers_done = true;
  return OnHeadersComplete(at, end);
}

int HttpSession::OnHeadersComplete(const char** at, const char* end) {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  const RequestParser& parser = st.parser;
  const HttpOptions& options = h.config_->options;
  // RFC 9110 9.1: a method neither standard nor routed is not implemented.
  if (!parser.standard_method() && !h.config_->router.Recognizes(View(st.base, parser.method()))) {
    return 501;
  }
  if (parser.framing() == RequestParser::Framing::kNone) return OnMessageComplete();
  // A request with a body is routed now if some route has body options: its limit applies
  // from the first byte, and a streaming route's handler runs before the body is read.
  st.body_limit = options.max_body_bytes;
  const RouteOptions* route = nullptr;
  if (h.config_->router.has_body_options()) {
    h.params_.clear();
    st.route = h.config_->router.Route(View(st.base, parser.method()),
                                       PathOf(View(st.base, parser.target()), parser.question()),
                                       &h.params_);
    route = st.route.options;
    st.routed = (route != nullptr && route->stream_body) || h.params_.empty();
    if (route != nullptr && route->max_body_bytes != 0) st.body_limit = route->max_body_bytes;
  }
  if (parser.framing() == RequestParser::Framing::kLength &&
      parser.content_length() > st.body_limit) {
    return 413;
  }
  SetDeadline(h.body_timeout_ms_);
  st.expect_continue = parser.expect_continue();
  if (route != nullptr && route->stream_body) {
    st.body_streamed = true;
    Respond(st, st.base);
    // An answer that closes ends the reading too; "100 Continue" waits for OnBody().
    if (st.conn->closing()) return 0;
  } else if (st.expect_continue) {
    // Behind answers still due, the interim answer waits its turn in the request's slot.
    Slot* slot = NextSlot(st);
    (slot != nullptr ? slot->bytes : st.conn->output()).append("HTTP/1.1 100 Continue\r\n\r\n"sv);
  }
  return ParseBody(at, end);
}

int HttpSession::ParseBody(const char** at, const char* end) {
  MessageState& st = *state_;
  for (;;) {
    std::string_view data;
    const Result result = st.parser.ParseBody(at, end, &data, protocol_.limits_);
    if (result == Result::kError) return st.parser.status();
    if (result == Result::kDone) return OnMessageComplete();
    if (data.empty()) return 0;  // all of [at, end) is read
    if (const int status = OnBody(data); status != 0) return status;
    if (st.stopped || st.conn->closing()) return 0;
  }
}

int HttpSession::OnBody(std::string_view data) {
  MessageState& st = *state_;
  st.body_bytes += data.size();
  if (st.body_streamed) return TakeBody(data.data(), data.size());
  if (st.body_bytes > st.body_limit) return 413;
  if (st.body_copied || st.base_in_held) {
    // Not next to the header section: the body is kept in its own buffer.
    st.body.append(data);
    st.body_copied = true;
  } else if (st.body_view.length == 0) {
    st.body_view =
        Span{static_cast<uint32_t>(data.data() - st.base), static_cast<uint32_t>(data.size())};
  } else {
    // A second piece (chunked framing): they are joined.
    st.body.assign(st.base + st.body_view.offset, st.body_view.length);
    st.body.append(data);
    st.body_copied = true;
    st.body_view = Span{};  // `body` has it now
  }
  return 0;
}

int HttpSession::OnMessageComplete() {
  MessageState& st = *state_;
  if (!st.body_streamed) {
    Respond(st, st.base);
    st.pending = nullptr;  // the request is read: its answer, if deferred, is in its slot
  } else if (PendingResponse* pending = Pending(); pending != nullptr) {
    if (!pending->on_body || pending->body_paused) {
      st.body_end_due = true;  // the next request waits until the reader has had the end
    } else if (!DeliverBody(*pending, {}, true)) {
      return 500;
    } else {
      st.pending = nullptr;
    }
  }
  st.in_message = false;
  // The message is done with its slot: what fails from here on (a stray byte before the next
  // request) is the next message's, and goes in a slot of its own.
  st.slot = nullptr;
  if (st.conn->closing()) return 0;
  // After an answer that fills the output, the rest of the input is handed back to the loop,
  // which holds it until the client reads. Behind an answer still due, requests are read on
  // up to the queue's bound, and no idle deadline runs: the wait is the server's.
  if (st.slots.empty()) {
    SetDeadline(protocol_.idle_timeout_ms_);
  } else {
    st.conn->SetDeadline(0);
    if (st.pending != nullptr || QueueBlocks()) st.stopped = true;
  }
  if (st.conn->output_full()) st.stopped = true;
  return 0;
}

void HttpSession::KeepUnfinished(const char* end) {
  MessageState& st = *state_;
  if (st.body_view.length > 0) {
    if (st.parser.framing() == RequestParser::Framing::kLength) {
      st.body.reserve(st.parser.content_length());
    }
    st.body.assign(st.base + st.body_view.offset, st.body_view.length);
    st.body_view = Span{};
    st.body_copied = true;
  }
  // `held` has the header section already, or all of it so far.
  if (st.base_in_held) return;
  // The first read that ends inside the header section: the deadline runs from now, which is
  // when the request began (the loop's clock stands still within an iteration), and more bytes
  // of the section do not move it.
  if (!st.headers_done) SetDeadline(protocol_.header_timeout_ms_);
  st.held.assign(st.base,
                 st.headers_done ? st.parser.head_size() : static_cast<size_t>(end - st.base));
  st.base_in_held = true;
  st.base = st.held.data();
}

HttpSession::~HttpSession() { DropSlots(); }

std::string* HttpProtocol::Gzip(std::string_view body, int level) {
  HttpProtocol& h = *this;
  if (h.gzip_ == nullptr) h.gzip_ = std::make_unique<class Gzip>();
  return h.gzip_->Compress(body, level, &h.gzipped_) ? &h.gzipped_ : nullptr;
}

void HttpSession::Reject(Connection& conn, int status) {
  HttpProtocol& h = protocol_;
  // A streamed body's request may have its answer out, or on its way: only the close is left.
  const bool answered =
      state_ != nullptr && state_->body_streamed && (Pending() == nullptr || Pending()->streaming);
  AbortPending();
  // Behind answers still due, the error waits its turn in a slot, and the connection closes
  // after it; nothing more is read.
  Slot* slot = state_ != nullptr ? NextSlot(*state_) : nullptr;
  // With a request line to hang it on, an error goes through the error hook. The line ended
  // within max_header_bytes, or the parser would have stopped before its end.
  const bool has_request = InMessage() && state_->parser.request_line_done();
  if (!answered && has_request && h.config_->on_error) {
    SendOwnError(conn, status, slot);
  } else if (!answered) {
    if (slot == nullptr) {
      AppendErrorResponse(conn.output(), status, h.date_.line());
      h.CountResponse(status);
    } else {
      AppendErrorResponse(slot->bytes, status, h.date_.line());
      slot->status = status;  // counted when it goes out
    }
    if (h.config_->options.log_requests) {
      h.log_.append("Request rejected by worker "sv);
      AppendDecimal(h.log_, static_cast<size_t>(h.worker_.id()));
      h.log_.append(": "sv);
      AppendDecimal(h.log_, static_cast<size_t>(status));
      h.log_.push_back('\n');
    }
  }
  if (slot == nullptr) {
    conn.Close();
    return;
  }
  slot->done = true;
  slot->close = true;
  state_->in_message = false;
  Stop();
  if (AtHead(*slot)) Advance(conn);
}

void HttpSession::OnDrain(Connection& conn) {
  // A request in progress is finished, and its response closes the connection. An idle one is
  // closed shortly, not at once: a client that is using it sends its next request within
  // microseconds of the last response, and a close that crosses that request fails it (the
  // keep-alive race). Given a moment, the request arrives and its response says
  // "Connection: close"; only a connection idle for the whole moment is closed unannounced.
  if (BetweenMessages()) conn.SetDeadline(conn.worker().now_ms() + kDrainIdleCloseMs);
  // A long-lived answer (an event stream, a long poll) has no end of its own in sight: it is
  // told (Response::OnClosing), and ends itself. The one path by which every kind of
  // session hears that its loop closes, a rolling restart's included.
  if (state_ == nullptr) return;
  // Taken out first, each with its answer: each may answer, and so change the queue (or give
  // `state_` back).
  std::vector<std::pair<Response, absl::AnyInvocable<void(Response&)>>> closing;
  for (Slot& slot : state_->slots) {
    if (slot.pending != nullptr && slot.pending->on_closing) {
      closing.emplace_back(ResponseWriter::Handle(*slot.pending),
                           std::move(slot.pending->on_closing));
      slot.pending->on_closing = nullptr;
    }
  }
  for (auto& [res, fn] : closing) {
    try {
      fn(res);
    } catch (...) {
      // The drain goes on; the answer ends with the shutdown timeout at the latest.
    }
    if (PendingResponse* pending = ResponseWriter::State(res); pending != nullptr) {
      pending->UnkeepIfIdle();
    }
  }
}

void HttpSession::OnDeadline(Connection& conn) {
  // A request had begun: its headers or body did not arrive in time. Otherwise the connection
  // was idle, and closes without a word, as keep-alive clients expect.
  if (InMessage()) {
    Reject(conn, 408);
  } else {
    conn.Close();
  }
}

}  // namespace percore::http
