"""The rows' registry and what a row can expect of the server (rfc9113_frames.py runs them).

A row sends its frames after the preface and SETTINGS exchange, then expects one of:
- connection_error: GOAWAY with the error code, then the end of the connection (RFC 9113 5.4.1:
  after a GOAWAY for an error the endpoint MUST close the TCP connection); its last-stream-id is
  no higher than the last stream the client opened. A RST_STREAM instead is a failure.
- stream_error: RST_STREAM on the row's stream with the error code (5.4.2), and the connection
  still serving. A GOAWAY instead is a failure even though 5.4.1 lets an endpoint treat a
  stream error as a connection error: the table wants the error RFC 9113 names.
- either_error: where RFC 9113 names both (DATA on a closed stream, 5.1 and 6.1).
- ignored: nothing but the usual answers; the connection still serving.
The server's reaction is read up to a barrier, so a row that fails fails at once, not at its
deadline: a GET / sent right after the row's frames. A server handles frames in order, so its
RST_STREAM or GOAWAY for the row's frames comes before the barrier's response (or instead of it);
the barrier answered with neither seen means the frames were ignored.
"""

from rfc9113_client import MAX_FRAME_SIZE, Failure, error_name

ROWS = []
STREAM_BYTES = 300000  # GET /stream?bytes=N: more than the default windows (65535)


class Row:
    def __init__(self, fn, section, sends, expects, options):
        self.name, self.fn, self.section = fn.__name__, fn, section
        self.sends, self.expects, self.options = sends, expects, options


def row(section, sends, expects, **options):
    """Registers a row: `sends` and `expects` are what a failure prints beside what came.

    options: settings={id: value} for the client's first SETTINGS; handshake=False when the
    row makes its own (the preface rows); timeout=seconds when the default is too short.
    """
    def register(fn):
        ROWS.append(Row(fn, section, sends, expects, options))
        return fn
    return register


def names(codes):
    return " or ".join(error_name(c) for c in codes)


def read_until(c, sid, barrier, what):
    """Reads until GOAWAY or the end, a RST_STREAM on `sid`, or the barrier's answer."""
    st = c.streams.get(sid) if sid else None
    bst = c.streams[c.request()] if barrier else None
    while not (c.goaway or c.eof or (st and st.reset is not None)
               or (bst and (bst.ended or bst.reset is not None))):
        c.read_frame(what)
    return st, bst


def finish_barrier(c, bst):
    """The barrier GET / was answered 200 (the connection still serves)."""
    c.wait(lambda: bst.ended or bst.reset is not None or c.goaway,
           "the response to the barrier GET /")
    if c.goaway or bst.reset is not None:
        raise Failure("the barrier GET / after the row got %s" % c.received[-1])
    if bst.status() != 200:
        raise Failure("the barrier GET / was answered %s, not 200" % bst.status())


def expect_alive(c):
    """The connection still serves: a PING answered, then GET / answered 200."""
    c.ping_sync()
    finish_barrier(c, c.streams[c.request()])


def connection_error(c, *codes, sid=None, barrier=True, goaway_optional=False):
    want = "GOAWAY(%s)" % names(codes)
    st, bst = read_until(c, sid, barrier, want)
    resets = [(s, x.reset) for s, x in c.streams.items() if x.reset is not None]
    if not c.goaway and resets:
        raise Failure("a stream error, RST_STREAM(stream %d, %s), where RFC 9113 names a "
                      "connection error %s" % (resets[0][0], error_name(resets[0][1]), want))
    if not c.goaway and not c.eof:
        raise Failure("no %s: the frames were ignored (the barrier GET / was answered %s)"
                      % (want, bst.status()))
    if not c.goaway:
        if goaway_optional:
            return
        raise Failure("the server closed the connection without %s (5.4.1)" % want)
    code, last = c.goaway.error_code, c.goaway.last_stream_id
    if code not in codes:
        raise Failure("GOAWAY(%s), expected %s" % (error_name(code), want))
    opened = max([s for s in c.streams if s % 2] or [0])
    if last > opened:
        raise Failure("GOAWAY's last-stream-id %d is above the last stream the client opened, "
                      "%d (6.8)" % (last, opened))
    while c.read_frame("the end of the connection after GOAWAY (5.4.1: MUST close)"):
        pass


def stream_error(c, sid, *codes, response_ok=False, barrier=True):
    """RST_STREAM(sid, codes); response_ok: a 4xx response may come first (8.1.1, 8.2.1)."""
    want = "RST_STREAM(stream %d, %s)" % (sid, names(codes))
    st, bst = read_until(c, sid, barrier, want)
    if c.goaway or c.eof:
        got = "GOAWAY(%s)" % error_name(c.goaway.error_code) if c.goaway else "the end"
        raise Failure("a connection error, %s, where RFC 9113 names a stream error %s (5.4.1 "
                      "lets a server escalate; this table does not)" % (got, want))
    status = st.status()
    if st.reset is None:
        what = "answered %s" % status if st.headers else "left unanswered"
        raise Failure("no %s: stream %d was %s, and the barrier GET / on stream %d was "
                      "answered %s" % (want, sid, what, max(c.streams), bst.status()))
    if st.reset not in codes:
        raise Failure("RST_STREAM(stream %d, %s), expected %s" % (sid, error_name(st.reset),
                                                                 want))
    if st.headers is not None and not (response_ok and 400 <= status < 500):
        raise Failure("a %d response on stream %d before its RST_STREAM" % (status, sid))
    if bst:
        finish_barrier(c, bst)
    else:
        expect_alive(c)


def either_error(c, sid, *codes):
    """RST_STREAM(sid, codes) or GOAWAY(codes): both are what RFC 9113 allows here."""
    want = "RST_STREAM(stream %d, %s) or GOAWAY(%s)" % (sid, names(codes), names(codes))
    st, bst = read_until(c, sid, True, want)
    if c.goaway or c.eof:
        connection_error(c, *codes, barrier=False)
    elif st.reset is None:
        raise Failure("neither %s: the barrier GET / was answered %s" % (want, bst.status()))
    elif st.reset not in codes:
        raise Failure("RST_STREAM(stream %d, %s), expected %s" % (sid, error_name(st.reset),
                                                                 want))
    else:
        finish_barrier(c, bst)


def ignored(c):
    """No error at all: the barrier GET / answered 200, nothing reset, no GOAWAY."""
    st, bst = read_until(c, None, True, "the response to the barrier GET /")
    resets = [(s, x.reset) for s, x in c.streams.items() if x.reset is not None]
    if c.goaway or c.eof or resets:
        got = "GOAWAY(%s)" % error_name(c.goaway.error_code) if c.goaway else (
            "RST_STREAM(stream %d, %s)" % (resets[0][0], error_name(resets[0][1]))
            if resets else "the end of the connection")
        raise Failure("%s where the frames must be ignored" % got)
    finish_barrier(c, bst)


def get_block(c, path="/"):
    return c.enc.encode(c.fields("GET", path))


def open_post(c):
    """A stream left open both ways: POST /echo, its body not sent yet."""
    return c.request("POST", "/echo", end=False)


def answered(c, sid):
    c.wait(lambda: c.streams[sid].ended, "the response on stream %d" % sid)
    return c.streams[sid]


def max_frame(c):
    return c.server_settings.get(MAX_FRAME_SIZE, 16384)
