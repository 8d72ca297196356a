#!/usr/bin/env python3
"""Sends REQUESTS `GET /` on one connection to 127.0.0.1:PORT, DEPTH of them in flight at a time,
and reads every answer; for scripts/instructions, which counts what the server spends on them.

  bench/pipeline_get.py PORT REQUESTS [DEPTH]
"""
import socket
import sys
import time

port, requests = int(sys.argv[1]), int(sys.argv[2])
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 16
request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
marker = b"HTTP/1.1 200 "
deadline = time.monotonic() + 30  # a server under valgrind may print its port before it listens
while True:
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=60)
        break
    except ConnectionRefusedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
with conn as s:
    sent = answered = 0
    pending = b""
    while answered < requests:
        if sent - answered < depth and sent < requests:
            batch = min(depth - (sent - answered), requests - sent)
            s.sendall(request * batch)
            sent += batch
        data = s.recv(65536)
        if not data:
            sys.exit(f"pipeline_get: the server closed after {answered} answers")
        pending += data
        answered += pending.count(marker)
        pending = pending[pending.rfind(marker) + 1:] if marker in pending else pending[-16:]
print(f"{answered} answers")
