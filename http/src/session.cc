#include "session.h"

#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "ascii.h"
#include "codec.h"
#include "errors.h"
#include "percore/stats.h"
#include "response_writer.h"

namespace percore::http {

// Literal appends with their length known at compile time: append(const char*) calls strlen
// once the compiler stops inlining it.
using namespace std::string_view_literals;
namespace {

// While draining, how long an idle keep-alive connection stays open for a request already on its
// way (see HttpSession::OnDrain).
constexpr int64_t kDrainIdleCloseMs = 250;
// States kept in a loop's pool (each keeps its buffers small: percore/buffers.h).
constexpr size_t kMaxPooledStates = 256;

std::string_view View(const char* base, Span span) {
  return std::string_view(base + span.offset, span.length);
}

bool HasBody(const llhttp_t* p) {
  return (p->flags & F_CHUNKED) != 0 ||
         ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
}

// Which limit the first `upto` bytes of a header section break first in byte order (so that
// the answer does not depend on where reads split them): 431 once the section passes its
// limit, 414 if the target, starting at `target` (or null: not begun or already checked),
// passed its own before that; 0 if neither.
int FirstLimitBroken(const HttpOptions& o, size_t upto, const size_t* target) {
  size_t first = SIZE_MAX;
  int status = 0;
  if (upto > o.max_header_bytes) {
    first = o.max_header_bytes;
    status = 431;
  }
  if (target != nullptr && upto > *target + o.max_target_bytes &&
      *target + o.max_target_bytes <= first) {
    status = 414;
  }
  return status;
}

// RFC 9112 3.2: Host = uri-host [ ":" port ], uri-host = IP-literal / IPv4address / reg-name
// (RFC 3986 3.2.2). No userinfo, no path, no whitespace, a port of digits only. Checked on
// every request, so by table.
constexpr auto kRegNameChars = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  }
  for (char c : std::string_view("-._~!$&'()*+,;=%")) table[static_cast<unsigned char>(c)] = true;
  return table;
}();
constexpr auto kIpLiteralChars = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
               c == ':' || c == '.' || c == 'v' || c == 'V';
  }
  return table;
}();

bool IsValidHost(std::string_view host) {
  size_t i = 0;
  if (!host.empty() && host[0] == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      if (!kIpLiteralChars[static_cast<unsigned char>(host[i])]) return false;
    }
    i = close + 1;
  } else {
    // '%' is allowed for pct-encoded octets; their hex digits are reg-name characters too.
    while (i < host.size() && kRegNameChars[static_cast<unsigned char>(host[i])]) ++i;
  }
  if (i == host.size()) return true;
  if (host[i] != ':') return false;
  for (++i; i < host.size(); ++i) {
    if (host[i] < '0' || host[i] > '9') return false;
  }
  return true;
}

// A request target as RFC 9112 3.2 allows it: visible ASCII, no fragment (a client never sends
// one), and "*" only for OPTIONS (asterisk-form). llhttp lets '#', bytes over 0x7f through.
bool IsValidTarget(std::string_view target, std::string_view method) {
  if (target == "*") return method == "OPTIONS";
  for (char ch : target) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= ' ' || c >= 0x7f || c == '#') return false;
  }
  return true;
}

}  // namespace

namespace {

// The first CR or LF in [p, end), or end. Every request's header section goes through here,
// 16 bytes at a time where SSE2 is there (all x86-64).
const char* FindCrOrLf(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  for (; end - p >= 16; p += 16) {
    const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const int mask =
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(block, cr), _mm_cmpeq_epi8(block, lf)));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
  }
#endif
  while (p < end && *p != '\r' && *p != '\n') ++p;
  return p;
}

}  // namespace

FieldLines::Result FieldLines::Scan(const char* p, const char* end, const char** stop) {
  // Line by line, the state in a local: a member would be stored and reloaded around every
  // byte read (a char pointer may alias it).
  State state = state_;
  Result result = Result::kMore;
  while (p < end) {
    if (state == kLineStart) {
      const char c = *p++;
      if (c == '\r') {
        state = kEmptyLineCr;
        continue;
      }
      if (c == '\n' || c == ' ' || c == '\t' || c == ':') {
        *stop = p - 1;
        result = Result::kBad;
        break;
      }
      state = kInLine;
    }
    if (state == kInLine) {
      // To the line's CR, with no LF before it.
      p = FindCrOrLf(p, end);
      if (p == end) break;
      if (*p == '\n') {
        *stop = p;  // a bare LF
        result = Result::kBad;
        break;
      }
      state = kCr;
      if (++p == end) break;
    }
    // kCr or kEmptyLineCr: the LF must follow.
    if (*p != '\n') {
      *stop = p;  // a bare CR; "\r\n\r" and anything but LF among them
      result = Result::kBad;
      break;
    }
    ++p;
    if (state == kEmptyLineCr) {
      *stop = p;
      state = kLineStart;
      result = Result::kDone;
      break;
    }
    state = kLineStart;
  }
  state_ = state;
  return result;
}

void MessageState::Reset() {
  // `held` is kept: a pipelined message may begin inside it.
  body.clear();
  fields.clear();
  method = target = field = value = body_view = Span{};
  header_end = 0;
  body_bytes = 0;
  body_limit = 0;
  discarded = 0;
  extra_bytes = 0;
  error_status = 0;
  trailer_lines = FieldLines();
  host_count = 0;
  chunk_crlf_due = 0;
  in_message = headers_done = target_done = in_trailer = trailer_begins = base_in_held = false;
  in_method = in_target = in_field = in_value = false;
  body_copied = expect_continue = bad_transfer_encoding = upgrade = false;
  body_streamed = body_end_due = false;
  pending = nullptr;
}

namespace {

// The path of a request target: up to '?', and in absolute form ("http://host/x?q", RFC 9112
// 3.2.2, sent to proxies and accepted by servers) from the slash after the authority.
std::string_view PathOf(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  if (!path.empty() && path.front() != '/') {
    if (size_t scheme = path.find("://"); scheme != std::string_view::npos) {
      size_t slash = path.find('/', scheme + 3);
      path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
    }
  }
  return path;
}

}  // namespace

