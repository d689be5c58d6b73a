/* The disks' DEVICE_STATE text, both ways (storage/blk_state.h). */
#include "storage/blk_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest line: a size, a space, a spec; or "held" with nine numbers. */
#define LINE_MAX_LEN (BLK_SPEC_MAX + 64)
#define HELD_LINE_MAX (5 + 9 * 21)

int blk_state_format(const struct blk_state *st, uint32_t *version, uint8_t **buf,
		     size_t *len)
{
	size_t cap = (st->n + st->nr_rings + st->nr_stalled) * LINE_MAX_LEN +
		     st->nr_held * HELD_LINE_MAX + 1, off = 0;
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
	for (unsigned i = 0; i < st->nr_stalled; i++)
		off += (size_t)snprintf(out + off, cap - off, "stalled %u %s\n", st->stalled[i].disk,
					st->stalled[i].full ? "full" : "gone");
	for (unsigned i = 0; i < st->nr_held; i++) {
		const struct blk_state_held *h = &st->held[i];

		off += (size_t)snprintf(out + off, cap - off, "held %u %u %llu %u %u %llu %llu %llu "
					"%llu\n", h->disk, h->ring ? 1 : 0,
					(unsigned long long)h->gpa, h->q.op, h->q.flags,
					(unsigned long long)h->q.offset,
					(unsigned long long)h->q.len,
					(unsigned long long)h->q.buf_gpa,
					(unsigned long long)h->q.tag);
	}
	*version = st->nr_stalled || st->nr_held ? BLK_STATE_VERSION_HELD :
		   st->nr_rings ? BLK_STATE_VERSION_RING : BLK_STATE_VERSION;
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

		/* Not (max - d) / 10: with d over max that wraps, and "2" passed a max of 1. */
		if (d > max || v > max / 10 || v * 10 > max - d)
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
	if (*p || v[0] >= st->n || st->nr_stalled ||
	    (st->nr_rings && v[0] <= st->rings[st->nr_rings - 1].disk))
		return -EBADMSG;
	st->rings[st->nr_rings].disk = (unsigned)v[0];
	st->rings[st->nr_rings].gpa = v[1];
	st->rings[st->nr_rings].head = (uint32_t)v[2];
	st->nr_rings++;
	return 0;
}

/* "stalled DISK full|gone": after the rings, before the held requests, in disk order. */
static int stalled_line_parse(const char *p, struct blk_state *st)
{
	uint64_t disk;

	if (st->nr_held || *p++ != ' ' || dec_parse(&p, GABI_BLK_MAX_DISKS - 1, &disk) ||
	    disk >= st->n || (st->nr_stalled && disk <= st->stalled[st->nr_stalled - 1].disk) ||
	    (strcmp(p, " full") && strcmp(p, " gone")))
		return -EBADMSG;
	st->stalled[st->nr_stalled].disk = (unsigned)disk;
	st->stalled[st->nr_stalled].full = !strcmp(p, " full");
	st->nr_stalled++;
	return 0;
}

static bool disk_stalled(const struct blk_state *st, unsigned disk)
{
	for (unsigned i = 0; i < st->nr_stalled; i++)
		if (st->stalled[i].disk == disk)
			return true;
	return false;
}

/* The ring of disk, or NULL. */
static const uint64_t *ring_gpa(const struct blk_state *st, unsigned disk)
{
	for (unsigned i = 0; i < st->nr_rings; i++)
		if (st->rings[i].disk == disk)
			return &st->rings[i].gpa;
	return NULL;
}

/*
 * "held DISK RING GPA OP FLAGS OFFSET LEN BUF TAG": a request of a disk that
 * stalled; one from a ring sits at one of its slots. What blk_submit would
 * refuse of it (its op, its bounds) the device checks when it loads it.
 */
