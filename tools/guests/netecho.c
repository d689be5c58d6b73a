/*
 * netecho: the network workload. It owns one IPv4 address on a NIC and
 * answers ARP requests for it, ICMP echo requests (ping) and UDP datagrams
 * to port 7 (echo, RFC 862), which is what a test needs to measure how long
 * a VM is unreachable while it migrates.
 *
 * vCPU 0 polls the NIC and sleeps poll_us between empty polls; other vCPUs
 * park. Live values: "rx", "tx", "arp", "icmp", "udp", "ignored",
 * "errors" (frames), and the runtime's "max_stall_ns".
 *
 * Args: ip (required, a.b.c.d), nic (default 0), poll_us (default 50),
 * require_nic (default 1; 0: without the NIC, idle as if no frame came,
 * for a benchmark's baseline).
 */
#include "rt.h"

static const char *const known_args[] = { "ip", "nic", "poll_us", "require_nic", NULL };

static uint8_t rx[GABI_NET_MAX_FRAME] RT_ALIGNED(64);
static uint8_t tx[GABI_NET_MAX_FRAME] RT_ALIGNED(64);
static struct gabi_net_info info RT_ALIGNED(8);
static volatile uint64_t n_rx, n_tx, n_arp, n_icmp, n_udp, n_ignored, n_errors;
static uint8_t my_ip[4];
static uint64_t nic;

static int ip_parse(const char *s, size_t len, uint8_t ip[4])
{
	unsigned part = 0, val = 0, digits = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (!digits || val > 255 || part > 3)
				return -1;
			ip[part++] = (uint8_t)val;
			val = digits = 0;
		} else if (s[i] >= '0' && s[i] <= '9' && digits < 3) {
			val = val * 10 + (unsigned)(s[i] - '0');
			digits++;
		} else {
			return -1;
		}
	}
	return part == 4 ? 0 : -1;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* The Internet checksum (RFC 1071) of len bytes. */
static uint16_t csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (; len > 1; p += 2, len -= 2)
		sum += get16(p);
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void send_frame(size_t len)
{
	int64_t ret = rt_hcall(GABI_HC_NET_SEND, nic, (uint64_t)tx, len);

	if (ret == (int64_t)len)
		n_tx = n_tx + 1;
	else
		n_errors = n_errors + 1;
}

/* Ethernet header of a reply to rx: back to its sender, from us. */
static void reply_eth(uint16_t type)
{
	memcpy(tx, rx + 6, 6);
	memcpy(tx + 6, info.mac, 6);
	put16(tx + 12, type);
}

static void on_arp(size_t len)
{
	const uint8_t *a = rx + 14;

	/* Ethernet/IPv4, a request, for our address. */
	if (len < 42 || get16(a) != 1 || get16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 ||
	    get16(a + 6) != 1 || memcmp(a + 24, my_ip, 4)) {
		n_ignored = n_ignored + 1;
		return;
	}
	reply_eth(0x0806);
	memcpy(tx + 14, a, 6);          /* htype, ptype, hlen, plen */
	put16(tx + 20, 2);              /* reply */
	memcpy(tx + 22, info.mac, 6);
	memcpy(tx + 28, my_ip, 4);
	memcpy(tx + 32, a + 8, 10);     /* their MAC and address */
	n_arp = n_arp + 1;
	send_frame(42);
}

static void on_ipv4(size_t len)
{
	const uint8_t *ip = rx + 14;
	size_t ihl, total;
	uint8_t *o = tx + 14, *l4;

	if (len < 34 || (ip[0] >> 4) != 4 || (ihl = (size_t)(ip[0] & 15) * 4) < 20 ||
	    (total = get16(ip + 2)) < ihl + 8 || 14 + total > len || memcmp(ip + 16, my_ip, 4) ||
	    (get16(ip + 6) & 0x3fff) /* fragments: not ours to reassemble */) {
		n_ignored = n_ignored + 1;
		return;
	}
	reply_eth(0x0800);
	memcpy(o, ip, total);
	memcpy(o + 12, my_ip, 4);
	memcpy(o + 16, ip + 12, 4);
	o[8] = 64;                      /* TTL */
	l4 = o + ihl;
	if (ip[9] == 1 && l4[0] == 8) { /* ICMP echo request */
		l4[0] = 0;              /* echo reply */
		put16(l4 + 2, 0);
		put16(l4 + 2, csum(l4, total - ihl));
		n_icmp = n_icmp + 1;
	} else if (ip[9] == 17 && get16(l4 + 2) == 7) { /* UDP to echo */
		put16(l4 + 2, get16(ip + ihl));
		put16(l4, 7);
		put16(l4 + 6, 0);       /* no UDP checksum (allowed over IPv4) */
		n_udp = n_udp + 1;
	} else {
		n_ignored = n_ignored + 1;
		return;
	}
	put16(o + 10, 0);
	put16(o + 10, csum(o, ihl));
	send_frame(14 + total);
}

int guest_main(unsigned cpu, const struct gabi_boot *boot)
{
	const char *val;
	size_t len;
	uint64_t poll_ns;
	struct rt_stall st;

	if (cpu != 0)
		rt_park();
	rt_args_check("netecho", known_args);
	if (!rt_arg("ip", &val, &len) || ip_parse(val, len, my_ip))
		rt_die(2, "netecho: needs ip=a.b.c.d\n");
	nic = rt_arg_u64("nic", 0);
	poll_ns = rt_arg_u64("poll_us", 50) * 1000;
	if (rt_hcall(GABI_HC_NET_INFO, nic, (uint64_t)&info, 0)) {
		if (rt_arg_u64("require_nic", 1))
			rt_die(2, "netecho: the VM has no NIC %lu\n", (unsigned long)nic);
		rt_printf("netecho: no NIC %lu: idling\n", (unsigned long)nic);
		rt_stall_init(&st);
		for (;;)
			rt_stall_sleep_ns(&st, poll_ns);
	}
	rt_publish("rx", &n_rx);
	rt_publish("tx", &n_tx);
	rt_publish("arp", &n_arp);
	rt_publish("icmp", &n_icmp);
	rt_publish("udp", &n_udp);
	rt_publish("ignored", &n_ignored);
	rt_publish("errors", &n_errors);
	rt_printf("netecho: %u.%u.%u.%u on NIC %lu, MAC %02x:%02x:%02x:%02x:%02x:%02x\n",
		  my_ip[0], my_ip[1], my_ip[2], my_ip[3], (unsigned long)nic, info.mac[0],
		  info.mac[1], info.mac[2], info.mac[3], info.mac[4], info.mac[5]);
	rt_stall_init(&st);
	for (;;) {
		int64_t n = rt_hcall(GABI_HC_NET_RECV, nic, (uint64_t)rx, sizeof(rx));

		if (n == 0) {
			rt_stall_sleep_ns(&st, poll_ns);
			continue;
		}
		if (n < 0) {
			n_errors = n_errors + 1;
			continue;
		}
		n_rx = n_rx + 1;
		if (get16(rx + 12) == 0x0806)
			on_arp((size_t)n);
		else if (get16(rx + 12) == 0x0800)
			on_ipv4((size_t)n);
		else
			n_ignored = n_ignored + 1;
	}
}
