// percore/http/request.h — one parsed HTTP request, as a handler sees it.
//
//   app.Get("/users/:id", [](const Request& req, Response& res) {
//     std::string_view id = req.Param("id");           // "42" for /users/42, decoded
//     std::string_view agent = req.Header("user-agent");
//     res.Send(std::string("user ") + std::string(id) + " on worker " +
//              std::to_string(req.worker_id()));
//   });
//
// Every view points into the loop's buffers and is valid only while the handler runs: copy what
// must outlive it. Owning-loop-only.
#ifndef PERCORE_HTTP_REQUEST_H_
#define PERCORE_HTTP_REQUEST_H_

#include <forward_list>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "percore/protocol.h"

namespace percore::http {

class HttpStream;

// One header field as received (name case preserved, value without surrounding whitespace).
struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// One `:name` segment of the matched route and the path segment it matched (as sent: not
// decoded; Request::Param decodes).
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
  // The target up to '?', e.g. "/search" (not percent-decoded: routes match it as sent).
  std::string_view path() const { return path_; }
  // The prefix of the middleware running (Router::Use) or "" (routes, and middleware for every
  // path): path() is base_path() + the path below it.
  std::string_view base_path() const { return base_path_; }
  // The target after '?', e.g. "q=a"; empty if none.
  std::string_view query() const { return query_; }
  // The value of query parameter `name`, percent-decoded with '+' as a space ("a b" for
  // "q=a+b" and name "q"); the first if the key repeats; empty if absent. A query with invalid
  // percent-encoding never reaches a handler: it gets 400.
  std::string_view Query(std::string_view name) const;
  // Every value of a repeated query key, in order ("1", "2" for "id=1&id=2"), decoded.
  std::vector<std::string_view> QueryAll(std::string_view name) const;
  // The value of the cookie `name` (Cookie header fields, RFC 6265), as sent but for the
  // DQUOTEs of a quoted one ("abc" for sid="abc"); empty if absent.
  std::string_view Cookie(std::string_view name) const;
  // The first header field named `name` (case-insensitive); empty if absent.
  std::string_view Header(std::string_view name) const;
  // Whether a header field named `name` is present (case-insensitive).
  bool HasHeader(std::string_view name) const;
  // All header fields, in the order received.
  std::span<const HeaderField> headers() const { return headers_; }
  // The value of route parameter `name` ("42" for "/users/:id" and "/users/42"),
  // percent-decoded ("a b" for "a%20b"; '+' stays); empty if none. A parameter with invalid
  // percent-encoding never reaches a handler: it gets 400.
  std::string_view Param(std::string_view name) const;
  // All route parameters, in pattern order, as sent.
  std::span<const RouteParam> params() const { return params_; }
  // The body, de-chunked; empty if none.
  std::string_view body() const { return body_; }
  // The body parsed as JSON (include <nlohmann/json.hpp> to use it). Throws HttpError: 415 if
  // Content-Type is not application/json (or a +json type), 400 if it does not parse.
  nlohmann::json Json() const;
  // 2 for HTTP/2, else 1.
  int version_major() const { return version_major_; }
  // 0 for HTTP/1.0 and HTTP/2, 1 for HTTP/1.1.
  int version_minor() const { return version_minor_; }
  // Whether the connection stays open after this request's response.
  bool keep_alive() const { return keep_alive_; }
  // Id of the loop serving this request (0..threads-1).
  int worker_id() const { return worker_id_; }
  // CPU of the loop serving this request.
  int cpu() const { return cpu_; }
  // The loop serving this request (Worker::draining(); testing::CrashLoop() in
  // percore/testing/fault.h).
  Worker& worker() const { return *worker_; }
  // The address of the client's end of the connection (asked of the kernel; a proxy in front
  // is the peer then).
  PeerAddress peer() const { return conn_->peer(); }
  // What TLS negotiated for this connection (version, cipher, SNI name, ALPN protocol), or
  // nullopt over plain TCP. Its views live as long as the connection.
  std::optional<TlsInfo> tls() const { return conn_->tls(); }
  // The client's address as far as it can be trusted: the source address of the PROXY
  // protocol header (EngineOptions::proxy_protocol), else the peer's; and if that address is a
  // trusted proxy (HttpOptions::trust_proxy), the rightmost address of X-Forwarded-For that is
  // not one (with port 0). Never a header's word unless the peer is trusted.
  PeerAddress client() const;

 private:
  friend class RequestBuilder;
  friend class Router;
  friend class Next;
  // A decoded copy of `raw` that lives as long as the request.
  std::string_view Decoded(std::string_view raw, bool plus_is_space) const;

  std::string_view method_, target_, path_, query_, body_;
  mutable std::string_view base_path_;  // set by the middleware chain
  mutable std::forward_list<std::string> decoded_;
  std::span<const HeaderField> headers_;
  std::span<const RouteParam> params_;
  int version_minor_ = 1;
  int version_major_ = 1;
  bool keep_alive_ = true;
  int worker_id_ = 0;
  int cpu_ = 0;
  Worker* worker_ = nullptr;
  const Connection* conn_ = nullptr;
  const HttpStream* stream_ = nullptr;  // for client()
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_REQUEST_H_