// Builds the handler's view of a request.
class RequestBuilder {
 public:
  static void Fill(Request& r, std::string_view method, std::string_view target,
                   std::span<const HeaderField> headers, std::string_view body, int minor,
                   bool keep_alive, Worker& worker, const Connection& conn,
                   const HttpSession& session) {
    r.method_ = method;
    r.target_ = target;
    size_t question = target.find('?');
    r.path_ = PathOf(target);
    r.query_ =
        question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
    r.headers_ = headers;
    r.body_ = body;
    r.version_minor_ = minor;
    r.keep_alive_ = keep_alive;
    r.worker_id_ = worker.id();
    r.cpu_ = worker.cpu();
    r.worker_ = &worker;
    r.conn_ = &conn;
    r.session_ = &session;
  }
  static void SetParams(Request& r, std::span<const RouteParam> params) { r.params_ = params; }
  // Whether the route's parameters and the query decode (a handler would get garbage).
  static bool ValidEncoding(const Request& r) {
    for (const RouteParam& p : r.params_) {
      if (!ValidPercentEncoding(p.value)) return false;
    }
    return r.query_.empty() || ValidPercentEncoding(r.query_);
  }
};

// The llhttp callbacks: C function pointers that forward to the session in parser->data.
struct Callbacks {
  static HttpSession& S(llhttp_t* p) { return *static_cast<HttpSession*>(p->data); }
  static MessageState& St(llhttp_t* p) { return *S(p).state_; }
  static const HttpOptions& Options(llhttp_t* p) { return S(p).protocol_.config_->options; }

  // Records a header-section span that may arrive in pieces; pieces of one span are adjacent
  // because a message's header section is always contiguous from base.
  static int Record(llhttp_t* p, Span& span, bool& open, const char* at, size_t length) {
    MessageState& st = St(p);
    const auto offset = static_cast<uint32_t>(at - st.base);
    if (!open) {
      span = Span{offset, static_cast<uint32_t>(length)};
      open = true;
    } else {
      span.length = offset + static_cast<uint32_t>(length) - span.offset;
    }
    if (span.end() > st.header_end) st.header_end = span.end();
    const size_t target = st.target.offset;
    const int broken =
        FirstLimitBroken(Options(p), st.header_end, &span == &st.target ? &target : nullptr);
    return broken != 0 ? S(p).Fail(broken) : HPE_OK;
  }

  static int OnMessageBegin(llhttp_t* p) {
    HttpSession& s = S(p);
    St(p).Reset();
    St(p).in_message = true;
    s.SetDeadline(s.protocol_.header_timeout_ms_);
    return HPE_OK;
  }
  static int OnMethod(llhttp_t* p, const char* at, size_t length) {
    MessageState& st = St(p);
    if (!st.in_method) {
      st.base = at;  // the message's first byte
      st.base_in_held = st.parsing_held;
    }
    return Record(p, st.method, st.in_method, at, length);
  }
  static int OnUrl(llhttp_t* p, const char* at, size_t length) {
    MessageState& st = St(p);
    return Record(p, st.target, st.in_target, at, length);
  }
  static int OnUrlComplete(llhttp_t* p) {
    St(p).target_done = true;
    return HPE_OK;
  }
  static int OnVersion(llhttp_t* p, const char* at, size_t length) {
    bool open = true;  // not kept; recorded only for the header-section size
    Span ignored{static_cast<uint32_t>(at - St(p).base), 0};
    return Record(p, ignored, open, at, length);
  }
  // Chunk extensions are skipped, but count against the header-section limit, or a client
  // could send them without end (each read restarts the body timeout). The limit holds per
  // chunk (OnChunkHeader resets the count).
  static int OnExtension(llhttp_t* p, const char*, size_t length) {
    MessageState& st = St(p);
    st.extra_bytes += static_cast<uint32_t>(length);
    if (st.extra_bytes > Options(p).max_header_bytes) return S(p).Fail(431);
    return HPE_OK;
  }
  // The end of a chunk's size line. After the last chunk comes the trailer section, which
  // llhttp 8.1 ends as loosely as a header section: llhttp pauses here so that Parse() can
  // check it ahead of llhttp, from this position on.
  static int OnChunkHeader(llhttp_t* p) {
    MessageState& st = St(p);
    st.extra_bytes = 0;
    if (p->content_length != 0) return HPE_OK;
    st.trailer_begins = true;
    return HPE_PAUSED;
  }
  // After the header section, field callbacks are the trailer's fields: not kept (they may lie
  // in another buffer than `base`), and bounded by Parse().
  static int OnHeaderField(llhttp_t* p, const char* at, size_t length) {
    MessageState& st = St(p);
    if (st.headers_done) return HPE_OK;
    return Record(p, st.field, st.in_field, at, length);
  }
  static int OnHeaderValue(llhttp_t* p, const char* at, size_t length) {
    MessageState& st = St(p);
    if (st.headers_done) return HPE_OK;
    return Record(p, st.value, st.in_value, at, length);
  }
  static int OnHeaderValueComplete(llhttp_t* p) {
    MessageState& st = St(p);
    if (st.headers_done) return HPE_OK;
    if (!st.in_value) st.value = Span{};  // an empty value has no span
    st.fields.emplace_back(st.field, st.value);
    const std::string_view name = View(st.base, st.field);
    const std::string_view value = TrimOws(View(st.base, st.value));
    // llhttp lets "Name :" through; RFC 9112 5.1 requires a 400 (a request-smuggling vector).
    if (!name.empty() && name.back() == ' ') return S(p).Fail(400);
    if (EqualsIgnoreCase(name, "host")) {
      ++st.host_count;
      if (!IsValidHost(value)) return S(p).Fail(400);
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      // llhttp refuses a list where chunked is not last (or comes twice). Chunked is the only
      // coding implemented: "gzip, chunked" would be a body we cannot read.
      if (!EqualsIgnoreCase(value, "chunked")) st.bad_transfer_encoding = true;
    } else if (EqualsIgnoreCase(name, "expect")) {
      st.expect_continue = EqualsIgnoreCase(value, "100-continue");
    }
    st.in_field = st.in_value = false;
    return HPE_OK;
  }
  static int OnHeadersComplete(llhttp_t* p) { return S(p).OnHeadersComplete(); }
  static int OnBody(llhttp_t* p, const char* at, size_t length) {
    // Resumed after a pause in this callback, llhttp reports the body again from where it
    // stopped, with nothing new.
    if (length == 0) return HPE_OK;
    HttpSession& s = S(p);
    MessageState& st = St(p);
    st.body_bytes += length;
    int result = HPE_OK;
    if (st.body_streamed) {
      result = s.TakeBody(at, length);
    } else if (st.body_bytes > st.body_limit) {
      return s.Fail(413);
    } else if (st.body_copied || st.base_in_held != st.parsing_held) {
      // Not next to the header section: the body is kept in its own buffer.
      st.body.append(at, length);
      st.body_copied = true;
    } else if (st.body_view.length == 0) {
      st.body_view = Span{static_cast<uint32_t>(at - st.base), static_cast<uint32_t>(length)};
    } else {
      // A second piece (chunked encoding): join them.
      st.body.assign(st.base + st.body_view.offset, st.body_view.length);
      st.body.append(at, length);
      st.body_copied = true;
      st.body_view = Span{};  // `body` has it now
    }
    if (result != HPE_OK && result != HPE_PAUSED) return result;
    // llhttp 8.1 takes any two bytes after a chunk's data for its CRLF ("abcXY0\r\n" is a
    // chunk "abc" and the last chunk): a smuggling vector. They are checked here, at once.
    if ((p->flags & F_CHUNKED) != 0 && p->content_length == 0) {
      st.chunk_crlf_due = 2;
      if (!s.CheckChunkCrlf(at + length, st.input_end)) return s.Fail(400);
    }
    return result;
  }
  static int OnMessageComplete(llhttp_t* p) { return S(p).OnMessageComplete(); }
};

