// Builds the handler's view of a request (Request's fields are private; this is its friend),
// for the HTTP/1.1 session and for an HTTP/2 stream alike.
#ifndef PERCORE_HTTP_SRC_REQUEST_BUILDER_H_
#define PERCORE_HTTP_SRC_REQUEST_BUILDER_H_

#include <span>
#include <string_view>

#include "codec.h"
#include "http_stream.h"
#include "percore/http/request.h"
#include "percore/http/router.h"
#include "percore/protocol.h"

namespace percore::http {

// The path of a request target: up to its first '?' (at `question`), and in absolute form from
// the slash after the authority.
std::string_view PathOf(std::string_view target, size_t question);

// Builds the handler's view of a request.
class RequestBuilder {
 public:
  // `question`: the target's first '?', or npos (the parser found it).
  static void Fill(Request& r, std::string_view method, std::string_view target, size_t question,
                   std::span<const HeaderField> headers, std::string_view body, int minor,
                   bool keep_alive, Worker& worker, const Connection& conn,
                   const HttpStream& stream) {
    r.method_ = method;
    r.target_ = target;
    r.path_ = PathOf(target, question);
    r.query_ =
        question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
    r.headers_ = headers;
    r.body_ = body;
    r.version_minor_ = minor;
    r.keep_alive_ = keep_alive;
    r.worker_id_ = worker.id();
    r.cpu_ = worker.cpu();
    r.worker_ = &worker;
    r.conn_ = &conn;
    r.stream_ = &stream;
  }
  static void SetParams(Request& r, std::span<const RouteParam> params) { r.params_ = params; }
  // A request that came on an HTTP/2 stream.
  static void SetHttp2(Request& r) { r.version_major_ = 2; }
  // Whether the route's parameters and the query decode (a handler would get garbage).
  static bool ValidEncoding(const Request& r) {
    for (const RouteParam& p : r.params_) {
      if (!ValidPercentEncoding(p.value)) return false;
    }
    return r.query_.empty() || ValidPercentEncoding(r.query_);
  }
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_REQUEST_BUILDER_H_
