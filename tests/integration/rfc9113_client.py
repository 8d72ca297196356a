"""A raw HTTP/2 client for the frame table of rfc9113_frames.py.

Valid frames are built with hyperframe and field blocks with hpack (both come with Debian's
python3-h2); invalid ones are hand-built bytes (raw()). Every frame the server sends is parsed
with hyperframe and checked against what RFC 9113 asks of a server whatever the row: its
SETTINGS first (3.4), no frame over the client's SETTINGS_MAX_FRAME_SIZE (4.2), no PUSH_PROMISE
after SETTINGS_ENABLE_PUSH=0 (8.4), no frame on a stream the client never opened (5.1.1) or on
one the server closed (5.1), no DATA beyond the client's flow-control windows (6.9.1), field
blocks not interleaved with other frames (4.3) that decode (RFC 7541) into valid responses (8.1,
8.2, 8.3.2). Every read has the row's deadline as its socket timeout; nothing sleeps.
"""

import socket
import ssl
import struct
import time

import hpack
from hyperframe import frame as hf
from hyperframe.exceptions import HyperframeError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
(DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE,
 CONTINUATION) = range(10)
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
          "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
          "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
          "HTTP_1_1_REQUIRED"]
(NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED,
 FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR) = range(10)
(HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE,
 MAX_HEADER_LIST_SIZE) = range(1, 7)
NO_RFC7540_PRIORITIES = 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
CLIENT_MAX_FRAME = 16384  # the client never raises its SETTINGS_MAX_FRAME_SIZE
CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                       b"upgrade"}


class Failure(Exception):
    """What the server did that the row (or RFC 9113 at any time) does not allow."""


def error_name(code):
    return ERRORS[code] if code < len(ERRORS) else "0x%x" % code


def raw(ftype, flags, stream, payload, length=None):
    """Any frame, valid or not: `length` overrides the payload's real length."""
    length = len(payload) if length is None else length
    return struct.pack(">I", length)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) \
        + payload


def settings(pairs=None, ack=False):
    return hf.SettingsFrame(0, settings=dict(pairs or {}), flags=["ACK"] if ack else []).serialize()


def ping(payload=b"12345678", ack=False):
    return hf.PingFrame(0, opaque_data=payload, flags=["ACK"] if ack else []).serialize()


def window_update(stream, increment):
    return hf.WindowUpdateFrame(stream, window_increment=increment).serialize()


def rst_stream(stream, code):
    return hf.RstStreamFrame(stream, error_code=code).serialize()


def priority(stream, depends_on, weight=15, exclusive=False):
    return hf.PriorityFrame(stream, depends_on=depends_on, stream_weight=weight,
                            exclusive=exclusive).serialize()


def data(stream, payload, end=True, pad=None):
    flags = (["END_STREAM"] if end else []) + (["PADDED"] if pad is not None else [])
    return hf.DataFrame(stream, data=payload, flags=flags, pad_length=pad or 0).serialize()


def headers(stream, block, end_stream=True, end_headers=True, pad=None, depends_on=None):
    flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
    flags += (["PADDED"] if pad is not None else []) + (["PRIORITY"] if depends_on else [])
    return hf.HeadersFrame(stream, data=block, flags=flags, pad_length=pad or 0,
                           depends_on=depends_on or 0, stream_weight=15).serialize()


def continuation(stream, block, end_headers=True):
    return hf.ContinuationFrame(stream, data=block,
                                flags=["END_HEADERS"] if end_headers else []).serialize()


