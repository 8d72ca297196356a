#include "percore/http/response.h"

#include <unistd.h>

#include <stdexcept>

#include "ascii.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {
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
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
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
    out.append("HTTP/1.1 200 OK\r\n");
    return;
  }
  out.append("HTTP/1.1 ");
  AppendDecimal(out, static_cast<size_t>(status));
  out.push_back(' ');
  out.append(ReasonPhrase(status));
  out.append("\r\n");
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
  if (EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "date") ||
      EqualsIgnoreCase(name, "transfer-encoding") || EqualsIgnoreCase(name, "connection")) {
    throw std::invalid_argument("header field \"" + std::string(name) +
                                "\" is managed by the server");
  }
  fields_->append(name);
  fields_->append(": ");
  fields_->append(value);
  fields_->append("\r\n");
  return *this;
}

Response& Response::Type(std::string_view content_type) {
  if (HasControl(content_type)) throw std::invalid_argument("invalid Content-Type");
  if (type_length_ != 0) fields_->erase(type_offset_, type_length_);  // the last call wins
  type_offset_ = fields_->size();
  fields_->append("Content-Type: ");
  fields_->append(content_type);
  fields_->append("\r\n");
  type_length_ = fields_->size() - type_offset_;
  return *this;
}

bool Response::AppendHead(Framing framing, uint64_t length, bool empty_body) {
  std::string& out = *out_;
  AppendStatusLine(out, status_);
  out.append(date_line_);
  const bool no_body = status_ == 204 || status_ == 304;
  if (framing == Framing::kClose) close_ = true;
  if (body_unread_ && session_->UnreadBodyCloses()) close_ = true;
  if (!no_body) {
    if (type_length_ == 0 && !empty_body) {
      out.append("Content-Type: text/plain; charset=utf-8\r\n");
    }
    if (framing == Framing::kLength) {
      out.append("Content-Length: ");
      AppendDecimal(out, length);
      out.append("\r\n");
    } else if (framing == Framing::kChunked) {
      out.append("Transfer-Encoding: chunked\r\n");
    }
  }
  if (close_) {
    out.append("Connection: close\r\n");
  } else if (http10_keep_alive_) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append(*fields_);
  out.append("\r\n");
  return !head_ && !no_body;
}

void Response::Send(std::string_view body) {
  if (sent_) return;
  sent_ = true;
  if (AppendHead(Framing::kLength, body.size(), body.empty())) out_->append(body);
}

void Response::SendFile(int fd, uint64_t offset, uint64_t length) {
  if (sent_ || conn_ == nullptr) {
    close(fd);
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
  if (!state_->conn->output_full()) {
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
