"""Rows: HPACK (RFC 7541), malformed requests (RFC 9113 8.1-8.3) and requests that must be
served, one by one and 100 at a time (8, 5.1.2, 6.9). A malformed request MUST be treated as a
stream error of type PROTOCOL_ERROR (8.1.1): RST_STREAM(PROTOCOL_ERROR) on its stream; a server
MAY send a response first (8.1.1), and for an invalid field SHOULD send 400 (8.2.1). So these rows
take RST_STREAM(PROTOCOL_ERROR), after a 4xx response or not; a 400 alone that ends the stream
without RST_STREAM fails them, as would a GOAWAY.
"""

import hpack

from rfc9113_client import (
    COMPRESSION_ERROR, HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS,
    PROTOCOL_ERROR, REFUSED_STREAM, Failure, data, headers, window_update)
from rfc9113_expect import (
    ROWS, STREAM_BYTES, answered, connection_error, expect_alive, get_block, row, stream_error)

MALFORMED = "RST_STREAM(PROTOCOL_ERROR), after a 4xx response or not"


def served(c, sid, status=200, body=None):
    st = answered(c, sid)
    if st.status() != status or (body is not None and bytes(st.body) != body):
        raise Failure("stream %d answered %s with %d bytes %r; expected %d%s" % (
            sid, st.status(), len(st.body), bytes(st.body[:40]), status,
            " and %r" % body[:40] if body is not None else ""))
    return st


def send_request(c, fields, body=None, trailers=None, method="GET"):
    """HEADERS with `fields` (any, valid or not), DATA `body`, trailers: on a new stream."""
    sid = c.stream(method)
    frames = [headers(sid, c.enc.encode(fields), end_stream=body is None and trailers is None)]
    if body is not None:
        frames.append(data(sid, body, end=trailers is None))
    if trailers is not None:
        frames.append(headers(sid, c.enc.encode(trailers)))
    c.send(*frames)
    return sid


def malformed_row(name, section, sends, fields, body=None, trailers=None):
    """A row: the request `fields(c)` (with `body`, `trailers`) is malformed."""
    def fn(c):
        method = "POST" if body is not None else "GET"
        sid = send_request(c, fields(c), body, trailers, method)
        stream_error(c, sid, PROTOCOL_ERROR, response_ok=True)
    fn.__name__ = name
    row(section, sends, MALFORMED)(fn)


def with_field(name, value):
    return lambda c: c.fields("GET", "/", [(name, value)])


def pseudo(edit):
    """GET / with its pseudo-header fields (:method, :scheme, :authority, :path) edited."""
    return lambda c: edit(c.fields("GET", "/"))


# 8.2, 8.2.1, 8.2.2: field names and values, connection-specific fields.
for name, section, field, value in [
        ("uppercase_field_name", "8.2", b"X-Upper", b"1"),
        ("field_name_with_space", "8.2.1", b"x y", b"1"),
        ("field_name_with_colon", "8.2.1", b"x:y", b"1"),
        ("field_name_empty", "8.2.1", b"", b"1"),
        ("field_value_with_nul", "8.2.1", b"x-v", b"a\x00b"),
        ("field_value_with_cr", "8.2.1", b"x-v", b"a\rb"),
        ("field_value_with_lf", "8.2.1", b"x-v", b"a\nb"),
        ("field_value_leading_space", "8.2.1", b"x-v", b" a"),
        ("field_value_trailing_tab", "8.2.1", b"x-v", b"a\t"),
        ("connection_keep_alive", "8.2.2", b"connection", b"keep-alive"),
        ("keep_alive_field", "8.2.2", b"keep-alive", b"timeout=5"),
        ("proxy_connection_field", "8.2.2", b"proxy-connection", b"keep-alive"),
        ("transfer_encoding_chunked", "8.2.2", b"transfer-encoding", b"chunked"),
        ("upgrade_field", "8.2.2", b"upgrade", b"websocket"),
        ("te_gzip", "8.2.2", b"te", b"gzip")]:
    malformed_row(name, section, "GET / with field %r: %r" % (field, value),
                  with_field(field, value))

