"""The servers scripts/bench measures: hello_cores, nginx, the raw responder and Node."""

import json
import os
import re
import resource
import socket
import ssl
import subprocess
import time

from .processes import ROOT, Failure, children_of


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dechunk(data):
    """The body of a chunked message body (no trailer fields expected)."""
    out, at = b"", 0
    while True:
        eol = data.index(b"\r\n", at)
        size = int(data[at:eol].split(b";")[0], 16)
        if size == 0:
            return out
        out += data[eol + 2:eol + 2 + size]
        at = eol + 2 + size + 2


def http_get(port, path="/", timeout=3.0, headers=()):
    """One GET over a fresh connection; returns (status, body), or with `headers` (extra request
    fields) (status, body, response head)."""
    extra = "".join(f"{h}\r\n" for h in headers)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}"
                  "\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if headers:
        if b"\r\ntransfer-encoding: chunked" in head.lower():
            body = dechunk(body)
        return status, body, head.decode(errors="replace")
    return status, body.decode(errors="replace")


def https_get(port, path="/", timeout=3.0):
    """http_get over TLS, no certificate verified (the bench's is self-signed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    break
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# The servers.


class Server:
    name = ""

    def pids(self):
        raise NotImplementedError

    def check_alive(self):
        raise NotImplementedError


class Listening(Server):
    """A binary of ours that takes --port 0 and prints "Listening on port N", started under
    `taskset -c pin_cpus`; it must answer GET / with "Hello World!" (over TLS with `tls`) and
    exit 0 on SIGTERM."""

    def __init__(self, children, label, args, tmp, pin_cpus, tls=False):
        self.children = children
        self.label = label
        self.out_path = tmp / f"{label}.out"
        self.cmd = []
        if pin_cpus is not None:
            self.cmd += ["taskset", "-c", pin_cpus]
        self.cmd += args
        self.out = open(self.out_path, "w")
        self.proc = children.start(label, self.cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        self.port = None
        while time.monotonic() < deadline:
            text = self.out_path.read_text()
            m = re.search(r"Listening on port (\d+)", text)
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise Failure(f"{label} exited with {self.proc.returncode} before serving:\n{text}")
            time.sleep(0.05)
        if self.port is None:
            raise Failure(f"{label} did not print 'Listening on port N' within 15 s")
        status, body = (https_get if tls else http_get)(self.port)
        if status != 200 or body != "Hello World!":
            raise Failure(f"{label}: GET / answered {status} {body!r}")
        self.startup = self.out_path.read_text().strip()

    def pids(self):
        return [self.proc.pid]

    def check_alive(self):
        if self.proc.poll() is not None:
            raise Failure(f"{self.label} died (exit code {self.proc.returncode}); output:\n"
                          + self.out_path.read_text()[-2000:])

    def stop(self):
        code = self.children.stop(self.proc)
        self.out.close()
        if code != 0:
            raise Failure(f"{self.label} exited with {code} on SIGTERM (expected 0); output:\n"
                          + self.out_path.read_text()[-2000:])


class Percore(Listening):
    name = "percore"

    def __init__(self, children, binary, tmp, cpus, backend, pin_cpus, label="percore",
                 extra_args=(), tls=False):
        args = [str(binary), "--port", "0", "--address", "127.0.0.1", "--backend", backend]
        if cpus is not None:
            args += ["--cpus", cpus]
        args += list(extra_args)
        super().__init__(children, label, args, tmp, pin_cpus, tls=tls)


class RawResponder(Listening):
    """bench/raw_responder: the kernel's floor, not a peer to beat (see bench/raw_responder.cc)."""
    name = "raw"

    def __init__(self, children, binary, tmp, pin_cpus):
        super().__init__(children, "raw", [str(binary), "--port", "0", "--address", "127.0.0.1"],
                         tmp, pin_cpus)


# What every nginx of the bench shares: the process, its limits and the http block's settings,
# up to its server block (NGINX_CONF's, or the TLS section's).
NGINX_HEAD = """\
# Written by scripts/bench: an equal peer of hello_cores.
daemon off;
master_process on;
worker_processes {workers};
{affinity}worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{
  worker_connections 20000;
}}
http {{
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 75s;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
"""

NGINX_CONF = NGINX_HEAD + """\
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      default_type text/plain;
      return 200 "Hello World!";
    }}
    # As hello_cores --static {www}: files under /files/, gzipped at zlib level 6 from 1 KiB.
    location /files/ {{
      alias {www}/;
      types {{ text/plain txt; }}
      etag on;
      gzip on;
      gzip_types text/plain;
      gzip_comp_level 6;
      gzip_min_length 1024;
      gzip_vary on;
    }}
  }}
}}
"""


