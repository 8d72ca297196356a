"""The load scripts/bench puts on the servers: wrk runs, idle connections held by conn_holder and
slow readers of /stream."""

import os
import re
import select
import shlex
import socket
import subprocess
import time

from .processes import CLK_TCK, ROOT, Failure, cpu_ticks, rss_kib

WRK_TIMEOUT = "5s"  # wrk counts a response slower than this as a (timeout) socket error

MODES = [
    # key, title (as in the targets), connections, wrk -s script, extra wrk -H headers
    dict(key="keepalive", title="keep-alive, 64 connections", short="keep-alive 64",
         connections=64, script=None, headers=[]),
    dict(key="pipelined", title="pipelined 16 deep", short="pipelined x16",
         connections=64, script="bench/pipeline.lua", headers=[]),
    dict(key="close", title="Connection: close", short="Connection: close",
         connections=64, script=None, headers=["Connection: close"]),
    dict(key="c1000", title="1,000 connections", short="1,000 conns",
         connections=1000, script=None, headers=[]),
]


# ---------------------------------------------------------------------------------------------
# wrk.


def to_us(value, unit):
    return float(value) * {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]


def parse_wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if not m:
        raise Failure("could not parse wrk's output:\n" + text)
    r["requests"] = int(m.group(1))
    r["duration_s"] = to_us(m.group(2), m.group(3)) / 1e6
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["requests_per_s"] = float(m.group(1)) if m else r["requests"] / r["duration_s"]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = dict(zip(["connect", "read", "write", "timeout"],
                                  [int(x) for x in m.groups()] if m else [0, 0, 0, 0]))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx"] = int(m.group(1)) if m else 0
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        r[f"p{p}_us"] = to_us(m.group(1), m.group(2)) if m else None
    m = re.search(r"batch_latency_us batches=(\d+) p50=(\d+) p90=(\d+) p99=(\d+)", text)
    if m:  # bench/pipeline.lua: per-batch latency with wrk's mis-applied correction undone
        r["batches"] = int(m.group(1))
        r["p50_us"], r["p99_us"] = float(m.group(2)), float(m.group(4))
        r["latency_note"] = "per 16-request batch, wrk's correction undone (bench/pipeline.lua)"
    return r


def wrk_command(port, connections, threads, duration, client_cpu, script=None, headers=(),
                path="/", scheme="http"):
    cmd = []
    if client_cpu is not None:
        cmd += ["taskset", "-c", str(client_cpu)]
    cmd += ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout",
            WRK_TIMEOUT, "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(f"{scheme}://127.0.0.1:{port}{path}")
    return cmd


