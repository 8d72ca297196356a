"""The WebSocket sections of scripts/bench, driven by bench/ws_load (wrk speaks no WebSocket):
echo, hello_cores's /ws/echo beside Node's ws package, one loop or process each on the server CPU;
and publish fan-out, hello_cores's /ws/chat with its default loops, 1,000 subscribers and one
publisher. Each records into results["websocket"]."""

import json
import re
import shlex
import subprocess
import time

from .load import LineReader
from .processes import CLK_TCK, Failure, cpu_ticks, log, loop_ticks
from .report import fmt_cpu, fmt_lat, fmt_rate, fmt_ratio, ratio
from .servers import NodeWsEcho, Percore, http_get

ECHO_CONNECTIONS = 64
ECHO_BYTES = 64
FANOUT_SUBSCRIBERS = 1000
FANOUT_BYTES = 64


def run_ws_load(ctx, ws_load, args, pids, on_ready=None):
    """Runs `ws_load ARGS --go` on the client CPU; once it says "ready" (connections open, warmed
    up), calls on_ready(), reads the CPU ticks of `pids` and tells it to go; reads them again
    when its result comes (before it closes its connections). Returns its JSON result with the
    server's CPU time over that interval."""
    cmd = ["taskset", "-c", str(ctx.client_cpu)] if ctx.client_cpu is not None else []
    cmd += [str(ws_load)] + [str(a) for a in args] + ["--go"]
    proc = ctx.children.start("ws_load", cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    lines = LineReader(proc.stdout)
    ready = measured = None
    try:
        line = lines.readline(60)  # --timeout bounds its connecting and each warm-up wait
        if line == "ready":
            measured = True
            ready = on_ready() if on_ready else None
            before, t0 = cpu_ticks(pids), time.monotonic()
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            line = lines.readline(ctx.duration + 60)
            after, wall = cpu_ticks(pids), time.monotonic() - t0
        try:
            proc.wait(timeout=15)  # it closes its connections (2 s at most) and exits
        except subprocess.TimeoutExpired:
            pass
    finally:
        code = ctx.children.stop(proc)
    err = proc.stderr.read().decode(errors="replace").strip()
    if code != 0 or not measured or not line or not line.startswith("{"):
        raise Failure(f"ws_load exited with {code}: {err or line or '(no output)'}\n"
                      f"  ({shlex.join(cmd)})")
    r = json.loads(line)
    r["server_cpu_s"] = (after - before) / CLK_TCK
    r["server_cpu_share"] = r["server_cpu_s"] / wall  # of one CPU
    r["command"] = shlex.join(cmd)
    if err:  # a line after the result (connections the server did not close in 2 s)
        r["note"] = err
    if ready is not None:
        r["at_ready"] = ready
    return r


def ws_echo(ctx, ws_load):
    """64 connections, one 64-byte text message in flight on each, against hello_cores (one loop)
    and Node's ws, each on the server CPU: messages/s and server CPU per message (a round trip:
    one message in, one out)."""
    entry = ctx.results["websocket"]["echo"]
    log(f"== WebSocket echo: {ECHO_CONNECTIONS} connections, one {ECHO_BYTES}-byte message in "
        f"flight each, GET /ws/echo, one loop or process ({ctx.duration} s each)")
    for make in (lambda: ctx.percore("percore-ws"),
                 lambda: NodeWsEcho(ctx.children, ctx.tmp, ctx.pin_server)):
        try:
            server = make()
        except Failure as e:
            ctx.fail(f"WebSocket echo: {e}")
            continue
        try:
            server.check_alive()
            r = run_ws_load(ctx, ws_load, [
                "echo", "--port", server.port, "--path", "/ws/echo",
                "--connections", ECHO_CONNECTIONS, "--size", ECHO_BYTES,
                "--duration", ctx.duration, "--warmup", 1 if ctx.quick else 2], server.pids())
            server.check_alive()
            r["cpu_us_per_message"] = (r["server_cpu_s"] * 1e6 / r["messages"]
                                       if r["messages"] else None)
            r["server"] = shlex.join(server.cmd)
            if getattr(server, "ws_version", None):
                r["ws_version"] = server.ws_version
            entry[server.name] = r
            log(f"  {server.name:8} {fmt_rate(r['messages_per_s']):>10} msg/s  "
                f"p50 {fmt_lat(r['p50_us'])}  p99 {fmt_lat(r['p99_us'])}  "
                f"CPU {fmt_cpu(r['cpu_us_per_message'])} us/msg  ({r['command']})")
            if r.get("note"):
                log(f"    {r['note']}")
            if not r["messages"]:
                ctx.fail(f"WebSocket echo, {server.name}: no message echoed")
            server.stop()
        except Failure as e:
            ctx.fail(f"WebSocket echo, {server.name}: {e}")
            ctx.children.stop(server.proc)
    if "percore" in entry and "node" in entry:
        entry["ratio"] = {k: ratio(entry["percore"][k], entry["node"][k])
                          for k in ("messages_per_s", "cpu_us_per_message", "p50_us", "p99_us")}
        log(f"  percore / node: {fmt_ratio(entry['ratio']['cpu_us_per_message'])} CPU per "
            f"message, {fmt_ratio(entry['ratio']['messages_per_s'])} messages/s")


def connections_per_loop(port):
    """percore_connections_active by loop, from GET /metrics (its own connection included)."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        raise Failure(f"GET /metrics answered {status}")
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^percore_connections_active\{worker="(\d+)"[^}]*\} (\d+)$', body, re.M)}


def ws_fanout(ctx, ws_load):
    """1,000 subscribers of /ws/chat and one publisher, spread by the kernel over hello_cores's
    default loops: each message the publisher sends reaches all 1,001 (the publisher too); the
    time from its send to the last receipt, one message at a time. ws_load waits 0.2 s (its
    --settle) after the last handshake: hello_cores may subscribe a connection just after its 101
    has left, and a message published in that gap does not reach it."""
    entry = ctx.results["websocket"]["fanout"]
    log(f"== WebSocket fan-out: {FANOUT_SUBSCRIBERS:,} subscribers of GET /ws/chat and one "
        f"publisher, {FANOUT_BYTES}-byte messages one at a time, hello_cores with its default "
        f"loops, ws_load on " + (f"CPU {ctx.client_cpu}" if ctx.client_cpu is not None else
                                  "any CPU") + f" ({ctx.duration} s)")
    try:
        server = Percore(ctx.children, ctx.hello, ctx.tmp, None, ctx.backend, None,
                         label="percore-ws-fanout")
    except Failure as e:
        ctx.fail(f"WebSocket fan-out: {e}")
        return
    try:
        loops = len(re.findall(r"^Worker \d+ started", server.startup, re.M))
        ticks_before = {}

        def on_ready():
            ticks_before.update(loop_ticks(server.proc.pid))
            return {"connections_per_loop": connections_per_loop(server.port)}

        r = run_ws_load(ctx, ws_load, [
            "fanout", "--port", server.port, "--path", "/ws/chat",
            "--subscribers", FANOUT_SUBSCRIBERS, "--size", FANOUT_BYTES,
            "--duration", ctx.duration, "--warmup-rounds", 20], server.pids(), on_ready)
        ticks_after = loop_ticks(server.proc.pid)
        server.check_alive()
        r["loops"] = loops
        r["server"] = shlex.join(server.cmd)
        r["loop_cpu_s"] = {k: (ticks_after.get(k, 0) - v) / CLK_TCK
                           for k, v in ticks_before.items()}
        r["connections_per_loop"] = r.pop("at_ready", {}).get("connections_per_loop", {})
        r["cpu_us_per_delivery"] = (r["server_cpu_s"] * 1e6 / r["deliveries"]
                                    if r["deliveries"] else None)
        r["cpu_us_per_publish"] = (r["server_cpu_s"] * 1e6 / r["rounds"]
                                   if r["rounds"] else None)
        entry.update(r)
        log(f"  {r['rounds']:,} messages to {r['receivers']:,} connections each: fan-out "
            f"p50 {fmt_lat(r['p50_us'])}, p99 {fmt_lat(r['p99_us'])}, max {fmt_lat(r['max_us'])};"
            f" {fmt_rate(r['deliveries_per_s'])} deliveries/s; server CPU "
            f"{fmt_cpu(r['cpu_us_per_delivery'])} us per delivery ({r['command']})")
        log(f"  {loops} loops; connections per loop at the start (GET /metrics's own "
            f"included): " + ", ".join(f"loop {k}: {v}" for k, v in
                                      sorted(r["connections_per_loop"].items()))
            + "; loop CPU time: " + ", ".join(f"loop {k}: {v:.2f} s"
                                             for k, v in sorted(r["loop_cpu_s"].items())))
        if r.get("note"):
            log(f"    {r['note']}")
        if not r["rounds"]:
            ctx.fail("WebSocket fan-out: no message went round")
        server.stop()
    except Failure as e:
        ctx.fail(f"WebSocket fan-out: {e}")
        ctx.children.stop(server.proc)


def log_summary(results):
    """The WebSocket lines of the final report."""
    echo = results.get("websocket", {}).get("echo", {})
    for name in ("percore", "node"):
        r = echo.get(name)
        if r:
            log(f"WebSocket echo, {ECHO_CONNECTIONS} connections x one {ECHO_BYTES}-byte message: "
                f"{name} {fmt_rate(r['messages_per_s'])} msg/s, CPU "
                f"{fmt_cpu(r['cpu_us_per_message'])} us/msg, p99 {fmt_lat(r['p99_us'])}")
    if echo.get("ratio"):
        log(f"WebSocket echo, percore / node: {fmt_ratio(echo['ratio']['cpu_us_per_message'])} "
            f"CPU per message")
    fan = results.get("websocket", {}).get("fanout", {})
    if fan.get("rounds"):
        log(f"WebSocket fan-out to {fan['subscribers']:,} subscribers (+ the publisher), "
            f"{fan['loops']} loops: p50 {fmt_lat(fan['p50_us'])}, p99 {fmt_lat(fan['p99_us'])}, "
            f"{fmt_rate(fan['deliveries_per_s'])} deliveries/s, CPU "
            f"{fmt_cpu(fan['cpu_us_per_delivery'])} us/delivery")
