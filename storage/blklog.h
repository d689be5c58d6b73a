/*
 * The block log that the blkwriter guest writes and that the guest (verify
 * mode) and the host (tests/integration/blklog_check.c) check. Header-only
 * and freestanding (only <stdint.h>): the same code runs in the guest.
 *
 * The log is a ring of nslots 4 KiB blocks from offset 0 of a disk; block
 * seq (1, 2, ...) goes to slot (seq - 1) % nslots. Each block names its
 * predecessor: it carries the checksum of block seq - 1, and its own over
 * all 4096 bytes (its own checksum field counted as zero).
 *
 * A checked log has, for its largest sequence number M, exactly the blocks
 * max(1, M - nslots + 1) .. M, each in its slot, each chained to the one
 * before: no gap (a lost or stale write), no duplicate, no torn block. One
 * torn block is allowed, in slot (M + 1): the write that was in flight
 * when the writer stopped, which was never acknowledged.
 */
#ifndef FERRY_BLKLOG_H
#define FERRY_BLKLOG_H

#include <stdint.h>

#define BLKLOG_BLOCK 4096u
#define BLKLOG_WORDS (BLKLOG_BLOCK / 8)
#define BLKLOG_MAGIC 0x474f4c4259525246ull /* "FRRYBLOG" */

struct blklog_hdr {
	uint64_t magic;
	uint64_t seq;
	uint64_t prev_sum;   /* checksum of block seq - 1; 0 for seq 1 */
	uint64_t sum;        /* this block's, with this field as 0 */
	uint64_t nslots;
};

enum blklog_state { BLKLOG_EMPTY = 0, BLKLOG_VALID, BLKLOG_BAD };

struct blklog_slot {
	uint64_t seq, prev, sum;
	uint32_t state;
	uint32_t pad;
};

enum blklog_err {
	BLKLOG_OK = 0,
	BLKLOG_E_TORN,       /* a block that is neither empty nor valid */
	BLKLOG_E_GAP,        /* a block missing, or an older one where it should be */
	BLKLOG_E_CHAIN,      /* a block whose predecessor is not the one it names */
};

struct blklog_result {
	uint32_t err;        /* enum blklog_err */
	uint32_t torn_tail;  /* 1: the unacknowledged slot M + 1 is torn */
	uint64_t last_seq;   /* M */
	uint64_t valid;      /* valid blocks */
	uint64_t slot;       /* where the first error is */
	uint64_t want_seq;   /* the block that should be there */
};

static inline uint64_t blklog_mix(uint64_t h, uint64_t w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 29);
}

static inline uint64_t blklog_sum(const uint64_t *w)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < BLKLOG_WORDS; i++)
		h = blklog_mix(h, i == 3 ? 0 : w[i]);  /* word 3 is hdr.sum */
	return h ? h : 1;
}

/* Fill block seq; returns its checksum (the next block's prev_sum). */
static inline uint64_t blklog_fill(uint64_t *w, uint64_t seq, uint64_t prev_sum,
				   uint64_t nslots)
{
	struct blklog_hdr *h = (struct blklog_hdr *)w;

	for (unsigned i = sizeof(*h) / 8; i < BLKLOG_WORDS; i++)
		w[i] = blklog_mix(seq, i);
	h->magic = BLKLOG_MAGIC;
	h->seq = seq;
	h->prev_sum = prev_sum;
	h->sum = 0;
	h->nslots = nslots;
	h->sum = blklog_sum(w);
	return h->sum;
}

static inline void blklog_parse(const uint64_t *w, uint64_t slot, uint64_t nslots,
				struct blklog_slot *out)
{
	const struct blklog_hdr *h = (const struct blklog_hdr *)w;
	uint64_t any = 0;

	out->seq = out->prev = out->sum = 0;
	out->pad = 0;
	for (unsigned i = 0; i < BLKLOG_WORDS; i++)
		any |= w[i];
	if (!any) {
		out->state = BLKLOG_EMPTY;
		return;
	}
	out->state = BLKLOG_BAD;
	if (h->magic != BLKLOG_MAGIC || h->nslots != nslots || !h->seq ||
	    (h->seq - 1) % nslots != slot || h->sum != blklog_sum(w))
		return;
	for (unsigned i = sizeof(*h) / 8; i < BLKLOG_WORDS; i++)
		if (w[i] != blklog_mix(h->seq, i))
			return;
	out->state = BLKLOG_VALID;
	out->seq = h->seq;
	out->prev = h->prev_sum;
	out->sum = h->sum;
}

static inline uint32_t blklog_fail(struct blklog_result *r, uint32_t err, uint64_t slot,
				   uint64_t want)
{
	r->err = err;
	r->slot = slot;
	r->want_seq = want;
	return err;
}

static inline uint32_t blklog_verify(const struct blklog_slot *s, uint64_t n,
				     struct blklog_result *r)
{
	uint64_t m = 0, tail;

	r->err = BLKLOG_OK;
	r->torn_tail = 0;
	r->valid = 0;
	r->slot = r->want_seq = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (s[i].state == BLKLOG_VALID) {
			r->valid++;
			if (s[i].seq > m)
				m = s[i].seq;
		}
	}
	r->last_seq = m;
	tail = m % n;  /* the slot of block m + 1 */
	for (uint64_t i = 0; i < n; i++) {
		/* The newest sequence number that belongs in slot i. */
		uint64_t back = m ? ((m - 1) % n + n - i) % n : 0;
		uint64_t want = m > back ? m - back : 0;

		if (s[i].state == BLKLOG_BAD) {
			if (i != tail || r->torn_tail)
				return blklog_fail(r, BLKLOG_E_TORN, i, want);
			r->torn_tail = 1;
			continue;
		}
		if (!want) {
			if (s[i].state != BLKLOG_EMPTY)
				return blklog_fail(r, BLKLOG_E_GAP, i, want);
			continue;
		}
		if (s[i].state != BLKLOG_VALID || s[i].seq != want)
			return blklog_fail(r, BLKLOG_E_GAP, i, want);
	}
	/* Each block names the one before it, back to the oldest still there. */
	for (uint64_t i = 0; i < n && m; i++) {
		uint64_t p = (i + n - 1) % n;

		if (s[i].state != BLKLOG_VALID || s[i].seq == 1 || s[i].seq + n == m + 1 ||
		    s[p].state != BLKLOG_VALID)
			continue;
		if (s[p].seq != s[i].seq - 1 || s[p].sum != s[i].prev)
			return blklog_fail(r, BLKLOG_E_CHAIN, i, s[i].seq);
	}
	return BLKLOG_OK;
}

static inline const char *blklog_err_name(uint32_t err)
{
	switch (err) {
	case BLKLOG_OK:      return "ok";
	case BLKLOG_E_TORN:  return "torn block";
	case BLKLOG_E_GAP:   return "gap (missing or stale block)";
	case BLKLOG_E_CHAIN: return "broken chain (block does not follow its predecessor)";
	}
	return "unknown";
}

#endif
