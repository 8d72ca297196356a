# What scripts/bench does; its --help prints this.
"""Benchmarks hello_cores against nginx, a raw responder and Node, side by side, on 127.0.0.1.

  scripts/bench            about 10 s per mode (a few minutes in all)
  scripts/bench --quick    about 2 s per mode (well under 3 minutes)
  scripts/bench --micro    also runs the Google Benchmark binaries (build/bench/*_benchmark)
  scripts/bench --compare OTHER/hello_cores [--rounds 5]
                           only GET / keep-alive: this build's hello_cores and OTHER's, alternated
                           round by round, server CPU per request of each (a request-path change
                           measured before and after without nginx's noise in the ratio)
  scripts/bench --only tls only the TLS section (with --quick: its quick form); results in
                           bench/results/only-tls.json, bench/results/latest.* left alone
  scripts/bench --only h2  only the HTTP/2 section, likewise (bench/results/only-h2.json)

Sets up (scripts/setup --bench) and builds (scripts/build), then:
  * starts hello_cores (1 loop) and nginx (1 worker, same CPU) as equal peers, and
    bench/raw_responder (one thread that counts "\r\n\r\n" and writes a fixed answer: the
    kernel's floor on this machine) on that CPU too. With 2 or more CPUs the servers run on the
    first allowed CPU and wrk/conn_holder on the second (taskset);
  * per mode -- keep-alive 64 connections, pipelined 16 deep, Connection: close, 1,000
    connections -- runs wrk against percore, then nginx, then the raw responder, and reports
    requests/s, p50/p99 latency, socket errors, non-2xx responses and the server's CPU time per
    request (utime+stime from /proc/PID/stat of every server process, before and after), and
    percore's CPU per request over the raw responder's ("percore vs floor");
  * measures resident memory per idle keep-alive connection (VmRSS before and after
    bench/conn_holder opens 10,000 of them);
  * runs hello_cores with 2 loops on 2 CPUs and reports the share of requests each loop served;
  * runs 1,000 connections on GET /delay?ms=50 (answered from a timer) against hello_cores with
    one loop and bench/node_delay.js (Node's http with setTimeout), each on the server CPU; then
    64 connections on GET /delay?ms=20 one request at a time and pipelined 16 deep;
  * starts 20 downloads of 1 GiB from GET /stream and reads each at 4 MB/s for the mode's
    duration (slow readers: the server produces faster than they read), then closes them, and
    reports hello_cores's resident memory before, at its peak and after;
  * fetches a 64 KiB text file from hello_cores --static and from nginx (gzip_comp_level 6, as
    percore's default level), as it is and with "Accept-Encoding: gzip", and reports the CPU that
    compression costs per KiB of the file.
  * WebSocket echo (bench/ws_load, our own client: wrk speaks no WebSocket): 64 connections,
    one 64-byte message in flight on each, against hello_cores's /ws/echo (one loop) and
    bench/node_ws_echo.js (Node's ws package from npm, perMessageDeflate off), each on the server
    CPU: messages/s and the server's CPU time per message (utime+stime from "go" to the result,
    not the handshakes'), percore / node;
  * WebSocket fan-out: hello_cores with its default loops, 1,000 subscribers of /ws/chat and one
    publisher (bench/ws_load on the client CPU); each message reaches all 1,001: the time from
    its send to the last receipt (p50/p99), deliveries/s and CPU per delivery.
  * TLS (bench/percore_bench/tls.py): hello_cores --tls_cert/--tls_key (one loop) and nginx
    (one worker) on the server CPU with one ECDSA P-256 certificate made for the run: memory per
    idle TLS keep-alive connection (conn_holder --tls), keep-alive GET / over TLS (wrk https),
    new connections/s with full and resumed handshakes (bench/tls_handshakes) and a 1 GiB
    download (curl): the server's CPU per request, connection and GiB, percore / nginx.
  * HTTP/2 (bench/percore_bench/h2.py): hello_cores (one loop) and nginx (one worker, http2) on
    the server CPU, GET / from h2load on the client CPU, 8 connections x 100 streams, over TLS
    (ALPN h2, the TLS section's certificate and settings) and cleartext with prior knowledge:
    the server's CPU per request, the median of alternated rounds, percore / nginx.
Writes bench/results/latest.json and bench/results/latest.png, prints a table and the targets.

Exits non-zero on a socket error, a non-2xx response, a server that died, a wrong WebSocket echo
or a fan-out message not delivered, an HTTP/2 request that failed or was not HTTP/2, or a tool
that failed; never because of speed: speed is reported, not asserted.
"""