# 8.3, 8.3.1: pseudo-header fields.
for name, sends, edit in [
        ("missing_method", "GET / without :method", lambda f: f[1:]),
        ("missing_scheme", "GET / without :scheme", lambda f: f[:1] + f[2:]),
        ("missing_path", "GET / without :path", lambda f: f[:3]),
        ("empty_path", "GET with :path ''", lambda f: f[:3] + [(b":path", b"")]),
        ("relative_path", "GET with :path 'index.html'",
         lambda f: f[:3] + [(b":path", b"index.html")]),
        ("duplicate_method", "GET / with :method twice", lambda f: f + [(b":method", b"GET")]),
        ("duplicate_path", "GET / with :path twice", lambda f: f + [(b":path", b"/")]),
        ("pseudo_after_regular", "GET / with :path after a regular field",
         lambda f: f[:3] + [(b"x-a", b"1"), f[3]]),
        ("unknown_pseudo", "GET / with :foo", lambda f: f + [(b":foo", b"bar")]),
        ("status_in_request", "GET / with :status 200", lambda f: f + [(b":status", b"200")])]:
    malformed_row(name, "8.3.1", sends, pseudo(edit))

# 8.1, 8.1.1: content-length and trailers.
malformed_row("content_length_above_data", "8.1.1",
              "POST /echo, content-length: 5, DATA 'abc' (END_STREAM)",
              lambda c: c.fields("POST", "/echo", [("content-length", "5")]), body=b"abc")
malformed_row("content_length_below_data", "8.1.1",
              "POST /echo, content-length: 2, DATA 'abc' (END_STREAM)",
              lambda c: c.fields("POST", "/echo", [("content-length", "2")]), body=b"abc")
malformed_row("content_length_without_data", "8.1.1",
              "GET / with content-length: 3 and END_STREAM on HEADERS",
              with_field(b"content-length", b"3"))
malformed_row("trailers_with_pseudo_header", "8.1",
              "POST /echo, DATA 'abc', trailers with :path (END_STREAM)",
              lambda c: c.fields("POST", "/echo"), body=b"abc", trailers=[(b":path", b"/")])


@row("8.1", "POST /echo, DATA 'a', then a second HEADERS without END_STREAM", MALFORMED)
def second_headers_without_end_stream(c):
    sid = c.request("POST", "/echo", end=False)
    c.send(data(sid, b"a", end=False), headers(sid, c.enc.encode([(b"x-t", b"1")]),
                                                end_stream=False))
    stream_error(c, sid, PROTOCOL_ERROR, response_ok=True)


# 7541: field block decoding errors, all COMPRESSION_ERROR on the connection (RFC 9113 4.3).
GET_START = b"\x82\x86\x84"  # :method GET, :scheme http, :path / from the static table
for name, section, sends, block in [
        ("hpack_index_0", "7541 6.1", "indexed field 0", b"\x80"),
        ("hpack_index_beyond_tables", "7541 2.3.3", "indexed field 62, the dynamic table empty",
         GET_START + b"\xbe"),
        ("hpack_size_update_after_field", "7541 4.2", "a table size update after a field",
         b"\x82\x20\x86\x84"),
        ("hpack_huffman_zero_padding", "7541 5.2", "a Huffman 'a' padded with 0 bits",
         GET_START + b"\x00\x03x-h\x81\x18"),
        ("hpack_huffman_long_padding", "7541 5.2", "a Huffman 'a' and 11 bits of padding",
         GET_START + b"\x00\x03x-h\x82\x1f\xff"),
        ("hpack_huffman_eos", "7541 5.2", "a Huffman string holding EOS (32 one bits)",
         GET_START + b"\x00\x03x-h\x84\xff\xff\xff\xff"),
        ("hpack_integer_overflow", "7541 5.1", "a string length of about 2^63",
         GET_START + b"\x00\x7f" + b"\xff" * 9 + b"\x7f"),
        ("hpack_string_past_block", "7541 5.2", "a 10-byte string with 3 bytes left",
         GET_START + b"\x00\x03x-h\x0aabc"),
        ("hpack_truncated_block", "7541 6.2.1", "a literal field cut after its first byte",
         GET_START + b"\x41")]:
    def hpack_row(c, block=block):
        c.send(headers(c.stream(), block))
        connection_error(c, COMPRESSION_ERROR)
    hpack_row.__name__ = name
    row(section, "HEADERS: " + sends, "GOAWAY(COMPRESSION_ERROR)")(hpack_row)


