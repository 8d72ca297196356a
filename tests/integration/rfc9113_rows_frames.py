"""Rows: the connection preface, framing, SETTINGS, PING, stream states, flow control, priority
(RFC 9113 sections 3-6). Each row sends what its decorator says after the preface and SETTINGS
exchange (rfc9113_expect.py) and states what RFC 9113 says the server must do.
"""

import hpack

from rfc9113_client import (
    ACK, DATA, END_HEADERS, END_STREAM, FRAME_SIZE_ERROR, FLOW_CONTROL_ERROR,
    GOAWAY, HEADERS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_WINDOW, PADDED, PING, PREFACE,
    PRIORITY, PROTOCOL_ERROR, PUSH_PROMISE, RST_STREAM, SETTINGS, STREAM_CLOSED, WINDOW_UPDATE,
    CANCEL, DEFAULT_WINDOW, ENABLE_PUSH, NO_RFC7540_PRIORITIES, Failure, continuation, data,
    headers, ping, priority, raw, rst_stream, settings, window_update)
from rfc9113_expect import (
    STREAM_BYTES, answered, connection_error, either_error, get_block, ignored, max_frame,
    open_post, row, stream_error)


# 3.4: the connection preface.

@row("3.4", "the preface, then PING instead of SETTINGS",
     "GOAWAY(PROTOCOL_ERROR) or the end of the connection (3.4: GOAWAY MAY be omitted)",
     handshake=False)
def preface_then_ping(c):
    c.send(PREFACE, ping())
    connection_error(c, PROTOCOL_ERROR, barrier=False, goaway_optional=True)


@row("3.4", "'PRI * HTTP/2.0\\r\\n\\r\\nXX\\r\\n\\r\\n' and SETTINGS",
     "the end of the connection; a GOAWAY, if any, of PROTOCOL_ERROR", handshake=False)
def preface_invalid(c):
    c.send(PREFACE.replace(b"SM", b"XX"), settings())
    got = c.read_to_end("the end of the connection")
    if len(got) >= 9 and got[3] == SETTINGS:  # frames: check any GOAWAY among them
        while len(got) >= 9:
            length = int.from_bytes(got[:3], "big")
            if got[3] == GOAWAY and int.from_bytes(got[13:17], "big") != PROTOCOL_ERROR:
                raise Failure("GOAWAY with error code %d" % int.from_bytes(got[13:17], "big"))
            got = got[9 + length:]


@row("3.4", "preface, SETTINGS and GET / one byte per write", "SETTINGS ACK and 200",
     handshake=False)
def preface_byte_by_byte(c):
    c.unacked.append({ENABLE_PUSH: 0})
    sid = c.stream()
    for byte in PREFACE + settings({ENABLE_PUSH: 0}) + headers(sid, get_block(c)):
        c.send(bytes([byte]))
    c.wait(lambda: c.settings_seen and not c.unacked, "SETTINGS and SETTINGS ACK")
    if answered(c, sid).status() != 200:
        raise Failure("GET / answered %s" % c.streams[sid].status())


# 4.1, 4.2, 5.5: frames, sizes, extensions.

@row("4.1", "PING with undefined flags 0xfe", "PING ACK (undefined flags MUST be ignored)")
def ping_undefined_flags(c):
    c.send(raw(PING, 0xfe, 0, b"flags!!!"))
    c.wait(lambda: b"flags!!!" in c.pongs, "PING ACK 'flags!!!'")


@row("4.1", "PING with the stream id's reserved bit set (stream 0x80000000)",
     "PING ACK (the reserved bit MUST be ignored)")
def ping_reserved_bit(c):
    c.send(raw(PING, 0, 1 << 31, b"reserved"))
    c.wait(lambda: b"reserved" in c.pongs, "PING ACK 'reserved'")


@row("4.1, 5.5", "frames of unknown types 0xfa on stream 0 and 0xfb on idle stream 1, then "
     "GET / on stream 1", "ignored: GET / answered 200 (unknown frames MUST be ignored)")
def unknown_frame_types(c):
    c.send(raw(0xfa, 0xff, 0, b"extension"), raw(0xfb, 0, 1, b"on idle stream 1"))
    ignored(c)


@row("4.3, 5.5", "HEADERS without END_HEADERS, a frame of unknown type 0xfa, CONTINUATION",
     "GOAWAY(PROTOCOL_ERROR): nothing may come between a field block's frames")
def unknown_frame_inside_field_block(c):
    sid, block = c.stream(), get_block(c)
    c.send(headers(sid, block[:2], end_headers=False), raw(0xfa, 0, sid, b"x"),
           continuation(sid, block[2:]))
    connection_error(c, PROTOCOL_ERROR, barrier=False)


