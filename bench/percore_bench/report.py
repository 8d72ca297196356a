"""What scripts/bench reports: number formats, tables, the chart (gnuplot) and the targets, whose
goals and thresholds are in bench/targets.json."""

import json
import shutil
import subprocess
from pathlib import Path

from .load import MODES
from .processes import log

TARGETS_FILE = Path(__file__).resolve().parent.parent / "targets.json"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def fmt_rate(x):
    return "-" if x is None else f"{x:,.0f}"


def fmt_lat(us):
    if us is None:
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} us"


def fmt_cpu(us):
    return "-" if us is None else f"{us:.2f}"


def table(rows, header, left=2):
    """Columns before `left` are left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate([header] + rows):
        cells = [str(c).ljust(widths[i]) if i < left else str(c).rjust(widths[i])
                 for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_chart(results, path, tmp):
    modes = [m for m in MODES if m["key"] in results["modes"]]
    if not modes or not shutil.which("gnuplot"):
        return False
    data = tmp / "chart.dat"
    with open(data, "w") as f:
        for m in modes:
            r = results["modes"][m["key"]]
            vals = [r.get(s, {}).get(k) for k in ("requests_per_s", "cpu_us_per_request")
                    for s in ("percore", "nginx", "raw")]
            f.write(" ".join(str(0 if v is None else v) for v in vals) + "\n")

    def xtics(kind):
        labels = []
        for i, m in enumerate(modes):
            x = results["modes"][m["key"]].get("ratio", {}).get(kind)
            label = f'{m["short"]}\\n{fmt_ratio(x)} nginx'
            if kind == "cpu_us_per_request":
                floor = results["modes"][m["key"]].get("vs_floor", {}).get(kind)
                label += f'\\n{fmt_ratio(floor)} floor'
            labels.append(f'"{label}" {i}')
        return "set xtics (" + ", ".join(labels) + ")"

    subtitle = (f"{results['commit'][:10]}{' (dirty)' if results['dirty'] else ''}, "
                f"{results['date']}, {results['pinning']['summary']}")
    script = f"""
set terminal pngcairo size 1400,560 font "sans,10"
set output "{path}"
set multiplot layout 1,2 title "percore vs nginx (raw responder: the kernel's floor)\\n{subtitle}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set xrange [-0.6:{len(modes) - 0.4}]
set bmargin 5
set xtics nomirror
set title "Requests per second (higher is better)"
set format y "%.1s%c"  # 1.2M, 200.0k: whole numbers would print 1.2M and 1.4M as 1M
{xtics("requests_per_s")}
plot "{data}" using 1 title "percore" lc rgb "#1f77b4", \\
     "" using 2 title "nginx" lc rgb "#2ca02c", "" using 3 title "raw (floor)" lc rgb "#999999"
set title "Server CPU time per request, microseconds (lower is better)"
set format y "%g"
{xtics("cpu_us_per_request")}
plot "{data}" using 4 title "percore" lc rgb "#1f77b4", \\
     "" using 5 title "nginx" lc rgb "#2ca02c", "" using 6 title "raw (floor)" lc rgb "#999999"
unset multiplot
"""
    gp = tmp / "chart.gp"
    gp.write_text(script)
    p = subprocess.run(["gnuplot", str(gp)], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        log(f"gnuplot failed: {p.stderr.strip()}")
        return False
    return True




# ---------------------------------------------------------------------------------------------
# Targets: each entry of bench/targets.json names one of the checks below, which reads the
# results and the entry's thresholds and returns (measured, met), met None when not measured.


def check_vs_nginx(results, t):
    """requests/s and server CPU per request (or connection), both as ratios to nginx."""
    ratios = results["modes"].get(t["mode"], {}).get("ratio", {})
    rps, cpu = ratios.get("requests_per_s"), ratios.get("cpu_us_per_request")
    per = t["per"]
    return (f"{fmt_ratio(rps)} {per}s/s, {fmt_ratio(cpu)} CPU/{per}",
            None if rps is None or cpu is None else (rps >= t["min_requests_ratio"] and
                                                     cpu <= t["max_cpu_ratio"]))


def check_vs_nginx_and_cpu(results, t):
    """requests/s as a ratio to nginx, and percore's own server CPU per request."""
    mode = results["modes"].get(t["mode"], {})
    rps = mode.get("ratio", {}).get("requests_per_s")
    cpu_abs = mode.get("percore", {}).get("cpu_us_per_request")
    return (f"{fmt_ratio(rps)} requests/s, {fmt_cpu(cpu_abs)} us CPU/request",
            None if rps is None or cpu_abs is None else (rps >= t["min_requests_ratio"] and
                                                         cpu_abs <= t["max_cpu_us_per_request"]))


def check_idle_memory(results, t):
    mem = results.get("idle_memory", {}).get("percore", {})
    kib = mem.get("kib_per_connection")
    n = mem.get("connections")
    return ("-" if kib is None else f"{kib:.3f} KiB/connection ({n:,} held, "
            f"{fmt_ratio(results['idle_memory'].get('ratio'))} nginx)",
            None if kib is None else kib <= t["max_kib_per_connection"])