@row("7541 4.2", "HEADERS starting with a table size update above the server's "
     "SETTINGS_HEADER_TABLE_SIZE", "GOAWAY(COMPRESSION_ERROR)")
def hpack_size_update_above_limit(c):
    update = bytearray(hpack.hpack.encode_integer(
        c.server_settings.get(HEADER_TABLE_SIZE, 4096) + 1, 5))
    update[0] |= 0x20
    c.send(headers(c.stream(), bytes(update) + GET_START))
    connection_error(c, COMPRESSION_ERROR)


@row("7541 4.2, 6.5.2", "SETTINGS_HEADER_TABLE_SIZE=0, then GET / twice",
     "200 twice, the first field block starting with a table size update to 0",
     settings={HEADER_TABLE_SIZE: 0})
def header_table_size_0(c):
    for _ in range(2):
        served(c, c.request())


@row("7541 4.4", "4 requests in one write, each with a new 1500-byte field (the client's "
     "table evicts)", "200 each")
def hpack_eviction(c):
    sids = [c.stream() for _ in range(4)]
    c.send(*[headers(s, c.enc.encode(c.fields("GET", "/", [("x-big", "%04d" % s * 375)])))
             for s in sids])
    for s in sids:
        served(c, s)


@row("7541 6.2.3", "GET / as literals without Huffman, one never indexed", "200")
def hpack_plain_literals(c):
    fields = c.fields("GET", "/")[:3] + [hpack.NeverIndexedHeaderTuple(b":path", b"/")]
    sid = c.stream()
    c.send(headers(sid, c.enc.encode(fields, huffman=False)))
    served(c, sid)


# 8: requests that must be served.

@row("8.1, 8.3.2", "GET /", "200 'Hello World!' with a date field")
def get_root(c):
    st = served(c, c.request(), body=b"Hello World!")
    if st.field(b"date") is None:
        raise Failure("no date field (RFC 9110 6.6.1: an origin server with a clock MUST)")


@row("8.1", "HEAD /", "200 without content (a content-length, if any, of GET's 12)")
def head_root(c):
    st = served(c, c.request("HEAD"), body=b"")
    if st.field(b"content-length") not in (None, b"12"):
        raise Failure("content-length %r" % st.field(b"content-length"))


@row("8.1", "GET /no-such-path", "404")
def get_not_found(c):
    served(c, c.request(path="/no-such-path"), status=404)


@row("8.1", "POST /echo with content-length and DATA 'hello, h2'", "200 'hello, h2'")
def post_echo(c):
    sid = send_request(c, c.fields("POST", "/echo", [("content-type", "text/plain"),
                                                      ("content-length", "9")]),
                       body=b"hello, h2", method="POST")
    served(c, sid, body=b"hello, h2")


@row("8.1", "POST /echo without content-length, 'abc' 'def' in two DATA, then trailers",
     "200 'abcdef'")
def post_echo_trailers(c):
    sid = c.request("POST", "/echo", end=False)
    c.send(data(sid, b"abc", end=False), data(sid, b"def", end=False),
           headers(sid, c.enc.encode([(b"x-trailer", b"1")])))
    served(c, sid, body=b"abcdef")


@row("6.1, 6.2", "POST /echo as padded HEADERS and padded DATA 'padded'", "200 'padded'")
def post_echo_padded(c):
    sid = c.stream("POST")
    c.send(headers(sid, c.enc.encode(c.fields("POST", "/echo")), end_stream=False, pad=7),
           data(sid, b"padded", pad=200))
    served(c, sid, body=b"padded")


@row("8.2.2", "GET / with te: trailers", "200")
def te_trailers(c):
    served(c, c.request(extra=[("te", "trailers")]))


@row("8.3.1", "GET / with host instead of :authority", "200")
def host_instead_of_authority(c):
    fields = c.fields("GET", "/")
    sid = send_request(c, fields[:2] + fields[3:] + [(b"host", fields[2][1])])
    served(c, sid)


@row("6.9", "POST /echo of 300000 bytes, within the server's windows", "200, the same bytes")
def post_echo_large(c):
    body = (bytes(range(256)) * 1200)[:300000]
    sid = c.request("POST", "/echo", end=False)
    c.send_body(sid, body)
    served(c, sid, body=body)


@row("6.9", "GET /stream?bytes=%d, WINDOW_UPDATE for each DATA" % STREAM_BYTES,
     "200, %d bytes, never beyond the client's windows" % STREAM_BYTES)