HttpProtocol::HttpProtocol(std::shared_ptr<const AppConfig> config, Worker& worker)
    : config_(std::move(config)),
      worker_(worker),
      header_timeout_ms_(absl::ToInt64Milliseconds(config_->options.header_timeout)),
      body_timeout_ms_(absl::ToInt64Milliseconds(config_->options.body_timeout)),
      idle_timeout_ms_(absl::ToInt64Milliseconds(config_->options.idle_timeout)),
      proxy_protocol_(config_->options.proxy_protocol) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &Callbacks::OnMessageBegin;
  settings_.on_method = &Callbacks::OnMethod;
  settings_.on_url = &Callbacks::OnUrl;
  settings_.on_url_complete = &Callbacks::OnUrlComplete;
  settings_.on_version = &Callbacks::OnVersion;
  settings_.on_header_field = &Callbacks::OnHeaderField;
  settings_.on_header_value = &Callbacks::OnHeaderValue;
  settings_.on_header_value_complete = &Callbacks::OnHeaderValueComplete;
  settings_.on_headers_complete = &Callbacks::OnHeadersComplete;
  settings_.on_body = &Callbacks::OnBody;
  settings_.on_chunk_extension_name = &Callbacks::OnExtension;
  settings_.on_chunk_extension_value = &Callbacks::OnExtension;
  settings_.on_chunk_header = &Callbacks::OnChunkHeader;
  settings_.on_message_complete = &Callbacks::OnMessageComplete;
  headers_.reserve(32);
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

std::unique_ptr<MessageState> HttpProtocol::TakeState() {
  std::unique_ptr<MessageState> st;
  if (state_pool_.empty()) {
    st = std::make_unique<MessageState>();
    st->fields.reserve(32);
  } else {
    st = std::move(state_pool_.back());
    state_pool_.pop_back();
  }
  st->held.clear();
  return st;
}

void HttpProtocol::GiveBack(std::unique_ptr<MessageState> st) {
  if (state_pool_.size() >= kMaxPooledStates) return;
  // A state goes back between messages, clean but for the per-message fields that
  // OnMessageBegin resets; one that failed or was cut off mid-message is reset now, so that
  // nothing of it reaches the connection that takes it next.
  if (st->in_message || st->error_status != 0) st->Reset();
  // A large request's buffers are not worth keeping: the pool holds small ones.
  KeepSmall(st->held);
  KeepSmall(st->body);
  state_pool_.push_back(std::move(st));
}

HttpSession::HttpSession(HttpProtocol& protocol, Connection& conn) : protocol_(protocol) {
  llhttp_init(&parser_, HTTP_REQUEST, &protocol.settings_);
  parser_.data = this;
  if (protocol.proxy_protocol_) protocol.proxies_.try_emplace(this);
  // Until the first byte of a request, a connection is idle.
  conn.SetDeadline(conn.worker().now_ms() + protocol.idle_timeout_ms_);
}

void HttpSession::SetDeadline(int64_t timeout_ms) {
  state_->conn->SetDeadline(protocol_.worker_.now_ms() + timeout_ms);
}

int HttpSession::Fail(int status) {
  state_->error_status = status;
  return HPE_USER;
}

bool HttpSession::CheckChunkCrlf(const char* p, const char* end) {
  MessageState& st = *state_;
  for (; st.chunk_crlf_due > 0 && p < end; ++p, --st.chunk_crlf_due) {
    if (*p != (st.chunk_crlf_due == 2 ? '\r' : '\n')) return false;
  }
  return true;
}

int HttpSession::OnHeadersComplete() {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  const HttpOptions& options = h.config_->options;
  st.headers_done = true;
  // The section is complete and contiguous from base: its lines are checked once, here.
  const char* section_end = nullptr;
  FieldLines lines;
  if (lines.Scan(st.base, st.input_end, &section_end) != FieldLines::Result::kDone) {
    return Fail(400);
  }
  if (parser_.http_major != 1 || parser_.http_minor > 1) return Fail(505);
  if (st.host_count > 1 || (parser_.http_minor == 1 && st.host_count == 0)) return Fail(400);
  if (!IsValidTarget(View(st.base, st.target), View(st.base, st.method))) return Fail(400);
  // RFC 9112 6.1: a Transfer-Encoding in HTTP/1.0 is faulty framing (nginx answers 400 too).
  if (parser_.http_minor == 0 && (parser_.flags & F_TRANSFER_ENCODING) != 0) return Fail(400);
  if ((parser_.flags & F_TRANSFER_ENCODING) != 0) {
    // RFC 9112 6.3: without chunked as the final coding the body's length cannot be known.
    if ((parser_.flags & F_CHUNKED) == 0) return Fail(400);
    if (st.bad_transfer_encoding) return Fail(501);
  }
  // An origin server, not a proxy: CONNECT is not implemented.
  if (parser_.method == HTTP_CONNECT) return Fail(501);
  st.upgrade = (parser_.flags & F_UPGRADE) != 0 && (parser_.flags & F_CONNECTION_UPGRADE) != 0;
  if (!HasBody(&parser_)) return HPE_OK;
  // A request with a body is routed now if some route has body options: its limit applies
  // from the first byte, and a streaming route's handler runs before the body is read.
  st.body_limit = options.max_body_bytes;
  const RouteOptions* route = nullptr;
  if (h.config_->router.has_body_options()) {
    h.params_.clear();
    route = h.config_->router
                .Route(View(st.base, st.method), PathOf(View(st.base, st.target)), &h.params_)
                .options;
    if (route != nullptr && route->max_body_bytes != 0) st.body_limit = route->max_body_bytes;
  }
  if ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > st.body_limit) {
    return Fail(413);
  }
  SetDeadline(h.body_timeout_ms_);
  if (route != nullptr && route->stream_body) {
    st.body_streamed = true;
    Respond(st, st.base);
    // An answer that closes ends the reading too; "100 Continue" waits for OnBody().
    return st.conn->closing() ? HPE_PAUSED : HPE_OK;
  }
  if (st.expect_continue && parser_.http_minor == 1) {
    st.conn->output().append("HTTP/1.1 100 Continue\r\n\r\n"sv);
  }
  return HPE_OK;
}

