// DeferredResponse: an answer given after its handler returned, through the session's
// PendingResponse; whole (Send, SendFile) or streamed (Write, End, OnWritable).
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "codec.h"
#include "gzip_file.h"
#include "percore/http/middleware.h"
#include "percore/http/response.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {

DeferredResponse::~DeferredResponse() {
  // The last copy must go on the loop (an unanswered one answers 500 there): a copy dropped on
  // another thread goes to the loop, which drops it. If the loop is gone, so is the connection.
  if (state_ != nullptr && !state_->worker.OnWorkerThread()) {
    state_->worker.Post([state = std::move(state_)] {});
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

DeferredResponse& DeferredResponse::OnFinish(absl::AnyInvocable<void(int status)> fn) {
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
    state_->session->SendPending(*state_, body);
  }
}

void DeferredResponse::SendFile(int fd, uint64_t offset, uint64_t length) {
  if (state_->session == nullptr || state_->streaming) {
    close(fd);
    return;
  }
  // A big file gzipped is streamed as the client reads it, unless a 304 or 412 answers.
  Response& res = state_->response;
  if (!res.sent_ && res.CheckPreconditions() == Precondition::kPass && res.StreamsGzip(length)) {
    GzipFileStream::Start(*this, fd, offset, length, res.compress_->level, res.head_);
    return;
  }
  state_->session->SendPendingFile(*state_, fd, offset, length);
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

void DeferredResponse::OnWritable(absl::AnyInvocable<void()> fn) {
  if (state_->session != nullptr) state_->session->WhenWritable(*state_, std::move(fn));
}

void DeferredResponse::OnBody(absl::AnyInvocable<void(std::string_view chunk, bool last)> fn) {
  if (state_->session != nullptr) state_->session->ReadBody(*state_, std::move(fn));
}

void DeferredResponse::PauseBody() { state_->body_paused = true; }

void DeferredResponse::ResumeBody() {
  if (!state_->body_paused) return;
  state_->body_paused = false;
  if (state_->session != nullptr) state_->session->ContinueBody(*state_);
}

void DeferredResponse::OnAborted(absl::AnyInvocable<void()> fn) {
  // `session` stays set until the answer is complete, a streamed one's too: the first Write()
  // makes sent() true, but the client can still go before End().
  if (state_->aborted) {
    fn();
  } else if (state_->session != nullptr) {
    state_->on_aborted = std::move(fn);
  }
}

bool DeferredResponse::aborted() const { return state_->aborted; }

void DeferredResponse::OnClosing(absl::AnyInvocable<void()> fn) {
  if (state_->session == nullptr) return;
  if (!state_->session->Draining()) {
    state_->on_closing = std::move(fn);
    return;
  }
  try {
    fn();
  } catch (...) {
    // As when HttpSession::OnDrain runs it: the drain goes on.
  }
}

bool DeferredResponse::sent() const { return state_->response.sent(); }

const WorkerRef& DeferredResponse::worker() const { return state_->worker; }

}  // namespace percore::http
