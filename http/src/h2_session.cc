// The HTTP/2 connection: nghttp2 driven over the loop's reads and sends (see h2_session.h).
#include "h2_session.h"

#include <algorithm>
#include <utility>

#include "percore/stats.h"
#include "session.h"

namespace percore::http {

namespace {

H2Session& Self(void* user_data) { return *static_cast<H2Session*>(user_data); }

}  // namespace

// nghttp2's callbacks: each finds the session in `user_data`, and the stream by its id.
struct H2Session::Callbacks {
  static int OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data) {
    // Counted as they begin, before nghttp2 does the work: every frame but a request's HEADERS
    // and CONTINUATION (nghttp2 bounds those), a DATA frame that carries bytes (or ends its
    // stream), and WINDOW_UPDATE, which a client sends as it reads what the server sends.
    H2Session& self = Self(user_data);
    if (hd->type == NGHTTP2_WINDOW_UPDATE) {
      if (++self.window_updates_ <= 100 + 10 * self.data_frames_sent_) return 0;
      return self.Flooded();
    }
    const bool work = hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION ||
                      (hd->type == NGHTTP2_DATA &&
                       (hd->length != 0 || (hd->flags & NGHTTP2_FLAG_END_STREAM) != 0));
    if (work || self.Count(&self.control_frames_,
                           self.protocol_.config_->options.http2.max_control_frames_per_second)) {
      return 0;
    }
    return self.Flooded();
  }
  static int OnFrameSent(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    H2Session& self = Self(user_data);
    if (frame->hd.type == NGHTTP2_DATA) ++self.data_frames_sent_;
    auto* stream =
        static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    // A reset nghttp2 sends for a fault of the client's (a window it overflowed, a malformed
    // request) counts as the client's own would: "MadeYouReset" (CVE-2025-8671) has the server
    // reset streams whose handlers ran. Not those percore resets itself (H2Session::Reset).
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code != NGHTTP2_NO_ERROR &&
        (stream == nullptr || !stream->reset_by_server())) {
      return self.CountReset();
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) return 0;
    // The answer is whole before the request (a refusal, or a handler that did not read the
    // body): RFC 9113 8.1 has the rest of the request stopped with RST_STREAM NO_ERROR.
    if (stream != nullptr && stream->receiving()) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }
  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    H2Session& self = Self(user_data);
    const int32_t id = frame->hd.stream_id;
    auto stream = std::make_unique<H2Stream>(self, id);
    nghttp2_session_set_stream_user_data(session, id, stream.get());
    self.streams_[id] = std::move(stream);
    LoopStats::Add(self.protocol_.worker_.stats().h2_streams, 1);
    return 0;
  }
  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                      void*) {
    auto* stream =
        static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (stream == nullptr) return 0;
    // Trailers are counted as the header section is, then dropped, as HTTP/1.1's are.
    const bool ok =
        stream->AddField(std::string_view(reinterpret_cast<const char*>(name), name_length),
                         std::string_view(reinterpret_cast<const char*>(value), value_length),
                         frame->headers.cat != NGHTTP2_HCAT_REQUEST);
    // Far past the limit (an HPACK bomb: one byte naming a big field of the dynamic table), the
    // stream is reset and the rest of the block is decoded without being handed over.
    return ok ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                         size_t length, void*) {
    auto* stream = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, id));
    if (stream != nullptr) {
      stream->AddBody(std::string_view(reinterpret_cast<const char*>(data), length));
    }
    return 0;
  }
  static int OnFrame(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    H2Session& self = Self(user_data);
    // The rapid reset (CVE-2023-44487), whatever the code the client resets with.
    if (frame->hd.type == NGHTTP2_RST_STREAM) return self.CountReset();
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    auto* stream =
        static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (stream == nullptr) return 0;
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      // The header section is whole: a request refused already (431, or 413 by its
      // Content-Length) is answered now, and so is one whose route reads the body as it comes.
      const bool ok = stream->HeadersDone();
      if (!end && (!ok || stream->streams_body())) self.ready_.push_back(stream->id());
    }
    if (end) stream->EndOfRequest();
    return 0;
  }
  static int OnStreamClose(nghttp2_session*, int32_t id, uint32_t error_code, void* user_data) {
    H2Session& self = Self(user_data);
    auto it = self.streams_.find(id);
    if (it == self.streams_.end()) return 0;
    it->second->Closed(error_code, &self.abandoned_);
    self.closed_.push_back(std::move(it->second));
    self.streams_.erase(it);
    if (error_code != NGHTTP2_NO_ERROR) LoopStats::Add(self.protocol_.worker_.stats().h2_resets, 1);
    return 0;
  }
};

