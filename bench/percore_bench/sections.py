"""The sections of scripts/bench that follow the per-mode runs against the three servers: two
loops on two CPUs, answers that come later (beside Node, and pipelined), slow readers, gzip and the
micro-benchmarks. Each takes the run's Context and records into its results."""

import gzip
import json
import random
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .load import (errors_of, hold_connections, measure, release_connections,
                   slow_readers as run_slow_readers, wrk_command)
from .processes import CLK_TCK, Children, Failure, log, loop_ticks
from .report import fmt_cpu, fmt_lat, fmt_rate, ratio
from .servers import Nginx, NodeDelay, Percore, http_get

PAGE_KIB = 64


@dataclass
class Context:
    """What every section needs of the run."""
    children: Children
    hello: Path
    tmp: Path
    build_dir: Path
    conn_holder: Path
    backend: str
    duration: int
    quick: bool
    allowed: list
    server_cpu: object  # int, or None on one CPU
    client_cpu: object
    pin_server: object
    results: dict
    fail: object  # fail(message): records a failure of the run

    def percore(self, label, extra_args=None):
        """hello_cores with one loop on the server CPU."""
        return Percore(self.children, self.hello, self.tmp,
                       str(self.server_cpu) if self.server_cpu is not None else None,
                       self.backend, self.pin_server, label=label,
                       **({"extra_args": extra_args} if extra_args else {}))


