// Answers given after the handler returns (Response::Defer): where they are written, the
// body read as it arrives, and what follows once they are complete.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "percore/http/middleware.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {

using namespace std::string_view_literals;

std::shared_ptr<PendingResponse> HttpSession::Defer(ResponseCore& res) {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  auto pending = std::make_shared<PendingResponse>(res);
  pending->fields = *res.fields_;  // what the handler set so far, from the loop's scratch
  pending->finish.fns = std::move(res.finish_->fns);
  res.finish_ = &pending->finish;
  h.deferring_ = pending;
  pending->stream = this;
  pending->conn = st.conn;
  pending->worker = h.worker_.ref();
  // With no answer due ahead of it, it is the head of a queue of its own: it writes straight out.
  if (st.slot == nullptr) st.slot = &st.slots.emplace_back();
  pending->slot = st.slot;
  pending->slot->pending = pending.get();
  st.pending = pending.get();
  return pending;
}

std::string& HttpSession::OutputOf(PendingResponse& pending) {
  return AtHead(*pending.slot) ? pending.conn->output() : pending.slot->bytes;
}

void HttpSession::BeginPending(PendingResponse& pending) {
  ResponseCore& res = pending.response;
  const bool head = AtHead(*pending.slot);
  res.out_ = &OutputOf(pending);
  res.slot_ = head ? nullptr : pending.slot;
  res.conn_ = pending.conn;
  res.date_line_ = protocol_.date_.line();
  // A drain began meanwhile: nothing is read behind the queue any more, and its last answer
  // closes the connection.
  if (protocol_.worker_.draining() && pending.slot == &state_->slots.back()) res.close_ = true;
  res.body_unread_ = state_->pending == &pending && state_->body_streamed && state_->in_message;
}

void HttpSession::FinishPending(PendingResponse& pending, bool close) {
  // Let go of last, once nothing here touches it: a handle holds it whenever this runs.
  const std::shared_ptr<PendingResponse> keep = std::move(pending.keep);
  Connection& conn = *pending.conn;
  Slot& slot = *pending.slot;
  if (state_->pending == &pending) state_->pending = nullptr;
  pending.stream = nullptr;
  pending.slot = nullptr;
  pending.on_writable = nullptr;  // they may hold the answer: no cycle is left
  pending.on_body = nullptr;
  pending.on_aborted = nullptr;
  pending.on_closing = nullptr;
  slot.pending = nullptr;
  slot.done = true;
  slot.close = slot.close || close;  // the client's FIN may have decided it already
  slot.status = pending.response.status_;
  slot.log_line = std::move(pending.log_line);
  slot.finish.fns = std::move(pending.finish.fns);
  pending.finish.fns.clear();
  pending.finish.status = slot.status;  // an OnFinish() from now on runs at once
  if (AtHead(slot)) Advance(conn);
}

void HttpSession::Advance(Connection& conn) {
  HttpProtocol& h = protocol_;
  MessageState& st = *state_;
  // OnFinish's callbacks run last, once the queue is as it will stay: they may answer others.
  absl::InlinedVector<std::pair<FinishHooks, int>, 4> finished;
  while (!st.slots.empty() && !conn.closing()) {
    Slot& slot = st.slots.front();
    if (!slot.bytes.empty()) {
      conn.output().append(slot.bytes);
      slot.bytes.clear();
    }
    // Its handler is still running, or its answer is to come (and from now on written straight
    // out): the head stops here.
    if (!slot.done || &slot == st.handling) {
      if (slot.pending != nullptr && slot.pending->on_writable) conn.NotifyWritable();
      break;
    }
    if (slot.fd >= 0) {
      conn.SendFile(slot.fd, slot.offset, slot.length);
      slot.fd = -1;
    }
    if (slot.status != 0) {
      h.CountResponse(slot.status);
      if (h.config_->options.log_requests) h.LogResponse(slot.log_line, {}, slot.status);
    }
    finished.emplace_back(std::move(slot.finish), slot.status);
    const bool close = slot.close;
    if (st.slot == &slot) st.slot = nullptr;
    st.slots.pop_front();
    if (close) conn.Close();
  }
  if (conn.closing()) {
    DropSlots();  // the connection ends before their turn
  } else if (st.slots.empty() && !st.in_message) {
    // An idle connection while draining closes as OnDrain closes one.
    conn.SetDeadline(h.worker_.now_ms() +
                     (h.worker_.draining() ? kDrainIdleCloseMs : h.idle_timeout_ms_));
  }
  const bool give_back = st.slots.empty() && !st.parsing && !st.in_message && st.pending == nullptr;
  conn.Resume();  // sends the answers, and hands over the requests that waited behind them
  if (give_back) h.GiveBack(state_);
  for (auto& [hooks, status] : finished) hooks.Run(status);
}

