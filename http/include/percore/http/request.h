// percore/http/request.h — one parsed HTTP request, as a handler sees it.
//
//   app.Get("/users/:id", [](const Request& req, Response& res) {
//     std::string_view id = req.Param("id");           // "42" for /users/42
//     std::string_view agent = req.Header("user-agent");
//     res.Send(std::string("user ") + std::string(id) + " on worker " +
//              std::to_string(req.worker_id()));
//   });
//
// Every view points into the loop's buffers and is valid only while the handler runs: copy what
// must outlive it. Owning-loop-only.
#ifndef PERCORE_HTTP_REQUEST_H_
#define PERCORE_HTTP_REQUEST_H_

#include <span>
#include <string_view>

#include "percore/protocol.h"

namespace percore::http {

// One header field as received (name case preserved, value without surrounding whitespace).
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// One `:name` segment of the matched route and the path segment it matched (not decoded).
struct RouteParam {
  std::string_view name;
  std::string_view value;
};

// A complete request: request line, header fields, body.
class Request {
 public:
  // The method token, e.g. "GET".
  std::string_view method() const { return method_; }
  // The request target as sent, e.g. "/search?q=a".
  std::string_view target() const { return target_; }
  // The target up to '?', e.g. "/search" (not percent-decoded).
  std::string_view path() const { return path_; }
  // The target after '?', e.g. "q=a"; empty if none.
  std::string_view query() const { return query_; }
  // The raw value of query parameter `name` ("a" for "q=a" and name "q"); empty if absent.
  std::string_view Query(std::string_view name) const;
  // The first header field named `name` (case-insensitive); empty if absent.
  std::string_view Header(std::string_view name) const;
  // Whether a header field named `name` is present (case-insensitive).
  bool HasHeader(std::string_view name) const;
  // All header fields, in the order received.
  std::span<const HeaderField> headers() const { return headers_; }
  // The value of route parameter `name` ("42" for "/users/:id" and "/users/42"); empty if none.
  std::string_view Param(std::string_view name) const;
  // All route parameters, in pattern order.
  std::span<const RouteParam> params() const { return params_; }
  // The body, de-chunked; empty if none.
  std::string_view body() const { return body_; }
  // 0 for HTTP/1.0, 1 for HTTP/1.1.
  int version_minor() const { return version_minor_; }
  // Whether the connection stays open after this request's response.
  bool keep_alive() const { return keep_alive_; }
  // Id of the loop serving this request (0..threads-1).
  int worker_id() const { return worker_id_; }
  // CPU of the loop serving this request.
  int cpu() const { return cpu_; }
  // The loop serving this request (Worker::draining(), Worker::Crash()).
  Worker& worker() const { return *worker_; }
  // The address of the client's end of the connection (asked of the kernel; a proxy in front
  // is the peer then).
  PeerAddress peer() const { return conn_->peer(); }

 private:
  friend class RequestBuilder;
  std::string_view method_, target_, path_, query_, body_;
  std::span<const HeaderField> headers_;
  std::span<const RouteParam> params_;
  int version_minor_ = 1;
  bool keep_alive_ = true;
  int worker_id_ = 0;
  int cpu_ = 0;
  Worker* worker_ = nullptr;
  const Connection* conn_ = nullptr;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_REQUEST_H_