def download_flow_control(c):
    st = served(c, c.request(path="/stream?bytes=%d" % STREAM_BYTES))
    if len(st.body) != STREAM_BYTES:
        raise Failure("%d bytes" % len(st.body))


@row("6.9.1", "SETTINGS_INITIAL_WINDOW_SIZE=100, GET /stream?bytes=%d; once 100 bytes "
     "came, PING, then WINDOW_UPDATE" % STREAM_BYTES,
     "100 bytes, nothing more until the WINDOW_UPDATE, then the rest",
     settings={INITIAL_WINDOW_SIZE: 100})
def small_stream_window(c):
    c.auto_window = False
    sid = c.request(path="/stream?bytes=%d" % STREAM_BYTES)
    st = c.streams[sid]
    c.wait(lambda: len(st.body) >= 100, "100 bytes of DATA on stream %d" % sid)
    c.ping_sync()  # more DATA before the PING ACK would overrun the window: a failure
    c.auto_window = True
    c.send(window_update(sid, STREAM_BYTES))
    c.streams[sid].recv_window += STREAM_BYTES
    if len(served(c, sid).body) != STREAM_BYTES:
        raise Failure("%d bytes" % len(st.body))


@row("6.9.2", "SETTINGS_INITIAL_WINDOW_SIZE=0, GET /stream?bytes=%d, PING, then "
     "SETTINGS_INITIAL_WINDOW_SIZE=%d" % (STREAM_BYTES, STREAM_BYTES),
     "HEADERS and no DATA, then all of it once the window is raised",
     settings={INITIAL_WINDOW_SIZE: 0})
def zero_window_raised_by_settings(c):
    sid = c.request(path="/stream?bytes=%d" % STREAM_BYTES)
    st = c.streams[sid]
    c.wait(lambda: st.headers is not None, "the response's HEADERS")
    c.ping_sync()
    c.send_settings({INITIAL_WINDOW_SIZE: STREAM_BYTES})
    if len(served(c, sid).body) != STREAM_BYTES:
        raise Failure("%d bytes" % len(st.body))


# 5.1.2: concurrent streams.

def advertised_limit(c):
    limit = c.server_settings.get(MAX_CONCURRENT_STREAMS)
    if limit is None or limit > 1000:
        raise Failure("SETTINGS_MAX_CONCURRENT_STREAMS %s: this row needs a limit of at most "
                      "1000 (the project's is 100)" % limit)
    return limit


@row("5.1.2", "SETTINGS_MAX_CONCURRENT_STREAMS (100) GET / at once, in one write",
     "every one answered 200 'Hello World!'", timeout=30)
def concurrent_streams(c):
    sids = [c.stream() for _ in range(advertised_limit(c))]
    c.send(*[headers(s, get_block(c)) for s in sids])
    for s in sids:
        served(c, s, body=b"Hello World!")


@row("5.1.2", "SETTINGS_MAX_CONCURRENT_STREAMS (100) POST /echo left open, then one more "
     "GET /; then each POST's body", "RST_STREAM(REFUSED_STREAM or PROTOCOL_ERROR) on the "
     "extra stream; each POST answered with its body", timeout=30)
def over_max_concurrent_streams(c):
    sids = [c.stream("POST") for _ in range(advertised_limit(c))]
    frames = [headers(s, c.enc.encode(c.fields("POST", "/echo")), end_stream=False)
              for s in sids]
    extra = c.stream()
    c.send(*frames, headers(extra, get_block(c)))
    st = c.streams[extra]
    c.wait(lambda: st.reset is not None or st.ended or c.goaway,
           "RST_STREAM(REFUSED_STREAM or PROTOCOL_ERROR) on stream %d" % extra)
    if c.goaway:
        raise Failure("a connection error, %s, where 5.1.2 names a stream error" % c.received[-1])
    if st.reset not in (REFUSED_STREAM, PROTOCOL_ERROR):
        raise Failure("stream %d over the limit got %s" % (extra, c.received[-1]))
    c.send(*[data(s, b"body %d" % s) for s in sids])
    for s in sids:
        served(c, s, body=b"body %d" % s)
    expect_alive(c)


assert len({r.name for r in ROWS}) == len(ROWS), "two rows with one name"
