// Cors() and Compress(); Static() is in static.cc.
#include "percore/http/middleware.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "codec.h"
#include "response_writer.h"

namespace percore::http {

Middleware Compress(CompressOptions options) {
  if (options.level < 1 || options.level > 9) {
    throw std::invalid_argument("Compress: level must be in 1..9");
  }
  auto shared = std::make_shared<const CompressOptions>(options);
  return [shared](const Request& req, Response& res, const Next& next) {
    // Most clients of an API send no Accept-Encoding: no call to parse one.
    const std::string_view accept = req.Header("accept-encoding");
    // What Send() and the streamed body's gzip stage look at.
    if (ResponseCore* core = ResponseWriter::Core(res); core != nullptr) {
      core->compress_ = shared.get();
      core->gzip_accepted_ = !accept.empty() && AcceptsGzip(accept);
    }
    next();
  };
}

Middleware Cors(CorsOptions options) {
  if (options.origins.empty() && options.credentials) {
    throw std::invalid_argument("Cors: credentials need a list of origins (browsers refuse \"*\")");
  }
  auto o = std::make_shared<const CorsOptions>(std::move(options));
  return [o](const Request& req, Response& res, const Next& next) {
    const std::string_view origin = req.Header("origin");
    const bool any = o->origins.empty();
    // The answer names the origin it was made for: a cache must keep one per origin.
    if (!any) res.Vary("Origin");
    if (origin.empty() ||
        (!any && std::find(o->origins.begin(), o->origins.end(), origin) == o->origins.end())) {
      next();
      return;
    }
    res.Set("Access-Control-Allow-Origin", any ? std::string_view("*") : origin);
    if (o->credentials) res.Set("Access-Control-Allow-Credentials", "true");
    const std::string_view wanted = req.Header("access-control-request-method");
    if (req.method() == "OPTIONS" && !wanted.empty()) {  // a preflight
      res.Set("Access-Control-Allow-Methods", o->methods);
      std::string_view headers = o->allowed_headers;
      if (headers.empty()) {
        headers = req.Header("access-control-request-headers");
        res.Vary("Access-Control-Request-Headers");
      }
      if (!headers.empty()) res.Set("Access-Control-Allow-Headers", headers);
      if (o->max_age >= 0) res.Set("Access-Control-Max-Age", std::to_string(o->max_age));
      res.Status(204).Send("");
      return;
    }
    if (!o->exposed_headers.empty()) res.Set("Access-Control-Expose-Headers", o->exposed_headers);
    next();
  };
}

}  // namespace percore::http
