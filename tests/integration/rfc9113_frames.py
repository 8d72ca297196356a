#!/usr/bin/python3
"""RFC 9113 (HTTP/2) and RFC 7541 (HPACK) at the frame level: a table of rows, each a fresh
connection that does the preface and SETTINGS exchange, sends its frames (valid ones built with
Debian's python3-h2 libraries, invalid ones by hand) and checks exactly what the RFC says the
server must do. The rows are in rfc9113_rows_frames.py (framing, SETTINGS, PING, streams, flow
control, priority) and rfc9113_rows_http.py (HPACK, malformed requests, requests that must be
served); what a row can expect is in rfc9113_expect.py, the client in rfc9113_client.py.

  /usr/bin/python3 tests/integration/rfc9113_frames.py --port N [--tls] [--only a,b] [--list]
  /usr/bin/python3 tests/integration/rfc9113_frames.py --nghttpd [--tls]

--port: a server on 127.0.0.1 (build/hello_cores --port N --threads 1: HTTP/2 with prior
knowledge on the plain port, by ALPN with --tls). It must serve GET / ("Hello World!"),
GET /stream?bytes=N (N bytes) and echo the body of a POST to /echo, as hello_cores does.
--nghttpd: the reference, nghttpd (Debian's nghttp2-server, libnghttp2), started here on a free
port with a temporary document root that serves the same (a 'stream' file; --echo-upload), and
stopped by its pid at the end. Rows where libnghttp2 (which both hello_cores and nghttpd frame
with) does other than the row wants are listed in LIBNGHTTP2_DEVIATIONS: they print DEVIATES
with the reason and do not fail the run (seven escalate a stream error to a connection error,
which RFC 9113 5.4.1 allows; two are libnghttp2's leniency); the rows are not weakened for it,
and a listed row that passes says so.

Run with /usr/bin/python3 (Debian's python3-h2); it writes no bytecode beside the sources.
Exit status: 0 when every row passed, 1 when one failed, 2 on bad usage or no server.
"""

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import rfc9113_rows_frames  # noqa: E402,F401  (registers its rows)
import rfc9113_rows_http  # noqa: E402,F401
from rfc9113_client import Conn, Failure  # noqa: E402
from rfc9113_expect import ROWS, STREAM_BYTES  # noqa: E402

# Rows where libnghttp2 1.52's own checks (nghttpd's and hello_cores' alike) deviate from what
# RFC 9113 names; the rows are not weakened for it.
LIBNGHTTP2_DEVIATIONS = {
    "headers_stream_id_decreasing": "libnghttp2 ignores HEADERS on an id at or below the last "
    "one it saw unless it still knows that stream as closed (session_on_request_headers_"
    "received: 'we are very conservative here'); stream 3, skipped, was never open",
    "data_half_closed_remote": "libnghttp2 escalates: GOAWAY(STREAM_CLOSED) 'DATA: stream in "
    "half-closed(remote)' (5.4.1 lets it; the row does not)",
    "headers_half_closed_remote": "libnghttp2 escalates: GOAWAY(STREAM_CLOSED) 'HEADERS: "
    "stream closed'",
    "window_update_zero_stream": "libnghttp2 escalates: GOAWAY(PROTOCOL_ERROR) "
    "'WINDOW_UPDATE: window_size_increment == 0'",
    "settings_initial_window_overflows_stream": "libnghttp2 resets the stream whose window "
    "overflows, RST_STREAM(FLOW_CONTROL_ERROR), where 6.9.2 names a connection error",
    "priority_self_dependency": "libnghttp2 escalates: GOAWAY(PROTOCOL_ERROR) 'depend on itself'",
    "headers_priority_self_dependency": "libnghttp2 escalates: GOAWAY(PROTOCOL_ERROR) 'request "
    "HEADERS: depend on itself'",
    "priority_bad_length": "libnghttp2 escalates: GOAWAY(FRAME_SIZE_ERROR)",
    "over_max_concurrent_streams": "once its SETTINGS are acknowledged, libnghttp2 answers a "
    "stream over SETTINGS_MAX_CONCURRENT_STREAMS with GOAWAY(PROTOCOL_ERROR) 'request HEADERS: "
    "max concurrent streams exceeded' (5.4.1 lets it; 5.1.2 names a stream error)",
}


def hexdump(chunks, limit=12, width=64):
    lines = []
    for chunk in chunks[:limit]:
        text = chunk[:width].hex(" ")
        lines.append(text + (" ... (%d bytes)" % len(chunk) if len(chunk) > width else ""))
    if len(chunks) > limit:
        lines.append("... %d more writes" % (len(chunks) - limit))
    return lines


