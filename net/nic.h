/*
 * A VM's network interfaces (docs/networking.md): each NIC is a tap device
 * on a Linux bridge of the host, and the guest sends and receives frames
 * through hypercalls (core/guest_abi.h, GABI_HC_NET_*). A NIC follows its VM
 * in a migration: the destination makes its own tap on a bridge of the same
 * name and, before the guest runs, announces the VM's MAC address so that
 * the bridges and switches send its traffic to the new host at once.
 */
#ifndef FERRY_NET_NIC_H
#define FERRY_NET_NIC_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_abi.h"
#include "core/vm_dev.h"

#define NIC_DEV_NAME     "net"
/*
 * 2: version 1, the frames the source's taps held unread ("rx" lines) and
 * the frames its guest read in the last two rounds ("seen" lines).
 */
#define NIC_STATE_VERSION 2u
/* Frames a switchover carries from the source's taps, all NICs together. */
#define NIC_CARRY_MAX    16
/* Frames the source's guest read, by hash, that a switchover names. */
#define NIC_SEEN_MAX     256
#define NIC_ERR_LEN      256
/* "bridge=" + a name + ",mac=" + 17 */
#define NIC_SPEC_MAX     64
#define NIC_TAP_TEMPLATE "fy%d"
/* Announce rounds after the VM gains its NICs, as ms after the first. */
#define NIC_ANNOUNCE_ROUNDS 5
extern const unsigned nic_announce_at_ms[NIC_ANNOUNCE_ROUNDS];

struct nic_spec {
	char bridge[IFNAMSIZ];
	uint8_t mac[6];
	int mac_set;            /* 0: derived from the VM's name at create */
};

/*
 * "bridge=BR[,mac=XX:XX:XX:XX:XX:XX]". The MAC must be a unicast address.
 * 0, or -EINVAL with a reason in err.
 */
int nic_spec_parse(const char *s, struct nic_spec *out, char *err, size_t len);
/* Does BR exist on this host, and is it a Linux bridge? 0 or -errno + err. */
int nic_bridge_check(const char *bridge, char *err, size_t len);
/*
 * The names of this host's Linux bridges, sorted, at most max; their
 * number in *n. 0 or -errno + err.
 */
int nic_bridges_list(char (*names)[IFNAMSIZ], unsigned max, unsigned *n, char *err,
		     size_t len);
/* "bridge=BR,mac=MAC": the form the cluster keeps (out: NIC_SPEC_MAX). */
void nic_spec_format(const struct nic_spec *sp, char *out, size_t len);
/* A stable, locally administered unicast MAC for (VM name, NIC index). */
void nic_mac_derive(const char *vm_name, unsigned index, uint8_t mac[6]);
/* The same prefix, the rest random: for a VM with no name to derive from. */
int nic_mac_random(uint8_t mac[6]);
/* "02:fe:..." into out (18 bytes). */
void nic_mac_format(const uint8_t mac[6], char out[18]);

/* A frame that reached the source's tap and that its guest never read. */
struct nic_frame {
	unsigned nic;
	uint16_t len;            /* 14..GABI_NET_MAX_FRAME */
	uint8_t data[GABI_NET_MAX_FRAME];
};

/* A frame the source's guest read: its NIC and nic_frame_hash(). */
struct nic_seen {
	unsigned nic;
	uint64_t hash;
};

/*
 * The NICs' DEVICE_STATE: a line "MAC BRIDGE" per NIC, 1..GABI_NET_MAX_NICS,
 * then (version 2) a line "rx N HEX" per carried frame, in arrival order,
 * then a line "seen N HASH" per frame read, oldest first.
 */
struct nic_state {
	unsigned n;
	struct nic_spec nics[GABI_NET_MAX_NICS];
	unsigned nframes;
	struct nic_frame frames[NIC_CARRY_MAX];
	unsigned nseen;
	struct nic_seen seen[NIC_SEEN_MAX];
};
int nic_state_format(const struct nic_state *st, uint8_t **buf, size_t *len);
/* -EBADMSG + err for anything nic_state_format would not write (st is then
 * half filled: callers parse into a state of their own). */
int nic_state_parse(uint32_t version, const uint8_t *data, size_t len,
		    struct nic_state *st, char *err, size_t err_len);

/* ---- the tap (nic_tap.c) --------------------------------------------- */

/*
 * A new tap (name chosen by the kernel from NIC_TAP_TEMPLATE into ifname),
 * up, and a port of bridge. Non-blocking; it goes away with the fd.
 * 0 and the fd in *fd, or -errno + err.
 */
int nic_tap_open(const char *bridge, int *fd, char ifname[IFNAMSIZ], char *err,
		 size_t len);
/* The 60-byte RARP frame QEMU and VMware send for a moved VM's MAC. */
#define NIC_RARP_LEN 60
void nic_rarp_frame(const uint8_t mac[6], uint8_t out[NIC_RARP_LEN]);

/* ---- the device (nic_dev.c) ------------------------------------------ */

struct vm;

/* The VM's NICs, attached as one device; n may be 0 (nothing attached). */
int nic_dev_create(struct vm *vm, const struct nic_spec *specs, unsigned n, char *err,
		   size_t len);
/* The DEVICE_STATE kind, for vm_dev_type_register. */
extern const struct vm_dev_type nic_dev_type;

#endif
