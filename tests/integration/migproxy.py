#!/usr/bin/env python3
"""migproxy: a fault-injecting TCP proxy for Ferry live migrations.

It sits between a migrating source (`vmon ctl S migrate tcp:...`) and a
destination (`vmon run --incoming tcp:...`), accepts one connection, and
parses the source -> destination bytes as docs/migration-stream.md
describes them: protocol frames (HELLO, ...) until the 8 bytes "FERRYMIG",
then the 16-byte preamble, then records (and after END the COMMIT frame,
which has the same header). The destination -> source direction is
forwarded verbatim.

One fault can be injected when the N-th record (or frame) of a type is
about to be forwarded:
  none       forward everything
  kill       SIGKILL --kill-pid (the destination), forward nothing more
  cut        close both connections
  flip       flip one byte in the middle of the record's body (or at
             --flip-offset)
  truncate   forward up to the middle of the record, then close both
  stall      forward nothing more (and read nothing more from the source),
             keep both connections open

With --lanes N it also proxies the N data connections of a migration with
--connections N (live protocol 2), each parsed from its JOIN frame on;
--fault-conn K puts the fault on the K-th data connection to arrive (0,
the default: the control connection). A cut there closes that connection
only.

--rate KIB/S paces the forwarding to the destination (a slow link, so that
a pre-copy lasts long enough to cancel it), --rcvbuf sets the receive
buffer of the socket from the source. What it does is logged on stderr,
one line per event (every record with --verbose).
Exit status: 0 after the connection ended (whether or not the fault
triggered: the log says "fault ... never triggered"), 1 on a setup error.
"""
import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

HDR = struct.Struct("<IIQQ")           # type, flags, length, checksum
PREAMBLE_LEN = 16
MAGIC = b"FERRYMIG"

TYPES = {
    "STREAM_HEADER": 0x1, "VM_CONFIG": 0x2, "CPU_MODEL": 0x3,
    "PAGE_DATA": 0x4, "VCPU_STATE": 0x5, "CLOCK": 0x6, "DEVICE_STATE": 0x7,
    "END": 0xF, "ROUND": 0x80000010,
    "HELLO": 0x100, "VERDICT": 0x101, "ACK": 0x102, "COMMIT": 0x103,
    "ABORT": 0x104, "RESUMED": 0x105, "JOIN": 0x107, "FENCE": 0x8,
    "PAGE_HASHED": 0x9, "SYNC": 0xA, "SYNCED": 0x108,
}
NAMES = {v: k for k, v in TYPES.items()}
FAULTS = ("none", "kill", "cut", "flip", "truncate", "stall")


def tname(t):
    return NAMES.get(t, "0x%08x" % t)


def log(msg):
    sys.stderr.write("migproxy: %s\n" % msg)
    sys.stderr.flush()


