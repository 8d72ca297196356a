#include "session.h"

#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <exception>
#include <string_view>

#include "ascii.h"
#include "errors.h"
#include "percore/stats.h"
#include "response_writer.h"

namespace percore::http {
namespace {

// While draining, how long an idle keep-alive connection stays open for a request already on its
// way (see HttpSession::OnDrain).
constexpr int64_t kDrainIdleCloseMs = 250;

std::string_view View(const char* base, Span span) {
  return std::string_view(base + span.offset, span.length);
}

bool HasBody(const llhttp_t* p) {
  return (p->flags & F_CHUNKED) != 0 ||
         ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
}

// The status for a parser error that no callback of ours raised.
int StatusForError(const llhttp_t* p, llhttp_errno_t err) {
  switch (err) {
    case HPE_INVALID_VERSION:
      // A well-formed version llhttp does not support ("HTTP/3.0"); the same code also reports
      // a malformed one ("HTTP/1.x", "HTTP/1.1 extra"), which is a bad request line.
      return std::string_view(llhttp_get_error_reason(p)) == "Invalid HTTP version" ? 505 : 400;
    case HPE_INVALID_TRANSFER_ENCODING:
      return 501;
    case HPE_PAUSED_H2_UPGRADE:  // the HTTP/2 connection preface, "PRI * HTTP/2.0"
      return 505;
    default:
      return 400;
  }
}

}  // namespace

void MessageState::Reset() {
  // `held` is kept: a pipelined message may begin inside it.
  body.clear();
  fields.clear();
  method = target = field = value = body_view = Span{};
  header_end = 0;
  body_bytes = 0;
  extra_bytes = 0;
  error_status = 0;
  host_count = 0;
  in_message = headers_done = base_in_held = false;
  in_method = in_target = in_field = in_value = false;
  body_copied = expect_continue = bad_transfer_encoding = upgrade = false;
}

// Builds the handler's view of a request.
class RequestBuilder {
 public:
  static void Fill(Request& r, std::string_view method, std::string_view target,
                   std::span<const HeaderField> headers, std::string_view body, int minor,
                   bool keep_alive, Worker& worker) {
    r.method_ = method;
    r.target_ = target;
    size_t question = target.find('?');
    r.path_ = target.substr(0, question);
    r.query_ =
        question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
    // Absolute form ("http://host/x?q", RFC 9112 3.2.2, sent to proxies and accepted by
    // servers): the path starts after the authority.
    if (!r.path_.empty() && r.path_.front() != '/') {
      if (size_t scheme = r.path_.find("://"); scheme != std::string_view::npos) {
        size_t slash = r.path_.find('/', scheme + 3);
        r.path_ = slash == std::string_view::npos ? std::string_view("/") : r.path_.substr(slash);
      }
    }
    r.headers_ = headers;
    r.body_ = body;
    r.version_minor_ = minor;
    r.keep_alive_ = keep_alive;
    r.worker_id_ = worker.id();
    r.cpu_ = worker.cpu();
    r.worker_ = &worker;
  }
  static void SetParams(Request& r, std::span<const RouteParam> params) { r.params_ = params; }
};

// The llhttp callbacks: C function pointers that forward to the session in parser->data.
struct Callbacks {
  static HttpSession& S(llhttp_t* p) { return *static_cast<HttpSession*>(p->data); }

  // Records a header-section span that may arrive in pieces; pieces of one span are adjacent
  // because a message's header section is always contiguous from base.
  static int Record(llhttp_t* p, Span& span, bool& open, const char* at, size_t length) {
    HttpProtocol& h = S(p).protocol_;
    MessageState& st = *h.state_;
    const auto offset = static_cast<uint32_t>(at - h.base_);
    if (!open) {
      span = Span{offset, static_cast<uint32_t>(length)};
      open = true;
    } else {
      span.length = offset + static_cast<uint32_t>(length) - span.offset;
    }
    if (span.end() > st.header_end) st.header_end = span.end();
    if (st.header_end > h.config_->options.max_header_bytes) return S(p).Fail(431);
    return HPE_OK;
  }

