// One HTTP/2 stream's request: its fields and body as nghttp2 hands them over, then routed
// through the App as HTTP/1.1's are. A body is kept whole for the handler, or, for a streaming
// route (RouteOptions::stream_body), handed to its reader as it comes, the stream's window
// opening only as the reader takes it.
#include <string>
#include <string_view>

#include "h2_session.h"
#include "response_writer.h"
#include "session.h"

namespace percore::http {

using namespace std::string_view_literals;

bool H2Stream::AddField(std::string_view name, std::string_view value, bool trailer) {
  const HttpOptions& options = session_.protocol_.config_->options;
  // As SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 6.5.2): the octets and 32 a field.
  head_bytes_ += name.size() + value.size() + 32;
  if (head_bytes_ > 4 * options.max_header_bytes) return false;
  if (head_bytes_ > options.max_header_bytes || fields_.size() >= options.max_header_fields) {
    if (!answered_) set_error(431);
    return true;
  }
  if (trailer) return true;
  if (name == "cookie"sv) {
    if (!cookies_.empty()) cookies_.append("; "sv);
    cookies_.append(value);
    return true;
  }
  const Field field{static_cast<uint32_t>(head_.size()), static_cast<uint32_t>(name.size()),
                    static_cast<uint32_t>(head_.size() + name.size()),
                    static_cast<uint32_t>(value.size())};
  head_.append(name);
  head_.append(value);
  // nghttp2 has checked the pseudo-header fields: each once, before the others, as a request's.
  if (name == ":method"sv) {
    method_ = field;
  } else if (name == ":path"sv) {
    path_ = field;
    if (value.size() > options.max_target_bytes) set_error(414);
  } else if (name == ":authority"sv) {
    authority_ = field;
  } else if (name[0] != ':') {
    fields_.push_back(field);
  }
  return true;
}

bool H2Stream::HeadersDone() {
  HttpProtocol& h = session_.protocol_;
  body_limit_ = h.config_->options.max_body_bytes;
  if (error_ != 0) return false;
  // As HTTP/1.1 routes a request with a body at the end of its header section: the route's
  // limit applies from the first byte, and a streaming route's reader takes the body.
  if (h.config_->router.has_body_options()) {
    const std::string_view target = View(path_.value, path_.value_length);
    h.params_.clear();
    const Router::Result route = h.config_->router.Route(
        View(method_.value, method_.value_length), PathOf(target, target.find('?')), &h.params_);
    if (route.options != nullptr) {
      if (route.options->max_body_bytes != 0) body_limit_ = route.options->max_body_bytes;
      body_streamed_ = route.options->stream_body;
    }
    // A reader takes the body as it comes: its window is its bound.
    if (body_streamed_) OpenWindow();
  }
  for (const Field& f : fields_) {
    if (View(f.name, f.name_length) != "content-length"sv) continue;
    uint64_t length = 0;
    // nghttp2 checked it is digits, and holds the DATA to it.
    for (char c : View(f.value, f.value_length))
      length = length * 10 + static_cast<uint64_t>(c - '0');
    if (length > body_limit_) {
      set_error(413);
      return false;
    }
  }
  return true;
}

void H2Stream::AddBody(std::string_view data) {
  nghttp2_session* session = session_.session_;
  if (error_ != 0 || (answered_ && pending_ == nullptr)) {
    // Refused, or answered without being read: what comes is dropped, its window given back.
    nghttp2_session_consume(session, id_, data.size());
    ReleaseOwner();
    return;
  }
  received_ += data.size();
  if (received_ > body_limit_) {
    if (body_streamed_) nghttp2_session_consume_connection(session, body_.size());
    body_.clear();
    if (answered_) {
      // The handler reads the body as it comes: past the limit, the stream is reset.
      nghttp2_session_consume(session, id_, data.size());
      session_.Reset(id_, NGHTTP2_CANCEL);
      return;
    }
    set_error(413);
    nghttp2_session_consume(session, id_, data.size());
    ReleaseOwner();
    // Answered now: the rest of the body is not waited for (RFC 9113 8.1 lets a server answer
    // before the request is whole, and asks it to reset the stream then: OnFrameSent).
    session_.ready_.push_back(id_);
    return;
  }
  body_.append(data);
  if (!body_streamed_) {
    // Kept whole for the handler, within the body's limit: the connection's window opens as it
    // comes, the stream's as TakeBody() lets it.
    nghttp2_session_consume_connection(session, data.size());
    TakeBody(data.size());
  } else if (answered_) {
    session_.body_due_.push_back(id_);  // to the reader once the read is done
  }
  // A streamed body waits for its reader: its window opens only as the reader takes it, so a
  // reader that pauses stops the client after one window (HttpOptions::http2).
}

void H2Stream::TakeBody(size_t n) {
  int32_t& owner = session_.body_owner_;
  if (owner == 0) {
    owner = id_;
    OpenWindow();
  }
  if (owner != id_) {
    owed_ += n;  // its window stays spent until its turn
    return;
  }
  nghttp2_session_consume_stream(session_.session_, id_, n + owed_);
  owed_ = 0;
}

void H2Stream::ReleaseOwner() {
  int32_t& owner = session_.body_owner_;
  if (owner != id_) return;
  owner = 0;
  // The next kept body still arriving gets the stream window, and back what it has sent.
  for (auto& [id, stream] : session_.streams_) {
    if (stream.get() != this && stream->owed_ != 0) {
      stream->TakeBody(0);
      return;
    }
  }
}

void H2Stream::OpenWindow() {
  // From the 64 KiB every stream starts with (SETTINGS_INITIAL_WINDOW_SIZE) to
  // Http2Options::stream_window_bytes.
  nghttp2_session_set_local_window_size(
      session_.session_, NGHTTP2_FLAG_NONE, id_,
      static_cast<int32_t>(session_.protocol_.config_->options.http2.stream_window_bytes));
}

void H2Stream::EndOfRequest() {
  request_done_ = true;
  ReleaseOwner();
  if (!answered_) {
    session_.ready_.push_back(id_);
  } else if (body_streamed_) {
    session_.body_due_.push_back(id_);
  }
}

void H2Stream::DeliverBody() {
  PendingResponse* pending = pending_;
  if (pending == nullptr || !pending->on_body || pending->body_paused || delivering_) return;
  if (body_.empty() && !(request_done_ && !body_end_delivered_)) return;
  delivering_ = true;
  // Held while the reader runs: it may answer, which lets go of the answer's state.
  Response res = ResponseWriter::Handle(*pending);
  absl::AnyInvocable<void(Response&, std::string_view, bool)> fn = std::move(pending->on_body);
  pending->on_body = nullptr;
  std::string chunk;
  chunk.swap(body_);
  const bool last = request_done_;
  if (last) body_end_delivered_ = true;
  nghttp2_session_consume(session_.session_, id_, chunk.size());
  bool ok = true;
  try {
    fn(res, chunk, last);
  } catch (...) {
    ok = false;
  }
  if (!last && pending->stream != nullptr && !pending->on_body) pending->on_body = std::move(fn);
  delivering_ = false;
  if (!ok && pending->stream != nullptr) {
    session_.protocol_.LogFailure("", "", "a request body reader threw");
    Dropped(*pending);  // a 500, or a reset once the answer has begun
    return;
  }
  pending->UnkeepIfIdle();
  // What came while the reader ran, or a resumed reader.
  if (pending_ == pending && !body_.empty()) DeliverBody();
}

void H2Stream::Respond() {
  if (answered_) return;
  answered_ = true;
  HttpProtocol& h = session_.protocol_;
  Connection& conn = session_.conn_;
  std::vector<HeaderField>& headers = h.headers_;
  headers.clear();
  // A request from HTTP/1.1's world expects Host: :authority stands for it (RFC 9113 8.3.1).
  if (authority_.name_length != 0) {
    headers.push_back(HeaderField{"host"sv, View(authority_.value, authority_.value_length)});
  }
  for (const Field& f : fields_) {
    headers.push_back(HeaderField{View(f.name, f.name_length), View(f.value, f.value_length)});
  }
  if (!cookies_.empty()) headers.push_back(HeaderField{"cookie"sv, cookies_});
  const std::string_view method = View(method_.value, method_.value_length);
  const std::string_view target = View(path_.value, path_.value_length);
  Request req;
  const std::string_view body = body_streamed_ ? std::string_view() : std::string_view(body_);
  RequestBuilder::Fill(req, method, target, target.find('?'), headers, body, 0,
                       /*keep_alive=*/true, h.worker_, conn, *this);
  RequestBuilder::SetHttp2(req);
  ResponseCore core(&slot_.bytes, &h.fields_, h.date_.line(), method == "HEAD"sv, false, false,
                    false);
  core.stream_ = this;
  core.h2_ = this;
  core.conn_ = &conn;
  core.slot_ = &slot_;
  core.finish_ = &slot_.finish;  // run as the stream closes
  core.request_ = &req;
  Response res = ResponseWriter::Make(core);
  h.params_.clear();
  Router::Result route;
  if (error_ == 0 && target != "*"sv)
    route = h.config_->router.Route(method, req.path(), &h.params_);
  RequestBuilder::SetParams(req, h.params_);
  h.worker_.stats().SetActivity(std::string(method) + " " + std::string(target));
  if (error_ != 0) {
    h.SendError(req, res, Error{error_, ReasonPhrase(error_), {}});
  } else {
    h.Dispatch(req, res, core, route);
  }
  if (core.deferred_) {
    if (pending_ != nullptr && h.config_->options.log_requests) {
      pending_->log_line = std::string(method) + " " + std::string(req.path());
    }
    h.deferring_.reset();  // an answer nobody holds any more is given now: a 500
    return;
  }
  status_ = core.status_;
  if (h.config_->options.log_requests)
    log_line_ = std::string(method) + " " + std::string(req.path());
  BodyDone();
}

void H2Stream::ReadBody(PendingResponse& pending,
                        absl::AnyInvocable<void(Response&, std::string_view, bool)> fn) {
  if (!body_streamed_) {
    // The body was the request's: its reader is told it has all of it.
    Response res = ResponseWriter::Handle(pending);
    fn(res, {}, true);
    pending.UnkeepIfIdle();
    return;
  }
  pending.on_body = std::move(fn);
  ContinueBody(pending);
}

void H2Stream::ContinueBody(PendingResponse& pending) {
  if (&pending != pending_) return;
  DeliverBody();
  session_.Flush();  // the WINDOW_UPDATE for what the reader took
}

}  // namespace percore::http
