/* A NIC's host side: a tap device made a port of a bridge, and the announce. */
#include "net/nic.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if_arp.h>
#include <stdbool.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

const unsigned nic_announce_at_ms[NIC_ANNOUNCE_ROUNDS] = { 0, 50, 150, 300, 500 };

/* A connected NETLINK_ROUTE socket in *out; 0, or -errno + err. */
static int route_open(struct nl_sock **out, char *err, size_t len)
{
	struct nl_sock *sk = nl_socket_alloc();
	int ret;

	if (!sk) {
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	ret = nl_connect(sk, NETLINK_ROUTE);
	if (ret) {
		snprintf(err, len, "netlink: %s", nl_geterror(ret));
		nl_socket_free(sk);
		return -EIO;
	}
	*out = sk;
	return 0;
}

static bool link_is_bridge(struct rtnl_link *l)
{
	const char *type = rtnl_link_get_type(l);

	return type && !strcmp(type, "bridge");
}

/*
 * Through netlink, not /sys/class/net: sysfs shows the network namespace
 * it was mounted in, which need not be ours (unshare -n).
 */
int nic_bridge_check(const char *bridge, char *err, size_t len)
{
	struct nl_sock *sk;
	struct rtnl_link *link = NULL;
	int ret = route_open(&sk, err, len);

	if (ret)
		return ret;
	if (rtnl_link_get_kernel(sk, 0, bridge, &link)) {
		snprintf(err, len, "bridge %s does not exist on this host", bridge);
		ret = -ENODEV;
	} else if (!link_is_bridge(link)) {
		snprintf(err, len, "%s is not a Linux bridge", bridge);
		ret = -ENOTSUP;
	}
	rtnl_link_put(link);
	nl_socket_free(sk);
	return ret;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

int nic_bridges_list(char (*names)[IFNAMSIZ], unsigned max, unsigned *n, char *err,
		     size_t len)
{
	struct nl_sock *sk;
	struct nl_cache *cache = NULL;
	struct nl_object *o;
	int ret = route_open(&sk, err, len);

	*n = 0;
	if (ret)
		return ret;
	ret = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache);
	if (ret) {
		snprintf(err, len, "netlink: %s", nl_geterror(ret));
		nl_socket_free(sk);
		return -EIO;
	}
	for (o = nl_cache_get_first(cache); o && *n < max; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *name = rtnl_link_get_name(l);

		if (link_is_bridge(l) && name && strlen(name) < IFNAMSIZ)
			snprintf(names[(*n)++], IFNAMSIZ, "%s", name);
	}
	qsort(names, *n, IFNAMSIZ, name_cmp);
	nl_cache_free(cache);
	nl_socket_free(sk);
	return 0;
}

/* One RTM_SETLINK: the tap joins the bridge and comes up together. */
static int tap_join(const char *bridge, const char *ifname, char *err, size_t len)
{
	struct nl_sock *sk = NULL;
	struct rtnl_link *orig = NULL, *chg = NULL;
	int ret, br_index = (int)if_nametoindex(bridge);
	char why[NIC_ERR_LEN];

	if (!br_index) {
		snprintf(err, len, "bridge %s does not exist on this host", bridge);
		return -ENODEV;
	}
	ret = route_open(&sk, why, sizeof(why));
	if (ret) {
		snprintf(err, len, "tap %s cannot join bridge %s: %s", ifname, bridge, why);
		return ret;
	}
	chg = rtnl_link_alloc();
	if (!chg) {
		snprintf(err, len, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	ret = rtnl_link_get_kernel(sk, 0, ifname, &orig);
	if (!ret) {
		rtnl_link_set_master(chg, br_index);
		rtnl_link_set_flags(chg, IFF_UP);
		ret = rtnl_link_change(sk, orig, chg, 0);
	}
	if (ret) {
		snprintf(err, len, "tap %s cannot join bridge %s: %s", ifname, bridge,
			 nl_geterror(ret));
		ret = -EIO;
	}
out:
	rtnl_link_put(orig);
	rtnl_link_put(chg);
	nl_socket_free(sk);
	return ret;
}

/*
 * A bridge whose address nobody set takes its lowest port's MAC, and
 * changes it as ports come and go. A change flushes the host's neighbour
 * entries on the bridge: the host must resolve every VM again, and an ARP
 * request lost in a switchover cost a second (docs/networking.md). The
 * kernel gives a tap a random MAC that may be
 * the lowest; fe:xx:xx:xx:xx:xx (locally administered, unicast) is above
 * any uplink's burned-in address, so a VM's tap never becomes the
 * bridge's address, as libvirt does for its taps.
 */
static int tap_high_mac(int tfd, struct ifreq *ifr, char *err, size_t len)
{
	uint8_t mac[6] = { 0xfe };

	if (getrandom(mac + 1, 5, 0) != 5) {
		snprintf(err, len, "cannot draw a MAC for tap %s: %s", ifr->ifr_name,
			 strerror(errno));
		return -EIO;
	}
	ifr->ifr_hwaddr.sa_family = ARPHRD_ETHER;
	memcpy(ifr->ifr_hwaddr.sa_data, mac, 6);
	if (ioctl(tfd, SIOCSIFHWADDR, ifr)) {
		int e = errno;

		snprintf(err, len, "cannot set the MAC of tap %s: %s", ifr->ifr_name,
			 strerror(e));
		return -e;
	}
	return 0;
}

int nic_tap_open(const char *bridge, int *fd, char ifname[IFNAMSIZ], char *err,
		 size_t len)
{
	struct ifreq ifr = { 0 };
	int ret, tfd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (tfd < 0) {
		ret = -errno;
		snprintf(err, len, "/dev/net/tun: %s", strerror(errno));
		return ret;
	}
	/* No packet info, no vnet header: the guest sees plain Ethernet frames. */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	memcpy(ifr.ifr_name, NIC_TAP_TEMPLATE, sizeof(NIC_TAP_TEMPLATE));
	if (ioctl(tfd, TUNSETIFF, &ifr)) {
		ret = -errno;
		snprintf(err, len, "cannot create a tap: %s%s", strerror(errno),
			 errno == EPERM ? " (vmon needs CAP_NET_ADMIN for --net)" : "");
		close(tfd);
		return ret;
	}
	memcpy(ifname, ifr.ifr_name, IFNAMSIZ);
	ifname[IFNAMSIZ - 1] = 0;
	ret = tap_high_mac(tfd, &ifr, err, len);
	if (!ret)
		ret = tap_join(bridge, ifname, err, len);
	if (ret) {
		close(tfd);  /* the tap goes with its last fd */
		return ret;
	}
	*fd = tfd;
	return 0;
}

void nic_rarp_frame(const uint8_t mac[6], uint8_t out[NIC_RARP_LEN])
{
	memset(out, 0, NIC_RARP_LEN);
	memset(out, 0xff, 6);               /* broadcast */
	memcpy(out + 6, mac, 6);
	out[12] = 0x80;                     /* ethertype RARP, 0x8035 */
	out[13] = 0x35;
	out[15] = 1;                        /* hardware: Ethernet */
	out[16] = 0x08;                     /* protocol: IPv4 */
	out[18] = 6;
	out[19] = 4;
	out[21] = 3;                        /* reverse request */
	memcpy(out + 22, mac, 6);           /* sender MAC; sender IP stays 0 */
	memcpy(out + 32, mac, 6);           /* target MAC; target IP stays 0 */
}