def run_row(r, args):
    """None if the row passed, else the lines saying what was expected and what came."""
    deadline = time.monotonic() + r.options.get("timeout", args.timeout)
    c = None
    try:
        c = Conn("127.0.0.1", args.port, args.tls, deadline, "127.0.0.1:%d" % args.port)
        if r.options.get("handshake", True):
            try:
                c.handshake(r.options.get("settings"))
            except Failure as e:
                raise Failure("in the preface and SETTINGS exchange: %s" % e)
        r.fn(c)
        return None
    except Exception as e:  # noqa: BLE001: a Failure, an OSError, or a bug of the row's
        if not isinstance(e, (Failure, OSError)):
            e = "%s in the client: %s" % (type(e).__name__, traceback.format_exc())
        lines = ["sent:     " + r.sends, "expected: " + r.expects, "got:      %s" % e]
        if c is not None:
            lines += ["bytes sent (hex, one line a write):"]
            lines += ["  " + line for line in hexdump(c.sent)]
            frames = c.received if len(c.received) <= 40 else (
                c.received[:20] + ["... %d more ..." % (len(c.received) - 40)] + c.received[-20:])
            lines += ["frames received: " + (", ".join(frames) or "none")]
        return lines
    finally:
        if c is not None:
            c.close()


def run(args):
    rows = ROWS
    if args.only:
        wanted = set(args.only.split(","))
        rows = [r for r in ROWS if r.name in wanted]
        if len(rows) != len(wanted):
            print("unknown rows: %s" % sorted(wanted - {r.name for r in ROWS}))
            return 2
    failed, deviating, started = [], [], time.monotonic()
    for r in rows:
        lines = run_row(r, args)
        deviation = LIBNGHTTP2_DEVIATIONS.get(r.name)
        verdict = "PASS" if lines is None else ("DEVIATES" if deviation else "FAIL")
        print("%-8s %-40s RFC %-9s %s" % (verdict, r.name, r.section, r.expects), flush=True)
        if lines is not None:
            for line in lines + (["known: " + deviation] if deviation else []):
                print("         " + line)
            (deviating if deviation else failed).append(r.name)
        elif deviation:
            print("         (listed as a libnghttp2 deviation, yet it passed: %s)" % deviation)
    print("%d rows over %s in %.1f s: %d passed, %d failed%s" % (
        len(rows), "TLS" if args.tls else "plain TCP", time.monotonic() - started,
        len(rows) - len(failed) - len(deviating), len(failed),
        ", %d known libnghttp2 deviations" % len(deviating) if deviating else ""))
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


def start_nghttpd(args, root):
    """nghttpd on a free port of 127.0.0.1 serving `root`; its Popen once it accepts."""
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"Hello World!")
    with open(os.path.join(root, "stream"), "wb") as f:
        f.write((bytes(range(256)) * (STREAM_BYTES // 256 + 1))[:STREAM_BYTES])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        args.port = s.getsockname()[1]
    command = ["nghttpd", "-a", "127.0.0.1", "-d", root, "--echo-upload", str(args.port)]
    if args.tls:
        key, cert = os.path.join(root, "key.pem"), os.path.join(root, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost"], check=True,
                       capture_output=True, timeout=30)
        command += [key, cert]
    else:
        command.insert(1, "--no-tls")
    # -v: it says "IPv4: listen 127.0.0.1:PORT" once it listens, then logs every frame; a
    # thread drains that so it never blocks on a full pipe.
    server = subprocess.Popen(command[:1] + ["-v"] + command[1:], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    deadline, said = time.monotonic() + 10, b""
    while b"listen" not in said and time.monotonic() < deadline:
        if not select.select([server.stdout], [], [], deadline - time.monotonic())[0]:
            break
        line = server.stdout.readline()
        if not line:
            break
        said += line
    if b"listen" in said:
        threading.Thread(target=lambda: all(iter(server.stdout.readline, b"")),
                         daemon=True).start()
        return server
    print("nghttpd did not start listening within 10 s: %r" % said[-400:])
    server.kill()
    server.wait()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="the server's port on 127.0.0.1")
    parser.add_argument("--tls", action="store_true", help="TLS with ALPN h2")
    parser.add_argument("--nghttpd", action="store_true", help="run against nghttpd")
    parser.add_argument("--only", help="comma-separated row names")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a row may take")
    args = parser.parse_args()
    if args.list:
        for r in ROWS:
            print("%-40s RFC %-9s %s -> %s" % (r.name, r.section, r.sends, r.expects))
        return 0
    if not args.nghttpd:
        if not args.port:
            parser.error("--port or --nghttpd")
        return run(args)
    with tempfile.TemporaryDirectory(prefix="rfc9113-nghttpd-") as root:
        server = start_nghttpd(args, root)
        if server is None:
            return 2
        try:
            return run(args)
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
