/*
 * Frames across a switchover (net/nic_carry.h).
 */
#include "net/nic_carry.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "core/hash.h"

/*
 * XXH3 through the same run-time dispatch as the stream's hashes
 * (core/hash.h): every frame the guest reads is hashed, in the hypercall.
 */
uint64_t nic_frame_hash(const uint8_t *f, size_t len)
{
	return XXH3_64bits(f, len);
}

void nic_carry_log(struct nic_carry *c, unsigned nic, const uint8_t *f, size_t len)
{
	unsigned at = (c->log_head + c->log_n) % NIC_SEEN_MAX;

	if (c->log_n == NIC_SEEN_MAX)
		c->log_head = (c->log_head + 1) % NIC_SEEN_MAX;
	else
		c->log_n++;
	c->log[at].s.nic = nic;
	c->log[at].s.hash = nic_frame_hash(f, len);
	c->log[at].round = c->round;
}

void nic_carry_round(struct nic_carry *c)
{
	c->round++;
}

static void frame_set(struct nic_frame *fr, unsigned nic, const uint8_t *f, size_t len)
{
	fr->nic = nic;
	fr->len = (uint16_t)len;
	memcpy(fr->data, f, len);
}

int nic_carry_push(struct nic_carry *c, unsigned max, unsigned nic, const uint8_t *f,
		   size_t len)
{
	if (c->q_n >= max || c->q_n == NIC_HOLD_MAX)
		return -ENOSPC;
	frame_set(&c->q[c->q_n++], nic, f, len);
	return 0;
}

size_t nic_carry_pop(struct nic_carry *c, unsigned nic, uint8_t *out)
{
	for (unsigned k = 0; k < c->q_n; k++) {
		size_t len = c->q[k].len;

		if (c->q[k].nic != nic)
			continue;
		memcpy(out, c->q[k].data, len);
		memmove(&c->q[k], &c->q[k + 1], (c->q_n - k - 1) * sizeof(c->q[0]));
		c->q_n--;
		return len;
	}
	return 0;
}

unsigned nic_carry_hold(struct nic_carry *c, unsigned nic, const uint8_t *f, size_t len)
{
	unsigned dropped = 0;

	/* The newest are what the source may not have seen: the oldest go. */
	if (c->hold_n == NIC_HOLD_MAX) {
		c->hold_head = (c->hold_head + 1) % NIC_HOLD_MAX;
		c->hold_n--;
		dropped = 1;
	}
	frame_set(&c->hold[(c->hold_head + c->hold_n++) % NIC_HOLD_MAX], nic, f, len);
	return dropped;
}

void nic_carry_hold_drop(struct nic_carry *c, uint64_t *stale)
{
	for (unsigned k = 0; k < c->hold_n; k++)
		stale[c->hold[(c->hold_head + k) % NIC_HOLD_MAX].nic]++;
	c->hold_head = c->hold_n = 0;
}

void nic_carry_save(const struct nic_carry *c, struct nic_state *st)
{
	st->nframes = c->q_n < NIC_CARRY_MAX ? c->q_n : NIC_CARRY_MAX;
	memcpy(st->frames, c->q, st->nframes * sizeof(st->frames[0]));
	/*
	 * A destination holds what reached it since its round before last
	 * ended, which it saw after the source wrote that round: the frames
	 * the source's guest read since then are the ones to strike out.
	 */
	st->nseen = 0;
	for (unsigned k = 0; k < c->log_n; k++) {
		unsigned at = (c->log_head + k) % NIC_SEEN_MAX;

		if (c->log[at].round + 1 >= c->round)
			st->seen[st->nseen++] = c->log[at].s;
	}
}

void nic_carry_merge(struct nic_carry *c, const struct nic_state *st, uint64_t *stale)
{
	bool seen_used[NIC_SEEN_MAX] = { false }, frame_used[NIC_CARRY_MAX] = { false };

	c->q_n = 0;
	for (unsigned f = 0; f < st->nframes && f < NIC_HOLD_MAX; f++)
		c->q[c->q_n++] = st->frames[f];
	/*
	 * One strike per entry, the oldest held copy first: a broadcast sent
	 * twice (an ARP request asked again) that the source read once is
	 * still read once here.
	 */
	for (unsigned k = 0; k < c->hold_n; k++) {
		const struct nic_frame *h = &c->hold[(c->hold_head + k) % NIC_HOLD_MAX];
		uint64_t hash = nic_frame_hash(h->data, h->len);
		bool struck = false;

		for (unsigned s = 0; !struck && s < st->nseen; s++)
			if (!seen_used[s] && st->seen[s].nic == h->nic && st->seen[s].hash == hash)
				struck = seen_used[s] = true;
		for (unsigned f = 0; !struck && f < st->nframes; f++)
			if (!frame_used[f] && st->frames[f].nic == h->nic &&
			    st->frames[f].len == h->len &&
			    !memcmp(st->frames[f].data, h->data, h->len))
				struck = frame_used[f] = true;
		if (struck || nic_carry_push(c, NIC_HOLD_MAX, h->nic, h->data, h->len))
			stale[h->nic]++;
	}
	c->hold_head = c->hold_n = 0;
}