  static int OnMessageBegin(llhttp_t* p) {
    HttpSession& s = S(p);
    s.protocol_.state_->Reset();
    s.protocol_.state_->in_message = true;
    s.SetDeadline(s.protocol_.header_timeout_ms_);
    return HPE_OK;
  }
  static int OnMethod(llhttp_t* p, const char* at, size_t length) {
    HttpProtocol& h = S(p).protocol_;
    MessageState& st = *h.state_;
    if (!st.in_method) {
      h.base_ = at;  // the message's first byte
      st.base_in_held = h.parsing_held_;
    }
    return Record(p, st.method, st.in_method, at, length);
  }
  static int OnUrl(llhttp_t* p, const char* at, size_t length) {
    HttpProtocol& h = S(p).protocol_;
    MessageState& st = *h.state_;
    int result = Record(p, st.target, st.in_target, at, length);
    // A target over its own limit is a 414 even when it also overflows the header section
    // (Record's 431): the answer must not depend on how the bytes were split into reads.
    if (st.target.length > h.config_->options.max_target_bytes) return S(p).Fail(414);
    return result;
  }
  static int OnVersion(llhttp_t* p, const char* at, size_t length) {
    bool open = true;  // not kept; recorded only for the header-section size
    Span ignored{static_cast<uint32_t>(at - S(p).protocol_.base_), 0};
    return Record(p, ignored, open, at, length);
  }
  // After the header section, field callbacks are a chunked body's trailer fields: they may lie
  // in another buffer than `base`, so they have no span; they are ignored. They and chunk
  // extensions count against the header-section limit, or a client could send them without end
  // (each read restarts the body timeout).
  static int OnExtra(llhttp_t* p, const char*, size_t length) {
    HttpProtocol& h = S(p).protocol_;
    MessageState& st = *h.state_;
    st.extra_bytes += static_cast<uint32_t>(length);
    if (st.extra_bytes > h.config_->options.max_header_bytes) return S(p).Fail(431);
    return HPE_OK;
  }
  // The end of a chunk's size line: the limit holds per chunk's extensions, and for the trailer
  // after the last chunk.
  static int OnChunkHeader(llhttp_t* p) {
    S(p).protocol_.state_->extra_bytes = 0;
    return HPE_OK;
  }
  static int OnHeaderField(llhttp_t* p, const char* at, size_t length) {
    MessageState& st = *S(p).protocol_.state_;
    if (st.headers_done) return OnExtra(p, at, length);
    return Record(p, st.field, st.in_field, at, length);
  }
  static int OnHeaderValue(llhttp_t* p, const char* at, size_t length) {
    MessageState& st = *S(p).protocol_.state_;
    if (st.headers_done) return OnExtra(p, at, length);
    return Record(p, st.value, st.in_value, at, length);
  }
  static int OnHeaderValueComplete(llhttp_t* p) {
    HttpProtocol& h = S(p).protocol_;
    MessageState& st = *h.state_;
    if (st.headers_done) return HPE_OK;
    if (!st.in_value) st.value = Span{};  // an empty value has no span
    st.fields.emplace_back(st.field, st.value);
    const std::string_view name = View(h.base_, st.field);
    const std::string_view value = TrimOws(View(h.base_, st.value));
    // llhttp lets "Name :" through; RFC 9112 5.1 requires a 400 (a request-smuggling vector).
    if (!name.empty() && name.back() == ' ') return S(p).Fail(400);
    if (EqualsIgnoreCase(name, "host")) {
      ++st.host_count;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      // Only chunked is implemented; gzip, deflate or a list would be a body we cannot read.
      if (!EqualsIgnoreCase(value, "chunked")) st.bad_transfer_encoding = true;
    } else if (EqualsIgnoreCase(name, "expect")) {
      st.expect_continue = EqualsIgnoreCase(value, "100-continue");
    }
    st.in_field = st.in_value = false;
    return HPE_OK;
  }
  static int OnHeadersComplete(llhttp_t* p) { return S(p).OnHeadersComplete(); }
  static int OnBody(llhttp_t* p, const char* at, size_t length) {
    HttpSession& s = S(p);
    HttpProtocol& h = s.protocol_;
    MessageState& st = *h.state_;
    st.body_bytes += length;
    if (st.body_bytes > h.config_->options.max_body_bytes) return s.Fail(413);
    if (st.body_copied || st.base_in_held != h.parsing_held_) {
      // Not next to the header section: the body is kept in its own buffer.
      st.body.append(at, length);
      st.body_copied = true;
    } else if (st.body_view.length == 0) {
      st.body_view = Span{static_cast<uint32_t>(at - h.base_), static_cast<uint32_t>(length)};
    } else {
      // A second piece (chunked encoding): join them.
      st.body.assign(h.base_ + st.body_view.offset, st.body_view.length);
      st.body.append(at, length);
      st.body_copied = true;
      st.body_view = Span{};  // `body` has it now
    }
    return HPE_OK;
  }
  static int OnMessageComplete(llhttp_t* p) { return S(p).OnMessageComplete(); }
};

HttpProtocol::HttpProtocol(std::shared_ptr<const AppConfig> config, Worker& worker)
    : config_(std::move(config)),
      worker_(worker),
      header_timeout_ms_(absl::ToInt64Milliseconds(config_->options.header_timeout)),
      body_timeout_ms_(absl::ToInt64Milliseconds(config_->options.body_timeout)),
      idle_timeout_ms_(absl::ToInt64Milliseconds(config_->options.idle_timeout)) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &Callbacks::OnMessageBegin;
  settings_.on_method = &Callbacks::OnMethod;
  settings_.on_url = &Callbacks::OnUrl;
  settings_.on_version = &Callbacks::OnVersion;
  settings_.on_header_field = &Callbacks::OnHeaderField;
  settings_.on_header_value = &Callbacks::OnHeaderValue;
  settings_.on_header_value_complete = &Callbacks::OnHeaderValueComplete;
  settings_.on_headers_complete = &Callbacks::OnHeadersComplete;
  settings_.on_body = &Callbacks::OnBody;
  settings_.on_chunk_extension_name = &Callbacks::OnExtra;
  settings_.on_chunk_extension_value = &Callbacks::OnExtra;
  settings_.on_chunk_header = &Callbacks::OnChunkHeader;
  settings_.on_message_complete = &Callbacks::OnMessageComplete;
  headers_.reserve(32);
  scratch_.fields.reserve(32);
  fields_.reserve(256);
}