def describe(ftype, flags, stream, obj):
    """A received frame, short: "RST_STREAM(stream 1, PROTOCOL_ERROR)"."""
    name = TYPE_NAMES[ftype] if ftype < len(TYPE_NAMES) else "type 0x%x" % ftype
    if ftype == GOAWAY:
        debug = obj.additional_data[:80]
        return "GOAWAY(last_stream %d, %s%s)" % (obj.last_stream_id, error_name(obj.error_code),
                                                 ", %r" % debug if debug else "")
    if ftype == RST_STREAM:
        return "RST_STREAM(stream %d, %s)" % (stream, error_name(obj.error_code))
    if ftype == SETTINGS:
        return "SETTINGS(%s)" % ("ACK" if flags & ACK else obj.settings)
    if ftype == PING:
        return "PING(%s%r)" % ("ACK, " if flags & ACK else "", obj.opaque_data)
    if ftype == WINDOW_UPDATE:
        return "WINDOW_UPDATE(stream %d, +%d)" % (stream, obj.window_increment)
    if ftype == DATA:
        return "DATA(stream %d, %d bytes%s)" % (stream, len(obj.data),
                                                ", END_STREAM" if flags & END_STREAM else "")
    end = ", END_STREAM" if ftype == HEADERS and flags & END_STREAM else ""
    more = "" if ftype not in (HEADERS, CONTINUATION) or flags & END_HEADERS else ", more"
    return "%s(stream %d, flags 0x%x%s%s)" % (name, stream, flags, end, more)


class Stream:
    def __init__(self, method):
        self.method = method
        self.informational, self.headers, self.trailers = [], None, None
        self.raw_blocks = []
        self.body = bytearray()
        self.ended = False  # the server sent END_STREAM
        self.reset = None  # the error code of the server's RST_STREAM
        self.client_reset = False
        self.recv_window = 0
        self.send_window = 0

    def field(self, name):
        for n, v in self.headers or []:
            if n == name:
                return v
        return None

    def status(self):
        value = self.field(b":status")
        return int(value) if value is not None else None


