// HTTP/2 (RFC 9113): nghttp2 parses and frames (HPACK, flow control, the stream states), the
// loop does the I/O, and each stream is a request routed through the same App as HTTP/1.1's.
//
// nghttp2 is driven without callbacks of its own for I/O: what a read brings is handed to
// nghttp2_session_mem_recv, and what it has to send is taken with nghttp2_session_mem_send into
// the connection's output, never past the output's bound (a client that does not read makes
// nghttp2 produce nothing more: the window it opened is not serialised into memory, as
// CVE-2019-9517 did to servers that let their HTTP/2 library write as long as it liked).
// Handlers run after nghttp2 returns, never inside its callbacks; a stream nghttp2 closes is
// kept until the call that closed it returns.
#ifndef PERCORE_HTTP_SRC_H2_SESSION_H_
#define PERCORE_HTTP_SRC_H2_SESSION_H_

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "http_stream.h"
#include "pending.h"
#include "percore/protocol.h"
#include "response_core.h"

namespace percore::http {

class HttpProtocol;
class H2Session;

// One request and its answer. The request's fields are kept as they come; its answer is
// written to the stream's slot, which nghttp2's data source reads from as the stream's window
// lets it (a file's range is read a frame at a time).
class H2Stream final : public HttpStream {
 public:
  H2Stream(H2Session& session, int32_t id) : session_(session), id_(id) {}
  ~H2Stream();
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;

  // From nghttp2's callbacks. False once the fields are far past max_header_bytes (the stream
  // is then reset); a trailer's are counted and dropped.
  bool AddField(std::string_view name, std::string_view value, bool trailer);
  void AddBody(std::string_view data);
  // The header section is whole: its Content-Length against the body's limit, the route's
  // body options. False if the request is refused already.
  bool HeadersDone();
  // END_STREAM: the request is whole.
  void EndOfRequest();
  // A streamed body's bytes so far, and its end once it came, to the reader if it reads.
  void DeliverBody();
  // Whether the handler runs at the end of the header section and reads the body as it comes.
  bool streams_body() const { return body_streamed_; }
  // The request is whole (END_STREAM), or cannot be (`error`: a status to answer with).
  void Respond();
  // nghttp2 closed the stream: what is left of a deferred answer runs once the read is done.
  void Closed(uint32_t error_code, std::vector<Abandoned>* abandoned);
  // The data source: up to `length` bytes of the answer's body into `buf`.
  ssize_t ReadBody(uint8_t* buf, size_t length, uint32_t* flags);
  // Runs a waiting OnWritable callback if the stream has room now.
  void RunWritable();
  // HttpStream::WritePart's bound: the body waiting in the slot, and the connection's output.
  bool HasRoom() const;
  // HEADERS for ResponseCore::WriteHead: the status and the fields set, nothing of HTTP/1.1's
  // framing (RFC 9113 8.2.2).
  ResponseCore::Head SubmitHead(ResponseCore& core, std::optional<uint64_t> length,
                                bool empty_body);
  int32_t id() const { return id_; }
  // The answer's bytes in memory not yet taken by nghttp2, and whether any of the answer (bytes
  // or file) is still to be taken.
  size_t held_bytes() const { return slot_.bytes.size() - sent_; }
  bool holds_answer() const { return held_bytes() != 0 || holds_file(); }
  bool holds_file() const { return slot_.fd >= 0; }
  bool reset_by_server() const { return reset_by_server_; }
  void set_reset_by_server() { reset_by_server_ = true; }
  // A kept body's stream window opens as its bytes come for one stream at a time
  // (H2Session::body_owner_): the others stop at the 64 KiB every stream starts with until the
  // request ahead is whole. What unfinished bodies hold is one body and 64 KiB for each other
  // stream; the connection's window always opens, so that no stream waits on another's.
  void TakeBody(size_t n);
  void ReleaseOwner();
  // Raises the stream's window to Http2Options::stream_window_bytes.
  void OpenWindow();
  bool receiving() const { return !request_done_; }
  bool answered() const { return answered_; }
  bool rejected() const { return error_ != 0; }
  void set_error(int status) {
    if (error_ == 0) error_ = status;
  }

  // HttpStream: see http_stream.h.
  std::shared_ptr<PendingResponse> Defer(ResponseCore& res) override;
  void SendPending(PendingResponse& pending, std::string_view body) override;
  void SendPendingFile(PendingResponse& pending, int fd, uint64_t offset, uint64_t length) override;
  bool WritePart(PendingResponse& pending, std::string_view chunk) override;
  void EndParts(PendingResponse& pending) override;
  void WhenWritable(PendingResponse& pending, absl::AnyInvocable<void(Response&)> fn) override;
  void ReadBody(PendingResponse& pending,
                absl::AnyInvocable<void(Response&, std::string_view, bool)> fn) override;
  void ContinueBody(PendingResponse& pending) override;
  void Fail(PendingResponse& pending) override;
  void Dropped(PendingResponse& pending) override;
  bool Draining() const override;
  bool UnreadBodyCloses() const override { return false; }
  std::string* Gzip(std::string_view body, int level) override;
  PeerAddress Client(const Request& req, PeerAddress from) const override;
  Connection* SwitchProtocols(ResponseCore& res, std::string_view fields) override;
  WsLoop& WebSockets() override;

