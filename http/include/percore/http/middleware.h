// percore/http/middleware.h — the middleware a service usually wants, ready-made.
//
//   percore::http::App app;
//   app.Use(percore::http::Compress());                  // gzip what is worth it
//   app.Use("/api", percore::http::Cors({.origins = {"https://app.example"}}));
//   app.Use("/files", percore::http::Static("/srv/www"));  // GET /files/a.css -> /srv/www/a.css
//
// Each returns a Middleware (percore/http/router.h) to give to App::Use or Router::Use.
#ifndef PERCORE_HTTP_MIDDLEWARE_H_
#define PERCORE_HTTP_MIDDLEWARE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "percore/http/router.h"

namespace percore::http {

// Cross-origin resource sharing (the Fetch standard's CORS protocol), as Express's `cors`.
struct CorsOptions {
  // Origins allowed ("https://app.example", exact match); empty allows any ("*"), in which case
  // `credentials` must be false (browsers refuse "*" with credentials).
  std::vector<std::string> origins;
  // For a preflight: Access-Control-Allow-Methods.
  std::string methods = "GET, HEAD, PUT, PATCH, POST, DELETE";
  // For a preflight: Access-Control-Allow-Headers; empty reflects the request's
  // Access-Control-Request-Headers.
  std::string allowed_headers;
  // Access-Control-Expose-Headers on answers; empty for none.
  std::string exposed_headers;
  // Access-Control-Allow-Credentials: true (cookies and authorization go along).
  bool credentials = false;
  // Access-Control-Max-Age of a preflight in seconds; -1 to leave it out.
  int64_t max_age = -1;
};
// Answers preflight requests (OPTIONS with Origin and Access-Control-Request-Method) itself
// with 204; adds the CORS fields to every other answer to an allowed origin. A request from an
// origin not allowed, or without Origin, goes on untouched (the browser then refuses the
// answer to the script). Throws std::invalid_argument for "*" with credentials.
Middleware Cors(CorsOptions options = {});

// Serving files from a directory.
struct StaticOptions {
  // Served for a directory (GET /docs/ -> docs/index.html); empty for none.
  std::string index = "index.html";
  // Cache-Control's max-age in seconds on answers; -1 to leave Cache-Control out.
  int64_t max_age = 0;
  // Whether files and directories whose name starts with '.' are served (if not, they are
  // treated as absent).
  bool dotfiles = false;
};
// GET and HEAD for the path below the middleware's prefix (Request::base_path) are answered
// from the file under `root`, sent with Response::SendFile (no copy through user space):
// Content-Type by extension, ETag and Last-Modified with 412 for If-Match and
// If-Unmodified-Since and 304 for If-None-Match and If-Modified-Since (Response::Send's rules,
// before Range), a single Range with 206 (416 when unsatisfiable), index files, and a
// redirect to "dir/" for a directory. Nothing outside `root` is reachable: ".." segments,
// encoded dots or slashes, NUL and symbolic links that lead out of the root (resolved by the
// kernel, openat2 RESOLVE_BENEATH) are refused with 403 or 404 (as HttpError, so through the
// error hook). Other methods, and paths with no regular file, go on to the next middleware or
// route (so a 404 comes from the error hook too). Out of descriptors (EMFILE, ENFILE), a file
// is a 503 HttpError with Retry-After: 1 (out of memory a 500): the server's trouble, logged as
// any 5xx. Throws std::invalid_argument if `root` is not a directory.
Middleware Static(const std::string& root, StaticOptions options = {});

// Response compression.
struct CompressOptions {
  // Bodies shorter than this are sent as they are: gzip's 18 bytes of framing and the CPU are
  // not worth it.
  size_t min_bytes = 1024;
  // zlib's level: 1 fastest .. 9 smallest.
  int level = 6;
};
// Compresses with gzip the bodies given to Send() (and Json()) whose type is compressible
// (text/*, JSON, JavaScript, XML, SVG, wasm) when the request's Accept-Encoding allows gzip,
// and adds "Vary: Accept-Encoding" to them (not to bodies under `min_bytes`: those are never
// compressed, so nothing varies). A HEAD gets the fields its GET would, gzip's Content-Length
// included (its body is compressed, then left out). Not compressed: 204, 206 and 304 answers,
// bodies under `min_bytes`, answers that set Content-Encoding themselves. A streamed body
// (Response::Write) is deflated as it is written, each piece flushed so that it
// decodes at once (an event stream's events arrive as they are sent), chunked (a Length()
// declared is dropped: the compressed length is not known ahead), with a zlib stream (~256 KiB)
// of its own until End(). A file (SendFile, Static) worth compressing is compressed up to 4 MiB;
// a bigger one goes as it is, without a copy. Up to 64 KiB it is compressed whole
// (Content-Length); a bigger one is read piece by piece as its client reads it, into the
// streamed body's gzip stage, chunked (to HTTP/1.0, ended by the close), so a client that reads
// nothing costs the server HttpOptions::stream_buffer_bytes, a piece and a zlib stream
// (~256 KiB), not the compressed file. Throws std::invalid_argument for a level
// outside 1..9.
Middleware Compress(CompressOptions options = {});

}  // namespace percore::http

#endif  // PERCORE_HTTP_MIDDLEWARE_H_
