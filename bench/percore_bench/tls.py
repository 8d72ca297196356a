"""The TLS section of scripts/bench (issue #26): hello_cores with --tls_cert/--tls_key (one loop)
beside nginx (one worker), both on the server CPU with the same self-signed ECDSA P-256
certificate made for the run, TLS 1.2 and 1.3, the same TLS 1.2 ciphers (percore's
kIntermediateCiphers, read from core/include/percore/tls.h), the same key-exchange groups,
session tickets on and no session cache on either. Measured against each, one after the other:
  * resident memory per idle TLS keep-alive connection (conn_holder --tls: a handshake and one
    GET / each, then held), on the fresh servers;
  * keep-alive GET / over TLS, 64 connections (wrk https://): server CPU per request;
  * new connections per second, full handshakes and resumed ones (bench/tls_handshakes: a
    handshake, GET / with Connection: close, the answer read to the server's close, 8 clients at
    once; resumed ones offer the ticket the client's last connection got): server CPU per
    connection;
  * a 1 GiB download (GET /files/big.bin, curl on the client CPU): server CPU per GiB.
Each CPU figure is the median of ROUNDS runs alternated between the servers.
Records into results["tls"]."""

import json
import re
import shlex
import subprocess
import time

from .load import errors_of, idle_memory, measure, run_wrk, wrk_command
from .processes import CLK_TCK, ROOT, Failure, cpu_ticks, log
from .report import fmt_cpu, fmt_rate, fmt_ratio, ratio
from .servers import NGINX_HEAD, Nginx, Percore
from .sections import log_measured

GROUPS = "X25519:prime256v1:secp384r1"  # percore's "X25519:P-256:P-384", in nginx's names
HANDSHAKE_CONCURRENCY = 8
ROUNDS = 5  # of each CPU measurement (1 with --quick); the median counts

NGINX_TLS_CONF = NGINX_HEAD + """\
  server {{
    listen 127.0.0.1:{port} ssl reuseport;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {ciphers};
    ssl_prefer_server_ciphers on;  # as percore (SSL_OP_CIPHER_SERVER_PREFERENCE)
    ssl_ecdh_curve {groups};
    # As percore: resumption by tickets only (its SSL_CTX has SSL_SESS_CACHE_OFF).
    ssl_session_tickets on;
    ssl_session_cache off;
    location / {{
      default_type text/plain;
      return 200 "Hello World!";
    }}
    location /files/ {{
      alias {files}/;
    }}
  }}
}}
"""


def intermediate_ciphers():
    """kIntermediateCiphers of core/include/percore/tls.h, so that nginx's list cannot drift."""
    text = (ROOT / "core/include/percore/tls.h").read_text()
    m = re.search(r"kIntermediateCiphers\s*=\s*((?:\s*\"[^\"]*\")+)\s*;", text)
    if not m:
        raise Failure("kIntermediateCiphers not found in core/include/percore/tls.h")
    return "".join(re.findall(r"\"([^\"]*)\"", m.group(1)))


def make_certificate(dir_):
    """One self-signed ECDSA P-256 certificate for localhost, made with the openssl CLI."""
    cert, key = dir_ / "cert.pem", dir_ / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
           "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise Failure(f"{shlex.join(cmd)} failed: {p.stderr.strip()}")
    for path in (cert, key):
        path.chmod(0o644)  # hello_cores and nginx's master read them; a bench-only key
    return cert, key, shlex.join(cmd)


def client(ctx):
    return ["taskset", "-c", str(ctx.client_cpu)] if ctx.client_cpu is not None else []


def timed(server, cmd, timeout):
    """Runs `cmd` (the client) and returns (its stdout, the server's CPU seconds, wall time)."""
    server.check_alive()
    before, t0 = cpu_ticks(server.pids()), time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"did not finish in {timeout} s: {shlex.join(cmd)}")
    time.sleep(0.3)  # the server's closing of the connections counts too
    after, wall = cpu_ticks(server.pids()), time.monotonic() - t0
    server.check_alive()
    if p.returncode != 0:
        raise Failure(f"{shlex.join(cmd)} exited with {p.returncode}: "
                      f"{(p.stderr or p.stdout).strip()[-1000:]}")
    return p.stdout, (after - before) / CLK_TCK, wall


def handshakes(ctx, tool, server, mode, seconds):
    cmd = client(ctx) + [str(tool), "--port", str(server.port), "--mode", mode,
                         "--concurrency", str(HANDSHAKE_CONCURRENCY), "--duration", str(seconds)]
    out, cpu_s, wall = timed(server, cmd, seconds + 60)
    r = json.loads(out.strip().splitlines()[-1])
    r.update(server_cpu_s=cpu_s, server_cpu_share=cpu_s / wall, command=shlex.join(cmd),
             cpu_us_per_connection=cpu_s * 1e6 / r["connections"] if r["connections"] else None)
    return r


