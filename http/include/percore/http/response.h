// percore/http/response.h — the answer a handler writes.
//
//   app.Post("/items", [](const Request& req, Response& res) {
//     res.Status(201).Type("application/json").Set("Location", "/items/7").Send("{\"id\":7}");
//   });
//
// Send() writes status line, Date, Content-Type, Content-Length, the fields set with Set() and the
// body straight into the connection's output buffer: no allocation for a small response. A
// handler that returns without Send() answers with its status and an empty body. Owning-loop-only.
#ifndef PERCORE_HTTP_RESPONSE_H_
#define PERCORE_HTTP_RESPONSE_H_

#include <string>
#include <string_view>

namespace percore::http {

// The response to one request.
class Response {
 public:
  // Sets the status code (200 by default). Throws std::invalid_argument outside 200..599.
  Response& Status(int code);
  // Adds a header field. Throws std::invalid_argument if either part contains CR, LF or NUL, if
  // the name is empty, or for the fields the server writes itself (Date, Content-Length,
  // Transfer-Encoding, Connection other than "close"). "Connection: close" closes the
  // connection after this response; "Content-Type" is Type().
  Response& Set(std::string_view name, std::string_view value);
  // Sets Content-Type (default "text/plain; charset=utf-8" when the body is not empty).
  Response& Type(std::string_view content_type);
  // Writes the whole response with `body`. Only the first call counts. For HEAD requests the body
  // is left out and Content-Length still gives its length.
  void Send(std::string_view body);
  // Whether Send() was called.
  bool sent() const { return sent_; }
  // The status code.
  int status() const { return status_; }

 private:
  friend class ResponseWriter;
  Response(std::string* out, std::string* fields, std::string_view date_line, bool head, bool close,
           bool http10_keep_alive)
      : out_(out),
        fields_(fields),
        date_line_(date_line),
        head_(head),
        close_(close),
        http10_keep_alive_(http10_keep_alive) {}

  std::string* out_;
  std::string* fields_;  // extra header fields, a loop-owned scratch buffer
  std::string_view date_line_;
  size_t type_offset_ = 0;  // the Content-Type line within fields_
  size_t type_length_ = 0;
  int status_ = 200;
  bool head_;
  bool close_;
  bool http10_keep_alive_;
  bool sent_ = false;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_RESPONSE_H_
