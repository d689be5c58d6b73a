/* The disks' DEVICE_STATE text, both ways (storage/blk_state.h). */
#include "storage/blk_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest line: a size or "ring" with three numbers, a space, a spec. */
#define LINE_MAX_LEN (BLK_SPEC_MAX + 64)

int blk_state_format(const struct blk_state *st, uint32_t *version, uint8_t **buf,
		     size_t *len)
{
	size_t cap = (st->n + st->nr_rings) * LINE_MAX_LEN + 1, off = 0;
	char *out = malloc(cap);

	if (!out)
		return -ENOMEM;
	for (unsigned i = 0; i < st->n; i++)
		off += (size_t)snprintf(out + off, cap - off, "%llu %s\n",
					(unsigned long long)st->sizes[i], st->specs[i].spec);
	for (unsigned i = 0; i < st->nr_rings; i++)
		off += (size_t)snprintf(out + off, cap - off, "ring %u %llu %u\n",
					st->rings[i].disk,
					(unsigned long long)st->rings[i].gpa, st->rings[i].head);
	*version = st->nr_rings ? BLK_STATE_VERSION_RING : BLK_STATE_VERSION;
	*buf = (uint8_t *)out;
	*len = off;
	return 0;
}

/*
 * A decimal number as printf writes it: digits only, no sign, no leading
 * zero, at most max. *p moves past it.
 */
static int dec_parse(const char **p, uint64_t max, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9' || (*s == '0' && s[1] >= '0' && s[1] <= '9'))
		return -EBADMSG;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (max - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 0;
}

/* "ring DISK GPA HEAD": a disk of this state, after the previous ring's. */
static int ring_line_parse(const char *p, struct blk_state *st)
{
	uint64_t v[3];
	const uint64_t max[3] = { GABI_BLK_MAX_DISKS - 1, UINT64_MAX, UINT32_MAX };

	for (unsigned k = 0; k < 3; k++) {
		if (*p++ != ' ' || dec_parse(&p, max[k], &v[k]))
			return -EBADMSG;
	}
	if (*p || v[0] >= st->n ||
	    (st->nr_rings && v[0] <= st->rings[st->nr_rings - 1].disk))
		return -EBADMSG;
	st->rings[st->nr_rings].disk = (unsigned)v[0];
	st->rings[st->nr_rings].gpa = v[1];
	st->rings[st->nr_rings].head = (uint32_t)v[2];
	st->nr_rings++;
	return 0;
}

/* "SIZE SPEC": only before the rings. */
static int disk_line_parse(const char *p, struct blk_state *st)
{
	char why[BLK_ERR_LEN];
	uint64_t size;

	if (st->nr_rings || st->n >= GABI_BLK_MAX_DISKS || dec_parse(&p, UINT64_MAX, &size) ||
	    *p++ != ' ' || blk_spec_parse(p, &st->specs[st->n], why, sizeof(why)))
		return -EBADMSG;
	st->sizes[st->n++] = size;
	return 0;
}

int blk_state_parse(uint32_t version, const uint8_t *data, size_t len, struct blk_state *st,
		    char *err, size_t err_len)
{
	char line[LINE_MAX_LEN + 1];
	size_t off = 0;

	memset(st, 0, sizeof(*st));
	if ((version != BLK_STATE_VERSION && version != BLK_STATE_VERSION_RING) ||
	    (len && (memchr(data, 0, len) || data[len - 1] != '\n'))) {
		snprintf(err, err_len, "disk state: version %u, %zu bytes: not understood",
			 version, len);
		return -EBADMSG;
	}
	while (off < len) {
		const uint8_t *nl = memchr(data + off, '\n', len - off);
		size_t l = (size_t)(nl - (data + off));
		bool ring;

		if (!l || l > LINE_MAX_LEN) {
			snprintf(err, err_len, "disk state: line at byte %zu is %s", off,
				 l ? "too long" : "empty");
			return -EBADMSG;
		}
		memcpy(line, data + off, l);
		line[l] = 0;
		off += l + 1;
		ring = version == BLK_STATE_VERSION_RING && !strncmp(line, "ring", 4);
		if (ring && ring_line_parse(line + 4, st)) {
			snprintf(err, err_len, "disk state: ring line %u is not valid",
				 st->nr_rings);
			return -EBADMSG;
		}
		if (!ring && disk_line_parse(line, st)) {
			snprintf(err, err_len, "disk state: disk %u is not valid", st->n);
			return -EBADMSG;
		}
	}
	return 0;
}
