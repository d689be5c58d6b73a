#!/usr/bin/env python3
"""Write the seed corpus of fuzz_cl_request: a few valid packed
ferry.cluster.Request messages (cluster/cluster.proto) and some that
break one rule each, encoded by hand (no protobuf module needed).

    tests/fuzz/gen_cl_request_corpus.py [OUTDIR]  (default: corpus/cl_request)

The output is committed; rerun only to change the seeds. Files not written
by this script (minimised findings) are left alone.
"""
import os
import sys


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vint(field, n):
    return varint(field << 3) + varint(n)


def ld(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


# Request.cmd fields
STATUS, HOST_SHOW, VM_CREATE, VM_START, MIGRATE, HOST_MODE, REVOKE = 1, 3, 6, 7, 10, 14, 15
BALANCE, RULE_ADD, RULE_DELETE, EVENTS, MAINTENANCE, EVACUATION = 16, 17, 18, 20, 21, 22
CONFIG_SET, HOST_REMOVE, VM_SET, MIGRATE_CANCEL, MIGRATE_SET = 23, 24, 25, 26, 27
VM_RESUME = 28
VM_PAUSE = 29
MiB = 1 << 20


def vm(name="vm1", guest="/srv/guests/counter.elf", args="rate=100",
       mem=64 * MiB, vcpus=2, model="x86-64-v2"):
    return (ld(1, name) + ld(2, guest) + ld(3, args) + vint(4, mem) +
            vint(5, vcpus) + ld(6, model))


SEEDS = {
    "status": ld(STATUS, b""),
    "host_show": ld(HOST_SHOW, ld(1, "host1")),
    "vm_create": ld(VM_CREATE, vm()),
    "vm_create_ha": ld(VM_CREATE, vm() + vint(15, 1)),
    "vm_create_nets": ld(VM_CREATE, vm() + ld(16, "bridge=vmbr0") +
                         ld(16, "bridge=br1,mac=02:00:00:00:00:01")),
    "vm_create_net_bad": ld(VM_CREATE, vm() + ld(16, "bridge=vmbr0,mac=01:00:5e:00:00:01")),
    "config_set_fence": ld(CONFIG_SET, ld(1, ld(1, "ha-fence-s") + vint(2, 5))),
    "vm_start": ld(VM_START, ld(1, "vm1")),
    "migrate": ld(MIGRATE, ld(1, "vm1") + ld(2, "host2") + vint(3, 300)),
    "migrate_capped": ld(MIGRATE, ld(1, "vm1") + ld(2, "host2") + vint(5, 800)),
    "host_mode": ld(HOST_MODE, ld(1, "host1") + vint(2, 1)),
    "revoke": ld(REVOKE, ld(1, "c95c179dd3cd0986671ececa53d139d4") + ld(2, "admin")),
    "vm_start_host": ld(VM_START, ld(1, "vm1") + ld(2, "host3")),
    "balance_mode": ld(BALANCE, ld(1, "mode") + vint(2, 2)),
    "balance_bad": ld(BALANCE, ld(1, "dance")),
    "rule_add": ld(RULE_ADD, ld(1, "sep") + vint(2, 1) + ld(3, "vm1") + ld(3, "vm2")),
    "rule_hosts": ld(RULE_ADD, ld(1, "pin") + vint(2, 2) + ld(3, "vm1") + ld(4, "host1")),
    "rule_delete": ld(RULE_DELETE, ld(1, "sep")),
    "events": ld(EVENTS, b""),
    "maintenance": ld(MAINTENANCE, ld(1, "host1") + vint(2, 1)),
    "evacuation": ld(EVACUATION, ld(1, "host1")),
    "config_set": ld(CONFIG_SET, ld(1, ld(1, "migration-bandwidth-mbps") + vint(2, 1000)) +
                     ld(1, ld(1, "link-mbps"))),
    "config_set_empty": ld(CONFIG_SET, b""),
    "host_remove": ld(HOST_REMOVE, ld(1, "host3")),
    "vm_set_ha": ld(VM_SET, ld(1, "vm1") + vint(2, 1) + vint(3, 1)),
    "vm_set_nothing": ld(VM_SET, ld(1, "vm1")),
    "vm_set_priority": ld(VM_SET, ld(1, "vm1") + vint(4, 1) + vint(5, 2)),
    "vm_create_priority": ld(VM_CREATE, vm() + vint(17, 1)),
    "migrate_cancel": ld(MIGRATE_CANCEL, ld(1, "vm1")),
    "migrate_cancel_bad": ld(MIGRATE_CANCEL, ld(1, "../vm1")),
    "migrate_set": ld(MIGRATE_SET, ld(1, "vm1") + vint(3, 1) + vint(4, 500) + vint(5, 1)),
    "migrate_set_nothing": ld(MIGRATE_SET, ld(1, "vm1")),
    "migrate_set_zero_downtime": ld(MIGRATE_SET, ld(1, "vm1") + vint(3, 1)),
    "vm_resume": ld(VM_RESUME, ld(1, "vm1")),
    "vm_resume_bad": ld(VM_RESUME, ld(1, "vm/1")),
    "vm_pause": ld(VM_PAUSE, ld(1, "vm1")),
    "vm_pause_bad": ld(VM_PAUSE, ld(1, "../x")),
    "bad_name": ld(VM_START, ld(1, "a b")),
    "bad_mem": ld(VM_CREATE, vm(mem=65 * MiB)),
    "bad_vcpus": ld(VM_CREATE, vm(vcpus=33)),
    "empty": b"",
    "garbage": bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x32, 0x00]),
    "truncated": ld(VM_CREATE, vm())[:-5],
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "cl_request")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