class NodeDelay(Listening):
    """bench/node_delay.js: Node's http module answering /delay?ms=N from setTimeout, the peer
    for answers that come later."""
    name = "node"

    def __init__(self, children, tmp, pin_cpus):
        super().__init__(children, "node", ["node", str(ROOT / "bench/node_delay.js")], tmp,
                         pin_cpus)


class NodeWsEcho(Listening):
    """bench/node_ws_echo.js: Node's http server with the ws package (8.x) echoing /ws/echo, the
    peer for percore's WebSocket echo. ws comes from npm into bench/node_modules (scripts/setup
    --bench)."""
    name = "node"

    def __init__(self, children, tmp, pin_cpus):
        ws = ROOT / "bench/node_modules/ws/package.json"
        if not ws.exists():
            raise Failure(f"{ws.relative_to(ROOT)} is missing: scripts/setup --bench installs it")
        self.ws_version = json.loads(ws.read_text()).get("version")
        super().__init__(children, "node-ws", ["node", str(ROOT / "bench/node_ws_echo.js")], tmp,
                         pin_cpus)


class Nginx(Server):
    name = "nginx"

    def __init__(self, children, tmp, cpu_list, pin_cpus, conf=NGINX_CONF, tls=False, **extra):
        """`conf`: the template (NGINX_CONF, or the TLS section's, formatted with `extra` too);
        `tls`: it serves HTTPS."""
        self.children = children
        self.tls = tls
        self.dir = tmp / "nginx"
        self.dir.mkdir(exist_ok=True)
        os.chmod(self.dir, 0o755)  # workers run as nobody
        self.workers = len(cpu_list) if cpu_list else 1
        affinity = ""
        if cpu_list:
            affinity = "worker_cpu_affinity " + " ".join(bin(1 << c)[2:] for c in cpu_list) + ";\n"
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if nofile == resource.RLIM_INFINITY or nofile > 1048576:
            nofile = 1048576
        last_error = None
        for _ in range(5):  # the port was free when probed; retry if someone took it meanwhile
            self.port = free_port()
            self.conf = self.dir / "nginx.conf"
            self.conf.write_text(conf.format(workers=self.workers, affinity=affinity,
                                             nofile=nofile, tmp=self.dir, port=self.port,
                                             www=tmp / "www", **extra))
            self.cmd = []
            if pin_cpus is not None:
                self.cmd += ["taskset", "-c", pin_cpus]
            self.cmd += ["nginx", "-e", str(self.dir / "error.log"), "-p", str(self.dir),
                         "-c", str(self.conf)]
            self.out = open(self.dir / "stdout", "a")
            self.proc = children.start("nginx", self.cmd, stdout=self.out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                self._wait_ready()
                break
            except Failure as e:
                last_error = e
                children.stop(self.proc)
                self.out.close()
        else:
            raise last_error
        self.worker_pids = sorted(children_of(self.proc.pid))

    def _wait_ready(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"nginx exited with {self.proc.returncode} at start-up:\n"
                              + self.error_log()[-2000:])
            if len(children_of(self.proc.pid)) >= self.workers:
                try:
                    status, body = (https_get if self.tls else http_get)(self.port)
                except OSError:
                    status, body = 0, ""
                if status == 200 and body == "Hello World!":
                    return
            time.sleep(0.05)
        raise Failure("nginx did not answer GET / within 15 s:\n" + self.error_log()[-2000:])

    def error_log(self):
        try:
            return (self.dir / "error.log").read_text()
        except OSError:
            return ""

    def pids(self):
        return [self.proc.pid] + self.worker_pids

    def check_alive(self):
        if self.proc.poll() is not None:
            raise Failure(f"nginx died (exit code {self.proc.returncode}):\n"
                          + self.error_log()[-2000:])
        now = sorted(children_of(self.proc.pid))
        if now != self.worker_pids:
            raise Failure(f"an nginx worker died (workers were {self.worker_pids}, now {now}):\n"
                          + self.error_log()[-2000:])

    def stop(self):
        code = self.children.stop(self.proc, extra_pids=self.worker_pids)
        self.out.close()
        if code != 0:
            raise Failure(f"nginx exited with {code} on SIGTERM:\n" + self.error_log()[-2000:])
