"""The QEMU peer for migrate_bench: the same workload migrated by QEMU on
the same host in the same run, so that Ferry's figures stand beside a
well-known hypervisor's instead of beside numbers quoted from elsewhere.

The guest is build/guests/qemu-dirtier (tests/bench/qemu/dirtier.c), a
multiboot kernel doing what the vmon dirtier does: fill 512 MiB, then idle
on a 1 kHz timer or dirty a working set flat out, and report on COM1 the
longest gap it saw in its TSC. Both QEMUs get 1 GiB of guest RAM in a memfd
backend with prealloc=on (guest memory preallocated on both sides, as in
issue 3's reference figures) and the same command line; the destination
waits with -incoming defer and then migrate-incoming. Over TLS both get
x509 credentials of their own (make_tls) and check each other's
certificate, as vmon's --tls-dir does. The source is told: the scenario's bandwidth cap or
none (QEMU's default is 128 MiB/s), the same downtime target as vmon's, auto-converge on when
the guest dirties memory, and a time limit after which the migration is
cancelled and the row says it did not converge.

QEMU's own figures come from query-migrate: total-time (migrate command to
completion), downtime, setup-time, ram transferred, dirty-sync-count
(rounds) and the largest cpu-throttle-percentage seen while polling.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time


class QmpError(RuntimeError):
    pass


class Qmp:
    """A minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path, timeout, proc, log):
        end = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if proc.poll() is not None:
                    raise QmpError("QEMU exited (%d): %s" % (proc.returncode, tail(log)))
                if time.monotonic() > end:
                    raise QmpError("no QMP socket at %s after %d s" % (path, timeout))
                time.sleep(0.05)
        self.s.settimeout(timeout)
        self.f = self.s.makefile("rwb")
        self._read()                      # the greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise QmpError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            r = self._read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise QmpError("%s: %s" % (name, r["error"].get("desc", r["error"])))

    def close(self):
        self.f.close()
        self.s.close()


def tail(path, n=3):
    try:
        lines = open(path).read().strip().splitlines()
    except OSError:
        return "(no log)"
    return " / ".join(lines[-n:]) or "(empty log)"


def available(build):
    """(qemu binary, guest image), or a reason why the peer cannot run."""
    qemu = shutil.which("qemu-system-x86_64")
    guest = os.path.join(build, "guests", "qemu-dirtier")
    if not qemu:
        return None, "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if not os.path.exists(guest):
        return None, "%s was not built (the compiler cannot build 32-bit code)" % guest
    return (qemu, guest), None


