// Makes the handler's Response for the session, and reads back what the handler decided.
#ifndef PERCORE_HTTP_SRC_RESPONSE_WRITER_H_
#define PERCORE_HTTP_SRC_RESPONSE_WRITER_H_

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "percore/http/response.h"
#include "pending.h"
#include "response_core.h"

namespace percore::http {

// The reason phrase of a status code ("Not Found"); "Unknown" for codes without one.
std::string_view ReasonPhrase(int status);

// Appends the decimal form of `n`.
void AppendDecimal(std::string& out, size_t n);
// `value` serialised for Json(): invalid UTF-8 in a string is replaced rather than thrown
// about mid-answer.
std::string JsonText(const nlohmann::json& value);

// The session's and the middleware's way to a Response's core.
class ResponseWriter {
 public:
  // The handler's Response for `core`, which outlives it.
  static Response Make(ResponseCore& core) { return Response(&core); }
  // Another handle to a deferred answer, for the callbacks registered on it.
  static Response Handle(PendingResponse& pending) { return Response(pending.shared_from_this()); }
  // A handle's state (null for the handler's Response, or once moved from).
  static PendingResponse* State(Response& r) { return r.pending_.get(); }
  // The core of the handler's Response, or of a handle (null once moved from).
  static ResponseCore* Core(Response& r) { return r.core(); }
  // Whether the connection must close after this response (the request asked, or the handler
  // set "Connection: close").
  static bool Closes(const Response& r) { return r.core_ != nullptr && r.core()->close_; }
  // For Static, which must evaluate them before its Range: answers 304 or 412 if the request's
  // preconditions say so (true), for a file of `length` bytes; see
  // ResponseCore::AnswerPreconditions.
  static bool AnswerPreconditions(Response& r, uint64_t length) {
    return r.core()->AnswerPreconditions(length, /*file=*/true);
  }
  // Drops the status and fields set so far (not what the request decided: HEAD, close), but
  // Retry-After: a 503's word on when to come back is not half-made.
  static void Clear(Response& r) {
    ResponseCore& c = *r.core();
    std::string& fields = *c.fields_;
    const size_t retry_after = c.FindField("retry-after");
    if (retry_after == std::string::npos) {
      fields.clear();
    } else {
      fields.erase(fields.find("\r\n", retry_after) + 2);
      fields.erase(0, retry_after);
    }
    c.type_length_ = 0;
    c.validators_ = false;
    c.status_ = 200;
  }
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_RESPONSE_WRITER_H_