def run_wrk(cmd, duration, connections):
    env = dict(os.environ, WRK_CONNECTIONS=str(connections))  # read by bench/pipeline.lua
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise Failure(f"wrk did not finish: {shlex.join(cmd)}")
    if p.returncode != 0:
        raise Failure(f"wrk exited with {p.returncode}: {shlex.join(cmd)}\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


def measure(server, cmd, duration, connections):
    """Runs wrk against `server`; adds the server's CPU time per request."""
    server.check_alive()
    pids = server.pids()
    before = cpu_ticks(pids)
    t0 = time.monotonic()
    text = run_wrk(cmd, duration, connections)
    time.sleep(0.3)  # let the server finish closing wrk's connections: that CPU counts too
    after = cpu_ticks(pids)
    wall = time.monotonic() - t0
    server.check_alive()
    r = parse_wrk(text)
    if "pipeline.lua" in " ".join(cmd) and "batches" not in r:
        # wrk's own percentiles are wrong when pipelining (see bench/pipeline.lua).
        r["p50_us"] = r["p99_us"] = None
        r["latency_note"] = "not measured: bench/pipeline.lua printed no batch latency"
    r["server_cpu_s"] = (after - before) / CLK_TCK
    r["server_cpu_share"] = r["server_cpu_s"] / wall  # of one CPU, over wrk's run + 0.3 s
    r["cpu_us_per_request"] = (r["server_cpu_s"] * 1e6 / r["requests"]) if r["requests"] else None
    r["command"] = shlex.join(cmd)
    r["wrk_output"] = text
    return r


def errors_of(r):
    problems = []
    se = r["socket_errors"]
    if any(se.values()):
        problems.append("socket errors: " + ", ".join(f"{k} {v}" for k, v in se.items()))
    if r["non_2xx"]:
        problems.append(f"{r['non_2xx']} non-2xx responses")
    if r["requests"] == 0:
        problems.append("no requests completed")
    return problems


# ---------------------------------------------------------------------------------------------
# Idle connections.


class LineReader:
    """Lines from a child's stdout pipe (binary, unbuffered), each waited for with a timeout."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buffer = b""
        self.eof = False

    def readline(self, timeout):
        """The next line without its newline; None on timeout, or at EOF with nothing left."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            self.buffer += chunk
            self.eof = not chunk
        if b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
        elif self.buffer:
            line, self.buffer = self.buffer, b""
        else:
            return None
        return line.decode(errors="replace")

    def rest(self, timeout):
        lines = []
        while (line := self.readline(timeout)) is not None:
            lines.append(line)
        return "\n".join(lines)


def hold_connections(children, conn_holder, port, count, client_cpu, timeout=60, path="/",
                     extra_args=()):
    """Starts conn_holder with `count` connections (and `extra_args`: --tls); once they are
    ready returns the process, its command and, for GET /worker, how many connections each loop
    answered."""
    cmd = []
    if client_cpu is not None:
        cmd += ["taskset", "-c", str(client_cpu)]
    cmd += [str(conn_holder), "--port", str(port), "--connections", str(count),
            "--timeout", str(timeout), "--path", path] + list(extra_args)
    proc = children.start("conn_holder", cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    proc.lines = LineReader(proc.stdout)
    per_worker = {}
    deadline = time.monotonic() + timeout + 5
    while True:
        line = proc.lines.readline(max(0.1, deadline - time.monotonic()))
        m = re.match(r"worker (\d+) (\d+)$", line or "")
        if m:
            per_worker[m.group(1)] = int(m.group(2))
            continue
        if not line or not line.startswith("ready"):
            children.stop(proc)
            raise Failure(f"conn_holder failed: {shlex.join(cmd)}\n{line or '(no ready line)'}\n"
                          + proc.stderr.read().decode(errors="replace"))
        return proc, shlex.join(cmd), per_worker


def slow_readers(server, count, seconds, bytes_per_s):
    """`count` connections each ask for 1 GiB from /stream and read `bytes_per_s` of it for
    `seconds`; the server's VmRSS before, at its peak (sampled every 100 ms) and once they are
    closed (waiting up to 5 s for it to settle)."""
    pids = [server.proc.pid]
    before = rss_kib(pids)
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"GET /stream?bytes=1073741824 HTTP/1.1\r\nHost: bench\r\n\r\n")
            s.setblocking(False)
            socks.append(s)
        received = [0] * count
        peak = before
        start = time.monotonic()
        tick = 0.01
        while time.monotonic() - start < seconds:
            due = int(bytes_per_s * (time.monotonic() - start))
            for i, s in enumerate(socks):
                while received[i] < due:
                    try:
                        data = s.recv(min(due - received[i], 65536))
                    except BlockingIOError:
                        break
                    if not data:
                        raise Failure(f"slow reader {i}: the stream ended after {received[i]} bytes")
                    received[i] += len(data)
            if int((time.monotonic() - start) / tick) % 10 == 0:
                peak = max(peak, rss_kib(pids))
            time.sleep(tick)
        peak = max(peak, rss_kib(pids))
        read = sum(received)
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 5
    after = rss_kib(pids)
    while after > before + 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
        after = rss_kib(pids)
    return {"connections": count, "seconds": seconds, "bytes_per_s_each": bytes_per_s,
            "bytes_read": read, "rss_before_kib": before, "rss_peak_kib": peak,
            "rss_after_kib": after,
            "growth_kib_per_connection": (peak - before) / count,
            "kept_after_kib": after - before}


def release_connections(children, proc):
    proc.stdin.close()  # conn_holder closes its connections and exits at EOF
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    code = children.stop(proc)
    out = proc.lines.rest(5)
    err = proc.stderr.read().decode(errors="replace")
    if code != 0:
        raise Failure(f"conn_holder exited with {code}: {err}")
    m = re.search(r"closed-by-server (\d+)", out)
    return int(m.group(1)) if m else 0


def idle_memory(children, server, conn_holder, count, client_cpu, extra_args=()):
    server.check_alive()
    # Warm up: the first connections make one-time allocations (buffers, caches) that are not
    # per connection.
    warm, _, _ = hold_connections(children, conn_holder, server.port, 16, client_cpu,
                                  extra_args=extra_args)
    release_connections(children, warm)
    time.sleep(0.5)
    before = rss_kib(server.pids())
    t0 = time.monotonic()
    holder, cmd, _ = hold_connections(children, conn_holder, server.port, count, client_cpu,
                                      extra_args=extra_args)
    open_s = time.monotonic() - t0
    time.sleep(1.0)  # let the server settle
    after = rss_kib(server.pids())
    server.check_alive()
    closed = release_connections(children, holder)
    time.sleep(0.5)
    server.check_alive()
    if closed:
        raise Failure(f"{server.name} closed {closed} of the {count} idle connections while held")
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count,
        "open_seconds": round(open_s, 2),
        "command": cmd,
    }
