// Constructs Responses for the session and reads back what the handler decided.
#ifndef PERCORE_HTTP_SRC_RESPONSE_WRITER_H_
#define PERCORE_HTTP_SRC_RESPONSE_WRITER_H_

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
  // Compress(): Vary and ETag for a 304 answered for a representation of `length` bytes.
  static void NegotiateNotModified(Response& r, uint64_t length) {
    if (r.compress_ != nullptr) r.Negotiate(length);
  }
  // Drops the status and fields set so far (not what the request decided: HEAD, close).
  static void Clear(Response& r) {
    r.fields_->clear();
    r.type_length_ = 0;
    r.status_ = 200;
  }
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_RESPONSE_WRITER_H_