void HttpSession::SendPending(PendingResponse& pending, std::string_view body) {
  BeginPending(pending);
  pending.response.Send(body);
  FinishPending(pending, pending.response.close_);
}

void HttpSession::SendPendingFile(PendingResponse& pending, int fd, uint64_t offset,
                                  uint64_t length) {
  BeginPending(pending);
  pending.response.SendFile(fd, offset, length);
  FinishPending(pending, pending.response.close_);
}

bool HttpSession::WritePart(PendingResponse& pending, std::string_view chunk) {
  Connection& conn = *pending.conn;
  const bool body = pending.HasBody();
  if (!pending.streaming) {
    BeginPending(pending);
    pending.chunked = pending.StartStream().framing == ResponseCore::Framing::kChunked;
  }
  if (body && !chunk.empty()) {
    std::optional<std::string_view> piece = chunk;
    if (pending.gzip != nullptr) piece = pending.gzip->Write(chunk);
    if (!piece.has_value()) {
      // zlib failed: the client was promised a whole gzip stream, so its connection fails.
      conn.Close(/*linger=*/false);
      return false;
    }
    AppendPart(pending, *piece);
    pending.written += chunk.size();
  }
  if (AtHead(*pending.slot)) conn.Resume();  // sends it
  return StreamHasRoom(pending);
}

void HttpSession::AppendPart(PendingResponse& pending, std::string_view piece) {
  if (piece.empty()) return;
  std::string& out = OutputOf(pending);
  if (pending.chunked) {
    char size[20];
    out.append(size,
               static_cast<size_t>(std::snprintf(size, sizeof(size), "%zx\r\n", piece.size())));
    out.append(piece);
    out.append("\r\n"sv);
  } else {
    out.append(piece);
  }
}

void HttpSession::EndParts(PendingResponse& pending) {
  ResponseCore& res = pending.response;
  const bool body = pending.HasBody();
  if (pending.gzip != nullptr) {
    // The rest of the deflated body and the gzip trailer; the zlib state goes at once.
    if (std::optional<std::string_view> rest = pending.gzip->Finish(); rest.has_value()) {
      AppendPart(pending, *rest);
    } else {
      pending.conn->Close(/*linger=*/false);
    }
    pending.gzip.reset();
  }
  if (pending.chunked && body) OutputOf(pending).append("0\r\n\r\n"sv);
  // A body shorter than its Content-Length, or one that ends with the connection.
  const bool short_body = body && pending.length.has_value() && pending.written != *pending.length;
  FinishPending(pending, res.close_ || short_body);
}

bool HttpSession::StreamHasRoom(const PendingResponse& pending) const {
  const size_t bound = protocol_.config_->options.stream_buffer_bytes;
  if (!AtHead(*pending.slot)) return pending.slot->bytes.size() <= bound;
  return pending.conn->pending_output() <= bound && !pending.conn->output_full();
}

