#!/usr/bin/env python3
"""Pipelines GET /metrics on 3 connections for 8 s without reading a byte, and prints the
server's VmRSS before, at the end and 2 s after closing: bench/pipeline_hog.py PORT PID
(hello_cores --threads 1 on PORT, its pid PID). Bounded: 8 s, 127.0.0.1 only."""
import socket, sys, time, os
port, pid = int(sys.argv[1]), int(sys.argv[2])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
req = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n" * 2000
socks = []
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False); socks.append(s)
print("start", rss(), "MB")
end = time.time() + 8
while time.time() < end:
    for s in socks:
        try: s.send(req)
        except BlockingIOError: pass
    time.sleep(0.001)
print("peak", rss(), "MB")
for s in socks: s.close()
time.sleep(2)
print("after close", rss(), "MB")