int HttpSession::OnMessageComplete() {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  // The trailer ended where llhttp says, not where its lines do.
  if (st.in_trailer) return Fail(400);
  if (!st.body_streamed) {
    Respond(st, st.base);
  } else if (PendingAnswer* pending = Pending(); pending != nullptr) {
    if (!pending->on_body || pending->body_paused) {
      st.body_end_due = true;
    } else if (!DeliverBody(*pending, {}, true)) {
      return Fail(500);
    }
  }
  st.in_message = false;
  // After a response that closes, the rest of the input is not read. After one that fills the
  // output, or one that is answered later, it is handed back to the loop, which holds it until
  // the client reads or the answer is given. An answer that is awaited has no deadline.
  if (st.conn->closing()) return HPE_PAUSED;
  if (st.pending != nullptr) {
    st.conn->SetDeadline(0);
    st.stopped = true;
    return HPE_PAUSED;
  }
  SetDeadline(h.idle_timeout_ms_);
  if (st.conn->output_full()) {
    st.stopped = true;
    return HPE_PAUSED;
  }
  return HPE_OK;
}

llhttp_errno_t HttpSession::Parse(const char* p, const char* end) {
  MessageState& st = *state_;
  const size_t limit = protocol_.config_->options.max_header_bytes;
  for (;;) {
    // In the trailer, llhttp gets only the bytes before the first fault the line check or the
    // size limit finds: a fault llhttp sees first is its own, as when the bytes come one by
    // one, so the answer does not depend on how the bytes were split into reads.
    const char* stop = end;
    int fault = 0;
    if (st.in_trailer) {
      const char* at = end;
      const FieldLines::Result scan = st.trailer_lines.Scan(p, end, &at);
      if (scan == FieldLines::Result::kBad) {
        stop = at;
        fault = 400;
      }
      const size_t scanned = static_cast<size_t>(at - p);
      if (st.extra_bytes + scanned > limit) {
        stop = p + (limit - st.extra_bytes);
        fault = 431;
      }
      st.extra_bytes += static_cast<uint32_t>(scanned);
      if (scan == FieldLines::Result::kDone && fault == 0) st.in_trailer = false;
    }
    llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<size_t>(stop - p));
    if (err == HPE_PAUSED && st.trailer_begins) {
      st.trailer_begins = false;
      st.in_trailer = true;
      st.trailer_lines = FieldLines();
      st.extra_bytes = 0;
      llhttp_resume(&parser_);
      p = llhttp_get_error_pos(&parser_);
      continue;
    }
    if (err == HPE_OK && fault != 0) {
      Fail(fault);
      return HPE_USER;
    }
    return err;
  }
}

int HttpSession::StatusFor(llhttp_errno_t err) {
  MessageState& st = *state_;
  if (st.error_status != 0) return st.error_status;
  // A limit the bytes before the fault already broke answers as it does when the bytes come
  // one by one (its span callback then fires before llhttp reaches the fault).
  const HttpOptions& options = protocol_.config_->options;
  if (st.in_message && !st.headers_done && st.in_method) {
    const char* pos = llhttp_get_error_pos(&parser_);
    const char* target = st.base + st.method.end();
    while (target < pos && *target == ' ') ++target;  // llhttp skips any number of spaces
    const size_t target_offset = static_cast<size_t>(target - st.base);
    const bool in_target = !st.target_done && target < pos;
    const int broken = FirstLimitBroken(options, static_cast<size_t>(pos - st.base),
                                        in_target ? &target_offset : nullptr);
    if (broken != 0) return broken;
  }
  switch (err) {
    case HPE_INVALID_VERSION:
      // A well-formed version llhttp does not support ("HTTP/3.0"); the same code also reports
      // a malformed one ("HTTP/1.x", "HTTP/1.1 extra"), which is a bad request line.
      return std::string_view(llhttp_get_error_reason(&parser_)) == "Invalid HTTP version" ? 505
                                                                                           : 400;
    case HPE_PAUSED_H2_UPGRADE:  // the HTTP/2 connection preface, "PRI * HTTP/2.0"
      return 505;
    default:
      // HPE_INVALID_TRANSFER_ENCODING among them: chunked not last, or twice (RFC 9112 6.3).
      return 400;
  }
}

namespace {

// What the end of the middleware chain needs.
struct Dispatch {
  HttpSession* session;
  HttpProtocol* protocol;
  const Router::Result* route;
  const Request* req;
  Response* res;
};

}  // namespace