static int held_line_parse(const char *p, struct blk_state *st)
{
	static const uint64_t max[9] = { GABI_BLK_MAX_DISKS - 1, 1, UINT64_MAX, UINT32_MAX,
					 UINT32_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
					 UINT64_MAX };
	struct blk_state_held *h = &st->held[st->nr_held];
	const uint64_t *ring;
	unsigned same = 0;
	uint64_t v[9];

	for (unsigned k = 0; k < 9; k++) {
		if (*p++ != ' ' || dec_parse(&p, max[k], &v[k]))
			return -EBADMSG;
	}
	if (*p || st->nr_held >= BLK_STATE_HELD_MAX || v[0] >= st->n ||
	    !disk_stalled(st, (unsigned)v[0]))
		return -EBADMSG;
	for (unsigned i = 0; i < st->nr_held; i++)
		same += st->held[i].disk == v[0] && st->held[i].ring == (v[1] == 1);
	if (same >= (v[1] ? GABI_BLK_RING_SIZE : GABI_BLK_QUEUE_DEPTH))
		return -EBADMSG;
	if (v[1]) {
		uint64_t base;

		ring = ring_gpa(st, (unsigned)v[0]);
		if (!ring)
			return -EBADMSG;
		base = *ring + offsetof(struct gabi_blk_ring, slot);
		if (v[2] < base || (v[2] - base) % sizeof(struct gabi_blk_req) ||
		    (v[2] - base) / sizeof(struct gabi_blk_req) >= GABI_BLK_RING_SIZE)
			return -EBADMSG;
	}
	memset(h, 0, sizeof(*h));
	h->disk = (unsigned)v[0];
	h->ring = v[1] == 1;
	h->gpa = v[2];
	h->q.op = (uint32_t)v[3];
	h->q.flags = (uint32_t)v[4];
	h->q.offset = v[5];
	h->q.len = v[6];
	h->q.buf_gpa = v[7];
	h->q.tag = v[8];
	st->nr_held++;
	return 0;
}

/* "SIZE SPEC": only before the rings. */
static int disk_line_parse(const char *p, struct blk_state *st)
{
	char why[BLK_ERR_LEN];
	uint64_t size;

	if (st->nr_rings || st->nr_stalled || st->n >= GABI_BLK_MAX_DISKS ||
	    dec_parse(&p, UINT64_MAX, &size) ||
	    *p++ != ' ' || blk_spec_parse(p, &st->specs[st->n], why, sizeof(why)))
		return -EBADMSG;
	st->sizes[st->n++] = size;
	return 0;
}

int blk_state_parse(uint32_t version, const uint8_t *data, size_t len, struct blk_state *st,
		    char *err, size_t err_len)
{
	char line[LINE_MAX_LEN + 1];
	unsigned lines = 0;
	size_t off = 0;

	memset(st, 0, sizeof(*st));
	if (version < BLK_STATE_VERSION || version > BLK_STATE_VERSION_HELD ||
	    (len && (memchr(data, 0, len) || data[len - 1] != '\n'))) {
		snprintf(err, err_len, "disk state: version %u, %zu bytes: not understood",
			 version, len);
		return -EBADMSG;
	}
	while (off < len) {
		const uint8_t *nl = memchr(data + off, '\n', len - off);
		size_t l = (size_t)(nl - (data + off));
		const char *word, *bad;

		if (!l || l > LINE_MAX_LEN) {
			snprintf(err, err_len, "disk state: line at byte %zu is %s", off,
				 l ? "too long" : "empty");
			return -EBADMSG;
		}
		memcpy(line, data + off, l);
		line[l] = 0;
		off += l + 1;
		/* A word starts the later lines; a disk line starts with its size. */
		word = version >= BLK_STATE_VERSION_RING && !strncmp(line, "ring", 4) ? "ring" :
		       version >= BLK_STATE_VERSION_HELD && !strncmp(line, "stalled", 7) ?
		       "stalled" :
		       version >= BLK_STATE_VERSION_HELD && !strncmp(line, "held", 4) ? "held" :
		       NULL;
		if (!word)
			bad = disk_line_parse(line, st) ? "disk" : NULL;
		else if (!strcmp(word, "ring"))
			bad = ring_line_parse(line + 4, st) ? word : NULL;
		else if (!strcmp(word, "stalled"))
			bad = stalled_line_parse(line + 7, st) ? word : NULL;
		else
			bad = held_line_parse(line + 4, st) ? word : NULL;
		if (bad) {
			snprintf(err, err_len, "disk state: %s line %u is not valid", bad, lines);
			return -EBADMSG;
		}
		lines++;
	}
	/* Version 3 is written only for a disk that stalled: one form. */
	if (version == BLK_STATE_VERSION_HELD && !st->nr_stalled) {
		snprintf(err, err_len, "disk state: version 3 without a disk that stalled");
		return -EBADMSG;
	}
	return 0;
}