HttpProtocol::~HttpProtocol() { FlushLog(); }

std::unique_ptr<percore::Session> HttpProtocol::NewSession(Connection& conn) {
  return std::make_unique<HttpSession>(*this, conn);
}

void HttpProtocol::OnTick() {
  date_.Update(time(nullptr));
  FlushLog();
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

HttpSession::HttpSession(HttpProtocol& protocol, Connection& conn) : protocol_(protocol) {
  llhttp_init(&parser_, HTTP_REQUEST, &protocol.settings_);
  parser_.data = this;
  // Until the first byte of a request, a connection is idle.
  conn.SetDeadline(conn.worker().now_ms() + protocol.idle_timeout_ms_);
}

void HttpSession::SetDeadline(int64_t timeout_ms) {
  protocol_.conn_->SetDeadline(protocol_.worker_.now_ms() + timeout_ms);
}

int HttpSession::Fail(int status) {
  protocol_.state_->error_status = status;
  return HPE_USER;
}

int HttpSession::OnHeadersComplete() {
  HttpProtocol& h = protocol_;
  MessageState& st = *h.state_;
  const HttpOptions& options = h.config_->options;
  st.headers_done = true;
  if (parser_.http_major != 1 || parser_.http_minor > 1) return Fail(505);
  if (st.host_count > 1 || (parser_.http_minor == 1 && st.host_count == 0)) return Fail(400);
  if (st.bad_transfer_encoding) return Fail(501);
  if ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > options.max_body_bytes) {
    return Fail(413);
  }
  st.upgrade = ((parser_.flags & F_UPGRADE) != 0 && (parser_.flags & F_CONNECTION_UPGRADE) != 0) ||
               parser_.method == HTTP_CONNECT;
  if (HasBody(&parser_)) {
    if (st.expect_continue && parser_.http_minor == 1) {
      h.conn_->output().append("HTTP/1.1 100 Continue\r\n\r\n");
    }
    SetDeadline(h.body_timeout_ms_);
  }
  return HPE_OK;
}

