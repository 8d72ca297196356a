// Constructs Responses for the session and reads back what the handler decided.
#ifndef PERCORE_HTTP_SRC_RESPONSE_WRITER_H_
#define PERCORE_HTTP_SRC_RESPONSE_WRITER_H_

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "percore/http/response.h"

namespace percore::http {

// The reason phrase of a status code ("Not Found"); "Unknown" for codes without one.
std::string_view ReasonPhrase(int status);

// Appends "HTTP/1.1 <code> <reason>\r\n".
void AppendStatusLine(std::string& out, int status);

// Appends the decimal form of `n`.
void AppendDecimal(std::string& out, size_t n);
// `value` serialised for Json(): invalid UTF-8 in a string is replaced rather than thrown
// about mid-answer.
std::string JsonText(const nlohmann::json& value);

class ResponseWriter {
 public:
  // `fields` is cleared; `date_line` is "Date: ...\r\n".
  static Response Make(std::string* out, std::string* fields, std::string_view date_line, bool head,
                       bool close, bool http10, bool http10_keep_alive) {
    fields->clear();
    return Response(out, fields, date_line, head, close, http10, http10_keep_alive);
  }
  // Whether the connection must close after this response (the request asked, or the handler
  // set "Connection: close").
  static bool Closes(const Response& r) { return r.close_; }
  // For Static, which must evaluate them before its Range: answers 304 or 412 if the request's
  // preconditions say so (true), for a file of `length` bytes; see Response::AnswerPreconditions.
  static bool AnswerPreconditions(Response& r, uint64_t length) {
    return r.AnswerPreconditions(length, /*file=*/true);
  }
  // Drops the status and fields set so far (not what the request decided: HEAD, close), but
  // Retry-After: a 503's word on when to come back is not half-made.
  static void Clear(Response& r) {
    std::string& fields = *r.fields_;
    const size_t retry_after = r.FindField("retry-after");
    if (retry_after == std::string::npos) {
      fields.clear();
    } else {
      fields.erase(fields.find("\r\n", retry_after) + 2);
      fields.erase(0, retry_after);
    }
    r.type_length_ = 0;
    r.validators_ = false;
    r.status_ = 200;
  }
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_RESPONSE_WRITER_H_