@row("4.2", "a frame of unknown type on stream 0 one byte over SETTINGS_MAX_FRAME_SIZE",
     "GOAWAY(FRAME_SIZE_ERROR)")
def unknown_frame_over_max_size(c):
    c.send(raw(0xfa, 0, 0, bytes(max_frame(c) + 1)))
    connection_error(c, FRAME_SIZE_ERROR)


@row("4.2", "DATA on an open stream one byte over SETTINGS_MAX_FRAME_SIZE",
     "RST_STREAM or GOAWAY, FRAME_SIZE_ERROR")
def data_over_max_frame_size(c):
    sid = open_post(c)
    c.send(data(sid, bytes(max_frame(c) + 1)))
    either_error(c, sid, FRAME_SIZE_ERROR)


@row("4.2", "HEADERS one byte over SETTINGS_MAX_FRAME_SIZE (a long field value)",
     "GOAWAY(FRAME_SIZE_ERROR): a frame with a field block is a connection error")
def headers_over_max_frame_size(c):
    sid, block = c.stream(), get_block(c)
    filler = max_frame(c) + 1 - len(block) - 8  # literal, new name 'x-f', 3-byte length
    block += b"\x00\x03x-f" + bytes(hpack.hpack.encode_integer(filler, 7)) + b"a" * filler
    c.send(headers(sid, block))
    connection_error(c, FRAME_SIZE_ERROR, barrier=False)


# 6.5: SETTINGS.