def version(qemu):
    r = subprocess.run([qemu, "--version"], capture_output=True, text=True)
    m = re.search(r"version (\S+)", r.stdout)
    return m.group(1) if m else "?"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls(d):
    """QEMU's x509 credentials in d: its own names (ca-cert.pem, server-*.pem,
    client-*.pem), and no critical keyUsage, since QEMU refuses a leaf
    whose critical keyUsage lacks keyEncipherment (tools/mkcerts.sh's do)."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = (lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True))
    run("req", "-x509", *ec, "-keyout", d + "/ca-key.pem", "-out", d + "/ca-cert.pem",
        "-subj", "/CN=ferry-bench-qemu-ca", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ext = os.path.join(d, "leaf.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    for who in ("server", "client"):
        run("req", *ec, "-keyout", "%s/%s-key.pem" % (d, who), "-out", "%s/%s.csr" % (d, who),
            "-subj", "/CN=localhost")
        run("x509", "-req", "-in", "%s/%s.csr" % (d, who), "-CA", d + "/ca-cert.pem",
            "-CAkey", d + "/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", ext,
            "-out", "%s/%s-cert.pem" % (d, who))
    return d


class Peer:
    def __init__(self, qemu, guest, tmp, accel):
        self.qemu, self.guest, self.tmp, self.accel = qemu, guest, tmp, accel
        self.procs = []
        self.tls_dir = None

    def _start(self, tag, args, incoming=None, tls=False):
        qmp = os.path.join(self.tmp, tag + ".qmp")
        com1 = os.path.join(self.tmp, tag + ".com1")
        cmd = [self.qemu, "-accel", self.accel, "-nodefaults", "-no-user-config",
               "-display", "none", "-cpu", "max" if self.accel == "tcg" else "host",
               "-object", "memory-backend-memfd,id=ram,size=1G,share=on,prealloc=on",
               "-machine", "pc,memory-backend=ram", "-m", "1G", "-smp", "1",
               "-kernel", self.guest, "-append", args,
               "-serial", "file:" + com1, "-qmp", "unix:%s,server=on,wait=off" % qmp]
        if tls:
            cmd += ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=%s,verify-peer=on" % (
                self.tls_dir, "server" if incoming else "client")]
        if incoming:
            cmd += ["-incoming", incoming]
        log = os.path.join(self.tmp, tag + ".log")
        with open(log, "w") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return qmp, com1, p, log

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []

    @staticmethod
    def _stalls(path):
        try:
            return [int(v) for v in re.findall(r"^stall_us=(\d+)", open(path).read(), re.M)]
        except OSError:
            return []

    def run_one(self, guest_args, downtime_ms, dirties, limit_s, bandwidth=0, tls=False):
        """One migration; bandwidth in bytes/s, 0 for no cap; tls: TLS (gnutls's
        defaults) with certificates checked both ways, as vmon's --tls-dir."""
        if tls and not self.tls_dir:
            self.tls_dir = make_tls(os.path.join(self.tmp, "qemu-tls"))
        tag = "qemu-%d" % time.monotonic_ns()
        port = free_port()
        uri = "tcp:127.0.0.1:%d" % port
        dqmp, dcom, dproc, dlog = self._start(tag + "-d", guest_args, "defer", tls)
        sqmp, scom, sproc, slog = self._start(tag + "-s", guest_args, None, tls)
        src = dst = None
        try:
            dst = Qmp(dqmp, 120, dproc, dlog)   # prealloc of 1 GiB comes first
            src = Qmp(sqmp, 120, sproc, slog)
            if tls:
                dst.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
                src.cmd("migrate-set-parameters", **{"tls-creds": "tls0",
                                                     "tls-hostname": "localhost"})
            dst.cmd("migrate-incoming", uri=uri)
            end = time.monotonic() + 300
            while "filled" not in open(scom).read():
                if time.monotonic() > end:
                    raise QmpError("the QEMU guest did not finish its fill")
                time.sleep(0.05)
            time.sleep(1.5)               # as for vmon: the guest in its steady state
            src.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "auto-converge", "state": bool(dirties)}])
            src.cmd("migrate-set-parameters", **{"downtime-limit": downtime_ms,
                                                 "max-bandwidth": bandwidth or 100 * 10**9})
            t0 = time.monotonic()
            src.cmd("migrate", uri=uri)
            throttle, info = 0, {}
            while True:
                info = src.cmd("query-migrate")
                throttle = max(throttle, info.get("cpu-throttle-percentage", 0))
                st = info.get("status")
                if st in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() - t0 > limit_s:
                    src.cmd("migrate_cancel")
                    return {"converged": False, "throttle": throttle,
                            "total_ms": (time.monotonic() - t0) * 1e3,
                            "rounds": info.get("ram", {}).get("dirty-sync-count", 0)}
                # QEMU times itself (total-time, downtime): polling only
                # samples the throttle, and must not take a core from it.
                time.sleep(0.02)
            if st != "completed":
                raise QmpError("QEMU migration %s: %s" % (st, info.get("error-desc", "")))
            end = time.monotonic() + 10
            # The move is measured by the source (total-time, downtime); a
            # destination that then stops (internal-error: KVM could not run
            # the loaded vCPU) is reported beside the row, not hidden.
            while (dst_st := dst.cmd("query-status").get("status")) != "running":
                if dst_st in ("internal-error", "guest-panicked", "shutdown"):
                    break
                if time.monotonic() > end:
                    raise QmpError("the QEMU destination did not resume: its status is %s"
                                   % dst_st)
                time.sleep(0.01)
            time.sleep(0.3)               # the guest's first looks after resume
            ram = info.get("ram", {})
            setup = info.get("setup-time", 0)
            stalls = self._stalls(scom) + self._stalls(dcom)
            return {
                "converged": True,
                "total_ms": info.get("total-time", 0),
                "transfer_ms": info.get("total-time", 0) - setup,
                "downtime_ms": info.get("downtime", 0),
                "guest_ms": max(stalls) / 1e3 if stalls else 0.0,
                "bytes": ram.get("transferred", 0),
                "rounds": ram.get("dirty-sync-count", 0),
                "throttle": throttle,
                "dest_status": dst_st,
            }
        finally:
            for q in (src, dst):
                if q:
                    q.close()
            self.stop_all()
