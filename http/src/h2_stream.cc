// One HTTP/2 stream: its request routed through the App, its answer framed by nghttp2.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "ascii.h"
#include "h2_session.h"
#include "percore/http/middleware.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {

using namespace std::string_view_literals;

namespace {

nghttp2_nv Nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

ssize_t ReadSource(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                   nghttp2_data_source* source, void*) {
  return static_cast<H2Stream*>(source->ptr)->ReadBody(buf, length, flags);
}

}  // namespace

H2Stream::~H2Stream() = default;

ResponseCore::Head H2Stream::SubmitHead(ResponseCore& core, std::optional<uint64_t> length,
                                        bool empty_body) {
  const bool no_body = core.status_ == 204 || core.status_ == 304;
  const bool body = !core.head_ && !no_body;
  char status[4];
  std::snprintf(status, sizeof(status), "%d", core.status_);
  char length_text[24];
  std::vector<nghttp2_nv> nv;
  nv.reserve(8 + static_cast<size_t>(std::count(core.fields_->begin(), core.fields_->end(), '\n')));
  nv.push_back(Nv(":status"sv, std::string_view(status, 3)));
  std::string_view date = core.date_line_;  // "Date: ...\r\n"
  if (date.size() > 8) nv.push_back(Nv("date"sv, date.substr(6, date.size() - 8)));
  if (!no_body) {
    if (core.type_length_ == 0 && !empty_body) {
      nv.push_back(Nv("content-type"sv, "text/plain; charset=utf-8"sv));
    }
    if (length.has_value()) {
      const int n = std::snprintf(length_text, sizeof(length_text), "%llu",
                                  static_cast<unsigned long long>(*length));
      nv.push_back(Nv("content-length"sv, std::string_view(length_text, static_cast<size_t>(n))));
    }
  }
  // The handler's fields, their names lowercased (RFC 9113 8.2.1) into a copy that lives
  // until nghttp2 has copied them.
  std::string names;
  names.reserve(core.fields_->size());
  const std::string_view fields = *core.fields_;
  for (size_t line = 0; line < fields.size();) {
    const size_t colon = fields.find(':', line);
    const size_t end = fields.find("\r\n", colon);
    const bool type = line == core.type_offset_ && core.type_length_ != 0;
    if (!(no_body && type)) {
      const size_t at = names.size();
      for (size_t i = line; i < colon; ++i) names.push_back(ToLowerAscii(fields[i]));
      nv.push_back(Nv(std::string_view(names).substr(at, colon - line),
                      TrimOws(fields.substr(colon + 1, end - colon - 1))));
    }
    line = end + 2;
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &ReadSource;
  submitted_ = true;
  nghttp2_submit_response(session_.session_, id_, nv.data(), nv.size(), body ? &provider : nullptr);
  return {length.has_value() ? ResponseCore::Framing::kLength : ResponseCore::Framing::kChunked,
          body};
}

ssize_t H2Stream::ReadBody(uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = 0;
  if (sent_ < slot_.bytes.size()) {
    n = std::min(length, slot_.bytes.size() - sent_);
    std::memcpy(buf, slot_.bytes.data() + sent_, n);
    sent_ += n;
    // What was taken goes once it is most of the buffer: a writer that keeps the stream fed
    // never lets it drain to empty, and the buffer must not keep all that was ever sent.
    if (sent_ == slot_.bytes.size()) {
      slot_.bytes.clear();
      sent_ = 0;
    } else if (sent_ >= 64 * 1024 && 2 * sent_ >= slot_.bytes.size()) {
      slot_.bytes.erase(0, sent_);
      sent_ = 0;
    }
  } else if (slot_.fd >= 0) {
    const ssize_t got = pread(slot_.fd, buf, std::min<uint64_t>(length, slot_.length),
                              static_cast<off_t>(slot_.offset));
    // A file shorter than its range: the client was promised more, so the stream fails.
    if (got <= 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    n = static_cast<size_t>(got);
    slot_.offset += n;
    slot_.length -= n;
    if (slot_.length == 0) {
      ::close(slot_.fd);
      slot_.fd = -1;
    }
  }
  if (slot_.bytes.empty() && slot_.fd < 0) {
    if (body_done_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;  // WritePart or EndParts resumes it
    }
  }
  return static_cast<ssize_t>(n);
}

bool H2Stream::HasRoom() const {
  const size_t bound = session_.protocol_.config_->options.stream_buffer_bytes;
  return slot_.bytes.size() - sent_ <= bound && !session_.conn_.output_full();
}

void H2Stream::RunWritable() {
  if (pending_ == nullptr || !pending_->on_writable || !HasRoom()) return;
  PendingResponse& pending = *pending_;
  Response res = ResponseWriter::Handle(pending);
  absl::AnyInvocable<void(Response&)> fn = std::move(pending.on_writable);
  pending.on_writable = nullptr;
  // Run within H2Session::Flush: an exception must not leave the session mid-send (it would
  // never send again). The answer cannot be completed: its stream is reset.
  try {
    fn(res);
  } catch (...) {
    session_.protocol_.LogFailure("", "", "an OnWritable callback threw");
    if (pending.stream != nullptr) Fail(pending);
  }
  pending.UnkeepIfIdle();
}

void H2Stream::BodyDone() {
  body_done_ = true;
  if (submitted_) session_.Resume(id_);
}

void H2Stream::Closed(uint32_t error_code, std::vector<Abandoned>* abandoned) {
  HttpProtocol& h = session_.protocol_;
  // What a streamed body's reader never took still counts against the connection's window:
  // nghttp2 gives back only what it is told was consumed.
  if (body_streamed_ && !body_.empty()) {
    nghttp2_session_consume_connection(session_.session_, body_.size());
    body_.clear();
  }
  ReleaseOwner();
  if (pending_ != nullptr) {
    abandoned->push_back(pending_->Abandon());
    pending_ = nullptr;
    return;
  }
  // A whole answer: counted, logged and finished once sent, as HTTP/1.1's are.
  const bool sent = error_code == NGHTTP2_NO_ERROR && status_ != 0;
  if (sent) {
    h.CountResponse(status_);
    if (h.config_->options.log_requests) h.LogResponse(log_line_, {}, status_);
  }
  Abandoned left;
  left.finish.fns = std::move(slot_.finish.fns);
  left.finish.status = -1;
  if (sent) {
    left.finish.Run(status_);
  } else {
    abandoned->push_back(std::move(left));
  }
}

std::shared_ptr<PendingResponse> H2Stream::Defer(ResponseCore& res) {
  HttpProtocol& h = session_.protocol_;
  auto pending = std::make_shared<PendingResponse>(res);
  pending->fields = *res.fields_;  // what the handler set so far, from the loop's scratch
  pending->finish.fns = std::move(res.finish_->fns);
  res.finish_ = &pending->finish;
  h.deferring_ = pending;
  pending->stream = this;
  pending->conn = &session_.conn_;
  pending->worker = h.worker_.ref();
  pending->slot = &slot_;
  slot_.pending = pending.get();
  pending_ = pending.get();
  return pending;
}

void H2Stream::BeginPending(PendingResponse& pending) {
  ResponseCore& res = pending.response;
  res.out_ = &slot_.bytes;
  res.slot_ = &slot_;
  res.conn_ = &session_.conn_;
  res.h2_ = this;
  res.date_line_ = session_.protocol_.date_.line();
}

void H2Stream::FinishPending(PendingResponse& pending) {
  const std::shared_ptr<PendingResponse> keep = std::move(pending.keep);
  pending.stream = nullptr;
  pending.slot = nullptr;
  pending.on_writable = nullptr;
  pending.on_body = nullptr;
  pending.on_aborted = nullptr;
  pending.on_closing = nullptr;
  slot_.pending = nullptr;
  pending_ = nullptr;
  status_ = pending.response.status_;
  log_line_ = std::move(pending.log_line);
  slot_.finish.fns = std::move(pending.finish.fns);
  pending.finish.fns.clear();
  pending.finish.status = status_;  // an OnFinish() from now on runs at once
  BodyDone();
}

void H2Stream::SendPending(PendingResponse& pending, std::string_view body) {
  BeginPending(pending);
  pending.response.Send(body);
  FinishPending(pending);
}

void H2Stream::SendPendingFile(PendingResponse& pending, int fd, uint64_t offset, uint64_t length) {
  BeginPending(pending);
  pending.response.SendFile(fd, offset, length);
  FinishPending(pending);
}

bool H2Stream::WritePart(PendingResponse& pending, std::string_view chunk) {
  const bool body = pending.HasBody();
  if (!pending.streaming) {
    BeginPending(pending);
    pending.StartStream();
  }
  if (body && !chunk.empty()) {
    std::optional<std::string_view> piece = chunk;
    if (pending.gzip != nullptr) piece = pending.gzip->Write(chunk);
    if (!piece.has_value()) {
      Fail(pending);
      return false;
    }
    slot_.bytes.append(*piece);
    pending.written += chunk.size();
  }
  session_.Resume(id_);
  // The stream may have been reset meanwhile (it is then gone: `pending` says so).
  return pending.stream != nullptr && HasRoom();
}

void H2Stream::EndParts(PendingResponse& pending) {
  const bool body = pending.HasBody();
  bool failed = false;
  if (pending.gzip != nullptr) {
    std::optional<std::string_view> rest = pending.gzip->Finish();
    if (rest.has_value()) {
      slot_.bytes.append(*rest);
    } else {
      failed = true;
    }
    pending.gzip.reset();
  }
  // A body shorter than its Content-Length cannot end well: the stream is reset.
  failed = failed || (body && pending.length.has_value() && pending.written != *pending.length);
  if (failed) {
    Fail(pending);
    return;
  }
  FinishPending(pending);
}

void H2Stream::WhenWritable(PendingResponse& pending, absl::AnyInvocable<void(Response&)> fn) {
  if (HasRoom()) {
    Response res = ResponseWriter::Handle(pending);
    fn(res);
    pending.UnkeepIfIdle();
    return;
  }
  pending.on_writable = std::move(fn);  // H2Session::Flush runs it once there is room
}

void H2Stream::Fail(PendingResponse& pending) {
  // What went out of the body stays cut off: the stream is reset, and its handles do nothing.
  pending.streaming = true;
  session_.Reset(id_, NGHTTP2_INTERNAL_ERROR);
}

void H2Stream::Dropped(PendingResponse& pending) {
  if (pending.streaming) {
    // Called as the answer's state is destroyed: it is let go of first.
    session_.abandoned_.push_back(pending.Abandon());
    pending_ = nullptr;
    session_.Reset(id_, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  pending.fields.clear();
  pending.response.type_length_ = 0;
  pending.response.status_ = 500;
  SendPending(pending, "Internal Server Error\n");
}

bool H2Stream::Draining() const { return session_.protocol_.worker_.draining(); }

std::string* H2Stream::Gzip(std::string_view body, int level) {
  return session_.protocol_.Gzip(body, level);
}

PeerAddress H2Stream::Client(const Request& req, PeerAddress from) const {
  return session_.protocol_.Client(req, from);
}

Connection* H2Stream::SwitchProtocols(ResponseCore&, std::string_view) {
  // RFC 9113 8.6: HTTP/2 has no Upgrade; WebSocket over HTTP/2 (RFC 8441) is not offered.
  throw HttpError(400, "no protocol switch over HTTP/2");
}

WsLoop& H2Stream::WebSockets() { return session_.protocol_.WebSockets(); }

}  // namespace percore::http
