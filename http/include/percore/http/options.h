// percore/http/options.h — HTTP limits and timeouts.
//
//   percore::http::HttpOptions http;
//   http.max_body_bytes = 8 << 20;               // 8 MiB uploads
//   http.header_timeout = absl::Seconds(5);
//   percore::http::App app(http);
//
// Every limit answers with its own status and closes the connection: 413 body, 414 request
// target, 431 header section, 408 timeout.
#ifndef PERCORE_HTTP_OPTIONS_H_
#define PERCORE_HTTP_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace percore::http {

// HTTP/2 (RFC 9113): negotiated by ALPN ("h2") on a TLS port, and by the client's preface
// ("PRI * HTTP/2.0", prior knowledge) on a plain one. The limits of HttpOptions (body, header
// section, timeouts) apply to each stream as to an HTTP/1.1 request. A client past one of the
// limits below is sent GOAWAY (ENHANCE_YOUR_CALM) and its connection closes.
struct Http2Options {
  bool enabled = true;
  // Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); those beyond are
  // refused (RST_STREAM REFUSED_STREAM).
  uint32_t max_concurrent_streams = 100;
  // What a client may send on a stream before the server has taken it (its window), once the
  // server reads that stream's body (every stream starts with 64 KiB, and a kept body gets
  // this one request at a time), and on the whole connection.
  uint32_t stream_window_bytes = 256 * 1024;
  uint32_t connection_window_bytes = 1024 * 1024;
  // Streams reset a second, by the client or by the server for a fault of the client's: the
  // rapid-reset flood (CVE-2023-44487) opens and cancels streams faster than they are served.
  uint32_t max_resets_per_second = 200;
  // Frames that cost the server work and carry no request (SETTINGS, PING, PRIORITY,
  // RST_STREAM, empty DATA, unknown types) a client may send a second: the floods of
  // CVE-2019-9512/9515/9518. WINDOW_UPDATE is bounded by the DATA frames the server sent (ten
  // for each, and a hundred more); a header block in more than 8 CONTINUATION frames is one
  // (CVE-2024-27316).
  uint32_t max_control_frames_per_second = 1000;
  // Files a connection's answers may hold open while they wait on the client's windows: past
  // it no more requests are routed on that connection until some are sent (as past
  // HttpOptions::max_queued_responses answers, or max_queued_response_bytes in memory). A
  // client that opens no window would otherwise hold a descriptor for each of its streams.
  uint32_t max_files_held = 16;
};

// HTTP server limits. A plain value type.
struct HttpOptions {
  // Largest request body, Content-Length or chunked (413 beyond).
  size_t max_body_bytes = 1024 * 1024;
  // A body a handler answered before reading (RouteOptions::stream_body) is read and
  // discarded up to this many bytes, so the connection can serve the next request; beyond it,
  // the connection closes after the answer.
  size_t max_discard_bytes = 1024 * 1024;
  // A streamed answer (Response::Write) waits, Write() returning false, once more than
  // this is queued beyond what the socket took: a reader that stalls costs this much (plus the
  // last piece written) besides the kernel's socket buffer. A piece of any size is taken;
  // EngineOptions::max_pending_output bounds what a handler sends in one piece.
  size_t stream_buffer_bytes = 64 * 1024;
  // Requests pipelined behind one whose answer comes later (Response::Defer) are read and
  // handled at once, their answers held until those ahead of them have gone, so they still
  // leave in request order. Past either bound (answers held, or their bytes) the connection
  // reads nothing more until the answer ahead goes: what one client can make the server hold.
  size_t max_queued_responses = 64;
  size_t max_queued_response_bytes = 1024 * 1024;
  // Longest request target (414 beyond).
  size_t max_target_bytes = 8 * 1024;
  // Largest header section: request line and header fields (431 beyond).
  size_t max_header_bytes = 16 * 1024;
  // Most header fields in a request (431 beyond).
  size_t max_header_fields = 100;
  // From a request's first byte until its header section is complete (408 after).
  absl::Duration header_timeout = absl::Seconds(10);
  // Between two reads of a request body (408 after).
  absl::Duration body_timeout = absl::Seconds(60);
  // A connection with no request in progress is closed after this long.
  absl::Duration idle_timeout = absl::Seconds(60);
  // Writes "Request handled by worker <id>: <method> <path> <status>" to stdout for each
  // request, buffered per loop and flushed every tick.
  bool log_requests = false;
  // Proxies whose X-Forwarded-For is believed (Request::client()), as CIDR ranges
  // ("10.0.0.0/8", "127.0.0.1", "::1/128"). Empty: the header is never believed.
  std::vector<std::string> trust_proxy;
  // HTTP/2 on the same routes.
  Http2Options http2;
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_OPTIONS_H_
