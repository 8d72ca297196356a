// Response, the handle: the handler's, which writes through its ResponseCore straight to the
// output, and the one Defer() returns, which gives its answer later through its PendingResponse
// and the stream (HttpStream) that answer belongs to.
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "codec.h"
#include "gzip_file.h"
#include "http_stream.h"
#include "percore/http/middleware.h"
#include "pending.h"
#include "response_core.h"
#include "response_writer.h"

namespace percore::http {

using namespace std::string_view_literals;

Response::Response(std::shared_ptr<PendingResponse> pending)
    : core_(&pending->response), pending_(std::move(pending)) {}

Response::Response(Response&& other) : core_(nullptr) { *this = std::move(other); }

Response& Response::operator=(Response&& other) {
  if (this == &other) return *this;
  // The handler's own Response stays where the session made it: what moves is its answer, kept
  // as Defer() keeps it (which throws once it was sent); once kept, nothing is left to move.
  if (other.pending_ == nullptr && other.core_ != nullptr) {
    if (!other.core()->deferred_) return *this = other.Defer();
    pending_.reset();
    core_ = nullptr;
    return *this;
  }
  pending_ = std::move(other.pending_);
  core_ = std::exchange(other.core_, nullptr);
  return *this;
}

void Response::Release() {
  // A handle's state must go on its loop (an unanswered one answers 500 there): one dropped on
  // another thread goes to the loop, which drops it. If the loop is gone, so is the connection.
  if (!pending_->worker.OnWorkerThread()) {
    pending_->worker.Post([pending = std::move(pending_)] {});
  }
}

Response& Response::Status(int code) {
  if (core_ != nullptr) core()->Status(code);
  return *this;
}

Response& Response::Set(std::string_view name, std::string_view value) {
  if (core_ != nullptr) core()->Set(name, value);
  return *this;
}

Response& Response::Type(std::string_view content_type) {
  if (core_ != nullptr) core()->Type(content_type);
  return *this;
}

Response& Response::Vary(std::string_view field) {
  if (core_ != nullptr) core()->Vary(field);
  return *this;
}

Response& Response::Cookie(std::string_view name, std::string_view value,
                           const CookieOptions& options) {
  if (core_ != nullptr) core()->Cookie(name, value, options);
  return *this;
}

Response& Response::ClearCookie(std::string_view name, const CookieOptions& options) {
  CookieOptions cleared = options;
  cleared.max_age = 0;
  return Cookie(name, "", cleared);
}

Response& Response::OnFinish(absl::AnyInvocable<void(int status)> fn) {
  if (core_ != nullptr) core()->OnFinish(std::move(fn));
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

void Response::Json(const nlohmann::json& value) {
  Type("application/json");
  Send(JsonText(value));
}

void Response::SendLater(std::string_view body) {
  PendingResponse& p = *pending_;
  if (p.stream == nullptr) return;
  if (p.streaming) {
    Write(body);
    End();
  } else {
    p.stream->SendPending(p, body);
  }
}

void Response::SendFile(int fd, uint64_t offset, uint64_t length) {
  if (pending_ == nullptr) {
    if (core_ != nullptr && !core()->deferred_) return core()->SendFile(fd, offset, length);
    close(fd);
    return;
  }
  PendingResponse& p = *pending_;
  if (p.stream == nullptr || p.streaming) {
    close(fd);
    return;
  }
  // A big file gzipped is streamed as the client reads it, unless a 304 or 412 answers.
  ResponseCore& res = p.response;
  if (!res.sent_ && res.CheckPreconditions() == Precondition::kPass && res.StreamsGzip(length)) {
    FilePump::Start(pending_, fd, offset, length);
    return;
  }
  p.stream->SendPendingFile(p, fd, offset, length);
}

Response Response::Defer() {
  if (pending_ != nullptr || core_ == nullptr) {
    throw std::logic_error("Response::Defer(): on a handle already kept, or a moved-from one");
  }
  return Response(core()->Defer());
}

PendingResponse* Response::Later(const char* what) const {
  if (pending_ == nullptr && core_ != nullptr) {
    throw std::logic_error(std::string("Response::") + what +
                           "(): for an answer kept with Defer(), not the handler's Response");
  }
  return pending_.get();  // null once moved from
}

Response& Response::Length(uint64_t bytes) {
  if (PendingResponse* p = Later("Length"); p != nullptr && !p->streaming) p->length = bytes;
  return *this;
}

bool Response::Write(std::string_view chunk) {
  PendingResponse* p = Later("Write");
  return p != nullptr && p->stream != nullptr && p->stream->WritePart(*p, chunk);
}

void Response::End() {
  PendingResponse* p = Later("End");
  if (p == nullptr || p->stream == nullptr) return;
  if (!p->streaming) p->stream->WritePart(*p, {});  // an empty body
  p->stream->EndParts(*p);
}

void Response::OnWritable(absl::AnyInvocable<void(Response& res)> fn) {
  PendingResponse* p = Later("OnWritable");
  if (p == nullptr || p->stream == nullptr) return;
  p->keep = pending_;
  p->stream->WhenWritable(*p, std::move(fn));
}

void Response::OnBody(
    absl::AnyInvocable<void(Response& res, std::string_view chunk, bool last)> fn) {
  PendingResponse* p = Later("OnBody");
  if (p == nullptr || p->stream == nullptr) return;
  p->keep = pending_;
  p->stream->ReadBody(*p, std::move(fn));
}

void Response::PauseBody() {
  if (PendingResponse* p = Later("PauseBody"); p != nullptr) p->body_paused = true;
}

void Response::ResumeBody() {
  PendingResponse* p = Later("ResumeBody");
  if (p == nullptr || !p->body_paused) return;
  p->body_paused = false;
  if (p->stream != nullptr) p->stream->ContinueBody(*p);
}

void Response::OnAborted(absl::AnyInvocable<void()> fn) {
  PendingResponse* p = Later("OnAborted");
  if (p == nullptr) return;
  // `stream` stays set until the answer is complete, a streamed one's too: the first Write()
  // makes sent() true, but the client can still go before End().
  if (p->aborted) {
    fn();
  } else if (p->stream != nullptr) {
    p->on_aborted = std::move(fn);
  }
}

bool Response::aborted() const { return pending_ != nullptr && pending_->aborted; }

void Response::OnClosing(absl::AnyInvocable<void(Response& res)> fn) {
  PendingResponse* p = Later("OnClosing");
  if (p == nullptr || p->stream == nullptr) return;
  if (!p->stream->Draining()) {
    p->keep = pending_;
    p->on_closing = std::move(fn);
    return;
  }
  try {
    fn(*this);
  } catch (...) {
    // As when HttpSession::OnDrain runs it: the drain goes on.
  }
}

WorkerRef Response::worker() const {
  const PendingResponse* p = Later("worker");
  return p != nullptr ? p->worker : WorkerRef();
}

}  // namespace percore::http