@row("6.5", "SETTINGS with a 5-byte payload", "GOAWAY(FRAME_SIZE_ERROR)")
def settings_length_not_multiple_of_6(c):
    c.send(raw(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00"))
    connection_error(c, FRAME_SIZE_ERROR)


@row("6.5", "SETTINGS with ACK and a 6-byte payload", "GOAWAY(FRAME_SIZE_ERROR)")
def settings_ack_with_payload(c):
    c.send(raw(SETTINGS, ACK, 0, b"\x00\x03\x00\x00\x00\x64"))
    connection_error(c, FRAME_SIZE_ERROR)


@row("6.5", "SETTINGS on stream 1", "GOAWAY(PROTOCOL_ERROR)")
def settings_on_stream(c):
    c.send(raw(SETTINGS, 0, 1, b""))
    connection_error(c, PROTOCOL_ERROR)


@row("6.5.2", "SETTINGS_ENABLE_PUSH=2", "GOAWAY(PROTOCOL_ERROR)")
def settings_enable_push_2(c):
    c.send(settings({ENABLE_PUSH: 2}))
    connection_error(c, PROTOCOL_ERROR)


@row("6.5.2", "SETTINGS_INITIAL_WINDOW_SIZE=2^31", "GOAWAY(FLOW_CONTROL_ERROR)")
def settings_initial_window_too_big(c):
    c.send(settings({INITIAL_WINDOW_SIZE: 2**31}))
    connection_error(c, FLOW_CONTROL_ERROR)


@row("6.5.2", "SETTINGS_MAX_FRAME_SIZE=16383", "GOAWAY(PROTOCOL_ERROR)")
def settings_max_frame_size_too_small(c):
    c.send(settings({MAX_FRAME_SIZE: 16383}))
    connection_error(c, PROTOCOL_ERROR)


@row("6.5.2", "SETTINGS_MAX_FRAME_SIZE=2^24", "GOAWAY(PROTOCOL_ERROR)")
def settings_max_frame_size_too_big(c):
    c.send(settings({MAX_FRAME_SIZE: 2**24}))
    connection_error(c, PROTOCOL_ERROR)


@row("5.3.2", "SETTINGS_NO_RFC7540_PRIORITIES=2", "GOAWAY(PROTOCOL_ERROR)")
def settings_no_rfc7540_priorities_2(c):
    c.send(settings({NO_RFC7540_PRIORITIES: 2}))
    connection_error(c, PROTOCOL_ERROR)


@row("6.5.2, 6.5.3", "SETTINGS with an unknown identifier 0xff",
     "SETTINGS ACK (unknown settings MUST be ignored), then GET / answered")
def settings_unknown_identifier(c):
    c.send_settings({0xff: 1})
    c.wait(lambda: not c.unacked, "SETTINGS ACK")
    ignored(c)


# 6.7: PING.

@row("6.7", "PING 'h2-ping!'", "PING ACK with the same payload")
def ping_answered(c):
    c.send(ping(b"h2-ping!"))
    c.wait(lambda: b"h2-ping!" in c.pongs, "PING ACK 'h2-ping!'")


@row("6.7", "PING with ACK 'unasked!', then PING 'answerme'",
     "only PING ACK 'answerme' (MUST NOT answer a PING ACK)")
def ping_ack_not_answered(c):
    c.send(ping(b"unasked!", ack=True), ping(b"answerme"))
    c.wait(lambda: b"answerme" in c.pongs, "PING ACK 'answerme'")
    if c.pongs != [b"answerme"]:
        raise Failure("PING ACKs %r" % c.pongs)


@row("6.7", "PING with a 7-byte payload", "GOAWAY(FRAME_SIZE_ERROR)")
def ping_bad_length(c):
    c.send(raw(PING, 0, 0, b"1234567"))
    connection_error(c, FRAME_SIZE_ERROR)


@row("6.7", "PING on stream 1", "GOAWAY(PROTOCOL_ERROR)")
def ping_on_stream(c):
    c.send(raw(PING, 0, 1, b"12345678"))
    connection_error(c, PROTOCOL_ERROR)


# 5.1, 5.1.1, 6.1, 6.2, 6.4, 6.8, 6.10: streams and their states.

@row("5.1.1", "HEADERS (GET /) on even stream 2", "GOAWAY(PROTOCOL_ERROR)")
def headers_even_stream(c):
    sid = c.stream(sid=2)
    c.send(headers(sid, get_block(c)))
    connection_error(c, PROTOCOL_ERROR)


@row("6.2", "HEADERS (GET /) on stream 0", "GOAWAY(PROTOCOL_ERROR)")
def headers_stream_0(c):
    c.send(raw(HEADERS, END_HEADERS | END_STREAM, 0, get_block(c)))
    connection_error(c, PROTOCOL_ERROR)


@row("5.1.1", "GET / on stream 5, answered; then HEADERS on stream 3",
     "GOAWAY(PROTOCOL_ERROR): a new stream's id MUST be above every earlier one")
def headers_stream_id_decreasing(c):
    answered(c, c.request(sid=5))
    sid = c.stream(sid=3)
    c.send(headers(sid, get_block(c)))
    connection_error(c, PROTOCOL_ERROR)


@row("5.1, 6.1", "DATA on idle stream 1", "GOAWAY(PROTOCOL_ERROR)")
def data_idle_stream(c):
    c.send(data(c.stream(), b"idle"))
    connection_error(c, PROTOCOL_ERROR)


@row("6.1", "DATA on stream 0", "GOAWAY(PROTOCOL_ERROR)")
def data_stream_0(c):
    c.send(raw(DATA, END_STREAM, 0, b"zero"))
    connection_error(c, PROTOCOL_ERROR)


@row("5.1", "HEADERS (GET /, END_STREAM) and DATA on that stream, in one write",
     "RST_STREAM(STREAM_CLOSED): the stream is half-closed (remote)")
def data_half_closed_remote(c):
    sid = c.stream()
    c.send(headers(sid, get_block(c)), data(sid, b"late"))
    stream_error(c, sid, STREAM_CLOSED)


@row("5.1", "HEADERS (GET /, END_STREAM), then HEADERS again on that stream, in one write",
     "RST_STREAM(STREAM_CLOSED): the stream is half-closed (remote)")
def headers_half_closed_remote(c):
    sid = c.stream()
    c.send(headers(sid, get_block(c)), headers(sid, c.enc.encode([(b"x-late", b"1")])))
    stream_error(c, sid, STREAM_CLOSED)


@row("5.1, 6.1", "GET /, answered (stream closed); then DATA on that stream",
     "STREAM_CLOSED: RST_STREAM (6.1 MUST) or GOAWAY (5.1 MAY)")
def data_closed_stream(c):
    sid = c.request()
    answered(c, sid)
    c.send(data(sid, b"closed"))
    either_error(c, sid, STREAM_CLOSED)


@row("5.1", "GET /, answered; then WINDOW_UPDATE and RST_STREAM(CANCEL) on that stream",
     "ignored: they may cross the END_STREAM that closed it")
def window_update_and_rst_after_close(c):
    sid = c.request()
    answered(c, sid)
    c.send(window_update(sid, 1000), rst_stream(sid, CANCEL))
    ignored(c)


@row("6.4", "RST_STREAM on idle stream 1", "GOAWAY(PROTOCOL_ERROR)")
def rst_stream_idle(c):
    c.send(rst_stream(c.stream(), CANCEL))
    connection_error(c, PROTOCOL_ERROR)


@row("6.4", "RST_STREAM on stream 0", "GOAWAY(PROTOCOL_ERROR)")
def rst_stream_0(c):
    c.send(raw(RST_STREAM, 0, 0, b"\x00\x00\x00\x08"))
    connection_error(c, PROTOCOL_ERROR)


@row("6.4", "RST_STREAM with a 3-byte payload on an open stream", "GOAWAY(FRAME_SIZE_ERROR)")
def rst_stream_bad_length(c):
    c.send(raw(RST_STREAM, 0, open_post(c), b"\x00\x00\x08"))
    connection_error(c, FRAME_SIZE_ERROR)


@row("7", "RST_STREAM with unknown error code 0xdeadbeef on an open stream",
     "ignored beyond closing that stream (unknown codes: no special behavior)")
def rst_stream_unknown_code(c):
    sid = open_post(c)
    c.streams[sid].client_reset = True
    c.send(rst_stream(sid, 0xdeadbeef))
    ignored(c)


@row("5.1, 6.4", "GET /stream?bytes=%d, RST_STREAM(CANCEL) after its first DATA" % STREAM_BYTES,
     "no frame on that stream once a later PING and GET / are answered; the connection serves",
     timeout=20)
def rst_stream_cancels_download(c):
    sid = c.request(path="/stream?bytes=%d" % STREAM_BYTES)
    st = c.streams[sid]
    c.wait(lambda: st.body or st.ended, "the first DATA on stream %d" % sid)
    st.client_reset = True
    c.send(rst_stream(sid, CANCEL))
    ignored(c)
    before = len(st.body)
    c.ping_sync()
    if len(st.body) != before or st.ended:
        raise Failure("DATA on stream %d after the server read its RST_STREAM" % sid)


@row("6.8", "GOAWAY on stream 1", "GOAWAY(PROTOCOL_ERROR)")
def goaway_on_stream(c):
    c.send(raw(GOAWAY, 0, 1, bytes(8)))
    connection_error(c, PROTOCOL_ERROR)


@row("8.4", "PUSH_PROMISE (promising stream 2) on an open stream",
     "GOAWAY(PROTOCOL_ERROR): a client cannot push")
def push_promise_from_client(c):
    sid = open_post(c)
    c.send(raw(PUSH_PROMISE, END_HEADERS, sid, b"\x00\x00\x00\x02" + get_block(c)))
    connection_error(c, PROTOCOL_ERROR)


@row("6.10", "CONTINUATION on idle stream 1, no HEADERS before it", "GOAWAY(PROTOCOL_ERROR)")
def continuation_without_headers(c):
    c.send(continuation(c.stream(), get_block(c)))
    connection_error(c, PROTOCOL_ERROR)


@row("6.10", "HEADERS (END_HEADERS, no END_STREAM), then CONTINUATION",
     "GOAWAY(PROTOCOL_ERROR)")
def continuation_after_end_headers(c):
    sid = open_post(c)
    c.send(continuation(sid, c.enc.encode([(b"x-more", b"1")])))
    connection_error(c, PROTOCOL_ERROR)


@row("6.2", "HEADERS without END_HEADERS, then PING", "GOAWAY(PROTOCOL_ERROR)")
def ping_inside_field_block(c):
    sid, block = c.stream(), get_block(c)
    c.send(headers(sid, block[:2], end_headers=False), ping(), continuation(sid, block[2:]))
    connection_error(c, PROTOCOL_ERROR, barrier=False)


@row("6.2", "HEADERS on stream 1 without END_HEADERS, then CONTINUATION on stream 3",
     "GOAWAY(PROTOCOL_ERROR)")
def continuation_other_stream(c):
    sid, block = c.stream(), get_block(c)
    c.send(headers(sid, block[:2], end_headers=False), continuation(c.stream(), block[2:]))
    connection_error(c, PROTOCOL_ERROR, barrier=False)


@row("6.2, 6.10", "GET / as HEADERS and two CONTINUATIONs", "200")
def continuation_served(c):
    sid, block = c.stream(), get_block(c)
    c.send(headers(sid, block[:1], end_headers=False), continuation(sid, block[1:3], False),
           continuation(sid, block[3:]))
    if answered(c, sid).status() != 200:
        raise Failure("answered %s" % c.streams[sid].status())


@row("6.1", "DATA with PADDED, pad length 5 in a 5-byte payload", "GOAWAY(PROTOCOL_ERROR)")
def data_padding_too_long(c):
    c.send(raw(DATA, PADDED | END_STREAM, open_post(c), b"\x05abcd"))
    connection_error(c, PROTOCOL_ERROR)


@row("6.2", "HEADERS with PADDED, pad length above the rest of the payload",
     "GOAWAY(PROTOCOL_ERROR)")
def headers_padding_too_long(c):
    block = get_block(c)
    c.send(raw(HEADERS, PADDED | END_HEADERS | END_STREAM, c.stream(),
               bytes([len(block) + 1]) + block))
    connection_error(c, PROTOCOL_ERROR, barrier=False)


# 6.9: flow control.

@row("6.9", "WINDOW_UPDATE with a 3-byte payload", "GOAWAY(FRAME_SIZE_ERROR)")
def window_update_bad_length(c):
    c.send(raw(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    connection_error(c, FRAME_SIZE_ERROR)


@row("6.9", "WINDOW_UPDATE of 0 on the connection", "GOAWAY(PROTOCOL_ERROR)")
def window_update_zero_connection(c):
    c.send(raw(WINDOW_UPDATE, 0, 0, bytes(4)))
    connection_error(c, PROTOCOL_ERROR)


@row("6.9", "WINDOW_UPDATE of 0 on an open stream", "RST_STREAM(PROTOCOL_ERROR)")
def window_update_zero_stream(c):
    sid = open_post(c)
    c.send(raw(WINDOW_UPDATE, 0, sid, bytes(4)))
    stream_error(c, sid, PROTOCOL_ERROR)


@row("5.1", "WINDOW_UPDATE on idle stream 1", "GOAWAY(PROTOCOL_ERROR)")
def window_update_idle_stream(c):
    c.send(window_update(c.stream(), 1))
    connection_error(c, PROTOCOL_ERROR)


@row("6.9.1", "WINDOW_UPDATE of 2^31-1 on an open stream (window 65535)",
     "RST_STREAM(FLOW_CONTROL_ERROR)")
def window_update_overflow_stream(c):
    sid = open_post(c)
    c.send(window_update(sid, MAX_WINDOW))
    stream_error(c, sid, FLOW_CONTROL_ERROR)


@row("6.9.1", "WINDOW_UPDATE of 2^31-1 on the connection (window 65535)",
     "GOAWAY(FLOW_CONTROL_ERROR)")
def window_update_overflow_connection(c):
    c.send(window_update(0, MAX_WINDOW))
    connection_error(c, FLOW_CONTROL_ERROR)


@row("6.9.2", "an open stream's window raised to 2^31-1, then SETTINGS_INITIAL_WINDOW_SIZE "
     "65535 -> 65536", "GOAWAY(FLOW_CONTROL_ERROR)")
def settings_initial_window_overflows_stream(c):
    sid = open_post(c)
    c.send(window_update(sid, MAX_WINDOW - DEFAULT_WINDOW))
    c.send_settings({INITIAL_WINDOW_SIZE: 65536})
    connection_error(c, FLOW_CONTROL_ERROR)


# 5.3: priority (RFC 7540's scheme, deprecated, but its frames still parsed).

@row("5.3.1", "PRIORITY on an open stream, depending on itself", "RST_STREAM(PROTOCOL_ERROR)")
def priority_self_dependency(c):
    sid = open_post(c)
    c.send(priority(sid, sid))
    stream_error(c, sid, PROTOCOL_ERROR)


@row("5.3.1", "HEADERS (GET /) with the PRIORITY flag, depending on its own stream",
     "RST_STREAM(PROTOCOL_ERROR)")
def headers_priority_self_dependency(c):
    sid = c.stream()
    c.send(headers(sid, get_block(c), depends_on=sid))
    stream_error(c, sid, PROTOCOL_ERROR)


@row("6.3", "PRIORITY with a 4-byte payload on an open stream", "RST_STREAM(FRAME_SIZE_ERROR)")
def priority_bad_length(c):
    sid = open_post(c)
    c.send(raw(PRIORITY, 0, sid, b"\x00\x00\x00\x00"))
    stream_error(c, sid, FRAME_SIZE_ERROR)


@row("6.3", "PRIORITY on stream 0", "GOAWAY(PROTOCOL_ERROR)")
def priority_stream_0(c):
    c.send(raw(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x0f"))
    connection_error(c, PROTOCOL_ERROR)


@row("5.1", "PRIORITY on idle stream 1, then GET / on stream 1",
     "200: PRIORITY may come in any state and leaves the stream idle")
def priority_idle_stream(c):
    c.send(priority(1, 0))
    ignored(c)


@row("5.1", "GET /, answered; then PRIORITY on that closed stream", "ignored")
def priority_closed_stream(c):
    sid = c.request()
    answered(c, sid)
    c.send(priority(sid, 0))
    ignored(c)

