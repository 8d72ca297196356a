#!/usr/bin/env python3
"""examples/chat in a real browser: headless Chromium opens the page twice, as A and as B, each
tab sends a line, and each must show both; then B's tab closes and A must hear that B left.

  examples/chat/chat_browser_test.py build/examples/chat/chat

Starts the chat server on a free port of 127.0.0.1 and Debian's chromium (scripts/setup installs
it), which it drives through the DevTools protocol over a pipe (--remote-debugging-pipe: JSON
messages ended by NUL on descriptors 3 and 4), so no WebSocket client or npm package is needed
here. Every wait polls against one deadline; the server and the browser are stopped by pid (and
the browser's process group), and the temporary profile is removed, whatever happens.
"""

import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DEADLINE_S = 60  # for everything up to the clean-up: generous for a loaded 2-CPU machine
POLL_S = 0.1


class Failure(Exception):
    pass


class Clock:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        left = self.end - time.monotonic()
        if left <= 0:
            raise Failure("deadline passed")
        return left


class DevTools:
    """The DevTools protocol over Chromium's pipe: one command at a time, events skipped."""

    def __init__(self, to_browser, from_browser, clock):
        self.to_browser, self.from_browser, self.clock = to_browser, from_browser, clock
        self.buffer = b""
        self.next_id = 0

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.to_browser, data):]
        while True:
            answer = self._read()
            if answer.get("id") != self.next_id:
                continue  # an event, or the answer to nothing we wait for
            if "error" in answer:
                raise Failure(f"{method}: {answer['error']}")
            return answer["result"]

    def _read(self):
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_browser], [], [], self.clock.left())
            if ready:
                chunk = os.read(self.from_browser, 1 << 16)
                if not chunk:
                    raise Failure("the browser closed its DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


class Tab:
    """One page, attached in flat mode: commands carry its session id."""

    def __init__(self, devtools, url):
        self.devtools = devtools
        target = devtools.call("Target.createTarget", {"url": url})
        self.target = target["targetId"]
        attached = devtools.call("Target.attachToTarget", {"targetId": self.target,
                                                           "flatten": True})
        self.session = attached["sessionId"]

    def evaluate(self, expression):
        result = self.devtools.call("Runtime.evaluate", {"expression": expression,
                                                         "returnByValue": True},
                                    session=self.session)
        if "exceptionDetails" in result:
            raise Failure(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def view(self):
        """What the page shows: its state and its list's lines (None before it has loaded)."""
        return self.evaluate("""document.getElementById('messages') && {
            state: document.body.dataset.state,
            extensions: document.body.dataset.extensions,
            status: document.getElementById('status').textContent,
            lines: Array.from(document.querySelectorAll('#messages li'), li => li.textContent)
        }""")

    def say(self, text):
        """Types `text` and presses Send, as a user would."""
        self.evaluate(f"""(() => {{
            document.getElementById('text').value = {json.dumps(text)};
            document.getElementById('send').click();
        }})()""")

    def close(self):
        self.devtools.call("Target.closeTarget", {"targetId": self.target})


def wait_for(what, check, clock, describe):
    """Polls `check` until it returns true; on the deadline, fails with `describe()`."""
    while True:
        try:
            if check():
                return
            clock.left()
        except Failure as error:
            raise Failure(f"waiting for {what}: {error}; {describe()}") from None
        time.sleep(POLL_S)


def start_server(binary, log_path, clock):
    log = open(log_path, "wb")
    server = subprocess.Popen([binary, "--port=0", "--address=127.0.0.1"], stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    port = None

    def started():
        nonlocal port
        if server.poll() is not None:
            raise Failure(f"the server exited with {server.returncode}")
        with open(log_path) as lines:
            for line in lines:
                if line.startswith("chat listening on port ") and line.endswith("\n"):
                    port = int(line.split()[4])
        return port is not None

    wait_for("the server to listen", started, clock, lambda: read(log_path))
    return server, port


def start_browser(profile, log_path):
    """Chromium, headless, with the DevTools pipe on its descriptors 3 and 4."""
    theirs_in, ours_out = os.pipe()  # commands: we write, it reads on 3
    ours_in, theirs_out = os.pipe()  # answers and events: it writes on 4, we read
    # Out of the way of 3 and 4, so that dup2 makes new inheritable descriptors there.
    theirs_in, theirs_out = (move_up(fd) for fd in (theirs_in, theirs_out))

    def in_child():
        os.setpgid(0, 0)  # its own group: its renderers and helpers are stopped with it
        os.dup2(theirs_in, 3)
        os.dup2(theirs_out, 4)

    command = ["chromium", "--headless=new", "--no-sandbox", "--remote-debugging-pipe",
               f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
               "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
               "--disable-background-networking", "--disable-component-update",
               "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
               "--disable-backgrounding-occluded-windows", "--mute-audio", "about:blank"]
    with open(log_path, "wb") as log:
        browser = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   close_fds=False, preexec_fn=in_child)
    os.close(theirs_in)
    os.close(theirs_out)
    return browser, ours_out, ours_in


def move_up(fd):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return ""


def refused_without_name(port):
    """The upgrade without ?name= is answered 400 (HttpError from `upgrade`)."""
    request = (b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        while chunk := s.recv(4096):  # until the server closes, as it does after a 400
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 400 ") or b"?name= must be" not in answer:
        raise Failure(f"an upgrade without a name was answered {answer!r}, not 400")


def stop(process, name, signal_number, grace_s, group=False):
    """Signals `process` (its group if `group`), SIGKILLs it after `grace_s`, and then what is
    left of its group, if `group`. Returns its exit code, and whether nothing was left."""
    if process is None:
        return None, True
    kill = (lambda sig: os.killpg(process.pid, sig)) if group else process.send_signal
    if process.poll() is None:
        try:
            kill(signal_number)
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in {grace_s}s: killing it", file=sys.stderr)
        except ProcessLookupError:
            pass
    if group or process.poll() is None:
        try:
            kill(signal.SIGKILL)  # a helper the browser left behind, if any
        except ProcessLookupError:
            pass
    code = process.wait()
    if group:
        try:
            wait_for(f"what {name} started to end",
                     lambda: reaped(process.pid) and not group_members(process.pid), Clock(10),
                     lambda: f"left: {group_members(process.pid)}")
        except Failure as error:
            print(f"FAILED: {error}", file=sys.stderr)
            return code, False
    return code, True


def reaped(group):
    """Reaps the processes of `group` that ended and came to us (we are their subreaper);
    whether none of them is left."""
    while True:
        try:
            pid, _ = os.waitpid(-group, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def group_members(group):
    """The live processes of process group `group`, from /proc (a zombie has ended: it only
    waits to be reaped)."""
    members = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        if entry.isdigit() and int(fields[2]) == group and fields[0] != "Z":  # state ppid pgrp
            members.append(f"{entry} {stat[:stat.rfind(')') + 1]} {fields[0]}")
    return members


def chat(devtools, port, clock):
    tabs = {}

    def describe():
        devtools.clock = Clock(5)  # past the deadline, a few seconds more to say what is shown
        try:
            return "; ".join(f"tab {name}: {tab.view()}" for name, tab in tabs.items())
        except Failure as error:
            return f"the tabs cannot be read: {error}"

    def shows(name, predicate):
        view = tabs[name].view()
        return bool(view) and predicate(view["lines"])

    def has(*wanted):
        return lambda lines: all(any(line.startswith(w) for line in lines) for w in wanted)

    # Each tab is in the room once its own arrival comes back to it through the room; B opens
    # once A is in, so that A hears B arrive.
    for name in ("A", "B"):
        tabs[name] = Tab(devtools, f"http://127.0.0.1:{port}/?name={name}")
        wait_for(f"{name} to join", lambda: shows(name, has(f"* {name} joined")), clock,
                 describe)
    said = {"A": "hello from A", "B": "hello from B " + "and a line long enough to deflate " * 4}
    for name, text in said.items():
        tabs[name].say(text)
    everything = [f"{name}: {text.strip()}" for name, text in said.items()]
    for name in tabs:
        wait_for(f"tab {name} to show both lines",
                 lambda: shows(name, lambda lines: all(line in lines for line in everything)),
                 clock, describe)
    if not shows("A", has("* B joined")):
        raise Failure(f"A did not hear B join; {describe()}")
    for name, tab in tabs.items():
        view = tab.view()
        if view["state"] != "open" or any(view["lines"].count(line) != 1 for line in everything):
            raise Failure(f"tab {name} is not as it should be: {view}")
        # The server compresses (WsCompression::kShared) what the browser offers to.
        if not (view["extensions"] or "").startswith("permessage-deflate"):
            raise Failure(f"tab {name} did not agree on permessage-deflate: {view}")

    tabs.pop("B").close()
    wait_for("A to hear B leave", lambda: shows("A", has("* B left")), clock, describe)
    view = tabs["A"].view()
    print(f"tab A ({view['extensions']}) shows:", *view["lines"], sep="\n  ")


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} CHAT_BINARY")
    if shutil.which("chromium") is None:
        sys.exit("chat_browser: no chromium on PATH (scripts/setup installs it)")
    # The browser's helpers outlive it by a moment: as their subreaper (PR_SET_CHILD_SUBREAPER),
    # this process reaps them, rather than init some time later.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    # ctest's timeout or a ^C: clean up all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("chat_browser: terminated"))
    started = time.monotonic()
    clock = Clock(DEADLINE_S)
    work = tempfile.mkdtemp(prefix="chat-browser-")
    server_log, browser_log = os.path.join(work, "server.log"), os.path.join(work, "chromium.log")
    server = browser = None
    pipes = []
    ok = False
    try:
        server, port = start_server(sys.argv[1], server_log, clock)
        refused_without_name(port)
        browser, to_browser, from_browser = start_browser(os.path.join(work, "profile"),
                                                          browser_log)
        pipes = [to_browser, from_browser]
        devtools = DevTools(to_browser, from_browser, clock)
        print("chromium", devtools.call("Browser.getVersion")["product"])
        chat(devtools, port, clock)
        try:
            devtools.call("Browser.close")
        except Failure:
            pass  # it may close the pipe before answering
        if browser.wait(clock.left()) != 0:
            print(f"chromium exited with {browser.returncode}", file=sys.stderr)
        ok = True
    except (Failure, OSError, subprocess.TimeoutExpired) as error:
        print(f"FAILED: {error}", file=sys.stderr)
    finally:
        _, browser_gone = stop(browser, "chromium", signal.SIGTERM, 10, group=True)
        for fd in pipes:
            os.close(fd)
        code, _ = stop(server, "the server", signal.SIGTERM, 30)
        if ok and code != 0:
            print(f"FAILED: the server exited with {code}", file=sys.stderr)
        ok = ok and code == 0 and browser_gone
        print(read(server_log) if ok else "", end="")  # which loop served whom
        if not ok:
            print("--- server log\n" + read(server_log), file=sys.stderr)
            print("--- chromium log\n" + read(browser_log), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    print(f"chat_browser: {'passed' if ok else 'failed'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