class Conn:
    """One connection to the server under test; `deadline` (time.monotonic()) bounds it all."""

    def __init__(self, host, port, tls, deadline, authority):
        self.deadline, self.tls, self.authority = deadline, tls, authority
        sock = socket.create_connection((host, port), timeout=self.left())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
            if sock.selected_alpn_protocol() != "h2":
                raise Failure("ALPN: offered h2, the server chose %r (RFC 9113 3.2)"
                              % sock.selected_alpn_protocol())
        self.sock = sock
        self.inbuf = bytearray()
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.sent, self.received = [], []  # bytes sent, frames received (described)
        self.server_settings, self.settings_seen = {}, 0
        self.unacked = []  # the client's SETTINGS not yet acknowledged
        self.local = {ENABLE_PUSH: 0}
        self.streams, self.next_stream = {}, 1
        self.goaway, self.eof, self.pongs = None, False, []
        self.block = None  # (stream, first frame's flags, fragments) until END_HEADERS
        self.auto_window = True
        self.recv_window, self.send_window = DEFAULT_WINDOW, DEFAULT_WINDOW
        self.ping_count = 0
        self.expect_table_update = None  # the limit the next field block must start by setting

    def left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Failure("the row's deadline passed")
        return left

    def close(self):
        self.sock.close()

    # Sending.

    def send(self, *chunks):
        payload = b"".join(chunks)
        self.sent.append(payload)
        self.sock.settimeout(self.left())
        try:
            self.sock.sendall(payload)
        except OSError as e:  # the server may close first; what it sent is still read
            self.received.append("(send failed: %s)" % e)

    def send_settings(self, pairs):
        """The client's SETTINGS: a raised window counts at once, a lowered one when acked."""
        self.unacked.append(dict(pairs))
        if pairs.get(INITIAL_WINDOW_SIZE, 0) > self.local_initial():
            self.apply_initial_window(pairs[INITIAL_WINDOW_SIZE])
        self.send(settings(pairs))

    def local_initial(self):
        return self.local.get(INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)

    def apply_initial_window(self, value):
        delta = value - self.local_initial()
        self.local[INITIAL_WINDOW_SIZE] = value
        for st in self.streams.values():
            st.recv_window += delta

    def handshake(self, pairs=None):
        """Preface and SETTINGS both ways, both acknowledged; logs cleared for the row."""
        self.send(PREFACE)
        self.send_settings({ENABLE_PUSH: 0, **(pairs or {})})
        self.wait(lambda: self.settings_seen and not self.unacked,
                  "the server's SETTINGS and its ACK of the client's")
        self.sent, self.received = [], []

    def stream(self, method="GET", sid=None):
        """A new client stream id (odd, increasing), or `sid` as given, with its state."""
        sid = self.next_stream if sid is None else sid
        self.next_stream = max(self.next_stream, sid + (1 if sid % 2 == 0 else 2))
        st = self.streams[sid] = Stream(method)
        st.recv_window = self.local_initial()
        st.send_window = self.server_settings.get(INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)
        return sid

    def fields(self, method="GET", path="/", extra=()):
        scheme = b"https" if self.tls else b"http"
        return [(b":method", method.encode()), (b":scheme", scheme),
                (b":authority", self.authority.encode()), (b":path", path.encode())] + \
            [(n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str) else v)
             for n, v in extra]

    def request(self, method="GET", path="/", extra=(), end=True, sid=None):
        """HEADERS of a request on a new stream; returns its id."""
        sid = self.stream(method, sid)
        self.send(headers(sid, self.enc.encode(self.fields(method, path, extra)), end_stream=end))
        return sid

    def send_body(self, sid, payload, end=True):
        """DATA within the server's windows and SETTINGS_MAX_FRAME_SIZE, reading meanwhile."""
        st, payload = self.streams[sid], memoryview(payload)
        limit = self.server_settings.get(MAX_FRAME_SIZE, 16384)
        while True:
            n = min(len(payload), limit, self.send_window, st.send_window)
            if n > 0 or not payload:
                last = n == len(payload)
                self.send(data(sid, bytes(payload[:n]), end=end and last))
                self.send_window -= n
                st.send_window -= n
                payload = payload[n:]
                if last:
                    return
            else:
                self.wait_frame("a WINDOW_UPDATE to send the rest of the body on stream %d" % sid)

    def ping_sync(self):
        """A PING and its ACK: whatever the server sent before the ACK has been read."""
        self.ping_count += 1
        payload = b"sync%04d" % self.ping_count
        self.send(ping(payload))
        self.wait(lambda: payload in self.pongs, "PING ACK %r" % payload)

    # Receiving.

    def wait(self, done, what):
        while not done():
            self.wait_frame(what)

    def wait_frame(self, what):
        if not self.read_frame():
            raise Failure("waiting for %s, the server closed the connection" % what)

    def fill(self, n, what, partial_ok=False):
        while len(self.inbuf) < n:
            try:
                self.sock.settimeout(self.left())
                chunk = self.sock.recv(65536)
            except (socket.timeout, Failure):
                raise Failure("waiting for %s: nothing more came before the deadline" % what)
            except (ConnectionResetError, ssl.SSLError) as e:
                self.received.append("(connection reset: %s)" % e)
                chunk = b""
            if not chunk:
                if self.inbuf and not partial_ok:
                    raise Failure("the server closed the connection inside a frame (%d bytes: "
                                  "%r)" % (len(self.inbuf), bytes(self.inbuf[:60])))
                return False
            self.inbuf += chunk
        return True

    def read_to_end(self, what):
        """Every byte until the server closes the connection, frames or not."""
        while self.fill(len(self.inbuf) + 1, what, partial_ok=True):
            pass
        self.eof = True
        return bytes(self.inbuf)

    def read_frame(self, what="a frame"):
        """The next frame, checked and accounted for; False at the end of the connection."""
        if self.eof or not self.fill(9, what):
            self.eof = True
            return False
        length = int.from_bytes(self.inbuf[:3], "big")
        self.fill(9 + length, what)
        head, payload = bytes(self.inbuf[:9]), memoryview(bytes(self.inbuf[9:9 + length]))
        del self.inbuf[:9 + length]
        ftype, flags, sid = head[3], head[4], int.from_bytes(head[5:9], "big")
        try:
            obj, _ = hf.Frame.parse_frame_header(memoryview(head))
            obj.parse_body(payload)
        except HyperframeError as e:
            raise Failure("the server sent an invalid frame %r: %s" % (head + payload[:40], e))
        self.received.append(describe(ftype, flags, sid & MAX_WINDOW, obj))
        if sid >> 31:
            raise Failure("the server set the reserved bit of a stream id (4.1 MUST unset)")
        if length > CLIENT_MAX_FRAME:
            raise Failure("a %d-byte frame over the client's SETTINGS_MAX_FRAME_SIZE (4.2)"
                          % length)
        self.on_frame(ftype, flags, sid, obj)
        return True

    def on_frame(self, ftype, flags, sid, obj):
        if self.block and (ftype != CONTINUATION or sid != self.block[0]):
            raise Failure("a frame inside the server's field block on stream %d (4.3)"
                          % self.block[0])
        if ftype == PUSH_PROMISE:
            raise Failure("PUSH_PROMISE after SETTINGS_ENABLE_PUSH=0 (8.4)")
        if not self.settings_seen and ftype != SETTINGS:
            raise Failure("the server's preface is not a SETTINGS frame (3.4)")
        st = self.streams.get(sid)
        if sid and st is None and ftype != PRIORITY:
            raise Failure("a frame on stream %d, which the client never opened (5.1)" % sid)
        if st and not st.client_reset:
            allowed = (PRIORITY,) if st.reset is not None else (
                (WINDOW_UPDATE, RST_STREAM, PRIORITY) if st.ended else None)
            if allowed and ftype not in allowed:
                raise Failure("a frame on stream %d after the server closed it (5.1)" % sid)
        if ftype == SETTINGS:
            self.on_settings(flags, obj)
        elif ftype == PING and not flags & ACK:
            self.send(ping(obj.opaque_data, ack=True))
        elif ftype == PING:
            self.pongs.append(obj.opaque_data)
        elif ftype == GOAWAY:
            self.goaway = obj
        elif ftype == RST_STREAM and st:
            st.reset = obj.error_code
        elif ftype == WINDOW_UPDATE:
            if obj.window_increment == 0:
                raise Failure("WINDOW_UPDATE with increment 0 (6.9)")
            if st:
                st.send_window += obj.window_increment
            elif not sid:
                self.send_window += obj.window_increment
        elif ftype == DATA:
            self.on_data(sid, st, flags, obj)
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                self.block = (sid, flags, [])
            self.block[2].append(obj.data)
            if flags & END_HEADERS:
                sid, first_flags, fragments = self.block
                self.block = None
                self.on_field_block(st, sid, first_flags, b"".join(fragments))

    def on_settings(self, flags, obj):
        if flags & ACK:
            if not self.unacked:
                raise Failure("a SETTINGS ACK for no SETTINGS the client sent (6.5.3)")
            acked = self.unacked.pop(0)
            if INITIAL_WINDOW_SIZE in acked and acked[INITIAL_WINDOW_SIZE] < self.local_initial():
                self.apply_initial_window(acked[INITIAL_WINDOW_SIZE])
            if HEADER_TABLE_SIZE in acked:
                if acked[HEADER_TABLE_SIZE] < self.dec.max_allowed_table_size:
                    self.expect_table_update = acked[HEADER_TABLE_SIZE]
                self.dec.max_allowed_table_size = acked[HEADER_TABLE_SIZE]
            self.local.update(acked)
            return
        pairs = obj.settings
        if pairs.get(ENABLE_PUSH, 0) != 0:
            raise Failure("the server's SETTINGS_ENABLE_PUSH is %d: a server MUST NOT set it "
                          "but to 0 (6.5.2)" % pairs[ENABLE_PUSH])
        if pairs.get(INITIAL_WINDOW_SIZE, 0) > MAX_WINDOW or not (
                2**14 <= pairs.get(MAX_FRAME_SIZE, 2**14) < 2**24):
            raise Failure("the server's SETTINGS are out of range (6.5.2): %s" % pairs)
        if INITIAL_WINDOW_SIZE in pairs:
            old = self.server_settings.get(INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)
            for st in self.streams.values():
                st.send_window += pairs[INITIAL_WINDOW_SIZE] - old
        if HEADER_TABLE_SIZE in pairs:  # the client's encoder stays within the server's table
            self.enc.header_table_size = min(4096, pairs[HEADER_TABLE_SIZE])
        self.server_settings.update(pairs)
        self.settings_seen += 1
        self.send(settings(ack=True))

    def on_data(self, sid, st, flags, obj):
        if st.headers is None and not st.client_reset:
            raise Failure("DATA on stream %d before a final response's HEADERS (8.1)" % sid)
        size = obj.flow_controlled_length
        self.recv_window -= size
        st.recv_window -= size
        if self.recv_window < 0 or st.recv_window < 0:
            raise Failure("the server's DATA overran the client's flow-control window on stream "
                          "%d (6.9.1): connection %d, stream %d" % (sid, self.recv_window,
                                                                   st.recv_window))
        st.body += obj.data
        if flags & END_STREAM:
            self.end_stream(sid, st)
        if self.auto_window and size:
            self.send(window_update(0, size))
            self.recv_window += size
            if not flags & END_STREAM and not st.client_reset:
                self.send(window_update(sid, size))
                st.recv_window += size

    def on_field_block(self, st, sid, flags, block):
        if self.expect_table_update is not None:
            limit, self.expect_table_update = self.expect_table_update, None
            if not block or block[0] & 0xe0 != 0x20:
                raise Failure("the first field block after SETTINGS_HEADER_TABLE_SIZE=%d was "
                              "acked does not start with a table size update (RFC 7541 4.2): "
                              "%r" % (limit, block[:20]))
        try:
            fields = self.dec.decode(block, raw=True)
        except hpack.HPACKError as e:
            raise Failure("the server's field block on stream %d does not decode (RFC 7541): "
                          "%s: %r" % (sid, e, block[:60]))
        st.raw_blocks.append(block)
        if st.client_reset:
            return
        check_fields(sid, fields, trailers=st.headers is not None)
        status = dict(fields).get(b":status")
        if st.headers is not None:
            if not flags & END_STREAM:
                raise Failure("trailers on stream %d without END_STREAM (8.1)" % sid)
            st.trailers = fields
        elif status.startswith(b"1"):
            if flags & END_STREAM:
                raise Failure("an informational response ends stream %d (8.1)" % sid)
            st.informational.append(fields)
        else:
            st.headers = fields
        self.received[-1] += " " + status.decode() if status else ""
        if flags & END_STREAM:
            self.end_stream(sid, st)

    def end_stream(self, sid, st):
        st.ended = True
        length, status = st.field(b"content-length"), st.status()
        if length is not None and st.method != "HEAD" and status not in (204, 304) and \
                int(length) != len(st.body):
            raise Failure("stream %d: content-length %s, %d bytes of content (8.1.1)"
                          % (sid, length.decode(), len(st.body)))


