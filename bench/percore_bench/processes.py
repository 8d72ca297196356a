"""The processes scripts/bench starts and what it reads of them in /proc: children stopped by pid,
set-up steps, CPU ticks and resident memory."""

import os
import re
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent  # bench/percore_bench/ -> the repository
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Failure(Exception):
    """A problem that makes the run fail (not a slow result)."""


def log(message=""):
    print(message, flush=True)


def run_step(cmd):
    """Runs a set-up step (its own process group, stopped as a whole if we are interrupted);
    returns its stdout, having passed its stderr through."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this step's process leads
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, output=out)
    return out


# ---------------------------------------------------------------------------------------------
# Processes: everything this script starts is tracked here and stopped by pid in `finally`.


class Children:
    def __init__(self):
        self.procs = []  # (Popen, name, stop signal)

    def start(self, name, cmd, stop_signal=signal.SIGTERM, **kwargs):
        proc = subprocess.Popen(cmd, **kwargs)
        self.procs.append((proc, name, stop_signal))
        return proc

    def stop(self, proc, timeout=10.0, extra_pids=()):
        """Stops `proc` (and, if it will not go, the `extra_pids` it started); returns its code."""
        for p, name, sig in self.procs:
            if p is proc:
                break
        else:
            return proc.poll()
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"  {name} (pid {proc.pid}) did not stop in {timeout:.0f} s: killing it")
                proc.kill()
                for pid in extra_pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait(timeout=5)
        self.procs = [t for t in self.procs if t[0] is not proc]
        return proc.returncode

    def stop_all(self):
        for proc, _, _ in list(reversed(self.procs)):
            try:
                self.stop(proc, timeout=5.0)
            except Exception as e:  # keep stopping the others
                log(f"  could not stop pid {proc.pid}: {e}")


def on_terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# /proc readings.


def cpu_ticks(pids):
    """utime + stime (fields 14 and 15 of /proc/PID/stat) summed over `pids`, in clock ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
        total += int(fields[11]) + int(fields[12])
    return total


def loop_ticks(pid):
    """utime + stime of each hello_cores loop thread (named percore/<id>), by loop id."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        m = re.match(r"percore/(\d+)$", stat[stat.index("(") + 1:stat.rindex(")")])
        if m:
            fields = stat[stat.rindex(")") + 2:].split()
            ticks[m.group(1)] = ticks.get(m.group(1), 0) + int(fields[11]) + int(fields[12])
    return ticks


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found
