#!/usr/bin/env python3
"""Send numbered UDP datagrams to an echo server at a fixed interval until
SIGTERM (or --seconds), and report how the echoes came back: as JSON on
stdout, with the longest stretch without an echo (a migration's network
outage, as a guest's peer sees it).

usage: udp_echo_client.py HOST PORT [--interval-ms N] [--seconds S] [--ready]
--ready: say "ready" on stderr once SIGTERM would be handled (a slow host
may take a second to get there).
"""
import argparse
import json
import select
import signal
import socket
import struct
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--ready", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if a.ready:
        print("ready", file=sys.stderr, flush=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((a.host, a.port))
    s.setblocking(False)
    start = time.monotonic()
    seq = 0
    seen = set()
    send_errors = {}
    dup = 0
    last_echo = None
    max_gap = 0.0
    gaps = []
    first_echo = None
    next_send = start
    while not stop and (not a.seconds or time.monotonic() - start < a.seconds):
        now = time.monotonic()
        if now >= next_send:
            try:
                s.send(struct.pack("!Qd", seq, now) + b"ferry-echo" * 4)
            except OSError as e:
                # No route yet (ARP failed): counted as lost, and by cause.
                send_errors[e.strerror] = send_errors.get(e.strerror, 0) + 1
            seq += 1
            next_send += a.interval_ms / 1000.0
            if next_send < now:
                next_send = now
        r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
        if not r:
            continue
        while True:
            try:
                data = s.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            if len(data) < 16:
                continue
            n = struct.unpack("!Q", data[:8])[0]
            t = time.monotonic()
            if n in seen:
                dup += 1
                continue
            seen.add(n)
            if first_echo is None:
                first_echo = t
            if last_echo is not None:
                gap = (t - last_echo) * 1000
                if gap > max_gap:
                    max_gap = gap
                if gap > 20:
                    gaps.append(round(gap, 1))
            last_echo = t
    # Echoes still on their way.
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        r, _, _ = select.select([s], [], [], 0.05)
        if r:
            try:
                data = s.recv(2048)
            except OSError:
                continue
            if len(data) >= 16:
                n = struct.unpack("!Q", data[:8])[0]
                if n in seen:
                    dup += 1
                seen.add(n)
    # Where the losses lie: before the first echo, after the last, or
    # between (only those can be the migration's).
    head = min(seen) if seen else seq
    tail = seq - 1 - max(seen) if seen else 0
    json.dump({"sent": seq, "received": len(seen), "lost": seq - len(seen),
               "lost_before_first": head, "lost_after_last": tail,
               "lost_between": seq - len(seen) - head - tail,
               "send_errors": send_errors,
               "duplicates": dup, "max_gap_ms": round(max_gap, 1),
               "gaps_over_20ms": len(gaps),
               "largest_gaps_ms": sorted(gaps, reverse=True)[:6],
               "seconds": round(time.monotonic() - start, 2)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
