#include "percore/http/response.h"

#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "ascii.h"
#include "codec.h"
#include "percore/http/middleware.h"
#include "percore/http/request.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {

// Literal appends with their length known at compile time: append(const char*) calls strlen
// once the compiler stops inlining it.
using namespace std::string_view_literals;
namespace {

bool HasControl(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

// With Compress(), a file worth compressing is read and compressed as a whole body is (as
// nginx's gzip module does), up to this bound; a bigger one goes as it is.
constexpr uint64_t kMaxCompressedFile = 4 << 20;

ConditionalFields ConditionsOf(const Request& req) {
  return {req.Header("if-match"), req.Header("if-unmodified-since"), req.Header("if-none-match"),
          req.Header("if-modified-since")};
}

}  // namespace

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void AppendDecimal(std::string& out, size_t n) {
  char digits[20];
  int i = sizeof(digits);
  do {
    digits[--i] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  out.append(digits + i, sizeof(digits) - i);
}

void AppendStatusLine(std::string& out, int status) {
  if (status == 200) {
    out.append("HTTP/1.1 200 OK\r\n"sv);
    return;
  }
  out.append("HTTP/1.1 "sv);
  AppendDecimal(out, static_cast<size_t>(status));
  out.push_back(' ');
  out.append(ReasonPhrase(status));
  out.append("\r\n"sv);
}

Response& Response::Status(int code) {
  if (code < 200 || code > 599) {
    throw std::invalid_argument("status code " + std::to_string(code) + " is not in 200..599");
  }
  status_ = code;
  return *this;
}

Response& Response::Set(std::string_view name, std::string_view value) {
  if (name.empty() || HasControl(name) || HasControl(value) || name.find(':') != name.npos) {
    throw std::invalid_argument("invalid header field \"" + std::string(name) + "\"");
  }
  if (EqualsIgnoreCase(name, "connection") && EqualsIgnoreCase(TrimOws(value), "close")) {
    close_ = true;
    return *this;  // written below with the managed fields
  }
  if (EqualsIgnoreCase(name, "content-type")) return Type(value);
  if (EqualsIgnoreCase(name, "etag") || EqualsIgnoreCase(name, "last-modified")) {
    validators_ = true;  // the answer may be conditional: see AnswerPreconditions
  }
  if (EqualsIgnoreCase(name, "vary")) return Vary(value);
  if (EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "date") ||
      EqualsIgnoreCase(name, "transfer-encoding") || EqualsIgnoreCase(name, "connection")) {
    throw std::invalid_argument("header field \"" + std::string(name) +
                                "\" is managed by the server");
  }
  fields_->append(name);
  fields_->append(": "sv);
  fields_->append(value);
  fields_->append("\r\n"sv);
  return *this;
}

Response& Response::Type(std::string_view content_type) {
  if (HasControl(content_type)) throw std::invalid_argument("invalid Content-Type");
  if (type_length_ != 0) fields_->erase(type_offset_, type_length_);  // the last call wins
  type_offset_ = fields_->size();
  fields_->append("Content-Type: "sv);
  fields_->append(content_type);
  fields_->append("\r\n"sv);
  type_length_ = fields_->size() - type_offset_;
  return *this;
}

size_t Response::FindField(std::string_view name) const {
  const std::string& f = *fields_;
  for (size_t line = 0; line < f.size();) {
    const size_t colon = f.find(':', line);
    if (EqualsIgnoreCase(std::string_view(f).substr(line, colon - line), name)) return line;
    line = f.find("\r\n", colon) + 2;
  }
  return std::string::npos;
}

Response& Response::Vary(std::string_view field) {
  field = TrimOws(field);
  if (field.empty() || HasControl(field)) throw std::invalid_argument("invalid Vary field");
  if (field.find(',') != std::string_view::npos) {
    // A list (Set("Vary", "Origin, Cookie")): each of its fields is merged on its own.
    for (std::string_view rest = field; !rest.empty();) {
      const size_t comma = rest.find(',');
      if (!TrimOws(rest.substr(0, comma)).empty()) Vary(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    return *this;
  }
  const size_t line = FindField("vary");
  if (line == std::string::npos) {
    fields_->append("Vary: "sv);
    fields_->append(field);
    fields_->append("\r\n"sv);
    return *this;
  }
  const size_t end = fields_->find("\r\n", line);
  std::string_view values = std::string_view(*fields_).substr(line + 6, end - line - 6);
  for (std::string_view rest = values; !rest.empty();) {
    const size_t comma = rest.find(',');
    const std::string_view value = TrimOws(rest.substr(0, comma));
    if (EqualsIgnoreCase(value, field) || value == "*") {
      return *this;
    }
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  std::string added = ", " + std::string(field);
  fields_->insert(end, added);
  if (type_length_ != 0 && type_offset_ > line) type_offset_ += added.size();
  return *this;
}

namespace {

bool IsCookieAttribute(std::string_view s) {
  for (char c : s) {
    if (c == ';' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

Response& Response::Cookie(std::string_view name, std::string_view value,
                           const CookieOptions& options) {
  if (!IsCookieName(name)) throw std::invalid_argument("invalid cookie name");
  if (!IsCookieValue(value))
    throw std::invalid_argument("invalid cookie value for " + std::string(name));
  if (!IsCookieAttribute(options.path) || !IsCookieAttribute(options.domain)) {
    throw std::invalid_argument("invalid cookie path or domain for " + std::string(name));
  }
  using SameSite = CookieOptions::SameSite;
  if (options.same_site == SameSite::kNone && !options.secure) {
    throw std::invalid_argument("cookie " + std::string(name) + ": SameSite=None needs Secure");
  }
  std::string& f = *fields_;
  f.append("Set-Cookie: "sv);
  f.append(name);
  f.push_back('=');
  f.append(value);
  if (!options.path.empty()) {
    f.append("; Path="sv);
    f.append(options.path);
  }
  if (!options.domain.empty()) {
    f.append("; Domain="sv);
    f.append(options.domain);
  }
  if (options.max_age >= 0) {
    f.append("; Max-Age="sv);
    AppendDecimal(f, static_cast<size_t>(options.max_age));
    // Expires as well, for clients that predate Max-Age; 0 is the epoch.
    f.append("; Expires="sv);
    AppendHttpDate(options.max_age == 0 ? 0 : time(nullptr) + options.max_age, &f);
  }
  if (options.secure) f.append("; Secure"sv);
  if (options.http_only) f.append("; HttpOnly"sv);
  switch (options.same_site) {
    case SameSite::kLax:
      f.append("; SameSite=Lax"sv);
      break;
    case SameSite::kStrict:
      f.append("; SameSite=Strict"sv);
      break;
    case SameSite::kNone:
      f.append("; SameSite=None"sv);
      break;
    case SameSite::kUnset:
      break;
  }
  f.append("\r\n"sv);
  return *this;
}

Response& Response::ClearCookie(std::string_view name, const CookieOptions& options) {
  CookieOptions cleared = options;
  cleared.max_age = 0;
  return Cookie(name, "", cleared);
}

Response& Response::OnFinish(std::function<void(int status)> fn) {
  if (fn && finish_ != nullptr) finish_->Add(std::move(fn));
  return *this;
}

void Response::Redirect(std::string_view location, int status) {
  if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
    throw std::invalid_argument("redirect status " + std::to_string(status) +
                                " is not 301, 302, 303, 307 or 308");
  }
  Status(status).Set("Location", location);
  std::string body(ReasonPhrase(status));
  body.append(". Redirecting to "sv);
  body.append(location);
  body.push_back('\n');
  Send(body);
}

namespace {

// Invalid UTF-8 in a string is replaced rather than thrown about mid-answer.
std::string JsonText(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void Response::Json(const nlohmann::json& value) { Type("application/json").Send(JsonText(value)); }

bool Response::Negotiate(uint64_t length) {
  // The Content-Type line's value, or the default type.
  const std::string_view type =
      type_length_ != 0 ? std::string_view(*fields_).substr(type_offset_ + 14, type_length_ - 16)
                        : std::string_view("text/plain");
  // A body this small is never compressed, for any client: nothing varies (nginx's rule too).
  if (length < compress_->min_bytes || status_ == 204 || status_ == 206 || !IsCompressible(type) ||
      FindField("content-encoding") != std::string::npos) {
    return false;
  }
  // Whether a cache may give this answer to a client depends on its Accept-Encoding, whether
  // or not this one is compressed.
  Vary("Accept-Encoding");
  // HEAD too: its fields are GET's (RFC 9110 9.3.2), gzip's Content-Length included, so its
  // body is compressed as well and then left out.
  if (!gzip_accepted_) return false;
  // The gzipped bytes are not the file's: a strong validator would claim they are (RFC 9110
  // 8.8.3), so it becomes weak, as nginx makes it; a 304 carries the validator the 200 had.
  if (const size_t etag = FindField("etag"); etag != std::string::npos) {
    const size_t value = fields_->find_first_not_of(' ', fields_->find(':', etag) + 1);
    if (fields_->compare(value, 2, "W/") != 0) {
      fields_->insert(value, "W/");
      if (type_length_ != 0 && type_offset_ > etag) type_offset_ += 2;
    }
  }
  return status_ != 304;
}

// Flattened: the appends of literals inline to a few moves each; GCC stops inlining them on its
// own once this file has enough other appends.
[[gnu::flatten]] bool Response::AppendHead(Framing framing, uint64_t length, bool empty_body) {
  std::string& out = *out_;
  AppendStatusLine(out, status_);
  out.append(date_line_);
  const bool no_body = status_ == 204 || status_ == 304;
  if (framing == Framing::kClose) close_ = true;
  if (body_unread_ && session_->UnreadBodyCloses()) close_ = true;
  if (!no_body) {
    if (type_length_ == 0 && !empty_body) {
      out.append("Content-Type: text/plain; charset=utf-8\r\n"sv);
    }
    if (framing == Framing::kLength) {
      out.append("Content-Length: "sv);
      AppendDecimal(out, length);
      out.append("\r\n"sv);
    } else if (framing == Framing::kChunked) {
      out.append("Transfer-Encoding: chunked\r\n"sv);
    }
  }
  if (close_) {
    out.append("Connection: close\r\n"sv);
  } else if (http10_keep_alive_) {
    out.append("Connection: keep-alive\r\n"sv);
  }
  if (no_body && type_length_ != 0) {
    // No representation: its type would only mislead (RFC 9110 15.4.5 lists what a 304 says).
    out.append(std::string_view(*fields_).substr(0, type_offset_));
    out.append(std::string_view(*fields_).substr(type_offset_ + type_length_));
  } else {
    out.append(*fields_);
  }
  out.append("\r\n"sv);
  return !head_ && !no_body;
}

void Response::SendCompressed(std::string_view body) {
  std::string* zipped = session_->Gzip(body, compress_->level);
  if (zipped != nullptr && zipped->size() < body.size()) {
    fields_->append("Content-Encoding: gzip\r\n"sv);
    body = *zipped;
  }  // else as it is: the weak ETag is still true
  sent_ = true;
  if (AppendHead(Framing::kLength, body.size(), body.empty())) out_->append(body);
  if (zipped != nullptr) KeepSmall(*zipped);
}

struct Response::KeptConditions {
  std::string if_match, if_unmodified_since, if_none_match, if_modified_since;
};

bool Response::AnswerPreconditions(uint64_t length, bool file) {
  if (!validators_ || status_ < 200 || status_ > 299) return false;  // RFC 9110 13.2.1
  // Looked at once: Static asks before its Range, and its SendFile must not ask again.
  const std::shared_ptr<const KeptConditions> kept = std::move(kept_conditions_);
  const Request* req = request_;
  request_ = nullptr;
  ConditionalFields conditions;
  if (req != nullptr) {
    // Other methods have acted by now: their preconditions were the handler's to check first.
    if (!head_ && req->method() != "GET") return false;
    conditions = ConditionsOf(*req);
  } else if (kept != nullptr) {
    conditions = {kept->if_match, kept->if_unmodified_since, kept->if_none_match,
                  kept->if_modified_since};
  } else {
    return false;
  }
  const auto value_of = [this](std::string_view name) {
    const size_t line = FindField(name);
    if (line == std::string::npos) return std::string_view();
    const size_t value = line + name.size() + 1;  // after the ':'
    return TrimOws(std::string_view(*fields_).substr(value, fields_->find("\r\n", line) - value));
  };
  int64_t modified = 0;
  const std::string_view last_modified = value_of("last-modified");
  const bool dated = !last_modified.empty() && ParseHttpDate(last_modified, &modified);
  switch (EvaluatePreconditions(conditions, value_of("etag"), dated ? &modified : nullptr,
                                time(nullptr))) {
    case Precondition::kPass:
      return false;
    case Precondition::kNotModified:
      Status(304);
      // The ETag and Vary the 200 would have (RFC 9110 15.4.5).
      if (compress_ != nullptr && (!file || length <= kMaxCompressedFile)) Negotiate(length);
      Send("");
      return true;
    case Precondition::kFailed:
      // The fields set so far stay, as they do for a 4xx a handler throws.
      Status(412).Type("text/plain; charset=utf-8").Send("Precondition Failed\n");
      return true;
  }
  return false;
}

void Response::Send(std::string_view body) {
  if (sent_) return;
  if (validators_ && AnswerPreconditions(body.size(), /*file=*/false)) return;
  if (compress_ != nullptr && Negotiate(body.size())) {
    SendCompressed(body);
    return;
  }
  sent_ = true;
  if (AppendHead(Framing::kLength, body.size(), body.empty())) out_->append(body);
}

void Response::SendFile(int fd, uint64_t offset, uint64_t length) {
  if (sent_ || conn_ == nullptr || (validators_ && AnswerPreconditions(length, /*file=*/true))) {
    close(fd);
    return;
  }
  if (compress_ != nullptr && length <= kMaxCompressedFile && Negotiate(length)) {
    std::string body(length, '\0');
    const ssize_t n = pread(fd, body.data(), length, static_cast<off_t>(offset));
    close(fd);
    if (n != static_cast<ssize_t>(length)) {
      conn_->Close(false);  // the file is shorter than its range, as a failed send would show
      sent_ = true;
      return;
    }
    SendCompressed(body);
    return;
  }
  sent_ = true;
  if (AppendHead(Framing::kLength, length, length == 0)) {
    conn_->SendFile(fd, offset, length);
  } else {
    close(fd);
  }
}

DeferredResponse Response::Defer() {
  if (sent_ || deferred_ || session_ == nullptr) {
    throw std::logic_error("Response::Defer(): already sent or deferred");
  }
  // The request's views end with the handler: a GET's or HEAD's conditional fields are copied
  // for the answer's preconditions.
  if (request_ != nullptr && (head_ || request_->method() == "GET")) {
    const ConditionalFields c = ConditionsOf(*request_);
    if (!c.if_match.empty() || !c.if_unmodified_since.empty() || !c.if_none_match.empty() ||
        !c.if_modified_since.empty()) {
      kept_conditions_ = std::make_shared<const KeptConditions>(
          KeptConditions{std::string(c.if_match), std::string(c.if_unmodified_since),
                         std::string(c.if_none_match), std::string(c.if_modified_since)});
    }
  }
  request_ = nullptr;
  deferred_ = true;
  return DeferredResponse(session_->Defer(*this));
}

DeferredResponse::~DeferredResponse() {
  // The last copy must go on the loop (an unanswered one answers 500 there): a copy dropped on
  // another thread goes to the loop, which drops it. If the loop is gone, so is the connection.
  if (state_ != nullptr && !state_->loop.OnLoopThread()) {
    state_->loop.Post([state = std::move(state_)] {});
  }
}

DeferredResponse& DeferredResponse::Status(int code) {
  state_->response.Status(code);
  return *this;
}

DeferredResponse& DeferredResponse::Set(std::string_view name, std::string_view value) {
  state_->response.Set(name, value);
  return *this;
}

DeferredResponse& DeferredResponse::Type(std::string_view content_type) {
  state_->response.Type(content_type);
  return *this;
}

DeferredResponse& DeferredResponse::Vary(std::string_view field) {
  state_->response.Vary(field);
  return *this;
}

DeferredResponse& DeferredResponse::Cookie(std::string_view name, std::string_view value,
                                           const CookieOptions& options) {
  state_->response.Cookie(name, value, options);
  return *this;
}

DeferredResponse& DeferredResponse::OnFinish(std::function<void(int status)> fn) {
  state_->response.OnFinish(std::move(fn));
  return *this;
}

void DeferredResponse::Json(const nlohmann::json& value) {
  Type("application/json");
  Send(JsonText(value));
}

void DeferredResponse::Send(std::string_view body) {
  if (state_->session == nullptr) return;
  if (state_->streaming) {
    Write(body);
    End();
  } else {
    state_->session->Answer(*state_, body);
  }
}

void DeferredResponse::SendFile(int fd, uint64_t offset, uint64_t length) {
  if (state_->session == nullptr || state_->streaming) {
    close(fd);
    return;
  }
  state_->session->AnswerFile(*state_, fd, offset, length);
}

DeferredResponse& DeferredResponse::Length(uint64_t bytes) {
  if (!state_->streaming) state_->length = bytes;
  return *this;
}

bool DeferredResponse::Write(std::string_view chunk) {
  return state_->session != nullptr && state_->session->WritePart(*state_, chunk);
}

void DeferredResponse::End() {
  if (state_->session == nullptr) return;
  if (!state_->streaming) state_->session->WritePart(*state_, {});  // an empty body
  state_->session->EndParts(*state_);
}

void DeferredResponse::OnWritable(std::function<void()> fn) {
  if (state_->session == nullptr) return;
  if (state_->session->StreamHasRoom(*state_->conn)) {
    fn();
    return;
  }
  state_->on_writable = std::move(fn);
  state_->conn->NotifyWritable();
}

void DeferredResponse::OnBody(std::function<void(std::string_view chunk, bool last)> fn) {
  if (state_->session != nullptr) state_->session->ReadBody(*state_, std::move(fn));
}

void DeferredResponse::PauseBody() { state_->body_paused = true; }

void DeferredResponse::ResumeBody() {
  if (!state_->body_paused) return;
  state_->body_paused = false;
  if (state_->session != nullptr) state_->session->ContinueBody(*state_);
}

void DeferredResponse::OnAborted(std::function<void()> fn) {
  if (aborted()) {
    fn();
  } else if (!sent()) {
    state_->on_aborted = std::move(fn);
  }
}

bool DeferredResponse::aborted() const { return state_->session == nullptr && !sent(); }

bool DeferredResponse::sent() const { return state_->response.sent(); }

const LoopRef& DeferredResponse::loop() const { return state_->loop; }

}  // namespace percore::http
