"""scripts/bench --compare OTHER: this build's hello_cores against another binary (an older
commit's, say) on GET / keep-alive and pipelined 16 deep, alternated round by round in one run so
that both meet the same machine state. What a change to the request path costs, without nginx's
own noise in the ratio. Keep-alive is mostly the kernel's time; pipelined, mostly percore's."""

import shlex
import statistics

from .load import MODES, errors_of, measure, run_wrk, wrk_command
from .processes import Failure, log
from .servers import Percore


# The modes alternated: load.MODES's keep-alive and pipelined ones.
COMPARED = [m for m in MODES if m["key"] in ("keepalive", "pipelined")]


def compare(children, tmp, binaries, rounds, duration, warmup, server_cpu, client_cpu,
            pin_server, backend):
    """Runs `rounds` rounds; in each, every binary in `binaries` ({label: path}) serves 64
    connections for `duration` s in each of COMPARED's modes. Returns {mode: {label: [cpu_us_per_request]}}."""
    cpus = str(server_cpu) if server_cpu is not None else None
    results = {m["title"]: {label: [] for label in binaries} for m in COMPARED}
    for round_ in range(1, rounds + 1):
        for m in COMPARED:
            mode, script, n = m["title"], m["script"], m["connections"]
            for label, binary in binaries.items():
                server = Percore(children, binary, tmp, cpus, backend, pin_server, label=label)
                try:
                    run_wrk(wrk_command(server.port, n, 1, warmup, client_cpu, script), warmup, n)
                    r = measure(server,
                                wrk_command(server.port, n, 1, duration, client_cpu, script),
                                duration, n)
                finally:
                    server.stop()
                problems = errors_of(r)
                if problems:
                    raise Failure(f"{label}: {'; '.join(problems)} ({r['command']})")
                results[mode][label].append(r["cpu_us_per_request"])
                log(f"  round {round_} {mode[:17]:>17} {label:>6}: {r['requests_per_s']:>10,.0f} "
                    f"req/s, {r['cpu_us_per_request']:.2f} us CPU/request  "
                    f"({shlex.join(server.cmd)})")
    return results


def report(results):
    for mode, per_label in results.items():
        labels = list(per_label)
        log(f"== GET / {mode}: server CPU per request (us), alternated rounds")
        for label in labels:
            values = per_label[label]
            log(f"  {label:>8}: mean {statistics.mean(values):.2f}, median "
                f"{statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}")
        if len(labels) == 2:
            a, b = (statistics.median(per_label[label]) for label in labels)
            log(f"  {labels[0]} / {labels[1]} (medians): {a / b:.3f}")