def text_page(kib):
    """`kib` KiB of text-like bytes, the same every run: 3,000 made-up words drawn with Zipf's
    law, in sentences, so that it compresses about as prose does (about 3:1 at level 6)."""
    rng = random.Random(1)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocabulary = ["".join(rng.choice(letters[:rng.randint(8, 26)])
                          for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    out, size = [], 0
    while size < kib * 1024:
        line = " ".join(rng.choices(vocabulary, weights, k=rng.randint(6, 14))) + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:kib * 1024].encode()


def log_measured(name, r):
    """One line for one wrk run against one server."""
    log(f"  {name:8} {fmt_rate(r['requests_per_s']):>10} req/s  "
        f"p50 {fmt_lat(r['p50_us'])}  p99 {fmt_lat(r['p99_us'])}  "
        f"CPU {fmt_cpu(r['cpu_us_per_request'])} us/req  ({r['command']})")


def two_loops(ctx):
    # ---- Two loops on two CPUs: the share of requests each served.
    two = ctx.results["two_loops"]
    if len(ctx.allowed) >= 2:
        a, b = ctx.allowed[0], ctx.allowed[1]
        cpus = f"{a}-{b}" if b == a + 1 else f"{a},{b}"
        log(f"== 2 loops on CPUs {cpus}, 200 connections, GET /worker ({ctx.duration} s, "
            "wrk unpinned)")
        try:
            both = Percore(ctx.children, ctx.hello, ctx.tmp, cpus, ctx.backend, None,
                           label="percore-2")
            # How the kernel spreads 200 connections over the two listeners (a sample: wrk's
            # own connections hash differently), to tell that apart from unequal CPU time.
            holder, _, spread = hold_connections(ctx.children, ctx.conn_holder, both.port, 200,
                                                 None,
                                                 path="/worker")
            release_connections(ctx.children, holder)
            cmd = wrk_command(both.port, 200, 2, ctx.duration, None, "bench/worker_share.lua",
                              path="/worker")
            loops_before = loop_ticks(both.proc.pid)
            r = measure(both, cmd, ctx.duration, 200)
            loops_after = loop_ticks(both.proc.pid)
            loop_cpu = {k: (loops_after.get(k, 0) - v) / CLK_TCK
                        for k, v in loops_before.items()}
            counts = {m.group(1): int(m.group(2))
                      for m in re.finditer(r"^worker_share (\d+) (\d+)$", r["wrk_output"],
                                           re.M)}
            m = re.search(r"^worker_share_unmatched (\d+)$", r["wrk_output"], re.M)
            unmatched = int(m.group(1)) if m else 0
            total = sum(counts.values())
            two.update({
                "command": r["command"], "server": shlex.join(both.cmd),
                "requests_per_s": r["requests_per_s"], "requests": r["requests"],
                "cpu_us_per_request": r["cpu_us_per_request"], "p50_us": r["p50_us"],
                "p99_us": r["p99_us"], "socket_errors": r["socket_errors"],
                "non_2xx": r["non_2xx"], "counts": counts, "unmatched": unmatched,
                "shares": {k: v / total for k, v in counts.items()} if total else {},
                "connections_per_loop_sample": spread,
                "loop_cpu_s": loop_cpu,
            })
            log(f"  {fmt_rate(r['requests_per_s'])} req/s, " + ", ".join(
                f"loop {k}: {v:,} ({v / total * 100:.1f}%)" for k, v in sorted(counts.items()))
                if total else "  no worker ids counted")
            log("  loop CPU time during the run: " + ", ".join(
                f"loop {k}: {v:.2f} s" for k, v in sorted(loop_cpu.items()))
                + "; a separate sample of 200 connections: " + ", ".join(
                f"loop {k}: {v}" for k, v in sorted(spread.items())))
            for problem in errors_of(r):
                ctx.fail(f"2 loops: {problem}")
            if unmatched:
                ctx.fail(f"2 loops: {unmatched} /worker responses without a worker id")
            if not total:
                ctx.fail("2 loops: bench/worker_share.lua counted no responses")
            both.stop()
        except Failure as e:
            ctx.fail(f"2 loops: {e}")
    else:
        two["skipped"] = "skipped: needs 2 CPUs"


def deferred(ctx):
    # ---- Answers that come later: a handler that waits 50 ms (a timer, as for a database
    # call) on 1,000 connections, one loop, beside Node's http with setTimeout.
    deferred = ctx.results["deferred"]
    log(f"== answers 50 ms later: 1,000 connections, GET /delay?ms=50, one loop or process "
        f"({ctx.duration} s each)")
    for make in (lambda: ctx.percore("percore-delay"),
                 lambda: NodeDelay(ctx.children, ctx.tmp, ctx.pin_server)):
        try:
            server = make()
        except Failure as e:
            ctx.fail(f"deferred answers: {e}")
            continue
        cmd = wrk_command(server.port, 1000, 1, ctx.duration, ctx.client_cpu, path="/delay?ms=50")
        try:
            r = measure(server, cmd, ctx.duration, 1000)
            deferred[server.name] = r
            log_measured(server.name, r)
            for problem in errors_of(r):
                ctx.fail(f"deferred answers, {server.name}: {problem}")
            server.stop()
        except Failure as e:
            ctx.fail(f"deferred answers, {server.name}: {e}")


def deferred_pipelined(ctx):
    """Answers 20 ms later, pipelined 16 deep on 64 connections against the same one at a time:
    each request behind a later answer is handled at once (a slot per request), so a batch of 16
    takes about one delay, not sixteen."""
    entry = ctx.results["deferred_pipelined"]
    log(f"== answers 20 ms later, 64 connections, GET /delay?ms=20 one at a time and pipelined "
        f"16 deep ({ctx.duration} s each)")
    try:
        server = ctx.percore("percore-delay")
        for key, script in (("sequential", None), ("pipelined", "bench/pipeline.lua")):
            cmd = wrk_command(server.port, 64, 1, ctx.duration, ctx.client_cpu, script,
                              path="/delay?ms=20")
            r = measure(server, cmd, ctx.duration, 64)
            entry[key] = r
            log_measured(key[:8], r)
            for problem in errors_of(r):
                ctx.fail(f"deferred answers {key}: {problem}")
        server.stop()
    except Failure as e:
        ctx.fail(f"deferred answers pipelined: {e}")
        return
    entry["ratio"] = ratio(entry["pipelined"]["requests_per_s"],
                           entry["sequential"]["requests_per_s"])
    log(f"  pipelined / one at a time: {entry['ratio']:.2f}x requests/s")


def slow_readers(ctx):
    # ---- Slow readers: 20 streamed downloads read far slower than they are produced.
    log(f"== slow readers: 20 connections on GET /stream?bytes=1GiB, each read at 4 MB/s "
        f"({ctx.duration} s)")
    try:
        server = ctx.percore("percore-stream")
        r = run_slow_readers(server, 20, ctx.duration, 4_000_000)
        ctx.results["slow_readers"] = r
        log(f"  VmRSS {r['rss_before_kib']:,} KiB before, {r['rss_peak_kib']:,} KiB at the peak"
            f" ({r['growth_kib_per_connection']:,.0f} KiB per connection), "
            f"{r['rss_after_kib']:,} KiB after; {r['bytes_read'] / 1e6:,.0f} MB read")
        server.stop()
    except Failure as e:
        ctx.fail(f"slow readers: {e}")


def gzip_files(ctx, www, page):
    # ---- gzip: the same text file as it is and compressed, from both servers.
    gz = ctx.results["gzip"]
    log(f"== gzip: GET /files/page.txt ({PAGE_KIB} KiB of text), 16 connections, as it is "
        f"and with Accept-Encoding: gzip ({ctx.duration} s each)")
    server_cpus = [ctx.server_cpu] if ctx.server_cpu is not None else []
    for make in (lambda: ctx.percore("percore-gzip", ["--static", str(www)]),
                 lambda: Nginx(ctx.children, ctx.tmp, server_cpus, ctx.pin_server)):
        try:
            server = make()
            entry = gz.setdefault(server.name, {})
            for coding, header in (("identity", "Accept-Encoding: identity"),
                                   ("gzip", "Accept-Encoding: gzip")):
                status, body, head = http_get(server.port, "/files/page.txt", headers=[header])
                zipped = "content-encoding: gzip" in head.lower()
                got = gzip.decompress(body) if zipped else body
                if status != 200 or got != page or zipped != (coding == "gzip"):
                    raise Failure(f"GET /files/page.txt with {header!r}: status {status}, "
                                  f"gzipped {zipped}, body {'right' if got == page else 'wrong'}")
                cmd = wrk_command(server.port, 16, 1, ctx.duration, ctx.client_cpu,
                                  headers=[header],
                                  path="/files/page.txt")
                r = measure(server, cmd, ctx.duration, 16)
                r["body_bytes"] = len(body)
                entry[coding] = r
                log_measured(f"{server.name[:3]} {coding[:4]}", r)
                for problem in errors_of(r):
                    ctx.fail(f"gzip, {server.name} {coding}: {problem}")
            entry["cpu_us_per_kib"] = ((entry["gzip"]["cpu_us_per_request"]
                                        - entry["identity"]["cpu_us_per_request"]) / PAGE_KIB)
            log(f"  {server.name}: {entry['cpu_us_per_kib']:.2f} us CPU per KiB compressed "
                f"({PAGE_KIB} KiB -> {entry['gzip']['body_bytes']:,} bytes)")
            server.stop()
        except Failure as e:
            ctx.fail(f"gzip: {e}")
    if "percore" in gz and "nginx" in gz:
        gz["ratio"] = ratio(gz["percore"]["cpu_us_per_kib"], gz["nginx"]["cpu_us_per_kib"])


def micro(ctx):
    # ---- Micro-benchmarks.
    log("== micro-benchmarks (Google Benchmark)")
    ctx.results["micro"] = {}
    binaries = sorted((ctx.build_dir / "bench").glob("*_benchmark"))
    if not binaries:
        ctx.fail(f"no *_benchmark binaries in {ctx.build_dir / 'bench'}")
    for binary in binaries:
        cmd = []
        if ctx.server_cpu is not None:
            cmd += ["taskset", "-c", str(ctx.server_cpu)]
        cmd += [str(binary), "--benchmark_format=json",
                f"--benchmark_min_time={0.05 if ctx.quick else 0.5}"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise Failure(f"exit code {p.returncode}: {p.stderr.strip()[-1000:]}")
            data = json.loads(p.stdout)
        except (Failure, ValueError, subprocess.TimeoutExpired) as e:
            ctx.fail(f"{binary.name}: {e}")
            continue
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                ctx.fail(f"{binary.name} {b['name']}: {b.get('error_message')}")
                continue
            scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
            ctx.results["micro"][f"{binary.name}/{b['name']}"] = {
                "cpu_ns": b["cpu_time"] * scale,
                "items_per_second": b.get("items_per_second"),
            }