int HttpSession::OnMessageComplete() {
  HttpProtocol& h = protocol_;
  MessageState& st = *h.state_;
  Respond(st, h.base_);
  st.in_message = false;
  SetDeadline(h.idle_timeout_ms_);
  // After a response that closes, the rest of the input is not read.
  return h.conn_->closing() ? HPE_PAUSED : HPE_OK;
}

void HttpSession::Respond(MessageState& st, const char* base) {
  HttpProtocol& h = protocol_;
  Connection& conn = *h.conn_;
  h.headers_.clear();
  for (const auto& [name, value] : st.fields) {
    h.headers_.push_back(HeaderField{View(base, name), TrimOws(View(base, value))});
  }
  const std::string_view method = View(base, st.method);
  // While draining, every response closes its connection.
  h.peer_closes_ = !llhttp_should_keep_alive(&parser_) && !st.upgrade;
  const bool close = h.peer_closes_ || st.upgrade || h.worker_.draining();
  Request req;
  RequestBuilder::Fill(req, method, View(base, st.target), h.headers_,
                       st.body_copied ? std::string_view(st.body) : View(base, st.body_view),
                       parser_.http_minor, !close, h.worker_);
  const bool head = method == "HEAD";
  std::string& out = conn.output();
  Response res = ResponseWriter::Make(&out, &h.fields_, h.date_.line(), head, close,
                                      !close && parser_.http_minor == 0);
  h.params_.clear();
  const Router::Result route = h.config_->router.Route(method, req.path(), &h.params_);
  RequestBuilder::SetParams(req, h.params_);
  // For the supervisor's stall log: what this loop is doing if it never comes back.
  h.worker_.stats().SetActivity(method, req.target());
  try {
    if (route.handler != nullptr) {
      (*route.handler)(req, res);
    } else if (route.path_known) {
      h.allow_.clear();
      h.config_->router.AppendAllowed(req.path(), &h.allow_);
      res.Status(method == "OPTIONS" ? 204 : 405).Set("Allow", h.allow_);
      if (method != "OPTIONS") res.Send("Method Not Allowed\n");
    } else {
      res.Status(404).Send("Not Found\n");
    }
    if (!res.sent()) res.Send({});
  } catch (const std::exception&) {
    // The handler's failure stays with this request: a 500, and the connection goes on.
  } catch (...) {
  }
  if (!res.sent()) {
    Response error = ResponseWriter::Make(&out, &h.fields_, h.date_.line(), head, close,
                                          !close && parser_.http_minor == 0);
    error.Status(500).Send("Internal Server Error\n");
    res = error;
  }
  CountResponse(res.status());
  if (h.config_->options.log_requests) {
    h.log_.append("Request handled by worker ");
    AppendDecimal(h.log_, static_cast<size_t>(h.worker_.id()));
    h.log_.append(": ");
    h.log_.append(method);
    h.log_.push_back(' ');
    h.log_.append(req.path());
    h.log_.push_back(' ');
    AppendDecimal(h.log_, static_cast<size_t>(res.status()));
    h.log_.push_back('\n');
    if (h.log_.size() > 64 * 1024) h.FlushLog();
  }
  if (ResponseWriter::Closes(res)) conn.Close();
}

void HttpSession::KeepUnfinished(const char* end) {
  HttpProtocol& h = protocol_;
  MessageState& st = *h.state_;
  const char* base = h.base_;
  if (st.body_view.length > 0) {
    if ((parser_.flags & F_CONTENT_LENGTH) != 0) st.body.reserve(parser_.content_length);
    st.body.assign(base + st.body_view.offset, st.body_view.length);
    st.body_view = Span{};
    st.body_copied = true;
  }
  // Reading a body after a held header section: `held` already holds just that section.
  if (st.base_in_held && !h.parsing_held_) return;
  const size_t keep = st.headers_done ? st.header_end : static_cast<size_t>(end - base);
  if (st.base_in_held) {
    st.held.erase(0, static_cast<size_t>(base - st.held.data()));
    st.held.resize(keep);
  } else {
    st.held.assign(base, keep);
    st.base_in_held = true;
  }
}