void HttpSession::WhenWritable(PendingResponse& pending, absl::AnyInvocable<void(Response&)> fn) {
  if (StreamHasRoom(pending)) {
    Response res = ResponseWriter::Handle(pending);
    fn(res);
    pending.UnkeepIfIdle();
    return;
  }
  pending.on_writable = std::move(fn);
  // Behind the head, Advance() asks once the slot's turn comes.
  if (AtHead(*pending.slot)) pending.conn->NotifyWritable();
}

void HttpSession::OnWritable(Connection& conn) {
  if (state_ == nullptr || state_->slots.empty()) return;
  PendingResponse* pending = state_->slots.front().pending;
  if (pending == nullptr || !pending->on_writable) return;
  Response res = ResponseWriter::Handle(*pending);
  absl::AnyInvocable<void(Response&)> fn = std::move(pending->on_writable);
  pending->on_writable = nullptr;
  fn(res);
  pending->UnkeepIfIdle();
}

void HttpSession::OnPeerClosed(Connection& conn) {
  // A FIN says the client sends nothing more: it may still read (a half-close) or be gone (a
  // close), which only a failed send would tell. The answers to the requests before its last
  // go out, as they did when those requests waited unread behind an answer to come (the loop
  // tells of the FIN only once it has handed over every byte before it); the last request's
  // answer, if it is still to come, is aborted, as for a client that leaves mid-answer; the
  // connection closes after the rest. A request it left unfinished is dropped.
  if (state_ == nullptr || state_->slots.empty()) {
    conn.Close();
    return;
  }
  MessageState& st = *state_;
  Abandoned left;
  if (Slot& last = st.slots.back(); !last.done) {
    if (last.pending != nullptr) {
      if (st.pending == last.pending) st.pending = nullptr;
      left = last.pending->Abandon();
    }
    if (st.slot == &last) st.slot = nullptr;
    st.slots.pop_back();
  }
  st.in_message = false;
  if (st.slots.empty()) {
    conn.Close();
  } else {
    st.slots.back().close = true;  // nothing more is read: QueueBlocks()
  }
  left.Run();
}

bool HttpSession::QueueFull() const {
  const std::deque<Slot>& slots = state_->slots;
  const HttpOptions& options = protocol_.config_->options;
  if (slots.back().close || protocol_.worker_.draining() ||
      slots.size() >= options.max_queued_responses) {
    return true;
  }
  size_t bytes = 0;
  for (const Slot& slot : slots) bytes += slot.bytes.size();
  return bytes >= options.max_queued_response_bytes;
}

ResponseCore::Head PendingResponse::StartStream() {
  streaming = true;
  response.sent_ = true;
  if (response.GzipsStream(length.value_or(UINT64_MAX))) {
    length.reset();
    if (HasBody()) gzip = std::make_unique<GzipStream>(response.compress_->level);
  }
  const ResponseCore::Head head = response.WriteHead(length, false);
  if (!head.body) length = 0;
  return head;
}

Abandoned PendingResponse::Abandon() {
  stream = nullptr;
  if (slot != nullptr) slot->pending = nullptr;
  slot = nullptr;
  aborted = true;
  Abandoned left;
  left.finish.fns = std::move(finish.fns);
  finish.fns.clear();
  finish.status = 0;  // an OnFinish() from now on runs at once, with 0
  left.aborted = std::move(on_aborted);
  left.writable = std::move(on_writable);
  left.closing = std::move(on_closing);
  left.body = std::move(on_body);
  left.keep = std::move(keep);
  on_aborted = nullptr;
  on_writable = nullptr;
  on_closing = nullptr;
  on_body = nullptr;
  return left;
}

void Abandoned::Run() {
  finish.Run(0);
  if (aborted) {
    try {
      aborted();
    } catch (...) {
      // The request is over either way.
    }
  }
}

void HttpSession::AbortPending() {
  PendingResponse* pending = Pending();
  if (pending == nullptr) return;
  state_->pending = nullptr;
  Slot& slot = *pending->slot;
  slot.done = true;  // what it wrote goes out, and the connection ends after it
  slot.close = true;
  state_->slot = &slot;  // where the answer to the failure goes, if any
  Abandoned left = pending->Abandon();
  left.Run();
}