def check_fields(sid, fields, trailers):
    """A response's (or trailers') fields as RFC 9113 8.2, 8.2.2 and 8.3 want them."""
    seen_regular, statuses = False, 0
    for name, value in fields:
        if name.startswith(b":"):
            if seen_regular or trailers or name != b":status":
                raise Failure("stream %d: pseudo-header %r misplaced or undefined (8.3)"
                              % (sid, name))
            statuses += 1
            if len(value) != 3 or not value.isdigit():
                raise Failure("stream %d: :status %r is not three digits (8.3.2)" % (sid, value))
            continue
        seen_regular = True
        if name.lower() != name or not name or any(c <= 0x20 or c >= 0x7f for c in name):
            raise Failure("stream %d: field name %r (8.2: lowercase tokens)" % (sid, name))
        if name in CONNECTION_SPECIFIC or name == b"te":
            raise Failure("stream %d: connection-specific field %r in a response (8.2.2)"
                          % (sid, name))
        if any(c in b"\0\r\n" for c in value) or value[:1] in (b" ", b"\t") or \
                value[-1:] in (b" ", b"\t"):
            raise Failure("stream %d: field %r has an invalid value %r (8.2.1)"
                          % (sid, name, value))
    if not trailers and statuses != 1:
        raise Failure("stream %d: %d :status fields (8.3.2: exactly one)" % (sid, statuses))
