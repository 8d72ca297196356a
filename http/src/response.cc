#include "response_core.h"

#include <unistd.h>

#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "ascii.h"
#include "codec.h"
#include "date_cache.h"
#include "gzip_file.h"
#include "percore/http/middleware.h"
#include "percore/http/request.h"
#include "h2_session.h"
#include "pending.h"
#include "response_writer.h"

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

void ResponseCore::Status(int code) {
  if (code < 200 || code > 599) {
    throw std::invalid_argument("status code " + std::to_string(code) + " is not in 200..599");
  }
  status_ = code;
}

void ResponseCore::Set(std::string_view name, std::string_view value) {
  if (name.empty() || HasControl(name) || HasControl(value) || name.find(':') != name.npos) {
    throw std::invalid_argument("invalid header field \"" + std::string(name) + "\"");
  }
  if (EqualsIgnoreCase(name, "connection") && EqualsIgnoreCase(TrimOws(value), "close")) {
    close_ = true;
    return;  // written below with the managed fields
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
}

void ResponseCore::Type(std::string_view content_type) {
  if (HasControl(content_type)) throw std::invalid_argument("invalid Content-Type");
  if (type_length_ != 0) fields_->erase(type_offset_, type_length_);  // the last call wins
  type_offset_ = fields_->size();
  fields_->append("Content-Type: "sv);
  fields_->append(content_type);
  fields_->append("\r\n"sv);
  type_length_ = fields_->size() - type_offset_;
}

size_t ResponseCore::FindField(std::string_view name) const {
  const std::string& f = *fields_;
  for (size_t line = 0; line < f.size();) {
    const size_t colon = f.find(':', line);
    if (EqualsIgnoreCase(std::string_view(f).substr(line, colon - line), name)) return line;
    line = f.find("\r\n", colon) + 2;
  }
  return std::string::npos;
}

void ResponseCore::Vary(std::string_view field) {
  field = TrimOws(field);
  if (field.empty() || HasControl(field)) throw std::invalid_argument("invalid Vary field");
  if (field.find(',') != std::string_view::npos) {
    // A list (Set("Vary", "Origin, Cookie")): each of its fields is merged on its own.
    for (std::string_view rest = field; !rest.empty();) {
      const size_t comma = rest.find(',');
      if (!TrimOws(rest.substr(0, comma)).empty()) Vary(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    return;
  }
  const size_t line = FindField("vary");
  if (line == std::string::npos) {
    fields_->append("Vary: "sv);
    fields_->append(field);
    fields_->append("\r\n"sv);
    return;
  }
  const size_t end = fields_->find("\r\n", line);
  std::string_view values = std::string_view(*fields_).substr(line + 6, end - line - 6);
  for (std::string_view rest = values; !rest.empty();) {
    const size_t comma = rest.find(',');
    const std::string_view value = TrimOws(rest.substr(0, comma));
    if (EqualsIgnoreCase(value, field) || value == "*") {
      return;
    }
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  std::string added = ", " + std::string(field);
  fields_->insert(end, added);
  if (type_length_ != 0 && type_offset_ > line) type_offset_ += added.size();
}

namespace {

bool IsCookieAttribute(std::string_view s) {
  for (char c : s) {
    if (c == ';' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

void ResponseCore::Cookie(std::string_view name, std::string_view value,
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
}

void ResponseCore::OnFinish(absl::AnyInvocable<void(int status)> fn) {
  if (fn && finish_ != nullptr) finish_->Add(std::move(fn));
}

std::string JsonText(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// A response head's lines but the handler's fields, put together on the stack and appended at
// once: one capacity check and copy, where a line at a time costs one each. The longest status
// line, Date, Content-Type, Content-Length and Connection lines come to under 200 bytes.
class HeadLines {
 public:
  void Put(std::string_view s) {
    std::memcpy(end_, s.data(), s.size());
    end_ += s.size();
  }
  // The Date line: DateCache's is always kLineLength bytes, a copy of a known size, made inline
  // (a test's may be any other).
  void PutDateLine(std::string_view line) {
    if (line.size() != DateCache::kLineLength) return Put(line);
    std::memcpy(end_, line.data(), DateCache::kLineLength);
    end_ += DateCache::kLineLength;
  }
  // Written in place, from its last digit back, rather than copied from a scratch buffer.
  void PutDecimal(uint64_t n) {
    size_t digits = 1;
    for (uint64_t rest = n; rest >= 10; rest /= 10) ++digits;
    end_ += digits;
    char* p = end_;
    do {
      *--p = static_cast<char>('0' + n % 10);
      n /= 10;
    } while (n != 0);
  }
  void PutStatusLine(int status) {
    if (status == 200) {
      Put("HTTP/1.1 200 OK\r\n"sv);
      return;
    }
    Put("HTTP/1.1 "sv);
    PutDecimal(static_cast<uint64_t>(status));
    Put(" "sv);
    Put(ReasonPhrase(status));
    Put("\r\n"sv);
  }
  std::string_view view() const {
    return std::string_view(bytes_, static_cast<size_t>(end_ - bytes_));
  }

 private:
  char bytes_[256];
  char* end_ = bytes_;
};

}  // namespace

ResponseCore::Head ResponseCore::WriteHead(std::optional<uint64_t> length, bool empty_body) {
  if (h2_ != nullptr) return h2_->SubmitHead(*this, length, empty_body);
  std::string& out = *out_;
  HeadLines head;
  head.PutStatusLine(status_);
  head.PutDateLine(date_line_);
  const bool no_body = status_ == 204 || status_ == 304;
  const Framing framing = length.has_value() ? Framing::kLength
                          : http10_          ? Framing::kClose
                                             : Framing::kChunked;
  if (framing == Framing::kClose) close_ = true;
  if (body_unread_ && stream_->UnreadBodyCloses()) close_ = true;
  if (!no_body) {
    if (type_length_ == 0 && !empty_body) {
      head.Put("Content-Type: text/plain; charset=utf-8\r\n"sv);
    }
    if (framing == Framing::kLength) {
      head.Put("Content-Length: "sv);
      head.PutDecimal(*length);
      head.Put("\r\n"sv);
    } else if (framing == Framing::kChunked) {
      head.Put("Transfer-Encoding: chunked\r\n"sv);
    }
  }
  if (close_) {
    head.Put("Connection: close\r\n"sv);
  } else if (http10_keep_alive_) {
    head.Put("Connection: keep-alive\r\n"sv);
  }
  if (fields_->empty()) {
    head.Put("\r\n"sv);
    out.append(head.view());
    return {framing, !head_ && !no_body};
  }
  out.append(head.view());
  if (no_body && type_length_ != 0) {
    // No representation: its type would only mislead (RFC 9110 15.4.5 lists what a 304 says).
    out.append(std::string_view(*fields_).substr(0, type_offset_));
    out.append(std::string_view(*fields_).substr(type_offset_ + type_length_));
  } else {
    out.append(*fields_);
  }
  out.append("\r\n"sv);
  return {framing, !head_ && !no_body};
}

void ResponseCore::Send(std::string_view body) {
  if (sent_) return;
  if (validators_ && AnswerPreconditions(body.size(), /*file=*/false)) return;
  // Negotiate() says no to a small body first; asked here, that costs no call.
  if (compress_ != nullptr && body.size() >= compress_->min_bytes && Negotiate(body.size())) {
    SendCompressed(body);
    return;
  }
  sent_ = true;
  if (WriteHead(body.size(), body.empty()).body) out_->append(body);
}

// Here rather than with the handle's other methods: the handler's Send() is GET /'s, and here
// ResponseCore::Send is inlined into it.
void Response::Send(std::string_view body) {
  if (pending_ != nullptr) return SendLater(body);
  if (core_ != nullptr && !core()->deferred_) core()->Send(body);
}

void ResponseCore::SendFile(int fd, uint64_t offset, uint64_t length) {
  const Request* req = request_;  // for the request log of an answer streamed below
  if (sent_ || conn_ == nullptr || (validators_ && AnswerPreconditions(length, /*file=*/true))) {
    close(fd);
    return;
  }
  // A big file is gzipped as the client reads it: an answer that goes on after the handler, so
  // a deferred one, which this Response hands over to at once.
  if (!deferred_ && stream_ != nullptr && StreamsGzip(length)) {
    std::shared_ptr<PendingResponse> later = Defer();
    sent_ = true;
    if (req != nullptr) {
      later->log_line = std::string(req->method()) + " " + std::string(req->path());
    }
    FilePump::Start(std::move(later), fd, offset, length);
    return;
  }
  if (compress_ != nullptr && length <= kMaxGzipFile && Negotiate(length)) {
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
  if (!WriteHead(length, length == 0).body) {
    close(fd);
  } else if (slot_ != nullptr) {
    slot_->fd = fd;  // sent when the slot's turn comes
    slot_->offset = offset;
    slot_->length = length;
  } else {
    conn_->SendFile(fd, offset, length);
  }
}

std::shared_ptr<PendingResponse> ResponseCore::Defer() {
  if (sent_ || deferred_ || stream_ == nullptr) {
    throw std::logic_error("Response::Defer(): already sent or deferred");
  }
  // The request's views end with the handler: a GET's or HEAD's conditional fields are copied
  // for the answer's preconditions.
  KeepConditions();
  request_ = nullptr;
  deferred_ = true;
  return stream_->Defer(*this);
}

}  // namespace percore::http