void HttpSession::DropSlots() {
  if (state_ == nullptr) return;
  state_->pending = nullptr;
  state_->slot = nullptr;
  std::vector<Abandoned> left;
  std::deque<Slot>& slots = state_->slots;
  // A slot whose handler is running stays until it returns (its answer is being written into
  // it: a kept answer it sends may be what closed the connection); the Advance that follows
  // drops it. Popping at a deque's ends leaves it where it is.
  Slot* keep = nullptr;
  for (Slot& slot : slots) {
    if (&slot == state_->handling) {
      keep = &slot;
    } else if (slot.pending != nullptr) {
      left.push_back(slot.pending->Abandon());
    } else {
      left.emplace_back().finish.fns = std::move(slot.finish.fns);
    }
  }
  if (keep == nullptr) {
    slots.clear();  // closes their files
  } else {
    while (&slots.back() != keep) slots.pop_back();
    while (&slots.front() != keep) slots.pop_front();
  }
  for (Abandoned& a : left) a.Run();
}

Slot::~Slot() {
  if (fd >= 0) ::close(fd);
}

void FinishHooks::Run(int finished_status) {
  status = finished_status;
  std::vector<absl::AnyInvocable<void(int)>> now = std::move(fns);
  fns.clear();
  for (auto& fn : now) {
    try {
      fn(status);
    } catch (...) {
      // Logging and timing only: the answer is given.
    }
  }
}

void FinishHooks::Add(absl::AnyInvocable<void(int)> fn) {
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
  PendingResponse* pending = Pending();
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

bool HttpSession::DeliverBody(PendingResponse& pending, std::string_view chunk, bool last) {
  // Held here while it runs: the reader may answer, which drops it; `res` keeps `pending`.
  Response res = ResponseWriter::Handle(pending);
  absl::AnyInvocable<void(Response&, std::string_view, bool)> fn = std::move(pending.on_body);
  bool ok = true;
  try {
    fn(res, chunk, last);
  } catch (...) {
    ok = false;
  }
  if (!last && pending.stream != nullptr && !pending.on_body) pending.on_body = std::move(fn);
  pending.UnkeepIfIdle();
  return ok;
}

void HttpSession::ReadBody(PendingResponse& pending,
                           absl::AnyInvocable<void(Response&, std::string_view, bool)> fn) {
  MessageState& st = *state_;
  if (st.pending != &pending || !st.body_streamed) {
    Response res = ResponseWriter::Handle(pending);
    fn(res, {}, true);  // the body was the request's, or has been read
    pending.UnkeepIfIdle();
    return;
  }
  pending.on_body = std::move(fn);
  if (st.expect_continue && st.in_message) {
    st.expect_continue = false;
    // An interim answer, in order too: after the answers ahead of it.
    OutputOf(pending).append("HTTP/1.1 100 Continue\r\n\r\n"sv);
  }
  ContinueBody(pending);
}

void HttpSession::ContinueBody(PendingResponse& pending) {
  // Within a parse (the reader paused and resumed at once), the parse reads on by itself.
  if (state_->pending != &pending || state_->parsing || pending.body_paused || !pending.on_body) {
    return;
  }
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
    if (Pending() == &pending) st.pending = nullptr;  // its request is read: the next one may be
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

void HttpSession::Dropped(PendingResponse& pending) {
  if (pending.streaming) {
    FinishPending(pending, /*close=*/true);
    return;
  }
  pending.fields.clear();
  pending.response.type_length_ = 0;
  pending.response.status_ = 500;
  SendPending(pending, "Internal Server Error\n");
}

void HttpSession::Fail(PendingResponse& pending) {
  pending.conn->Close(/*linger=*/false);
  // What went out of the body stays cut off: when the handle goes, the answer ends with the
  // connection, as a streamed one does, rather than with a 500 after it.
  pending.streaming = true;
}

}  // namespace percore::http