void HttpSession::Respond(MessageState& st, const char* base) {
  HttpProtocol& h = protocol_;
  Connection& conn = *st.conn;
  h.headers_.clear();
  for (const auto& [name, value] : st.fields) {
    h.headers_.push_back(HeaderField{View(base, name), TrimOws(View(base, value))});
  }
  const std::string_view method = View(base, st.method);
  // While draining, every response closes its connection.
  st.peer_closes = !llhttp_should_keep_alive(&parser_) && !st.upgrade;
  const bool close = st.peer_closes || st.upgrade || h.worker_.draining();
  Request req;
  RequestBuilder::Fill(req, method, View(base, st.target), h.headers_,
                       st.body_copied ? std::string_view(st.body) : View(base, st.body_view),
                       parser_.http_minor, !close, h.worker_, conn, *this);
  const bool head = method == "HEAD";
  std::string& out = conn.output();
  const bool http10 = parser_.http_minor == 0;
  Response res =
      ResponseWriter::Make(&out, &h.fields_, h.date_.line(), head, close, http10, !close && http10);
  res.session_ = this;
  res.conn_ = &conn;
  res.body_unread_ = st.body_streamed;
  h.finish_.fns.clear();
  h.finish_.status = -1;
  res.finish_ = &h.finish_;
  res.request_ = &req;  // for the preconditions of its answer
  h.params_.clear();
  const bool asterisk = req.target() == "*";  // OPTIONS * (IsValidTarget allows no other)
  const Router::Result route =
      asterisk ? Router::Result{} : h.config_->router.Route(method, req.path(), &h.params_);
  RequestBuilder::SetParams(req, h.params_);
  // For the supervisor's stall log: what this loop is doing if it never comes back.
  h.worker_.stats().SetActivity(method, req.target());
  // A failure stays with its request: the error hook's answer (or a 500 and a line on
  // stderr), and the connection goes on.
  Dispatch dispatch{this, &h, &route, &req, &res};
  try {
    if (!RequestBuilder::ValidEncoding(req)) {
      SendError(req, res, Error{400, "invalid percent-encoding in the path or the query", {}});
    } else {
      h.config_->router.Run(req, res, &HttpSession::RunRoute, &dispatch);
      if (!res.sent() && !res.deferred()) {
        SendError(
            req, res,
            Error{
                500, "no middleware or handler answered (Send) or kept the response (Defer)", {}});
      }
    }
  } catch (...) {
    HandleException(req, res, std::current_exception());
  }
  // Answered later (or, if the handle is dropped, with a 500 then).
  if (res.deferred()) {
    if (Pending() != nullptr && h.config_->options.log_requests) {
      Pending()->log_line = std::string(method) + " " + std::string(req.path());
    }
    h.deferring_.reset();  // an answer nobody holds any more is given now: a 500
    return;
  }
  CountResponse(res.status());
  if (h.config_->options.log_requests) LogResponse(method, req.path(), res.status());
  if (ResponseWriter::Closes(res)) conn.Close();
  if (!h.finish_.fns.empty()) h.finish_.Run(res.status());
}

void HttpSession::RunRoute(void* context) {
  const Dispatch& d = *static_cast<Dispatch*>(context);
  HttpProtocol& h = *d.protocol;
  const Request& req = *d.req;
  Response& res = *d.res;
  if (d.route->handler != nullptr) {
    (*d.route->handler)(req, res);
  } else if (d.route->path_known || req.target() == "*") {
    h.allow_.clear();
    h.config_->router.AppendAllowed(req.path(), &h.allow_);
    res.Set("Allow", h.allow_);
    if (req.method() == "OPTIONS") {
      res.Status(204).Send("");
    } else {
      d.session->SendError(req, res, Error{405, "Method Not Allowed", {}});
    }
  } else {
    d.session->SendError(req, res, Error{404, "Not Found", {}});
  }
}

void HttpSession::HandleException(const Request& req, Response& res, std::exception_ptr e) {
  Error error{500, {}, e};
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const HttpError& http) {
    if (http.status() >= 400 && http.status() <= 599) error.status = http.status();
    what = http.what();
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) {
    what = "an exception that is not a std::exception";
  }
  error.message = what;
  if (res.sent() || res.deferred()) {
    protocol_.LogFailure(req.method(), req.path(), "threw after answering: " + what);
    return;
  }
  if (error.status >= 500) ResponseWriter::Clear(res);  // nothing half-made goes out
  SendError(req, res, error);
}

void HttpSession::SendError(const Request& req, Response& res, const Error& error) {
  HttpProtocol& h = protocol_;
  if (h.config_->on_error) {
    // The hook's answer has the error's status unless it sets another: not the 200 of a 404,
    // nor a 201 the handler set before it threw.
    res.Status(error.status);
    try {
      h.config_->on_error(req, res, error);
    } catch (const std::exception& e) {
      h.LogFailure(req.method(), req.path(), std::string("the error hook threw: ") + e.what());
    } catch (...) {
      h.LogFailure(req.method(), req.path(), "the error hook threw");
    }
    if (res.sent() || res.deferred()) return;
  }
  // The default answer (also for what the hook left alone): the status and its reason as
  // text, and a line on stderr for a server error.
  if (error.status >= 500) {
    h.LogFailure(req.method(), req.path(),
                 std::string(error.message) + "; answered " + std::to_string(error.status));
  }
  res.Status(error.status).Type("text/plain; charset=utf-8");
  std::string body(ReasonPhrase(error.status));
  body.push_back('\n');
  res.Send(body);
}

void HttpSession::LogResponse(std::string_view method, std::string_view path, int status) {
  HttpProtocol& h = protocol_;
  h.log_.append("Request handled by worker "sv);
  AppendDecimal(h.log_, static_cast<size_t>(h.worker_.id()));
  h.log_.append(": "sv);
  h.log_.append(method);
  if (!path.empty()) {
    h.log_.push_back(' ');
    h.log_.append(path);
  }
  h.log_.push_back(' ');
  AppendDecimal(h.log_, static_cast<size_t>(status));
  h.log_.push_back('\n');
  if (h.log_.size() > 64 * 1024) h.FlushLog();
}

std::shared_ptr<PendingAnswer> HttpSession::Defer(Response& res) {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  auto pending = std::make_shared<PendingAnswer>(res);
  pending->fields = *res.fields_;  // what the handler set so far, from the loop's scratch
  pending->finish.fns = std::move(h.finish_.fns);
  res.finish_ = &pending->finish;
  h.deferring_ = pending;
  pending->session = this;
  pending->conn = st.conn;
  pending->loop = h.worker_.ref();
  st.pending = pending.get();
  return pending;
}

void HttpSession::BeginAnswer(PendingAnswer& pending) {
  Response& res = pending.response;
  res.out_ = &pending.conn->output();
  res.conn_ = pending.conn;
  res.date_line_ = protocol_.date_.line();
  if (protocol_.worker_.draining()) res.close_ = true;  // a drain began meanwhile
  res.body_unread_ = state_->body_streamed && state_->in_message;
}