 private:
  struct Field {
    uint32_t name, name_length, value, value_length;  // in head_
  };
  void BeginPending(PendingResponse& pending);
  void FinishPending(PendingResponse& pending);
  // The answer is whole in the slot (or its file): nghttp2 may end the stream after it.
  void BodyDone();
  std::string_view View(uint32_t offset, uint32_t length) const {
    return std::string_view(head_).substr(offset, length);
  }

  H2Session& session_;
  const int32_t id_;
  std::string head_;  // the request's pseudo-header and header fields, back to back
  std::vector<Field> fields_;
  Field method_{}, path_{}, authority_{};
  std::string cookies_;    // every cookie field, joined (RFC 9113 8.2.3)
  size_t head_bytes_ = 0;  // as SETTINGS_MAX_HEADER_LIST_SIZE counts them
  std::string body_;       // the body, or what of a streamed one its reader has not taken
  uint64_t received_ = 0;
  uint64_t body_limit_ = 0;
  size_t owed_ = 0;  // body bytes not yet given back to the stream's window (TakeBody)
  bool reset_by_server_ = false;
  bool delivering_ = false;  // the body's reader runs
  bool body_end_delivered_ = false;
  int error_ = 0;  // a status to answer with instead of routing
  bool request_done_ = false;
  bool answered_ = false;   // the handler ran
  bool submitted_ = false;  // HEADERS of the answer submitted
  bool body_done_ = false;
  bool body_streamed_ = false;  // RouteOptions::stream_body: the body goes to Response::OnBody
  Slot slot_;                   // the answer's body, and its file
  size_t sent_ = 0;             // of slot_.bytes, taken by nghttp2
  PendingResponse* pending_ = nullptr;
  int status_ = 0;  // of the answer, once whole
  std::string log_line_;
};

class H2Session final : public percore::Session {
 public:
  // `early`: bytes of the connection already read (the preface an HTTP/1.1 session saw).
  H2Session(HttpProtocol& protocol, Connection& conn, std::string early);
  ~H2Session() override;
  void OnTakeOver(Connection& conn) override;
  size_t OnData(Connection& conn, std::string_view bytes) override;
  void OnDeadline(Connection& conn) override;
  void OnDrain(Connection& conn) override;
  void OnWritable(Connection& conn) override;
  void OnPeerClosed(Connection& conn) override;

  // A stream's answer has more to send: nghttp2 is told, and what it can send goes out now
  // unless a read or a send is under way (it then goes at the end of it).
  void Resume(int32_t stream);
  void Reset(int32_t stream, uint32_t error_code);
  HttpProtocol& protocol() { return protocol_; }
  Connection& conn() { return conn_; }
  nghttp2_session* nghttp2() { return session_; }

 private:
  friend class H2Stream;
  struct Callbacks;
  // Hands `bytes` to nghttp2, then runs the requests they completed.
  void Receive(std::string_view bytes);
  // What nghttp2 has to send, into the output up to its bound; then the writable callbacks,
  // the deadline, and the close once nothing is left to do.
  void Flush();
  // Counts one more in `counter`, which starts again each second: false past `limit`.
  bool Count(uint32_t* counter, uint32_t limit);
  // A flood: GOAWAY (ENHANCE_YOUR_CALM), and, within a read, the error that makes nghttp2 stop.
  int Flooded();
  // A stream reset by the client or for its fault: 0, or Flooded() past the limit.
  int CountReset();
  // Routes the requests waiting, while the answers held are within HTTP/1.1's queue bounds.
  void RespondWaiting();
  void SetDeadline();
  H2Stream* Find(int32_t id);

  HttpProtocol& protocol_;
  Connection& conn_;
  nghttp2_session* session_ = nullptr;
  std::string early_;
  absl::flat_hash_map<int32_t, std::unique_ptr<H2Stream>> streams_;
  std::vector<int32_t> ready_;     // requests to route, from the read under way
  std::vector<int32_t> body_due_;  // streamed bodies with bytes for their reader
  std::vector<int32_t> waiting_;   // requests whole, not routed while answers are held
  bool stalled_ = false;           // answers wait on the client's window (SetDeadline)
  uint64_t data_frames_at_deadline_ = 0;
  std::vector<std::unique_ptr<H2Stream>> closed_;
  std::vector<Abandoned> abandoned_;
  int32_t body_owner_ = 0;  // the stream whose kept body opens its window (TakeBody)
  int depth_ = 0;           // > 0 within Receive() or Flush()
  bool reading_ = false;    // within nghttp2_session_mem_recv
  bool flush_due_ = false;
  bool failed_ = false;  // nghttp2 gave up on the connection: only its GOAWAY is left to send
  // Flood counts (Count): this second's control frames and resets; WINDOW_UPDATEs against the
  // DATA frames sent, over the connection's life.
  int64_t second_ = 0;
  uint32_t control_frames_ = 0;
  uint32_t resets_ = 0;
  uint64_t window_updates_ = 0;
  uint64_t data_frames_sent_ = 0;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_H2_SESSION_H_
