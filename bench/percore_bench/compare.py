"""scripts/bench --compare OTHER: this build's hello_cores against another binary (an older
commit's, say) on GET / keep-alive, alternated round by round in one run so that both meet the
same machine state. What a change to the request path costs, without nginx's own noise in the
ratio."""

import shlex
import statistics

from .load import errors_of, measure, run_wrk, wrk_command
from .processes import Failure, log
from .servers import Percore


def compare(children, tmp, binaries, rounds, duration, warmup, server_cpu, client_cpu,
            pin_server, backend):
    """Runs `rounds` rounds; in each, every binary in `binaries` ({label: path}) serves 64
    keep-alive connections for `duration` s. Returns {label: [cpu_us_per_request, ...]}."""
    cpus = str(server_cpu) if server_cpu is not None else None
    per_label = {label: [] for label in binaries}
    for round_ in range(1, rounds + 1):
        for label, binary in binaries.items():
            server = Percore(children, binary, tmp, cpus, backend, pin_server, label=label)
            try:
                run_wrk(wrk_command(server.port, 64, 1, warmup, client_cpu), warmup, 64)
                r = measure(server, wrk_command(server.port, 64, 1, duration, client_cpu),
                            duration, 64)
            finally:
                server.stop()
            problems = errors_of(r)
            if problems:
                raise Failure(f"{label}: {'; '.join(problems)} ({r['command']})")
            per_label[label].append(r["cpu_us_per_request"])
            log(f"  round {round_} {label:>8}: {r['requests_per_s']:>10,.0f} req/s, "
                f"{r['cpu_us_per_request']:.2f} us CPU/request  ({shlex.join(server.cmd)})")
    return per_label


def report(per_label):
    labels = list(per_label)
    log("== GET / keep-alive, server CPU per request (us), alternated rounds")
    for label in labels:
        values = per_label[label]
        log(f"  {label:>8}: mean {statistics.mean(values):.2f}, median "
            f"{statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}")
    if len(labels) == 2:
        a, b = (statistics.median(per_label[label]) for label in labels)
        log(f"  {labels[0]} / {labels[1]} (medians): {a / b:.3f}")