import argparse
import datetime
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .compare import compare, report as compare_report
from .h2 import h2_section, h2load_version, log_summary as h2_summary
from .load import MODES, errors_of, idle_memory, measure, run_wrk, wrk_command
from .processes import CLK_TCK, ROOT, Children, Failure, log, on_terminate, run_step
from .report import (TARGETS, fmt_cpu, fmt_lat, fmt_rate, fmt_ratio, ratio, table, targets,
                     write_chart)
from .sections import (PAGE_KIB, Context, deferred, deferred_pipelined, gzip_files,
                       log_measured, micro, slow_readers, text_page, two_loops)
from .servers import Nginx, Percore, RawResponder
from .tls import log_summary as tls_summary, tls_section
from .websocket import log_summary as ws_summary, ws_echo, ws_fanout

RESULTS = ROOT / "bench" / "results"
SECTIONS = {"tls": {"tls", "tls_idle_memory"}, "h2": {"h2"}}  # --only: the checks of its targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="about 2 s per mode instead of 10 s")
    ap.add_argument("--micro", action="store_true", help="also run the Google Benchmark binaries")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10, --quick 2)")
    ap.add_argument("--idle-connections", type=int, default=10000,
                    help="idle keep-alive connections for the memory measurement (10000)")
    ap.add_argument("--backend", default="auto", choices=["auto", "io_uring", "epoll"],
                    help="hello_cores --backend")
    ap.add_argument("--compare", metavar="BINARY",
                    help="another hello_cores to alternate with this build's on GET / keep-alive")
    ap.add_argument("--rounds", type=int, default=5, help="--compare rounds (5)")
    ap.add_argument("--only", choices=sorted(SECTIONS),
                    help="only this section (its results in bench/results/only-SECTION.json)")
    args = ap.parse_args()
    duration = args.duration or (2 if args.quick else 10)
    warmup = 1 if args.quick else 2

    signal.signal(signal.SIGINT, on_terminate)  # even if started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGHUP, on_terminate)
    os.chdir(ROOT)
    started = time.monotonic()

    log("== setup and build")
    sys.stdout.write(run_step([str(ROOT / "scripts/setup"), "--bench"]))
    build_dir = ROOT / run_step([str(ROOT / "scripts/build")]).strip().splitlines()[-1]
    hello = build_dir / "hello_cores"
    conn_holder = build_dir / "bench" / "conn_holder"
    raw_responder = build_dir / "bench" / "raw_responder"
    ws_load = build_dir / "bench" / "ws_load"
    tls_handshakes = build_dir / "bench" / "tls_handshakes"
    for path in (hello, conn_holder, raw_responder, ws_load, tls_handshakes):
        if not path.exists():
            raise Failure(f"{path} was not built (PERCORE_BUILD_APPS/PERCORE_BUILD_BENCH off?)")
    for tool in ("wrk", "nginx", "taskset", "node", "curl", "openssl", "h2load"):
        if not shutil.which(tool):
            raise Failure(f"{tool} not found: scripts/setup --bench should have installed it")

    # Every child inherits this: wrk with 1,000 connections and the 10,000 idle ones need it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    idle_count = args.idle_connections
    if nofile != resource.RLIM_INFINITY and idle_count + 100 > nofile:
        idle_count = max(100, nofile - 100)
        log(f"RLIMIT_NOFILE is {nofile}: holding {idle_count} idle connections, not "
            f"{args.idle_connections}")

    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        server_cpu, client_cpu = allowed[0], allowed[1]
        pin_server = str(server_cpu)
        pinning = (f"servers on CPU {server_cpu} (hello_cores --cpus {server_cpu} and nginx "
                   f"worker_cpu_affinity, both under taskset -c {server_cpu}, and raw_responder "
                   f"under taskset -c {server_cpu}), wrk and conn_holder on CPU {client_cpu} "
                   f"(taskset -c {client_cpu}, wrk -t1)")
        summary = f"server on CPU {server_cpu}, wrk on CPU {client_cpu}"
    else:
        server_cpu = client_cpu = pin_server = None
        pinning = ("only one CPU: nothing pinned, servers and wrk share it (numbers mean little;"
                   " the 2-loop test is skipped)")
        summary = "1 CPU, unpinned"
    log(f"Pinning: {pinning}")

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True)
    results = {
        "commit": commit.stdout.strip() or "unknown",
        "dirty": bool(dirty.stdout.strip()),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick,
        "duration_s": duration,
        "machine": {"cpus_allowed": allowed, "kernel": os.uname().release,
                    "nginx": (nginx_v.stderr or nginx_v.stdout).strip(),
                    "wrk": (wrk_v.stdout or wrk_v.stderr).strip().splitlines()[0],
                    "node": node_v.stdout.strip(), "h2load": h2load_version(),
                    "clock_ticks_per_s": CLK_TCK, "load_average_at_start": os.getloadavg()},
        "pinning": {"server_cpu": server_cpu, "client_cpu": client_cpu, "summary": summary,
                    "description": pinning},
        "notes": [
            "ratio = percore / nginx, both measured in this run",
            "raw = bench/raw_responder, pinned like the others: counts \\r\\n\\r\\n and writes a "
            "fixed answer of hello_cores' size; its CPU per request is the kernel's floor on this "
            "machine today; vs_floor = percore / raw",
            "server CPU = utime+stime of every server process (/proc/PID/stat) over the wrk run "
            "and 0.3 s after it, divided by the requests wrk completed",
            "non_2xx is wrk's 'Non-2xx or 3xx responses' (it counts statuses >= 400)",
            "pipelined latency is per 16-request batch (see bench/pipeline.lua)",
            "WebSocket: server CPU = utime+stime of the server process from bench/ws_load's "
            "'go' (connections open and warmed up) to its result, divided by the messages echoed"
            " (or delivered, for the fan-out); websocket.echo.ratio = percore / node (ws)",
            "HTTP/2: server CPU = utime+stime of every server process over the h2load run and "
            "0.3 s after it, divided by the requests h2load completed; h2.*.ratio = percore / "
            "nginx of the medians",
        ],
        "modes": {},
        "idle_memory": {},
        "two_loops": {},
        "deferred": {},
        "deferred_pipelined": {},
        "slow_readers": {},
        "gzip": {},
        "websocket": {"echo": {}, "fanout": {}},
        "tls": {},
        "h2": {},
        "failures": [],
    }
    failures = results["failures"]

    def fail(message):
        failures.append(message)
        log(f"  FAILED: {message}")

    children = Children()
    tmp = Path(tempfile.mkdtemp(prefix="percore-bench-"))
    os.chmod(tmp, 0o755)
    if args.compare:
        other = Path(args.compare).resolve()
        if not other.is_file():
            raise Failure(f"--compare: {other} is not a file")
        try:
            results = compare(children, tmp, {"this": hello, "other": other}, args.rounds,
                                duration, warmup, server_cpu, client_cpu, pin_server, args.backend)
        finally:
            children.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
        compare_report(results)
        return 0
    www = tmp / "www"  # the gzip mode's file; nginx's workers (nobody) read it too
    www.mkdir()
    os.chmod(www, 0o755)
    page = text_page(PAGE_KIB)
    (www / "page.txt").write_bytes(page)
    os.chmod(www / "page.txt", 0o644)
    interrupted = False
    try:
        if not args.only:  # the plain peers and modes
            # ---- Both servers, one loop / one worker each, on the server CPU.
            log("== starting servers")
            percore = Percore(children, hello, tmp,
                              str(server_cpu) if server_cpu is not None else None, args.backend,
                              pin_server)
            log(f"  percore: {shlex.join(percore.cmd)}  (port {percore.port})")
            for line in percore.startup.splitlines():
                log(f"    {line}")
            nginx = Nginx(children, tmp, [server_cpu] if server_cpu is not None else [], pin_server)
            log(f"  nginx:   {shlex.join(nginx.cmd)}  (port {nginx.port}, master {nginx.proc.pid}, "
                f"workers {nginx.worker_pids})")
            raw = RawResponder(children, raw_responder, tmp, pin_server)
            log(f"  raw:     {shlex.join(raw.cmd)}  (port {raw.port}; the kernel's floor)")
            results["commands"] = {"percore": shlex.join(percore.cmd),
                                   "nginx": shlex.join(nginx.cmd), "raw": shlex.join(raw.cmd),
                                   "nginx_conf": nginx.conf.read_text()}
            peers = [percore, nginx]
            servers = [percore, nginx, raw]

            # ---- Memory per idle connection, on the fresh servers (the peers only).
            log(f"== resident memory per idle keep-alive connection ({idle_count:,} held)")
            for server in peers:
                try:
                    m = idle_memory(children, server, conn_holder, idle_count, client_cpu)
                    results["idle_memory"][server.name] = m
                    log(f"  {server.name:8} VmRSS {m['rss_before_kib']:,} -> "
                        f"{m['rss_after_kib']:,} KiB = {m['kib_per_connection']:.3f} "
                        f"KiB/connection (opened in {m['open_seconds']} s)")
                except Failure as e:
                    fail(f"idle memory, {server.name}: {e}")
            im = results["idle_memory"]
            if "percore" in im and "nginx" in im:
                im["ratio"] = ratio(im["percore"]["kib_per_connection"],
                                    im["nginx"]["kib_per_connection"])

            # ---- Warm-up, then every mode against percore, then nginx.
            log(f"== warm-up ({warmup} s each)")
            for server in servers:
                run_wrk(wrk_command(server.port, 64, 1, warmup, client_cpu), warmup, 64)
            for mode in MODES:
                log(f"== {mode['title']} ({duration} s each)")
                entry = results["modes"].setdefault(mode["key"], {"title": mode["title"]})
                for server in servers:
                    cmd = wrk_command(server.port, mode["connections"], 1, duration, client_cpu,
                                      mode["script"], mode["headers"])
                    try:
                        r = measure(server, cmd, duration, mode["connections"])
                    except Failure as e:
                        fail(f"{mode['title']}, {server.name}: {e}")
                        continue
                    entry[server.name] = r
                    log_measured(server.name, r)
                    for problem in errors_of(r):
                        fail(f"{mode['title']}, {server.name}: {problem}")
                if "percore" in entry and "nginx" in entry:
                    entry["ratio"] = {k: ratio(entry["percore"][k], entry["nginx"][k])
                                      for k in ("requests_per_s", "cpu_us_per_request", "p50_us",
                                                "p99_us")}
                if "percore" in entry and "raw" in entry:
                    entry["vs_floor"] = {k: ratio(entry["percore"][k], entry["raw"][k])
                                         for k in ("requests_per_s", "cpu_us_per_request")}
                    log(f"  percore vs floor: "
                        f"{fmt_ratio(entry['vs_floor']['cpu_us_per_request'])} CPU/request")
            for server in servers:
                try:
                    server.stop()
                except Failure as e:
                    fail(str(e))

        ctx = Context(children=children, hello=hello, tmp=tmp, build_dir=build_dir,
                      conn_holder=conn_holder, backend=args.backend, duration=duration,
                      quick=args.quick, allowed=allowed, server_cpu=server_cpu,
                      client_cpu=client_cpu, pin_server=pin_server, results=results, fail=fail)
        if not args.only:
            two_loops(ctx)
            deferred(ctx)
            deferred_pipelined(ctx)
            slow_readers(ctx)
            gzip_files(ctx, www, page)
            ws_echo(ctx, ws_load)
            ws_fanout(ctx, ws_load)
        if args.only in (None, "tls"):
            tls_section(ctx, tls_handshakes)
        if args.only in (None, "h2"):
            h2_section(ctx)
        if args.micro:
            micro(ctx)
    except KeyboardInterrupt as e:
        interrupted = True
        fail(f"interrupted ({e or 'Ctrl-C'})")
    except Failure as e:
        fail(str(e))
    except Exception as e:  # a bug here must still stop the servers and say what happened
        fail(f"{type(e).__name__}: {e}")
        import traceback
        traceback.print_exc()
    finally:
        children.stop_all()

    # ---- Report.
    log()
    log(f"== results ({'quick, ' if args.quick else ''}{duration} s per mode; {summary}; "
        f"ratio = percore / nginx; raw = the raw responder, the kernel's floor)")
    header = ["mode", "server", "requests/s", "ratio", "p50", "p99", "CPU us/req", "ratio",
              "srv CPU", "sock err", "non-2xx"]
    rows = []
    for mode in MODES:
        entry = results["modes"].get(mode["key"], {})
        for name in ("percore", "nginx", "raw"):
            r = entry.get(name)
            if not r:
                rows.append([mode["title"] if name == "percore" else "", name] + ["-"] * 9)
                continue
            rat = entry.get("ratio", {}) if name == "percore" else {}
            rows.append([
                mode["title"] if name == "percore" else "", name,
                fmt_rate(r["requests_per_s"]), fmt_ratio(rat.get("requests_per_s")) if rat else "",
                fmt_lat(r["p50_us"]), fmt_lat(r["p99_us"]),
                fmt_cpu(r["cpu_us_per_request"]),
                fmt_ratio(rat.get("cpu_us_per_request")) if rat else "",
                f"{r['server_cpu_share'] * 100:.0f}%",
                sum(r["socket_errors"].values()), r["non_2xx"]])
    if not args.only:
        log(table(rows, header))
        log("  (srv CPU: the server's CPU time over the run, in % of one CPU; pipelined latency is"
            " per 16-request batch;\n   in the Connection: close mode every request is a new"
            " connection)")
    log()
    for mode in MODES if not args.only else []:
        floor = results["modes"].get(mode["key"], {}).get("vs_floor", {})
        log(f"{mode['title'] + ':':28} percore vs floor: "
            f"{fmt_ratio(floor.get('cpu_us_per_request'))} CPU/request")
    im = results["idle_memory"]
    if im:
        log()
        log("idle keep-alive connections: " + "; ".join(
            f"{name} {im[name]['kib_per_connection']:.3f} KiB/connection "
            f"({im[name]['connections']:,} held)" for name in ("percore", "nginx") if name in im)
            + (f"; ratio {fmt_ratio(im.get('ratio'))}" if im.get("ratio") is not None else ""))
    for name, r in results["deferred"].items():
        log(f"answers 50 ms later, 1,000 connections: {name} {fmt_rate(r['requests_per_s'])} req/s,"
            f" p99 {fmt_lat(r['p99_us'])}, CPU {fmt_cpu(r['cpu_us_per_request'])} us/req")
    dp = results["deferred_pipelined"]
    if "ratio" in dp:
        log(f"answers 20 ms later, 64 connections: {fmt_rate(dp['sequential']['requests_per_s'])}"
            f" req/s one at a time, {fmt_rate(dp['pipelined']['requests_per_s'])} pipelined 16 "
            f"deep ({dp['ratio']:.2f}x)")
    for name in ("percore", "nginx"):
        g = results["gzip"].get(name)
        if g and "cpu_us_per_kib" in g:
            log(f"gzip of a {PAGE_KIB} KiB text file: {name} {g['cpu_us_per_kib']:.2f} us CPU per "
                f"KiB (CPU {fmt_cpu(g['identity']['cpu_us_per_request'])} us/req as it is, "
                f"{fmt_cpu(g['gzip']['cpu_us_per_request'])} gzipped to "
                f"{g['gzip']['body_bytes']:,} bytes)")
    ws_summary(results)
    tls_summary(results)
    h2_summary(results)
    two = results["two_loops"]
    if two.get("shares"):
        log("2 loops on 2 CPUs, 200 connections: " + ", ".join(
            f"loop {k} {v * 100:.1f}%" for k, v in sorted(two["shares"].items()))
            + f" of {sum(two['counts'].values()):,} requests ({fmt_rate(two['requests_per_s'])}"
            f" req/s, CPU {fmt_cpu(two['cpu_us_per_request'])} us/req); loop CPU time "
            + ", ".join(f"{k}: {v:.2f} s" for k, v in sorted(two["loop_cpu_s"].items()))
            + "; connections per loop (sample of 200): "
            + ", ".join(f"{k}: {v}" for k, v in sorted(two["connections_per_loop_sample"].items())))
    if results.get("micro"):
        log()
        log(table([[name, "", f"{m['cpu_ns']:.1f}",
                    "-" if m["items_per_second"] is None else f"{m['items_per_second']:,.0f}"]
                   for name, m in results["micro"].items()],
                  ["micro-benchmark", "", "CPU ns", "items/s"]))

    if interrupted:
        log("\nINTERRUPTED: bench/results/latest.* left as they were")
        log(f"  (server logs kept in {tmp})")
        return 130

    results["targets"] = [{"target": t, "goal": g, "measured": m,
                           "met": None if ok is None else bool(ok)}
                          for goal, (t, g, m, ok) in zip(TARGETS, targets(results))
                          if not args.only or ok is not None
                          or goal["check"] in SECTIONS[args.only]]
    results["floor"] = {
        f"{key}_cpu_us_per_request": results["modes"].get(key, {}).get("raw", {})
        .get("cpu_us_per_request") for key in ("keepalive", "pipelined")}
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / (f"only-{args.only}.json" if args.only else "latest.json")
    png_path = RESULTS / "latest.png"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    chart = False
    try:
        chart = not args.only and write_chart(results, png_path, tmp)
    except Exception as e:
        log(f"chart failed: {e}")
    log()
    log(f"wrote {json_path.relative_to(ROOT)}" + (f" and {png_path.relative_to(ROOT)}"
                                                   if chart else " (no chart)"))
    log()
    log("== targets (reported, never asserted)")
    log(table([[t["target"], t["goal"], t["measured"],
                "n/a" if t["met"] is None else ("met" if t["met"] else "NOT MET")]
               for t in results["targets"]], ["target", "goal", "measured", "result"], left=4))
    floor = results["floor"]
    log(f"kernel floor on this machine today (bench/raw_responder, same run): "
        f"{fmt_cpu(floor['keepalive_cpu_us_per_request'])} us CPU/request keep-alive, "
        f"{fmt_cpu(floor['pipelined_cpu_us_per_request'])} us pipelined 16 deep")
    log()
    if failures:
        log(f"FAILED ({len(failures)}): the run is not valid")
        for f in failures:
            log(f"  - {f.splitlines()[0]}")
        log(f"  (server logs kept in {tmp})")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"OK: no socket errors, no non-2xx responses, no server died ({results['elapsed_s']} s)")
    return 0
