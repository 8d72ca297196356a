// Answers given after the handler returns (DeferredResponse): where they are written, the
// body read as it arrives, and what follows once they are complete.
#include <cstdio>
#include <string_view>

#include "response_writer.h"
#include "session.h"

namespace percore::http {

using namespace std::string_view_literals;

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
  if (!state_->parsing && !state_->in_message) h.GiveBack(state_);
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

bool HttpSession::UnreadBodyCloses() const {
  if (state_ == nullptr || !state_->body_streamed || !state_->in_message) return false;
  // A client waiting for "100 Continue" may send no body at all after a final answer (RFC 9110
  // 10.1.1): the next bytes could be a body or a request, so the connection ends here.
  if (state_->expect_continue && state_->body_bytes == 0) return true;
  return state_->parser.framing() == RequestParser::Framing::kLength &&
         state_->parser.body_remaining() > protocol_.config_->options.max_discard_bytes;
}

void HttpSession::Stop() {
  state_->stopped = true;
  state_->conn->SetDeadline(0);
}

int HttpSession::TakeBody(const char* at, size_t length) {
  MessageState& st = *state_;
  PendingAnswer* pending = Pending();
  if (pending == nullptr) {
    // Answered already: read past, up to a bound, so the connection can go on.
    st.discarded += length;
    if (st.discarded > protocol_.config_->options.max_discard_bytes) st.conn->Close();
    return 0;
  }
  if (st.body_bytes > st.body_limit) return 413;
  if (!pending->on_body || pending->body_paused) {
    // Nobody takes it yet: this piece (at most a read) waits, and nothing more is read.
    st.body.append(at, length);
    Stop();
    return 0;
  }
  if (!DeliverBody(*pending, std::string_view(at, length), false)) return 500;
  if (!st.conn->closing() && Pending() != nullptr && pending->body_paused) Stop();
  return 0;
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
    pending.conn->output().append("HTTP/1.1 100 Continue\r\n\r\n"sv);
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
    // Read on: the parse stopped at the last byte of the body may not have seen its end yet;
    // a parse of nothing finishes it.
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

}  // namespace percore::http