H2Session::H2Session(HttpProtocol& protocol, Connection& conn, std::string early)
    : protocol_(protocol), conn_(conn), early_(std::move(early)) {
  const HttpOptions& options = protocol_.config_->options;
  const Http2Options& h2 = options.http2;
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, &Callbacks::OnBeginFrame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::OnFrame);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &Callbacks::OnFrameSent);
  nghttp2_option* option;
  nghttp2_option_new(&option);
  // nghttp2's own bound on the rapid-reset flood (a token bucket), set above percore's count
  // (OnStreamClose), which ends such a connection first and says why: ENHANCE_YOUR_CALM.
  nghttp2_option_set_stream_reset_rate_limit(option, 4 * uint64_t{h2.max_resets_per_second},
                                             2 * uint64_t{h2.max_resets_per_second});
  // The CONTINUATION flood: a header block in more frames than this is an attack.
  nghttp2_option_set_max_continuations(option, 8);
  // Windows open as the body is taken (H2Stream::AddBody, DeliverBody), not as it arrives.
  nghttp2_option_set_no_auto_window_update(option, 1);
  nghttp2_session_server_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h2.max_concurrent_streams},
      // Every stream starts with 64 KiB, nginx's preread; the one whose body is being taken
      // gets stream_window_bytes (H2Stream::OpenWindow).
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, std::min<uint32_t>(65535, h2.stream_window_bytes)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(options.max_header_bytes)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(h2.connection_window_bytes));
  // A client that negotiated h2 and says nothing more is given header_timeout for its preface
  // (after a hand-over, the deadline is set again once the preface's bytes are read).
  conn_.SetDeadline(protocol_.worker_.now_ms() + protocol_.header_timeout_ms_);
}

H2Session::~H2Session() {
  // The connection is gone: every answer still due is aborted (OnFinish with 0, OnAborted).
  for (auto& [id, stream] : streams_) stream->Closed(NGHTTP2_CANCEL, &abandoned_);
  std::vector<Abandoned> left = std::move(abandoned_);
  for (Abandoned& a : left) a.Run();
  streams_.clear();
  closed_.clear();
  nghttp2_session_del(session_);
}

void H2Session::OnTakeOver(Connection&) {
  std::string early = std::move(early_);
  Receive(early);
}

size_t H2Session::OnData(Connection&, std::string_view bytes) {
  Receive(bytes);
  return bytes.size();
}

void H2Session::Receive(std::string_view bytes) {
  closed_.clear();      // no stream code is on the stack: this is the loop's call
  if (failed_) return;  // after nghttp2 gave up, nothing more is read (its rule)
  ++depth_;
  reading_ = true;
  const ssize_t n = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  reading_ = false;
  --depth_;
  if (n < 0) {
    // A connection error: nghttp2 has queued its GOAWAY, if it had one to say.
    failed_ = true;
    if (n != NGHTTP2_ERR_CALLBACK_FAILURE) {
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    }
  }
  // The requests made whole, in the order they were: each answered now, or deferred; what
  // they answer goes out together after the last.
  ++depth_;
  std::vector<int32_t> ready;
  ready.swap(ready_);
  waiting_.insert(waiting_.end(), ready.begin(), ready.end());
  RespondWaiting();
  std::vector<int32_t> due;
  due.swap(body_due_);
  for (int32_t id : due) {
    if (H2Stream* stream = Find(id); stream != nullptr && !failed_) stream->DeliverBody();
  }
  --depth_;
  Flush();
}

void H2Session::RespondWaiting() {
  // As HTTP/1.1 reads no request behind more answers held than max_queued_responses, or more of
  // their bytes than max_queued_response_bytes, HTTP/2 routes none: a client that opens no
  // window is held to that many answers, that much memory and Http2Options::max_files_held
  // open files, and the frames that would open the windows are still read. A file counts as a
  // file, not by its length: a stream the client paused (a <video>) holds up nothing.
  const HttpOptions& options = protocol_.config_->options;
  size_t next = 0;
  for (; next < waiting_.size() && !failed_; ++next) {
    size_t answers = 0, bytes = 0, files = 0;
    for (auto& [id, stream] : streams_) {
      answers += stream->holds_answer() ? 1 : 0;
      files += stream->holds_file() ? 1 : 0;
      bytes += stream->held_bytes();
    }
    if (answers >= options.max_queued_responses || bytes >= options.max_queued_response_bytes ||
        files >= options.http2.max_files_held) {
      break;
    }
    if (H2Stream* stream = Find(waiting_[next]); stream != nullptr) stream->Respond();
  }
  waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<ptrdiff_t>(next));
}

