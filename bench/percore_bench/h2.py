"""The HTTP/2 section of scripts/bench: hello_cores (one loop) beside nginx (one worker, its
http_v2 module), both on the server CPU, answering GET / with "Hello World!" to h2load (Debian's
nghttp2-client) on the client CPU: CONNECTIONS connections with STREAMS streams in flight on
each, for the mode's duration, in two modes:
  * "tls": over TLS, ALPN h2 only (h2load --npn-list h2), with the TLS section's certificate,
    ciphers and groups (bench/percore_bench/tls.py);
  * "h2c": cleartext with prior knowledge (h2load's default for an http:// URI, which it names
    h2c; nginx's `listen ... http2` without ssl).
Measured: the server's CPU per request (utime+stime of its processes over the h2load run and
0.3 s after, over the requests h2load completed), the median of ROUNDS rounds alternated between
the servers, percore / nginx. Each server's answer is checked first (curl over HTTP/2: 200
"Hello World!"). Fails the run on a wrong answer, an h2load error, a failed, errored or timed-out
request, a non-2xx answer or a protocol other than h2 (h2c); never on speed.
Records into results["h2"]."""

import re
import shlex
import subprocess

from .processes import Failure, log
from .report import fmt_cpu, fmt_lat, fmt_rate, fmt_ratio, ratio
from .servers import Nginx, Percore, free_port
from .tls import GROUPS, NGINX_TLS_CONF, client, intermediate_ciphers, make_certificate, timed

CONNECTIONS = 8
STREAMS = 100  # h2load -m: streams in flight per connection (nginx allows 128 by default)
ROUNDS = 5  # of each CPU measurement (1 with --quick); the median counts
MODES = [
    # key, title (as in the targets), URI scheme
    dict(key="tls", title=f"HTTP/2 over TLS, {CONNECTIONS} connections x {STREAMS} streams",
         scheme="https"),
    dict(key="h2c", title=f"HTTP/2 cleartext (prior knowledge), {CONNECTIONS} connections x "
         f"{STREAMS} streams", scheme="http"),
]

# The TLS section's nginx, its listener speaking HTTP/2 (ALPN offers h2 and http/1.1), with a
# second server block on {h2c_port}: HTTP/2 without TLS, prior knowledge only.
NGINX_H2C_SERVER = """\
  server {{
    listen 127.0.0.1:{h2c_port} http2 reuseport;
    location / {{
      default_type text/plain;
      return 200 "Hello World!";
    }}
  }}
}}
"""


def nginx_h2_conf():
    """NGINX_TLS_CONF with `http2` on its listener and the h2c server block added, so that the
    TLS settings cannot drift from the TLS section's."""
    tls_listen = " ssl reuseport;"
    if NGINX_TLS_CONF.count(tls_listen) != 1 or not NGINX_TLS_CONF.endswith("}}\n"):
        raise Failure("bench/percore_bench/tls.py's NGINX_TLS_CONF changed shape: "
                      "update nginx_h2_conf() in h2.py")
    conf = NGINX_TLS_CONF.replace(tls_listen, " ssl http2 reuseport;")
    return conf[:-len("}}\n")] + NGINX_H2C_SERVER


def h2load_version():
    try:
        p = subprocess.run(["h2load", "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return (p.stdout or p.stderr).strip()


def parse_h2load(text):
    """What h2load printed: requests, their outcome and status classes, the protocol, the
    request time."""
    m = re.search(r"^finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text, re.M)
    m2 = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) "
                   r"failed, (\d+) errored, (\d+) timeout", text, re.M)
    m3 = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (m and m2 and m3):
        raise Failure("could not parse h2load's output:\n" + text[-3000:])
    r = {"duration_s": float(m.group(1)) / (1000 if m.group(2) == "ms" else 1),
         "requests_per_s": float(m.group(3))}
    r.update(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
                 (int(x) for x in m2.groups())))
    r["status"] = dict(zip(("2xx", "3xx", "4xx", "5xx"), (int(x) for x in m3.groups())))
    r["non_2xx"] = sum(r["status"].values()) - r["status"]["2xx"]
    protocols = re.findall(r"^Application protocol: (\S+)", text, re.M)
    r["protocol"] = protocols[0] if protocols and len(set(protocols)) == 1 else (
        ",".join(sorted(set(protocols))) or None)
    m = re.search(r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)",
                  text, re.M)
    if m:
        scale = {"us": 1.0, "ms": 1e3, "s": 1e6}
        r["request_time_us"] = {k: float(m.group(i)) * scale[m.group(i + 1)]
                                for k, i in (("min", 1), ("max", 3), ("mean", 5))}
    m = re.search(r"^traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data",
                  text, re.M)
    if m and r["done"]:  # what one answer weighs on the wire (frames, HPACK'd fields, body)
        r["bytes_per_response"] = {k: int(m.group(i)) / r["done"]
                                   for k, i in (("total", 1), ("headers", 2), ("data", 3))}
    return r