void HttpSession::FinishAnswer(PendingAnswer& pending, bool close) {
  HttpProtocol& h = protocol_;
  Connection& conn = *pending.conn;
  state_->pending = nullptr;
  pending.session = nullptr;
  pending.on_writable = nullptr;  // they may hold the answer: no cycle is left
  pending.on_body = nullptr;
  pending.on_aborted = nullptr;
  pending.on_closing = nullptr;
  if (!state_->parsing && !state_->in_message) h.GiveBack(std::move(state_));
  const int status = pending.response.status();
  CountResponse(status);
  if (h.config_->options.log_requests) LogResponse(pending.log_line, {}, status);
  if (close) {
    conn.Close();
  } else {
    // A stream whose head went out before a drain began, ended since (OnClosing): the
    // connection is idle now, and closes as OnDrain closes an idle one.
    conn.SetDeadline(h.worker_.now_ms() + (h.worker_.draining() ? kDrainIdleCloseMs
                                                                   : h.idle_timeout_ms_));
  }
  conn.Resume();  // sends the answer, and hands over the requests that came after it
  pending.finish.Run(status);
}

void HttpSession::Answer(PendingAnswer& pending, std::string_view body) {
  BeginAnswer(pending);
  pending.response.Send(body);
  FinishAnswer(pending, pending.response.close_);
}

void HttpSession::AnswerFile(PendingAnswer& pending, int fd, uint64_t offset, uint64_t length) {
  BeginAnswer(pending);
  pending.response.SendFile(fd, offset, length);
  FinishAnswer(pending, pending.response.close_);
}

bool HttpSession::WritePart(PendingAnswer& pending, std::string_view chunk) {
  Response& res = pending.response;
  Connection& conn = *pending.conn;
  if (!pending.streaming) {
    BeginAnswer(pending);
    pending.streaming = true;
    res.sent_ = true;
    using Framing = Response::Framing;
    const Framing framing = pending.length.has_value() ? Framing::kLength
                            : res.http10_              ? Framing::kClose
                                                       : Framing::kChunked;
    pending.chunked = framing == Framing::kChunked;
    // Without a body (HEAD, 204, 304), the pieces are not sent.
    if (!res.AppendHead(framing, pending.length.value_or(0), false)) pending.length = 0;
  } else {
    res.out_ = &conn.output();  // the output buffer may have been given back since
  }
  const bool body = !res.head_ && res.status() != 204 && res.status() != 304;
  if (body && !chunk.empty()) {
    std::string& out = conn.output();
    if (pending.chunked) {
      char size[20];
      out.append(size,
                 static_cast<size_t>(std::snprintf(size, sizeof(size), "%zx\r\n", chunk.size())));
      out.append(chunk);
      out.append("\r\n"sv);
    } else {
      out.append(chunk);
    }
    pending.written += chunk.size();
  }
  conn.Resume();  // sends it
  return StreamHasRoom(conn);
}

void HttpSession::EndParts(PendingAnswer& pending) {
  Connection& conn = *pending.conn;
  Response& res = pending.response;
  const bool body = !res.head_ && res.status() != 204 && res.status() != 304;
  if (pending.chunked && body) conn.output().append("0\r\n\r\n"sv);
  // A body shorter than its Content-Length, or one that ends with the connection.
  const bool short_body = body && pending.length.has_value() && pending.written != *pending.length;
  FinishAnswer(pending, res.close_ || short_body);
}

void HttpSession::OnWritable(Connection& conn) {
  PendingAnswer* pending = Pending();
  if (pending == nullptr || !pending->on_writable) return;
  std::function<void()> fn = std::move(pending->on_writable);
  pending->on_writable = nullptr;
  fn();
}

HttpSession::~HttpSession() {
  AbortPending();
  if (protocol_.proxy_protocol_) protocol_.proxies_.erase(this);
}

void HttpSession::AbortPending() {
  PendingAnswer* pending = Pending();
  if (pending == nullptr) return;
  state_->pending = nullptr;
  pending->session = nullptr;
  pending->aborted = true;
  // The callbacks may hold the last handle to the answer: they go last, and `pending` may go
  // with them.
  std::function<void()> writable = std::move(pending->on_writable);
  std::function<void(std::string_view, bool)> body = std::move(pending->on_body);
  std::function<void()> aborted = std::move(pending->on_aborted);
  std::function<void()> closing = std::move(pending->on_closing);
  pending->on_writable = nullptr;
  pending->on_body = nullptr;
  pending->on_aborted = nullptr;
  pending->on_closing = nullptr;
  pending->finish.Run(0);
  if (aborted) {
    try {
      aborted();
    } catch (...) {
      // The request is over either way.
    }
  }
}

void FinishHooks::Run(int finished_status) {
  status = finished_status;
  std::vector<std::function<void(int)>> now = std::move(fns);
  fns.clear();
  for (auto& fn : now) {
    try {
      fn(status);
    } catch (...) {
      // Logging and timing only: the answer is given.
    }
  }
}

void FinishHooks::Add(std::function<void(int)> fn) {
  if (status < 0) {
    fns.push_back(std::move(fn));
    return;
  }
  try {
    fn(status);
  } catch (...) {
  }
}

std::string* HttpSession::Gzip(std::string_view body, int level) {
  HttpProtocol& h = protocol_;
  if (h.gzip_ == nullptr) h.gzip_ = std::make_unique<class Gzip>();
  return h.gzip_->Compress(body, level, &h.gzipped_) ? &h.gzipped_ : nullptr;
}

PeerAddress HttpSession::Client(const Request& req) const {
  PeerAddress from;
  const ProxyState* proxy = nullptr;
  if (protocol_.proxy_protocol_) {
    auto it = protocol_.proxies_.find(this);
    if (it != protocol_.proxies_.end()) proxy = &it->second;
  }
  if (proxy != nullptr && !proxy->header.local) {
    from.ip = proxy->header.source_ip;
    from.port = proxy->header.source_port;
  } else {
    from = req.peer();
  }
  const std::vector<Cidr>& trusted = protocol_.config_->trusted;
  if (trusted.empty()) return from;
  absl::InlinedVector<std::string_view, 2> forwarded;
  for (const HeaderField& field : req.headers()) {
    if (EqualsIgnoreCase(field.name, "x-forwarded-for")) forwarded.push_back(field.value);
  }
  if (forwarded.empty()) return from;
  const std::string_view client = ClientFromForwardedFor(forwarded, trusted, from.ip);
  if (client == from.ip) return from;
  return PeerAddress{std::string(client), 0};
}