def check_deferred(results, t):
    d = results.get("deferred", {}).get("percore", {})
    node = results.get("deferred", {}).get("node", {})
    rps, p99 = d.get("requests_per_s"), d.get("p99_us")
    return ("-" if rps is None else
            f"{fmt_rate(rps)} req/s, p99 {fmt_lat(p99)} (Node: "
            f"{fmt_rate(node.get('requests_per_s'))} req/s, p99 {fmt_lat(node.get('p99_us'))})",
            None if rps is None or p99 is None else (rps >= t["min_requests_per_s"] and
                                                     p99 <= t["max_p99_us"]))


def check_slow_readers(results, t):
    slow = results.get("slow_readers", {})
    growth, kept = slow.get("growth_kib_per_connection"), slow.get("kept_after_kib")
    return ("-" if growth is None else
            f"{growth / 1024:.2f} MiB per connection, {kept / 1024:+.1f} MiB kept after",
            None if growth is None else (growth <= t["max_growth_kib_per_connection"] and
                                         kept <= t["max_kept_after_kib"]))


def check_loop_shares(results, t):
    share = results.get("two_loops", {})
    shares = share.get("shares")
    return (share.get("skipped") or ("-" if not shares else
                                     ", ".join(f"loop {k}: {v * 100:.1f}%"
                                               for k, v in sorted(shares.items()))),
            None if not shares else (len(shares) == t["loops"] and
                                     all(t["min_share"] <= v <= t["max_share"]
                                         for v in shares.values())))


def check_gzip(results, t):
    gz = results.get("gzip", {})
    mine, ratio_ = gz.get("percore", {}).get("cpu_us_per_kib"), gz.get("ratio")
    return ("-" if mine is None else f"{mine:.2f} us CPU/KiB ({fmt_ratio(ratio_)} nginx)",
            None if ratio_ is None else ratio_ <= t["max_cpu_ratio"])


def check_ws_echo(results, t):
    """Server CPU per echoed WebSocket message, as a ratio to Node's ws."""
    echo = results.get("websocket", {}).get("echo", {})
    mine = echo.get("percore", {}).get("cpu_us_per_message")
    node = echo.get("node", {}).get("cpu_us_per_message")
    cpu = echo.get("ratio", {}).get("cpu_us_per_message")
    return ("-" if mine is None else
            f"{fmt_ratio(cpu)} CPU/message ({fmt_cpu(mine)} us vs Node ws {fmt_cpu(node)} us)",
            None if cpu is None else cpu <= t["max_cpu_ratio"])


def check_ws_fanout(results, t):
    """The time from a publish to its last receipt, over every subscriber on every loop."""
    fan = results.get("websocket", {}).get("fanout", {})
    p99 = fan.get("p99_us") if fan.get("rounds") else None
    return ("-" if p99 is None else
            f"p99 {fmt_lat(p99)} (p50 {fmt_lat(fan.get('p50_us'))}; {fan.get('loops')} loops, "
            f"{fan.get('receivers'):,} receivers)",
            None if p99 is None else p99 < t["p99_below_us"])


def check_tls(results, t, section="tls"):
    """One TLS figure (t["key"] of results[section], its t["field"]) as a ratio to nginx's."""
    e = results.get(section, {}).get(t["key"], {})
    mine, theirs, r = (e.get("percore", {}).get(t["field"]),
                       e.get("nginx", {}).get(t["field"]), e.get("ratio"))
    return ("-" if mine is None else f"{fmt_ratio(r)} nginx ({mine:.2f} vs {fmt_cpu(theirs)} "
            f"{t['unit']})", None if r is None else r <= t["max_ratio"])


def check_h2(results, t):
    """One HTTP/2 figure (t["key"] of results["h2"]: "tls" or "h2c", its t["field"]) as a ratio
    to nginx's."""
    return check_tls(results, t, section="h2")


def check_tls_idle_memory(results, t):
    e = results.get("tls", {}).get("idle_memory", {})
    kib, n = e.get("percore", {}).get("kib_per_connection"), e.get("percore", {}).get("connections")
    nginx = e.get("nginx", {}).get("kib_per_connection")
    return ("-" if kib is None else f"{kib:.2f} KiB/connection ({n:,} held; nginx "
            f"{fmt_cpu(nginx)} KiB, {fmt_ratio(e.get('ratio'))})",
            None if kib is None else kib <= t["max_kib_per_connection"])


CHECKS = {
    "vs_nginx": check_vs_nginx,
    "vs_nginx_and_cpu": check_vs_nginx_and_cpu,
    "idle_memory": check_idle_memory,
    "deferred": check_deferred,
    "slow_readers": check_slow_readers,
    "loop_shares": check_loop_shares,
    "gzip": check_gzip,
    "ws_echo": check_ws_echo,
    "ws_fanout": check_ws_fanout,
    "tls": check_tls,
    "tls_idle_memory": check_tls_idle_memory,
    "h2": check_h2,
}


def load_targets(path=TARGETS_FILE):
    """The targets of `path`, checked here so that a bad file fails before the run, not after."""
    goals = json.loads(path.read_text())["targets"]
    for t in goals:
        if t.get("check") not in CHECKS:
            raise ValueError(f"{path}: target {t.get('name')!r} has an unknown check "
                             f"{t.get('check')!r} (known: {', '.join(CHECKS)})")
    return goals


TARGETS = load_targets()


def targets(results, goals=TARGETS):
    """(target, goal, measured, met) for each target of bench/targets.json, in its order."""
    return [(t["name"], t["goal"]) + CHECKS[t["check"]](results, t) for t in goals]