def download(ctx, server, size):
    cmd = client(ctx) + ["curl", "-k", "-sS", "-o", "/dev/null", "-w",
                         "%{http_code} %{size_download} %{time_total}",
                         f"https://127.0.0.1:{server.port}/files/big.bin"]
    out, cpu_s, _ = timed(server, cmd, 300)
    status, got, seconds = out.split()
    if status != "200" or int(got) != size:
        raise Failure(f"GET /files/big.bin: status {status}, {got} of {size} bytes")
    gib = size / 2**30
    return {"bytes": size, "seconds": float(seconds), "mb_per_s": size / 1e6 / float(seconds),
            "server_cpu_s": cpu_s, "cpu_s_per_gib": cpu_s / gib, "command": shlex.join(cmd)}


def tls_section(ctx, tls_handshakes):
    entry = ctx.results.setdefault("tls", {})
    idle = 500 if ctx.quick else 2000
    seconds = 1 if ctx.quick else ctx.duration
    size = (256 if ctx.quick else 1024) * 2**20
    log(f"== TLS: percore (one loop) and nginx (one worker), the same ECDSA P-256 certificate; "
        f"idle memory ({idle:,} connections), keep-alive ({ctx.duration} s), full and resumed "
        f"handshakes ({seconds} s), a {size >> 20} MiB download; "
        f"{1 if ctx.quick else ROUNDS} round(s) of each, alternated")
    tmp = ctx.tmp / "tls"
    files = tmp / "files"
    files.mkdir(parents=True)
    for d in (tmp, files):
        d.chmod(0o755)  # nginx's workers (nobody) read the file
    cert, key, cert_cmd = make_certificate(tmp)
    # Written, not sparse (a hole is zero-filled again on every read: CPU that is not the
    # server's), then read once so both servers read it from the page cache. Zeros: TLS
    # compresses nothing.
    chunk = bytes(1 << 20)
    with open(files / "big.bin", "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
    buffer = bytearray(1 << 20)
    with open(files / "big.bin", "rb") as f:
        while f.readinto(buffer):
            pass
    (files / "big.bin").chmod(0o644)
    ciphers = intermediate_ciphers()
    entry.update(certificate=cert_cmd, ciphers=ciphers, groups=GROUPS, file_bytes=size,
                 kernel_tls="none: user-space TLS on both (no kTLS on this kernel)"
                 if "tls" not in open("/proc/sys/net/ipv4/tcp_available_ulp").read()
                 else "available to the kernel; neither server configured for it here")
    servers = []
    try:
        cpu = str(ctx.server_cpu) if ctx.server_cpu is not None else None
        servers.append(Percore(ctx.children, ctx.hello, ctx.tmp, cpu, ctx.backend,
                               ctx.pin_server, label="percore-tls", tls=True,
                               extra_args=["--tls_cert", str(cert), "--tls_key", str(key),
                                           "--static", str(files)]))
        servers.append(Nginx(ctx.children, tmp, [ctx.server_cpu] if cpu else [], ctx.pin_server,
                             conf=NGINX_TLS_CONF, tls=True, cert=cert, key=key, ciphers=ciphers,
                             groups=GROUPS, files=files))
    except Failure as e:
        ctx.fail(f"TLS: {e}")
        for server in servers:
            ctx.children.stop(server.proc)
        return
    entry["commands"] = {"percore": shlex.join(servers[0].cmd),
                         "nginx": shlex.join(servers[1].cmd),
                         "nginx_conf": servers[1].conf.read_text()}

    rounds = 1 if ctx.quick else ROUNDS

    def each(key, title, run, field, repeat=True):
        """Runs `run` on each server, `rounds` times alternated (the other server first every
        other round, so a drift in the machine's speed falls on both); keeps each server's
        median round by `field`, with every round's figure under "rounds"."""
        runs = {server.name: [] for server in servers}
        for round_ in range(rounds if repeat else 1):
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                try:
                    runs[server.name].append(run(server))
                except Failure as e:
                    ctx.fail(f"TLS {title}, {server.name}: {e}")
        results = entry.setdefault(key, {})
        for name, rs in runs.items():
            if rs:
                results[name] = dict(sorted(rs, key=lambda r: r[field])[len(rs) // 2],
                                     rounds=[r[field] for r in rs])
        return results

    log(f"  idle TLS keep-alive connections ({idle:,} held)")
    mem = each("idle_memory", "idle memory", lambda s: idle_memory(
        ctx.children, s, ctx.conn_holder, idle, ctx.client_cpu, extra_args=["--tls"]),
        "kib_per_connection", repeat=False)  # on the fresh servers only
    for name, m in mem.items():
        log(f"  {name:8} VmRSS {m['rss_before_kib']:,} -> {m['rss_after_kib']:,} KiB = "
            f"{m['kib_per_connection']:.2f} KiB/connection (opened in {m['open_seconds']} s)")

    for server in servers:  # warm-up
        run_wrk(wrk_command(server.port, 64, 1, 1, ctx.client_cpu, scheme="https"), 1, 64)

    def keepalive(server):
        cmd = wrk_command(server.port, 64, 1, ctx.duration, ctx.client_cpu, scheme="https")
        r = measure(server, cmd, ctx.duration, 64)
        log_measured(server.name, r)
        for problem in errors_of(r):
            ctx.fail(f"TLS keep-alive, {server.name}: {problem}")
        return r

    log(f"  keep-alive GET / over TLS, 64 connections ({ctx.duration} s each)")
    each("keepalive", "keep-alive", keepalive, "cpu_us_per_request")

    for mode in ("full", "resumed"):
        log(f"  new TLS connections, {mode} handshakes, {HANDSHAKE_CONCURRENCY} in flight "
            f"({seconds} s each)")

        def run(server, mode=mode):
            r = handshakes(ctx, tls_handshakes, server, mode, seconds)
            log(f"  {server.name:8} {fmt_rate(r['connections_per_s']):>10} conn/s  "
                f"CPU {fmt_cpu(r['cpu_us_per_connection'])} us/conn  {r['resumed']:,} of "
                f"{r['connections']:,} resumed  {r['version']} {r['cipher']} {r['group']}  "
                f"({r['command']})")
            if mode == "resumed" and r["resumed"] < 0.9 * r["connections"]:
                r["note"] = (f"only {r['resumed']:,} of {r['connections']:,} connections "
                             "resumed: tickets the server gave were refused")
                log(f"    note: {r['note']}")
            return r
        each(f"handshakes_{mode}", f"{mode} handshakes", run, "cpu_us_per_connection")

    log(f"  a {size >> 20} MiB download over TLS (curl)")

    def get_file(server):
        r = download(ctx, server, size)
        log(f"  {server.name:8} {r['mb_per_s']:,.0f} MB/s  CPU {r['cpu_s_per_gib']:.2f} s/GiB  "
            f"({r['command']})")
        return r
    each("download", "download", get_file, "cpu_s_per_gib")

    for server in servers:
        try:
            server.stop()
        except Failure as e:
            ctx.fail(f"TLS: {e}")
    for key, field in (("idle_memory", "kib_per_connection"),
                       ("keepalive", "cpu_us_per_request"),
                       ("handshakes_full", "cpu_us_per_connection"),
                       ("handshakes_resumed", "cpu_us_per_connection"),
                       ("download", "cpu_s_per_gib")):
        e = entry.get(key, {})
        if "percore" in e and "nginx" in e:
            e["ratio"] = ratio(e["percore"][field], e["nginx"][field])


def log_summary(results):
    """The TLS lines of the final report: each figure and its ratio to nginx."""
    t = results.get("tls", {})
    lines = [("idle memory", "idle_memory", "kib_per_connection", "KiB/connection", 2),
             ("keep-alive 64", "keepalive", "cpu_us_per_request", "us CPU/request", 2),
             ("full handshakes", "handshakes_full", "cpu_us_per_connection", "us CPU/conn", 1),
             ("resumed", "handshakes_resumed", "cpu_us_per_connection", "us CPU/conn", 1),
             ("1 GiB download", "download", "cpu_s_per_gib", "s CPU/GiB", 3)]
    for title, key, field, unit, digits in lines:
        e = t.get(key, {})
        if not e.get("percore") and not e.get("nginx"):
            continue
        parts = []
        for name in ("percore", "nginx"):
            r = e.get(name)
            if r:
                rate = (f", {fmt_rate(r['connections_per_s'])} conn/s"
                        f" ({r['resumed']:,}/{r['connections']:,} resumed)"
                        if "connections_per_s" in r else
                        f", {fmt_rate(r['requests_per_s'])} req/s" if "requests_per_s" in r else
                        f", {r['mb_per_s']:,.0f} MB/s" if "mb_per_s" in r else "")
                parts.append(f"{name} {r[field]:.{digits}f} {unit}{rate}")
        log(f"TLS {title}: " + "; ".join(parts) + f"; ratio {fmt_ratio(e.get('ratio'))}")
