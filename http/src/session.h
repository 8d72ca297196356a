// The HTTP/1.1 session: llhttp glue, pipelining, limits, timeouts and dispatch to the router.
//
// Parsing keeps views, not copies. Every span of a message's header section is recorded as an
// offset from the message's first byte (`base`), so the views stay valid wherever those bytes
// live: in the receive buffer while the message is complete in it (the common case: no copy at
// all), or in `held` once the message spans reads. Only then are bytes copied: the header
// section into `held`, the body into `body`, and the per-message state moves from the loop's
// scratch into a heap object owned by the connection until the message completes. An idle
// connection holds neither.
#ifndef PERCORE_HTTP_SRC_SESSION_H_
#define PERCORE_HTTP_SRC_SESSION_H_

#include <llhttp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "date_cache.h"
#include "percore/http/options.h"
#include "percore/http/request.h"
#include "percore/http/router.h"
#include "percore/protocol.h"

namespace percore::http {

// The immutable configuration every loop of one App shares.
struct AppConfig {
  Router router;
  HttpOptions options;
};

// Offsets from the first byte of the message.
struct Span {
  uint32_t offset = 0;
  uint32_t length = 0;
  uint32_t end() const { return offset + length; }
};

// The state of one message being parsed.
struct MessageState {
  std::string held;  // header-section bytes (and more) of a message that spans reads
  std::string body;  // the body when it is not one piece next to the header section
  std::vector<std::pair<Span, Span>> fields;
  Span method, target, field, value, body_view;
  uint32_t header_end = 0;  // just past the last header-section span
  uint64_t body_bytes = 0;
  uint32_t extra_bytes = 0;  // this chunk's extensions, or the trailer: skipped, but bounded
  int error_status = 0;      // set by a callback that failed the message
  uint8_t host_count = 0;
  bool in_message = false;
  bool headers_done = false;
  bool base_in_held = false;  // base points into held (else into the receive buffer)
  bool in_method = false, in_target = false, in_field = false, in_value = false;
  bool body_copied = false;
  bool expect_continue = false;
  bool bad_transfer_encoding = false;
  bool upgrade = false;

  // Clears the per-message fields, keeping the buffers' capacity.
  void Reset();
};

class HttpSession;
struct Callbacks;

// The per-loop half: shared scratch, the Date line, the request log.
class HttpProtocol final : public percore::Protocol {
 public:
  HttpProtocol(std::shared_ptr<const AppConfig> config, Worker& worker);
  ~HttpProtocol() override;
  std::unique_ptr<percore::Session> NewSession(Connection& conn) override;
  void OnTick() override;

 private:
  friend class HttpSession;
  friend struct Callbacks;
  void FlushLog();

  std::shared_ptr<const AppConfig> config_;
  Worker& worker_;
  // The timeouts in milliseconds, converted once: deadlines are set twice per request.
  const int64_t header_timeout_ms_;
  const int64_t body_timeout_ms_;
  const int64_t idle_timeout_ms_;
  llhttp_settings_t settings_;
  DateCache date_;
  MessageState scratch_;              // the message being parsed, while it fits in one read
  std::vector<HeaderField> headers_;  // views handed to the handler
  std::vector<RouteParam> params_;
  std::string fields_;  // Response::Set() fields of the response being written
  std::string allow_;
  std::string log_;
  // Valid during one HttpSession::OnData call.
  MessageState* state_ = nullptr;
  Connection* conn_ = nullptr;
  const char* base_ = nullptr;
  bool parsing_held_ = false;
  bool peer_closes_ = false;  // the last response closes because the client asked it to
};

// The per-connection half.
class HttpSession final : public percore::Session {
 public:
  HttpSession(HttpProtocol& protocol, Connection& conn);
  void OnData(Connection& conn, std::string_view bytes) override;
  void OnDeadline(Connection& conn) override;
  void OnDrain(Connection& conn) override;

 private:
  friend struct Callbacks;
  int Fail(int status);
  int OnHeadersComplete();
  int OnMessageComplete();
  void Respond(MessageState& st, const char* base);
  void KeepUnfinished(const char* end);
  void SetDeadline(int64_t timeout_ms);
  // Counts a response by status class in the loop's stats.
  void CountResponse(int status);

  HttpProtocol& protocol_;
  llhttp_t parser_;
  std::unique_ptr<MessageState> partial_;  // the message in progress when it spans reads
};

}  // namespace percore::http

#endif  // PERCORE_HTTP_SRC_SESSION_H_