H2Stream* H2Session::Find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Session::Resume(int32_t stream) {
  nghttp2_session_resume_data(session_, stream);
  Flush();
}

void H2Session::Reset(int32_t stream, uint32_t error_code) {
  if (H2Stream* s = Find(stream); s != nullptr) s->set_reset_by_server();
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
  Flush();
}

void H2Session::Flush() {
  if (depth_ > 0) {
    flush_due_ = true;  // the read or send under way flushes at its end
    return;
  }
  ++depth_;
  do {
    flush_due_ = false;
    while (!conn_.output_full()) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) {
        if (n < 0) failed_ = true;
        break;
      }
      conn_.output().append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    std::vector<Abandoned> left = std::move(abandoned_);
    for (Abandoned& a : left) a.Run();
    // Answers waiting for room: a callback may write more, which asks for another round; and
    // requests that waited for the answers held to go.
    for (auto& [id, stream] : streams_) stream->RunWritable();
    RespondWaiting();
  } while (flush_due_ && !conn_.output_full());
  --depth_;
  if (conn_.output_full() && nghttp2_session_want_write(session_)) conn_.NotifyWritable();
  // Nothing left to do: nghttp2 gave up (its GOAWAY is in the output), or both ends are
  // done, or a drain has seen its last stream finish.
  if (failed_ || (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) ||
      (protocol_.worker_.draining() && streams_.empty())) {
    conn_.Close();
  } else {
    SetDeadline();
  }
  conn_.Resume();
}

void H2Session::SetDeadline() {
  HttpProtocol& h = protocol_;
  bool receiving = false;
  bool held = !waiting_.empty();
  for (auto& [id, stream] : streams_) {
    receiving = receiving || stream->receiving();
    held = held || stream->holds_answer();
  }
  // An idle connection closes after idle_timeout; one whose request is still arriving waits
  // body_timeout for its next bytes; one whose answers wait on a window the client does not
  // open closes after idle_timeout with no DATA sent (the loop's send_timeout never runs: the
  // output is empty); one with only answers still to come waits for them.
  const int64_t now = h.worker_.now_ms();
  if (streams_.empty()) {
    conn_.SetDeadline(now + h.idle_timeout_ms_);
  } else if (receiving) {
    conn_.SetDeadline(now + h.body_timeout_ms_);
  } else if (held) {
    if (!stalled_ || data_frames_sent_ != data_frames_at_deadline_) {
      conn_.SetDeadline(now + h.idle_timeout_ms_);
    }
  } else {
    conn_.SetDeadline(0);
  }
  stalled_ = held && !receiving && !streams_.empty();
  data_frames_at_deadline_ = data_frames_sent_;
}

bool H2Session::Count(uint32_t* counter, uint32_t limit) {
  const int64_t second = protocol_.worker_.now_ms() / 1000;
  if (second != second_) {
    second_ = second;
    control_frames_ = 0;
    resets_ = 0;
  }
  return ++*counter <= limit;
}

int H2Session::CountReset() {
  return Count(&resets_, protocol_.config_->options.http2.max_resets_per_second) ? 0 : Flooded();
}

int H2Session::Flooded() {
  // GOAWAY, and nothing more is read (nghttp2's rule after terminate_session): what is under
  // way is cut off, since the client is not one to be served. Within a read, the error stops
  // nghttp2 reading on; within a send, the send goes on, GOAWAY with it.
  if (failed_) return reading_ ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  failed_ = true;
  nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  LoopStats::Add(protocol_.worker_.stats().h2_goaways, 1);
  return reading_ ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

void H2Session::OnDeadline(Connection&) {
  nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
  failed_ = true;
  LoopStats::Add(protocol_.worker_.stats().h2_goaways, 1);
  Flush();
}

void H2Session::OnDrain(Connection&) {
  // GOAWAY with the last stream begun: the streams in flight finish, the client retries the
  // rest on another connection; the connection closes once nothing is left (Flush).
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  LoopStats::Add(protocol_.worker_.stats().h2_goaways, 1);
  Flush();
  if (streams_.empty()) conn_.Close();
}

void H2Session::OnWritable(Connection&) {
  closed_.clear();
  Flush();
}

void H2Session::OnPeerClosed(Connection& conn) {
  // The client sends nothing more: no stream can complete a request, and HTTP/2 has no
  // half-closed connection to answer on (a client that is done sends GOAWAY, not a FIN).
  conn.Close();
}

}  // namespace percore::http
