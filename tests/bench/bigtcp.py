"""A device's IPv4 GSO/GRO size limit (BIG TCP, Linux 6.3+) over rtnetlink.

Loopback builds TCP segments of up to its gso_ipv4_max_size, 64 KiB by
default. Raised towards its tso_max_size (512 KiB on lo), each segment
carries eight times the data, and the per-segment work (allocation, the
IP and TCP layers on both sides, ACKs) falls with it. iproute2 6.1
(Debian 12) neither shows nor sets the IPv4 limits, so this speaks
rtnetlink itself. Used by migrate_bench --big-tcp; docs/benchmarks.md has
what it changes.
"""
import errno
import socket
import struct

RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
IFLA_TSO_MAX_SIZE, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE = 59, 63, 64


def _talk(msg_type, flags, dev, attrs=b""):
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, socket.if_nametoindex(dev), 0, 0) + attrs
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.send(struct.pack("IHHII", 16 + len(body), msg_type, flags, 1, 0) + body)
        reply = s.recv(65536)
    length, rtype = struct.unpack_from("IH", reply)
    if rtype == NLMSG_ERROR:
        err = struct.unpack_from("i", reply, 16)[0]
        if err:
            raise OSError(-err, "rtnetlink on %s: %s" % (dev, errno.errorcode.get(-err, err)))
        return {}
    out, off = {}, 16 + 16                       # nlmsghdr, ifinfomsg
    while off + 4 <= length:
        alen, atype = struct.unpack_from("HH", reply, off)
        if alen < 4:
            break
        if alen == 8:
            out[atype & 0x3fff] = struct.unpack_from("I", reply, off + 4)[0]
        off += (alen + 3) & ~3
    return out


def limits(dev="lo"):
    """{"gso": gso_ipv4_max_size, "gro": gro_ipv4_max_size, "tso": tso_max_size};
    gso and gro None where the kernel lacks BIG TCP for IPv4."""
    a = _talk(RTM_GETLINK, NLM_F_REQUEST, dev)
    return {"gso": a.get(IFLA_GSO_IPV4_MAX_SIZE), "gro": a.get(IFLA_GRO_IPV4_MAX_SIZE),
            "tso": a.get(IFLA_TSO_MAX_SIZE)}


def set_sizes(gso, gro, dev="lo"):
    """Set the IPv4 GSO and GRO limits of dev; needs CAP_NET_ADMIN. A
    connection takes the GSO limit when it connects."""
    attrs = (struct.pack("HHI", 8, IFLA_GSO_IPV4_MAX_SIZE, gso) +
             struct.pack("HHI", 8, IFLA_GRO_IPV4_MAX_SIZE, gro))
    _talk(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, dev, attrs)
