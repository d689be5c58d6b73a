/* A NIC's description: the --net option, and the state a migration carries. */
#include "net/nic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly "xx:xx:xx:xx:xx:xx" (17 characters); lower case is what we write. */
static int mac_parse(const char *s, size_t n, uint8_t mac[6])
{
	if (n != 17)
		return -EINVAL;
	for (unsigned i = 0; i < 6; i++) {
		int hi = hex_digit(s[3 * i]), lo = hex_digit(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void nic_mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

void nic_mac_derive(const char *vm_name, unsigned index, uint8_t mac[6])
{
	uint32_t h = 2166136261u;  /* FNV-1a: stable across hosts and builds */

	for (const char *p = vm_name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	/* 02: locally administered, unicast; fe: ours, apart from QEMU's 52:54. */
	mac[0] = 0x02;
	mac[1] = 0xfe;
	mac[2] = (uint8_t)(h >> 24);
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)((h & 0xfc) | (index & 3));
}

int nic_mac_random(uint8_t mac[6])
{
	if (getrandom(mac + 2, 4, 0) != 4)
		return -errno;
	mac[0] = 0x02;
	mac[1] = 0xfe;
	return 0;
}

static int bridge_name_ok(const char *s, size_t n)
{
	if (!n || n >= IFNAMSIZ)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] == '/' || s[i] == ':' || s[i] == ',' || s[i] > '~')
			return 0;
	return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

static int mac_usable(const uint8_t mac[6])
{
	static const uint8_t zero[6];

	return !(mac[0] & 1) && memcmp(mac, zero, 6);
}

int nic_spec_parse(const char *s, struct nic_spec *out, char *err, size_t len)
{
	struct nic_spec sp = { 0 };
	const char *p = s;

	while (*p) {
		const char *end = strchr(p, ','), *eq;
		size_t n = end ? (size_t)(end - p) : strlen(p);

		eq = memchr(p, '=', n);
		if (!eq) {
			snprintf(err, len, "'%.*s' is not KEY=VALUE (bridge=BR[,mac=MAC])",
				 (int)n, p);
			return -EINVAL;
		}
		if (eq - p == 6 && !memcmp(p, "bridge", 6)) {
			if (sp.bridge[0] || !bridge_name_ok(eq + 1, n - 7)) {
				snprintf(err, len, "bridge=%.*s: %s", (int)(n - 7), eq + 1,
					 sp.bridge[0] ? "given twice" :
					 "not an interface name (1..15 characters)");
				return -EINVAL;
			}
			memcpy(sp.bridge, eq + 1, n - 7);
		} else if (eq - p == 3 && !memcmp(p, "mac", 3)) {
			if (sp.mac_set || mac_parse(eq + 1, n - 4, sp.mac) || !mac_usable(sp.mac)) {
				snprintf(err, len, "mac=%.*s: %s", (int)(n - 4), eq + 1,
					 sp.mac_set ? "given twice" :
					 "not a unicast MAC address (xx:xx:xx:xx:xx:xx)");
				return -EINVAL;
			}
			sp.mac_set = 1;
		} else {
			snprintf(err, len, "unknown key '%.*s' (bridge=BR[,mac=MAC])",
				 (int)(eq - p), p);
			return -EINVAL;
		}
		p += n + (end ? 1 : 0);
		if (end && !*p) {
			snprintf(err, len, "'%s' ends in a comma", s);
			return -EINVAL;
		}
	}
	if (!sp.bridge[0]) {
		snprintf(err, len, "'%s' names no bridge (bridge=BR[,mac=MAC])", s);
		return -EINVAL;
	}
	*out = sp;
	return 0;
}

void nic_spec_format(const struct nic_spec *sp, char *out, size_t len)
{
	char mac[18];

	nic_mac_format(sp->mac, mac);
	snprintf(out, len, "bridge=%s,mac=%s", sp->bridge, mac);
}

/* Lower-case hex of n bytes at out; its length. (snprintf took 20-40 us for 256 lines.) */
static size_t put_hex(char *out, const uint8_t *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	return 2 * n;
}

int nic_state_format(const struct nic_state *st, uint8_t **buf, size_t *len)
{
	size_t cap = st->n * (18 + IFNAMSIZ + 1) + 1, off = 0;
	char *out;

	for (unsigned f = 0; f < st->nframes; f++)
		cap += 5 + 2 * (size_t)st->frames[f].len + 1;
	cap += st->nseen * (7 + 16 + 1);
	out = malloc(cap);
	if (!out)
		return -ENOMEM;
	for (unsigned i = 0; i < st->n; i++) {
		char mac[18];

		nic_mac_format(st->nics[i].mac, mac);
		off += (size_t)snprintf(out + off, cap - off, "%s %s\n", mac,
					st->nics[i].bridge);
	}
	for (unsigned f = 0; f < st->nframes; f++) {
		const struct nic_frame *fr = &st->frames[f];

		off += (size_t)snprintf(out + off, cap - off, "rx %u ", fr->nic);
		off += put_hex(out + off, fr->data, fr->len);
		out[off++] = '\n';
	}
	for (unsigned s = 0; s < st->nseen; s++) {
		uint8_t h[8];

		for (unsigned b = 0; b < 8; b++)
			h[b] = (uint8_t)(st->seen[s].hash >> (56 - 8 * b));
		memcpy(out + off, "seen ", 5);
		out[off + 5] = (char)('0' + st->seen[s].nic);
		out[off + 6] = ' ';
		off += 7 + put_hex(out + off + 7, h, 8);
		out[off++] = '\n';
	}
	*buf = (uint8_t *)out;
	*len = off;
	return 0;
}

/* Frames in lower case only: one spelling. */
static int hex_lower(char c)
{
	return c >= 'A' && c <= 'F' ? -1 : hex_digit(c);
}

/* "WORD N " at p, N a NIC of n: the NIC, or -1. */
static int line_nic(const char *p, size_t len, const char *word, unsigned n)
{
	size_t wl = strlen(word);

	if (len < wl + 3 || memcmp(p, word, wl) || p[wl] != ' ' || p[wl + 1] < '0' ||
	    p[wl + 1] >= '0' + (int)n || p[wl + 2] != ' ')
		return -1;
	return p[wl + 1] - '0';
}

/* Lower-case hex of exactly len bytes into out. */
static int hex_parse(const char *p, size_t len, uint8_t *out)
{
	for (size_t b = 0; b < len; b++) {
		int hi = hex_lower(p[2 * b]), lo = hex_lower(p[2 * b + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[b] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* "rx N HEX" (without its newline) into fr, for a state of n NICs. */
static int frame_parse(const char *p, size_t len, unsigned n, struct nic_frame *fr)
{
	int nic = line_nic(p, len, "rx", n);
	size_t hl = len - 5;

	if (nic < 0 || hl % 2 || hl / 2 < 14 || hl / 2 > GABI_NET_MAX_FRAME)
		return -1;
	fr->nic = (unsigned)nic;
	fr->len = (uint16_t)(hl / 2);
	return hex_parse(p + 5, fr->len, fr->data);
}

/* "seen N HASH" (16 hex digits, without the newline) into s. */
static int seen_parse(const char *p, size_t len, unsigned n, struct nic_seen *s)
{
	int nic = line_nic(p, len, "seen", n);
	uint8_t h[8];

	if (nic < 0 || len != 7 + 16 || hex_parse(p + 7, 8, h))
		return -1;
	s->nic = (unsigned)nic;
	s->hash = 0;
	for (unsigned b = 0; b < 8; b++)
		s->hash = s->hash << 8 | h[b];
	return 0;
}

int nic_state_parse(uint32_t version, const uint8_t *data, size_t len,
		    struct nic_state *st, char *err, size_t err_len)
{
	const char *p = (const char *)data, *end = p + len;
	struct nic_state *out = st;

	if (version < 1 || version > NIC_STATE_VERSION) {
		snprintf(err, err_len, "NIC state version %u (this vmon reads 1 to %u)",
			 version, NIC_STATE_VERSION);
		return -EBADMSG;
	}
	out->n = 0;
	out->nframes = 0;
	out->nseen = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		struct nic_spec *sp;
		char mac[18];

		/* After the NICs, the frames, then the seen: the NICs are known. */
		if (nl && out->n && version >= 2 && nl - p >= 3 && !memcmp(p, "rx ", 3)) {
			if (out->nseen || out->nframes == NIC_CARRY_MAX ||
			    frame_parse(p, (size_t)(nl - p), out->n,
					&out->frames[out->nframes])) {
				snprintf(err, err_len, "NIC state frame line %u is malformed",
					 out->nframes + 1);
				return -EBADMSG;
			}
			out->nframes++;
			p = nl + 1;
			continue;
		}
		if (nl && out->n && version >= 2 && nl - p >= 5 && !memcmp(p, "seen ", 5)) {
			if (out->nseen == NIC_SEEN_MAX ||
			    seen_parse(p, (size_t)(nl - p), out->n, &out->seen[out->nseen])) {
				snprintf(err, err_len, "NIC state seen line %u is malformed",
					 out->nseen + 1);
				return -EBADMSG;
			}
			out->nseen++;
			p = nl + 1;
			continue;
		}
		if (!nl || out->n == GABI_NET_MAX_NICS || out->nframes || out->nseen) {
			snprintf(err, err_len, "NIC state line %u is malformed", out->n + 1);
			return -EBADMSG;
		}
		sp = &out->nics[out->n];
		memset(sp, 0, sizeof(*sp));
		if (nl - p < 19 || p[17] != ' ' ||
		    mac_parse(p, 17, sp->mac) || !mac_usable(sp->mac) ||
		    !bridge_name_ok(p + 18, (size_t)(nl - p - 18))) {
			snprintf(err, err_len, "NIC state line %u is malformed", out->n + 1);
			return -EBADMSG;
		}
		/* One spelling only: what we write, so nothing else slips through. */
		nic_mac_format(sp->mac, mac);
		if (memcmp(mac, p, 17)) {
			snprintf(err, err_len, "NIC state line %u is malformed", out->n + 1);
			return -EBADMSG;
		}
		memcpy(sp->bridge, p + 18, (size_t)(nl - p - 18));
		sp->mac_set = 1;
		out->n++;
		p = nl + 1;
	}
	if (!out->n) {
		snprintf(err, err_len, "NIC state names no NIC");
		return -EBADMSG;
	}
	return 0;
}
