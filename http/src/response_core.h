// What a Response handle stands for: the status, the fields and the writer of one answer. The
// handler's lives on the stack of HttpSession::Respond and writes straight into the output (or
// into the request's slot); a deferred one lives in its PendingResponse, and the session points
// it at the output when its answer is given.
#ifndef PERCORE_HTTP_SRC_RESPONSE_CORE_H_
#define PERCORE_HTTP_SRC_RESPONSE_CORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "percore/http/response.h"
#include "percore/protocol.h"

namespace percore::http {

class Request;
class HttpStream;
class H2Stream;
struct CompressOptions;
struct PendingResponse;
struct Slot;
struct FinishHooks;
enum class Precondition;

class ResponseCore : public internal::ResponseOutcome {
 public:
  // `fields` is cleared; `date_line` is "Date: ...\r\n".
  ResponseCore(std::string* out, std::string* fields, std::string_view date_line, bool head,
               bool close, bool http10, bool http10_keep_alive)
      : out_(out),
        fields_(fields),
        date_line_(date_line),
        head_(head),
        close_(close),
        http10_(http10),
        http10_keep_alive_(http10_keep_alive) {
    fields->clear();
  }
  ResponseCore(const ResponseCore&) = default;

  // As Response's.
  void Status(int code);
  void Set(std::string_view name, std::string_view value);
  void Type(std::string_view content_type);
  void Vary(std::string_view field);
  void Cookie(std::string_view name, std::string_view value, const CookieOptions& options);
  void OnFinish(absl::AnyInvocable<void(int status)> fn);
  void Send(std::string_view body);
  void SendFile(int fd, uint64_t offset, uint64_t length);

  // How a body's end is known: its length; chunked, or, to HTTP/1.0, the connection's end.
  // Decided here alone, by WriteHead.
  enum class Framing { kLength, kChunked, kClose };
  // Writes the status line and the header section for a body of `length` bytes, or, for
  // nullopt, one streamed (chunked; to HTTP/1.0, ended by the close); `empty_body` leaves the
  // default Content-Type out. Returns the framing the body takes, and whether one may follow
  // at all (not for HEAD, 204, 304).
  struct Head {
    Framing framing;
    bool body;
  };
  Head WriteHead(std::optional<uint64_t> length, bool empty_body);
  // The field line `name` starts at in fields_, or npos.
  size_t FindField(std::string_view name) const;
  // With Compress(): sets what a cache needs for a body of `length` bytes (Vary; a weak ETag
  // when gzipped) and says whether to gzip it. For a 304 too, which carries the validators the
  // 200 would have (RFC 9110 15.4.5).
  bool Negotiate(uint64_t length);
  // Writes the response with `body` gzipped (as it is, if gzip would not make it smaller).
  void SendCompressed(std::string_view body);
  // With Compress(): whether a file's range of `length` bytes is read piece by piece into the
  // streamed body's gzip stage as the client reads it (FilePump) rather than gzipped whole;
  // sets what Negotiate() sets when it is.
  bool StreamsGzip(uint64_t length);
  // With Compress(): whether a body of `length` bytes (UINT64_MAX: not known), streamed, is
  // deflated as it is written; sets what Negotiate() sets, and Content-Encoding, when it is.
  bool GzipsStream(uint64_t length);
  // RFC 9110 13.2.2 for a 2xx answer to GET or HEAD with validators set: answers 304 or 412
  // and returns true, or returns false for the answer to go on. `length` is the body's the
  // 200 would have, `file` whether it is a file's (Compress() has a bound for those). The
  // request's fields are looked at once: a later call returns false.
  bool AnswerPreconditions(uint64_t length, bool file);
  // What AnswerPreconditions() would decide, the request's fields left for it: kPass where
  // they do not apply.
  Precondition CheckPreconditions() const;
  // Response::Defer(): the answer's state, handed the fields so far; this one sends nothing
  // more. Throws std::logic_error after Send() or a first Defer().
  std::shared_ptr<PendingResponse> Defer();
  // Defer(): a copy of the request's conditional fields, which end with the handler.
  void KeepConditions();
  struct KeptConditions;

  std::string* out_;
  std::string* fields_;  // extra header fields, a loop-owned scratch buffer
  std::string_view date_line_;
  size_t type_offset_ = 0;  // the Content-Type line within fields_
  size_t type_length_ = 0;
  bool head_;
  bool close_;
  bool http10_;
  bool http10_keep_alive_;
  bool body_unread_ = false;  // the request's body is still arriving (RouteOptions::stream_body)
  bool validators_ = false;   // ETag or Last-Modified was set
  // The request's conditional fields: its own until Defer(), a copy for a deferred answer.
  const Request* request_ = nullptr;
  std::shared_ptr<const KeptConditions> kept_conditions_;
  Connection* conn_ = nullptr;  // for SendFile()
  Slot* slot_ = nullptr;        // where SendFile() queues a file while an answer ahead is due
  HttpStream* stream_ = nullptr;               // what it answers on
  H2Stream* h2_ = nullptr;                     // the same, when it is an HTTP/2 stream
  FinishHooks* finish_ = nullptr;              // OnFinish()
  const CompressOptions* compress_ = nullptr;  // set by the Compress() middleware
  bool gzip_accepted_ = false;                 // the request's Accept-Encoding allows gzip
};

inline Response::Response(ResponseCore* core) : core_(core) {}
inline ResponseCore* Response::core() const { return static_cast<ResponseCore*>(core_); }

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_RESPONSE_CORE_H_