def errors_of(r, protocol):
    """Why an h2load run is not valid (never its speed); `protocol`: the one it should have
    spoken ("h2" over TLS, "h2c" without)."""
    problems = []
    if r["protocol"] != protocol:
        said = r["protocol"] or "none (h2load printed no 'Application protocol')"
        problems.append(f"the protocol was {said}, not {protocol}")
    for key in ("failed", "errored", "timeout"):
        if r[key]:
            problems.append(f"{r[key]:,} requests {key}")
    if r["non_2xx"]:
        problems.append(f"{r['non_2xx']:,} non-2xx responses ("
                        + ", ".join(f"{v:,} {k}" for k, v in r["status"].items() if v) + ")")
    if r["succeeded"] == 0:
        problems.append("no requests completed")
    return problems


def syscalls(pids):
    """[read-like, write-like] system calls made so far by `pids` (syscr and syscw of
    /proc/PID/io; io_uring's operations are not system calls and do not count), or None where
    /proc/PID/io cannot be read (another user's process, for a bench not run as root)."""
    total = [0, 0]
    try:
        for pid in pids:
            with open(f"/proc/{pid}/io") as f:
                fields = dict(line.split(":", 1) for line in f)
            total[0] += int(fields["syscr"])
            total[1] += int(fields["syscw"])
    except (OSError, KeyError, ValueError):
        return None
    return total


def h2load_command(ctx, port, scheme, seconds):
    cmd = client(ctx) + ["h2load", "-t1", f"-c{CONNECTIONS}", f"-m{STREAMS}", f"-D{seconds}"]
    if scheme == "https":
        cmd += ["--npn-list", "h2"]  # h2 or nothing: never a quiet fallback to HTTP/1.1
    return cmd + [f"{scheme}://127.0.0.1:{port}/"]