size_t HttpSession::TakeProxyHeader(ProxyState& p, Connection& conn, std::string_view bytes) {
  const size_t before = p.held.size();  // header bytes of earlier reads
  if (before != 0) p.held.append(bytes);
  size_t consumed = 0;
  switch (ParseProxyHeader(before != 0 ? std::string_view(p.held) : bytes, &p.header, &consumed)) {
    case ProxyParse::kMore:
      if (before == 0) p.held.assign(bytes);
      return bytes.size();
    case ProxyParse::kBad:
      // Not from the proxy (or a broken one): nothing it sent can be trusted or answered.
      conn.Close();
      return bytes.size();
    case ProxyParse::kDone:
      break;
  }
  p.done = true;
  std::string().swap(p.held);
  return consumed - before;
}

bool HttpSession::UnreadBodyCloses() const {
  if (state_ == nullptr || !state_->body_streamed || !state_->in_message) return false;
  // A client waiting for "100 Continue" may send no body at all after a final answer (RFC 9110
  // 10.1.1): the next bytes could be a body or a request, so the connection ends here.
  if (state_->expect_continue && state_->body_bytes == 0) return true;
  return (parser_.flags & F_CONTENT_LENGTH) != 0 &&
         parser_.content_length > protocol_.config_->options.max_discard_bytes;
}

int HttpSession::Stop() {
  state_->stopped = true;
  state_->conn->SetDeadline(0);
  return HPE_PAUSED;
}

int HttpSession::TakeBody(const char* at, size_t length) {
  MessageState& st = *state_;
  PendingAnswer* pending = Pending();
  if (pending == nullptr) {
    // Answered already: read past, up to a bound, so the connection can go on.
    st.discarded += length;
    if (st.discarded <= protocol_.config_->options.max_discard_bytes) return HPE_OK;
    st.conn->Close();
    return HPE_PAUSED;
  }
  if (st.body_bytes > st.body_limit) return Fail(413);
  if (!pending->on_body || pending->body_paused) {
    // Nobody takes it yet: this piece (at most a read) waits, and nothing more is read.
    st.body.append(at, length);
    return Stop();
  }
  if (!DeliverBody(*pending, std::string_view(at, length), false)) return Fail(500);
  if (st.conn->closing()) return HPE_PAUSED;
  if (Pending() != nullptr && pending->body_paused) return Stop();
  return HPE_OK;
}

bool HttpSession::DeliverBody(PendingAnswer& pending, std::string_view chunk, bool last) {
  // Held here while it runs: the reader may answer, which drops it. It holds the answer, so
  // `pending` lives as long as it does.
  std::function<void(std::string_view, bool)> fn = std::move(pending.on_body);
  bool ok = true;
  try {
    fn(chunk, last);
  } catch (...) {
    ok = false;
  }
  if (!last && pending.session != nullptr && !pending.on_body) pending.on_body = std::move(fn);
  return ok;
}

void HttpSession::ReadBody(PendingAnswer& pending, std::function<void(std::string_view, bool)> fn) {
  MessageState& st = *state_;
  if (!st.body_streamed) {
    fn({}, true);  // the body was the request's
    return;
  }
  pending.on_body = std::move(fn);
  if (st.expect_continue && st.in_message) {
    st.expect_continue = false;
    if (parser_.http_minor == 1) pending.conn->output().append("HTTP/1.1 100 Continue\r\n\r\n"sv);
  }
  ContinueBody(pending);
}

void HttpSession::ContinueBody(PendingAnswer& pending) {
  // Within a parse (the reader paused and resumed at once), the parse reads on by itself.
  if (state_->parsing || pending.body_paused || !pending.on_body) return;
  Connection& conn = *pending.conn;
  MessageState& st = *state_;
  // What was kept while nobody took it, then the end if it came meanwhile.
  bool ok = true;
  if (!st.body.empty()) {
    std::string kept;
    kept.swap(st.body);
    ok = DeliverBody(pending, kept, false);
  }
  if (ok && st.body_end_due && Pending() == &pending && !pending.body_paused) {
    st.body_end_due = false;
    ok = DeliverBody(pending, {}, true);
  }
  if (!ok) {
    Reject(conn, 500);
  } else if (Pending() == &pending && pending.body_paused) {
    return;
  } else if (st.in_message && !conn.closing()) {
    // Read on: llhttp may have stopped just after the last byte of the body, before it saw
    // the message complete; a parse of nothing finishes it.
    OnData(conn, {});
  }
  conn.Resume();  // sends what was written, and hands over what the loop kept
}

PendingAnswer::~PendingAnswer() {
  if (session == nullptr) return;
  // Every handle was dropped without an answer (a handler that threw after Defer(), say): a
  // 500, or, once a streamed head is out, a cut-off body and a close.
  if (streaming) {
    session->FinishAnswer(*this, /*close=*/true);
    return;
  }
  fields.clear();
  response.type_length_ = 0;
  response.status_ = 500;
  session->Answer(*this, "Internal Server Error\n");
}

void HttpSession::KeepUnfinished(const char* end) {
  MessageState& st = *state_;
  const char* base = st.base;
  if (st.body_view.length > 0) {
    if ((parser_.flags & F_CONTENT_LENGTH) != 0) st.body.reserve(parser_.content_length);
    st.body.assign(base + st.body_view.offset, st.body_view.length);
    st.body_view = Span{};
    st.body_copied = true;
  }
  // Reading a body after a held header section: `held` already holds just that section.
  if (st.base_in_held && !st.parsing_held) return;
  const size_t keep = st.headers_done ? st.header_end : static_cast<size_t>(end - base);
  if (st.base_in_held) {
    st.held.erase(0, static_cast<size_t>(base - st.held.data()));
    st.held.resize(keep);
  } else {
    st.held.assign(base, keep);
    st.base_in_held = true;
  }
  st.base = st.held.data();
}

