// The WebSocket opening handshake, server side (RFC 6455 4.2, RFC 7692 7), without I/O: whether
// an upgrade request may become a WebSocket, the Sec-WebSocket-Accept it is answered with, the
// subprotocol chosen and the permessage-deflate agreed. The second piece of the WebSocket issue
// (#25), after the frame layer.
#ifndef PERCORE_HTTP_SRC_WS_HANDSHAKE_H_
#define PERCORE_HTTP_SRC_WS_HANDSHAKE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "percore/http/request.h"
#include "percore/http/websocket.h"

namespace percore::http::ws {

// SHA-1 (RFC 3174) of `data`: what RFC 6455 hashes the client's key with. Not for security: the
// handshake uses it only to show the server read the key.
std::array<uint8_t, 20> Sha1(std::string_view data);

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (4.2.2): base64 of the SHA-1 of the key
// and RFC 6455's GUID.
std::string AcceptKey(std::string_view client_key);

// What the handshake decided.
struct Handshake {
  int status = 0;          // 101 to switch; else the answer: 400, or 426 for another version
  std::string accept;      // Sec-WebSocket-Accept, for a 101
  std::string protocol;    // the subprotocol chosen, or empty (no Sec-WebSocket-Protocol)
  std::string_view error;  // why not, for a 400 or 426's body
};

// Checks an upgrade request (4.2.1): GET in HTTP/1.1 or later, "websocket" among Upgrade's
// tokens and "upgrade" among Connection's (case-insensitive, over every line of each field), a
// Sec-WebSocket-Key that is the base64 of 16 bytes, and Sec-WebSocket-Version 13 (else 426,
// answered with "Sec-WebSocket-Version: 13"). The subprotocol is the first of the client's
// Sec-WebSocket-Protocol tokens that `protocols` (the server's) holds.
Handshake CheckHandshake(std::string_view method, int minor_version,
                         std::span<const HeaderField> fields,
                         std::span<const std::string> protocols);

// What permessage-deflate was agreed as, for a connection.
struct Deflate {
  bool server_no_context_takeover = false;  // the server resets its deflater every message
  bool client_no_context_takeover = false;  // the client resets its deflater every message
  int server_max_window_bits = 15;          // the server's window: 9..15
  std::string response;                     // the Sec-WebSocket-Extensions value answered
};

// Picks the first of the client's permessage-deflate offers (Sec-WebSocket-Extensions, over
// every line) that is valid and that the server can honour (RFC 7692 7): each parameter at most
// once, no unknown one, window bits 8..15, and a server window of at least 9 (zlib cannot deflate
// with 8). Nothing (the connection goes uncompressed) when `mode` is kOff or no offer qualifies.
std::optional<Deflate> NegotiateDeflate(std::span<const HeaderField> fields, WsCompression mode);

}  // namespace percore::http::ws

#endif  // PERCORE_HTTP_SRC_WS_HANDSHAKE_H_