void HttpSession::OnData(Connection& conn, std::string_view bytes) {
  HttpProtocol& h = protocol_;
  MessageState& st = h.scratch_;
  if (partial_ != nullptr) std::swap(st, *partial_);
  h.state_ = &st;
  h.conn_ = &conn;
  h.parsing_held_ = false;
  h.peer_closes_ = false;
  const char* begin = bytes.data();
  size_t length = bytes.size();
  if (st.in_message) {
    if (!st.headers_done) {
      // The header section is still arriving: join it to what is held so its spans stay
      // contiguous, and parse the new bytes there.
      const size_t old_size = st.held.size();
      st.held.append(bytes);
      begin = st.held.data() + old_size;
      h.parsing_held_ = true;
    } else {
      SetDeadline(h.body_timeout_ms_);
    }
    h.base_ = st.held.data();
  }
  const llhttp_errno_t err = llhttp_execute(&parser_, begin, length);
  int status = 0;
  if (err == HPE_OK) {
    // Bytes no span covers (whitespace before a value) are counted only once a later span ends;
    // a header section still arriving is bounded by its raw size. Up to "\r\n\r" of it may be
    // the terminator, which the span measure leaves out.
    if (st.in_message && !st.headers_done &&
        static_cast<size_t>(begin + length - h.base_) > h.config_->options.max_header_bytes + 3) {
      status = 431;
    } else if (st.in_message) {
      KeepUnfinished(begin + length);
    }
  } else if (err == HPE_PAUSED && h.peer_closes_ &&
             llhttp_get_error_pos(&parser_) == begin + length) {
    // The client said this request is its last ("Connection: close", or HTTP/1.0 without
    // keep-alive) and sent nothing after it: no lingering for its FIN, as nginx does.
    conn.Close(/*linger=*/false);
  } else if (err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
    status = st.error_status != 0 ? st.error_status : StatusForError(&parser_, err);
  }
  if (status != 0) {
    AppendErrorResponse(conn.output(), status, h.date_.line());
    CountResponse(status);
    if (h.config_->options.log_requests) {
      h.log_.append("Request rejected by worker ");
      AppendDecimal(h.log_, static_cast<size_t>(h.worker_.id()));
      h.log_.append(": ");
      AppendDecimal(h.log_, static_cast<size_t>(status));
      h.log_.push_back('\n');
    }
    conn.Close();
  }
  if (st.in_message && !conn.closing()) {
    if (partial_ == nullptr) partial_ = std::make_unique<MessageState>();
    std::swap(st, *partial_);
  } else {
    partial_.reset();
    st.held.clear();
  }
  h.state_ = nullptr;
  h.conn_ = nullptr;
}

void HttpSession::CountResponse(int status) {
  LoopStats::Add(protocol_.worker_.stats().responses[status / 100 - 1], 1);
}

void HttpSession::OnDrain(Connection& conn) {
  // A request in progress is finished, and its response closes the connection. An idle one is
  // closed shortly, not at once: a client that is using it sends its next request within
  // microseconds of the last response, and a close that crosses that request fails it (the
  // keep-alive race). Given a moment, the request arrives and its response says
  // "Connection: close"; only a connection idle for the whole moment is closed unannounced.
  if (partial_ == nullptr || !partial_->in_message) {
    conn.SetDeadline(conn.worker().now_ms() + kDrainIdleCloseMs);
  }
}

void HttpSession::OnDeadline(Connection& conn) {
  // A request had begun: its headers or body did not arrive in time. Otherwise the connection
  // was idle, and closes without a word, as keep-alive clients expect.
  if (partial_ != nullptr && partial_->in_message) {
    AppendErrorResponse(conn.output(), 408, protocol_.date_.line());
    CountResponse(408);
  }
  conn.Close();
}

}  // namespace percore::http