size_t HttpSession::OnData(Connection& conn, std::string_view bytes) {
  HttpProtocol& h = protocol_;
  if (h.proxy_protocol_) {
    ProxyState& proxy = h.proxies_[this];
    if (!proxy.done) {
      const size_t taken = TakeProxyHeader(proxy, conn, bytes);
      if (!proxy.done || taken == bytes.size()) return taken;
      return taken + OnData(conn, bytes.substr(taken));
    }
  }
  if (PendingAnswer* pending = Pending(); pending != nullptr) {
    // Bytes after a request whose answer is to come wait with the loop; so does a streamed
    // body while its reader is absent or paused.
    if (!state_->body_streamed || !state_->in_message || !pending->on_body ||
        pending->body_paused) {
      return 0;
    }
  }
  if (state_ == nullptr) state_ = h.TakeState();
  MessageState& st = *state_;
  st.parsing = true;
  st.conn = &conn;
  st.parsing_held = false;
  st.peer_closes = false;
  st.stopped = false;
  static constexpr char kNothing = 0;
  const char* begin = bytes.empty() ? &kNothing : bytes.data();
  const size_t length = bytes.size();
  if (st.in_message) {
    if (!st.headers_done) {
      // The header section is still arriving: join it to what is held so its spans stay
      // contiguous, and parse the new bytes there.
      const size_t old_size = st.held.size();
      st.held.append(bytes);
      begin = st.held.data() + old_size;
      st.parsing_held = true;
    } else {
      SetDeadline(h.body_timeout_ms_);
    }
    st.base = st.held.data();
  }
  const char* end = begin + length;
  st.input_end = end;
  size_t consumed = length;
  int status = 0;
  const llhttp_errno_t err = CheckChunkCrlf(begin, end) ? Parse(begin, end) : HPE_USER;
  if (err == HPE_USER && st.error_status == 0) {
    status = 400;  // the CRLF after a chunk's data, split from it by the read
  } else if (err == HPE_OK) {
    // Bytes no span covers (whitespace before a value) are counted only once a later span ends;
    // a header section still arriving is bounded by its raw size. Up to "\r\n\r" of it may be
    // the terminator, which the span measure leaves out.
    if (st.in_message && !st.headers_done &&
        static_cast<size_t>(end - st.base) > h.config_->options.max_header_bytes + 3) {
      status = 431;
    } else if (st.in_message) {
      KeepUnfinished(end);
    }
  } else if (err == HPE_PAUSED && st.stopped) {
    // The rest waits with the loop until the client has read enough of the answers (no
    // deadline runs against it meanwhile: the loop times the send instead), or until the
    // deferred answer is given.
    llhttp_resume(&parser_);
    consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - begin);
    if (st.in_message) KeepUnfinished(end);  // a streamed body's reader paused
  } else if (err == HPE_PAUSED && st.peer_closes && llhttp_get_error_pos(&parser_) == end) {
    // The client said this request is its last ("Connection: close", or HTTP/1.0 without
    // keep-alive) and sent nothing after it: no lingering for its FIN, as nginx does.
    conn.Close(/*linger=*/false);
  } else if (err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
    status = StatusFor(err);
  }
  if (status != 0) Reject(conn, status);
  // The state stays with a message that spans reads or an answer to come; otherwise it goes
  // back to the pool.
  st.parsing = false;
  if (st.pending == nullptr && (!st.in_message || conn.closing())) h.GiveBack(std::move(state_));
  return consumed;
}

void HttpSession::Reject(Connection& conn, int status) {
  HttpProtocol& h = protocol_;
  // A streamed body's request may have its answer out, or on its way: only the close is left.
  const bool answered =
      state_ != nullptr && state_->body_streamed && (Pending() == nullptr || Pending()->streaming);
  AbortPending();
  // With a request line to hang it on, an error goes through the error hook. Only a line that
  // ended within max_header_bytes counts: that limit is checked as each read ends, so how much
  // of a longer line llhttp had seen by then would depend on how the bytes were split (the
  // fuzzer compares one read with many), and so would the answer.
  const bool has_request = InMessage() && state_->target_done &&
                           state_->target.end() <= h.config_->options.max_header_bytes;
  if (!answered && has_request && h.config_->on_error) {
    SendOwnError(conn, status);
  } else if (!answered) {
    AppendErrorResponse(conn.output(), status, h.date_.line());
    CountResponse(status);
    if (h.config_->options.log_requests) {
      h.log_.append("Request rejected by worker "sv);
      AppendDecimal(h.log_, static_cast<size_t>(h.worker_.id()));
      h.log_.append(": "sv);
      AppendDecimal(h.log_, static_cast<size_t>(status));
      h.log_.push_back('\n');
    }
  }
  conn.Close();
}

void HttpSession::SendOwnError(Connection& conn, int status) {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  // The header section's bytes are all here (the receive buffer during a parse, else `held`);
  // the fields are those complete so far (all of them, past the header section).
  h.headers_.clear();
  for (const auto& [name, value] : st.fields) {
    h.headers_.push_back(HeaderField{View(st.base, name), TrimOws(View(st.base, value))});
  }
  const std::string_view method = View(st.base, st.method);
  const bool http10 = parser_.http_minor == 0;
  Request req;
  RequestBuilder::Fill(req, method, View(st.base, st.target), h.headers_, {}, parser_.http_minor,
                       /*keep_alive=*/false, h.worker_, conn, *this);
  Response res = ResponseWriter::Make(&conn.output(), &h.fields_, h.date_.line(), method == "HEAD",
                                      /*close=*/true, http10, /*http10_keep_alive=*/false);
  res.conn_ = &conn;  // no session_: the answer cannot be deferred (Defer() throws)
  h.finish_.fns.clear();
  h.finish_.status = -1;
  res.finish_ = &h.finish_;
  SendError(req, res, Error{status, ReasonPhrase(status), {}});
  CountResponse(res.status());
  if (h.config_->options.log_requests) LogResponse(method, req.path(), res.status());
  if (!h.finish_.fns.empty()) h.finish_.Run(res.status());
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
  if (BetweenMessages()) conn.SetDeadline(conn.worker().now_ms() + kDrainIdleCloseMs);
  // A long-lived answer (an event stream, a long poll) has no end of its own in sight: it is
  // told (DeferredResponse::OnClosing), and ends itself. The one path by which every kind of
  // session hears that its loop closes, a rolling restart's included.
  if (PendingAnswer* pending = Pending(); pending != nullptr && pending->on_closing) {
    std::function<void()> closing = std::move(pending->on_closing);
    pending->on_closing = nullptr;
    try {
      closing();  // may answer, and so give `state_` back
    } catch (...) {
      // The drain goes on; the answer ends with the shutdown timeout at the latest.
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