def check_answer(ctx, port, scheme):
    """One GET / with curl over HTTP/2 (ALPN h2, or prior knowledge): it must be 200 "Hello
    World!" (h2load counts statuses but reads no body)."""
    how = ["--http2", "-k"] if scheme == "https" else ["--http2-prior-knowledge"]
    cmd = client(ctx) + ["curl", "-sS", "--max-time", "10", *how, "-w",
                         "\\n%{http_code} %{http_version}",  # curl writes \n as a newline
                         f"{scheme}://127.0.0.1:{port}/"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    body, _, last = p.stdout.rpartition("\n")
    if p.returncode != 0 or last != "200 2" or body != "Hello World!":
        raise Failure(f"GET / over HTTP/2 answered {last or '(nothing)'} {body[:200]!r} "
                      f"{p.stderr.strip()[:300]} ({shlex.join(cmd)})")


def run_h2load(ctx, server, port, scheme, seconds):
    """One h2load run against `server` (listening on `port`): its figures, the server's CPU per
    request; a Failure if h2load failed or any request did."""
    cmd = h2load_command(ctx, port, scheme, seconds)
    calls = syscalls(server.pids())
    out, cpu_s, wall = timed(server, cmd, seconds + 60)
    calls = [b - a for a, b in zip(calls, syscalls(server.pids()))] if calls else None
    r = parse_h2load(out)
    problems = errors_of(r, "h2" if scheme == "https" else "h2c")
    if problems:
        lines = [line for line in out.splitlines() if line.strip() and not re.match(
            r"(starting benchmark|spawning thread|Warm-up|progress: |Main benchmark)", line)][:12]
        raise Failure("; ".join(problems) + f" ({shlex.join(cmd)}); h2load said:\n    "
                      + "\n    ".join(lines))
    r.update(server_cpu_s=cpu_s, server_cpu_share=cpu_s / wall, command=shlex.join(cmd),
             cpu_us_per_request=cpu_s * 1e6 / r["succeeded"])
    if calls:
        r["syscalls_per_request"] = {"reads": calls[0] / r["succeeded"],
                                     "writes": calls[1] / r["succeeded"]}
    return r


def h2_section(ctx):
    entry = ctx.results.setdefault("h2", {})
    rounds = 1 if ctx.quick else ROUNDS
    log(f"== HTTP/2: percore (one loop) and nginx (one worker), GET /, h2load {CONNECTIONS} "
        f"connections x {STREAMS} streams, over TLS (ALPN h2) and cleartext (prior knowledge); "
        f"{ctx.duration} s each, {rounds} round(s), alternated")
    tmp = ctx.tmp / "h2"
    tmp.mkdir(parents=True)
    tmp.chmod(0o755)
    cert, key, cert_cmd = make_certificate(tmp)
    ciphers = intermediate_ciphers()
    entry.update(certificate=cert_cmd, ciphers=ciphers, groups=GROUPS, connections=CONNECTIONS,
                 streams=STREAMS, h2load=h2load_version())
    cpu = str(ctx.server_cpu) if ctx.server_cpu is not None else None
    ports = {}  # (server name, mode key) -> (the Server whose CPU counts, its port)
    started = []
    try:
        for mode, extra in (("tls", ["--tls_cert", str(cert), "--tls_key", str(key)]),
                            ("h2c", [])):
            p = Percore(ctx.children, ctx.hello, ctx.tmp, cpu, ctx.backend, ctx.pin_server,
                        label=f"percore-h2-{mode}", tls=mode == "tls", extra_args=extra)
            started.append(p)
            ports["percore", mode] = (p, p.port)
        h2c_port = free_port()  # nginx's own {port}, the TLS one, is chosen by Nginx
        nginx = Nginx(ctx.children, tmp, [ctx.server_cpu] if cpu else [], ctx.pin_server,
                      conf=nginx_h2_conf(), tls=True, cert=cert, key=key, ciphers=ciphers,
                      groups=GROUPS, files=tmp, h2c_port=h2c_port)
        started.append(nginx)
        ports["nginx", "tls"] = (nginx, nginx.port)
        ports["nginx", "h2c"] = (nginx, h2c_port)
    except Failure as e:
        ctx.fail(f"HTTP/2: {e}")
        for server in started:
            ctx.children.stop(server.proc)
        return
    entry["commands"] = {"percore_tls": shlex.join(started[0].cmd),
                         "percore_h2c": shlex.join(started[1].cmd),
                         "nginx": shlex.join(nginx.cmd), "nginx_conf": nginx.conf.read_text()}
    names = ("percore", "nginx")

    for mode in MODES:
        key, scheme = mode["key"], mode["scheme"]
        log(f"  {mode['title']} ({ctx.duration} s each)")
        warm = {}
        for name in names:  # the answer checked, a warm-up, and h2 spoken at all
            server, port = ports[name, key]
            try:
                check_answer(ctx, port, scheme)
                run_h2load(ctx, server, port, scheme, 1)
                warm[name] = True
            except Failure as e:
                ctx.fail(f"HTTP/2 {key}, {name} (answer check, warm-up): {e}")
        runs = {name: [] for name in names}
        for round_ in range(rounds):
            # The other server first every other round, so a drift in the machine's speed
            # falls on both.
            for name in names if round_ % 2 == 0 else names[::-1]:
                if name not in warm:
                    continue  # it does not speak HTTP/2 here: said once, not every round
                server, port = ports[name, key]
                try:
                    r = run_h2load(ctx, server, port, scheme, ctx.duration)
                except Failure as e:
                    ctx.fail(f"HTTP/2 {key}, {name}: {e}")
                    continue
                runs[name].append(r)
                size = r.get("bytes_per_response", {}).get("total")
                writes = r.get("syscalls_per_request", {}).get("writes")
                log(f"  {name:8} {fmt_rate(r['requests_per_s']):>10} req/s  "
                    f"CPU {fmt_cpu(r['cpu_us_per_request'])} us/req  "
                    f"mean {fmt_lat(r.get('request_time_us', {}).get('mean'))}  "
                    f"{'-' if size is None else f'{size:.0f}'} B/answer  "
                    f"{'-' if writes is None else f'{writes:.2f}'} write syscalls/req  "
                    f"({r['command']})")
        results = entry.setdefault(key, {"title": mode["title"]})
        for name, rs in runs.items():
            if rs:
                results[name] = dict(sorted(rs, key=lambda r: r["cpu_us_per_request"])
                                     [len(rs) // 2], rounds=[r["cpu_us_per_request"] for r in rs])
        if "percore" in results and "nginx" in results:
            results["ratio"] = ratio(results["percore"]["cpu_us_per_request"],
                                     results["nginx"]["cpu_us_per_request"])

    for server in started:
        try:
            server.stop()
        except Failure as e:
            ctx.fail(f"HTTP/2: {e}")


def log_summary(results):
    """The HTTP/2 lines of the final report: CPU per request of each, and the ratio."""
    h2 = results.get("h2", {})
    for mode in MODES:
        e = h2.get(mode["key"], {})
        if not e.get("percore") and not e.get("nginx"):
            continue
        parts = [f"{name} {e[name]['cpu_us_per_request']:.2f} us CPU/request, "
                 f"{fmt_rate(e[name]['requests_per_s'])} req/s"
                 for name in ("percore", "nginx") if e.get(name)]
        log(f"{mode['title']}: " + "; ".join(parts) + f"; ratio {fmt_ratio(e.get('ratio'))}")