def parse_type(s):
    if s.upper() in TYPES:
        return TYPES[s.upper()]
    try:
        return int(s, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("unknown record type %r" % s)


def pad8(n):
    return (n + 7) & ~7


class Proxy:
    def __init__(self, args, src, dst, name="control", data=False):
        self.a = args
        self.name = name
        self.data = data          # a data connection: JOIN, then records
        self.src = src
        self.dst = dst
        self.lock = threading.Lock()
        self.closed = False
        self.seen = {}            # type -> count
        self.triggered = False
        self.stalled = False
        self.sent_to_dst = 0
        self.sent_to_src = 0
        self.t_rate = None

    def close_all(self, why):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        log("closing both %s connections: %s" % (self.name, why))
        for s in (self.src, self.dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    # destination -> source, verbatim
    def pump_back(self):
        try:
            while True:
                data = self.dst.recv(65536)
                if not data:
                    break
                self.src.sendall(data)
                self.sent_to_src += len(data)
        except OSError as e:
            if not self.closed:
                log("destination side: %s" % e)
        self.close_all("the destination closed its side" if not self.closed else "")

    def send_dst(self, data):
        rate = self.a.rate * 1024
        if not rate:
            self.dst.sendall(data)
            self.sent_to_dst += len(data)
            return
        # Pace the forwarding: at most --rate KiB/s, in small slices.
        if self.t_rate is None:
            self.t_rate = time.monotonic()
        view = memoryview(data)
        while view:
            piece, view = view[:16384], view[16384:]
            self.dst.sendall(piece)
            self.sent_to_dst += len(piece)
            ahead = self.sent_to_dst / rate - (time.monotonic() - self.t_rate)
            if ahead > 0:
                time.sleep(ahead)

    def recv_src(self):
        try:
            return self.src.recv(1 << 20)
        except OSError:
            return b""

    def flip_at(self, length):
        off = self.a.flip_offset
        return length // 2 if off is None else min(off, length - 1)

    def fault_at(self, rtype):
        """Count this record; True when the fault fires on it."""
        n = self.seen.get(rtype, 0) + 1
        self.seen[rtype] = n
        a = self.a
        return (not self.triggered and a.fault != "none" and
                rtype == a.at and n == a.nth)

    def fire(self, rtype, length, offset):
        """The fault fires before any byte of this record is forwarded.
        Returns what to do with the record: 'drop', 'flip', 'truncate'."""
        self.triggered = True
        a = self.a
        what = "%s #%d (length %d) at stream offset %d" % (
            tname(rtype), a.nth, length, offset)
        if a.fault == "kill":
            log("fault kill: SIGKILL pid %d before %s" % (a.kill_pid, what))
            try:
                os.kill(a.kill_pid, signal.SIGKILL)
            except OSError as e:
                log("kill %d failed: %s" % (a.kill_pid, e))
            return "drop"
        if a.fault == "cut":
            log("fault cut: closing both connections before %s" % what)
            return "drop"
        if a.fault == "stall":
            log("fault stall: forwarding nothing more from %s on" % what)
            return "drop"
        if a.fault == "flip":
            if length == 0:
                log("fault flip: %s has an empty body, flipping its checksum" % what)
            else:
                log("fault flip: flipping body byte %d of %s" % (self.flip_at(length), what))
            return "flip"
        if a.fault == "truncate":
            log("fault truncate: forwarding %d of %d body bytes of %s, then closing" %
                (length // 2, length, what))
            return "truncate"
        raise AssertionError(a.fault)

    def run(self):
        back = threading.Thread(target=self.pump_back, daemon=True)
        back.start()
        buf = bytearray()
        state = "frames"          # frames -> records (after the preamble)
        joined = False            # a data connection: its JOIN went
        offset = 0                # offset in the stream, from the preamble
        eof = False
        action = None             # for the record being forwarded
        while not self.closed:
            # Parse everything complete at the front of the buffer.
            need = None
            while not self.closed:
                if state == "frames" and len(buf) >= 8 and bytes(buf[:8]) == MAGIC:
                    if len(buf) < PREAMBLE_LEN:
                        need = PREAMBLE_LEN
                        break
                    ver, flags = struct.unpack_from("<II", buf, 8)
                    log("preamble: version %d, flags 0x%x" % (ver, flags))
                    self.send_dst(bytes(buf[:PREAMBLE_LEN]))
                    del buf[:PREAMBLE_LEN]
                    offset = PREAMBLE_LEN
                    state = "records"
                    continue
                if len(buf) < HDR.size:
                    need = HDR.size
                    break
                rtype, rflags, length, _ = HDR.unpack_from(buf, 0)
                if self.data and state == "frames" and joined:
                    state = "records"
                if state == "frames" and not (0x100 <= rtype < 0x200):
                    log("unexpected bytes before the preamble (type 0x%08x): forwarding the rest verbatim" % rtype)
                    state = "raw"
                if state == "raw":
                    self.send_dst(bytes(buf))
                    del buf[:]
                    need = 1
                    break
                total = HDR.size + pad8(length)
                if length > (64 << 20):
                    log("absurd length %d for %s: forwarding the rest verbatim" % (length, tname(rtype)))
                    state = "raw"
                    continue
                if action is None:
                    # First look at this record: decide once.
                    if 0x100 <= rtype < 0x200 and (self.a.verbose or rtype != 0x104):
                        log("frame %s, %d bytes" % (tname(rtype), length))
                    elif rtype == 0x104:
                        log("frame ABORT from the source, %d bytes" % length)
                    elif self.a.verbose:
                        log("record %s, %d bytes, offset %d" % (tname(rtype), length, offset))
                    action = "fwd"
                    if self.fault_at(rtype):
                        action = self.fire(rtype, length, offset)
                        if action == "drop":
                            if self.a.fault == "stall":
                                self.stalled = True
                                return self.stall()
                            if self.a.fault == "cut":
                                self.close_all("cut")
                                return
                            return self.after_kill()
                        if action == "truncate":
                            keep = HDR.size + length // 2 if length else HDR.size // 2
                            # Stream out what we have, up to 'keep'.
                            self._truncate(buf, keep)
                            return
                if len(buf) < total:
                    need = total
                    break
                rec = buf[:total]
                if action == "flip":
                    if length:
                        rec[HDR.size + self.flip_at(length)] ^= 0xFF
                    else:
                        rec[16] ^= 0xFF
                self.send_dst(bytes(rec))
                if rtype == 0x107:
                    joined = True
                del buf[:total]
                offset += total
                action = None
                if rtype == 0xF:
                    log("END forwarded: %d bytes of stream" % offset)
            if self.closed:
                break
            if eof:
                if buf:
                    log("the source closed its side inside a record (%d bytes pending, %d needed)" %
                        (len(buf), need or 0))
                    try:
                        self.send_dst(bytes(buf))
                    except OSError:
                        pass
                break
            data = self.recv_src()
            if not data:
                eof = True
                continue
            buf += data
        if not self.closed:
            # The source finished: pass the end on, let the reply direction
            # drain until the destination closes.
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            log("the source closed its side")
            back.join(timeout=65)
            self.close_all("done")

    def _truncate(self, buf, keep):
        while len(buf) < keep:
            data = self.recv_src()
            if not data:
                break
            buf += data
        try:
            self.send_dst(bytes(buf[:keep]))
        except OSError:
            pass
        self.close_all("truncated after %d more bytes" % min(keep, len(buf)))

    def after_kill(self):
        # The destination dies; its side closes and pump_back closes ours.
        deadline = time.monotonic() + 5
        while not self.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        self.close_all("killed the destination")

    def stall(self):
        # Read nothing more from the source: its sends block once the
        # socket buffers fill. Stop when the destination gives up.
        while not self.closed:
            time.sleep(0.2)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=int, required=True, help="port, 0 = any")
    p.add_argument("--to", required=True, help="HOST:PORT of the destination")
    p.add_argument("--fault", choices=FAULTS, default="none")
    p.add_argument("--at", type=parse_type, help="record/frame type: name or number")
    p.add_argument("--nth", type=int, default=1)
    p.add_argument("--kill-pid", type=int)
    p.add_argument("--rate", type=int, default=0,
                   help="forward at most this many KiB/s to the destination")
    p.add_argument("--rcvbuf", type=int, default=0,
                   help="SO_RCVBUF of the socket from the source (bytes)")
    p.add_argument("--verbose", action="store_true", help="log every record")
    p.add_argument("--flip-offset", type=int,
                   help="flip this body byte, not the middle one")
    p.add_argument("--lanes", type=int, default=0,
                   help="also proxy this many data connections (--connections N)")
    p.add_argument("--fault-conn", type=int, default=0,
                   help="the fault goes to this data connection (1..N); 0: the control one")
    a = p.parse_args()
    if a.fault != "none" and a.at is None:
        p.error("--fault %s needs --at TYPE" % a.fault)
    if a.fault == "kill" and not a.kill_pid:
        p.error("--fault kill needs --kill-pid")
    if a.nth < 1:
        p.error("--nth counts from 1")
    host, _, port = a.to.rpartition(":")

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.rcvbuf:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(1)
    print("migproxy: listening on %d" % ls.getsockname()[1], flush=True)
    conns = []
    for i in range(1 + a.lanes):
        if i:
            ls.settimeout(30)
        try:
            src, peer = ls.accept()
        except OSError as e:
            log("data connection %d did not come: %s" % (i, e))
            break
        log("%s connected from %s:%d" % ("source" if not i else "data connection %d" % i, *peer))
        try:
            dst = socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)
            dst.settimeout(None)
        except OSError as e:
            log("cannot connect to %s: %s" % (a.to, e))
            src.close()
            return 1
        src.settimeout(None)
        for s in (src, dst):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pa = a
        if i != a.fault_conn:
            pa = argparse.Namespace(**vars(a))
            pa.fault = "none"
        px = Proxy(pa, src, dst, "control" if not i else "data %d" % i, data=i > 0)
        t = threading.Thread(target=px.run, daemon=True)
        t.start()
        conns.append((px, t))
    ls.close()
    for _, t in conns:
        t.join()
    seen = {}
    for px, _ in conns:
        for t, n in px.seen.items():
            seen[t] = seen.get(t, 0) + n
    summary = ", ".join("%s %d" % (tname(t), n) for t, n in sorted(seen.items()))
    log("seen: %s; %d bytes to the destination, %d back" %
        (summary or "nothing", sum(px.sent_to_dst for px, _ in conns),
         sum(px.sent_to_src for px, _ in conns)))
    if a.fault != "none" and not any(px.triggered for px, _ in conns):
        log("fault %s at %s #%d never triggered" % (a.fault, tname(a.at), a.nth))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(1)
