/*
 * Frames across a switchover, so that no frame that reached either host is
 * lost and none is read twice (docs/networking.md, "In a migration").
 *
 * The bridge floods broadcasts to both hosts' taps during a migration, and
 * the destination cannot tell which of its queued frames the source's
 * guest read. So the source names them: the hashes of what its guest read
 * in the last two rounds ("seen"), and the frames its taps still held when
 * it paused ("rx"). The destination keeps what queued in its last round,
 * strikes out each frame the source saw or carries, and gives its guest
 * the source's frames, then the rest, in order.
 *
 * Bookkeeping only: net/nic_dev.c reads the taps and holds the lock.
 */
#ifndef FERRY_NET_NIC_CARRY_H
#define FERRY_NET_NIC_CARRY_H

#include <stddef.h>
#include <stdint.h>

#include "net/nic.h"

/* Frames a destination keeps for its guest, and holds per round. */
#define NIC_HOLD_MAX 64

struct nic_carry {
	/* For the guest, before its taps, oldest first. */
	struct nic_frame q[NIC_HOLD_MAX];
	unsigned q_n;
	/* Destination: what queued on its taps in its last round (a ring). */
	struct nic_frame hold[NIC_HOLD_MAX];
	unsigned hold_head, hold_n;
	/* What the guest read, with the round it read it in (a ring). */
	struct {
		struct nic_seen s;
		uint64_t round;
	} log[NIC_SEEN_MAX];
	unsigned log_head, log_n;
	uint64_t round;          /* a source's ROUND records written */
};

uint64_t nic_frame_hash(const uint8_t *f, size_t len);

/* The guest read f from NIC nic. */
void nic_carry_log(struct nic_carry *c, unsigned nic, const uint8_t *f, size_t len);
/* A source wrote a ROUND record. */
void nic_carry_round(struct nic_carry *c);
/* Queue f for the guest: 0, or -ENOSPC once q holds max frames. */
int nic_carry_push(struct nic_carry *c, unsigned max, unsigned nic, const uint8_t *f,
		   size_t len);
/* The oldest queued frame of nic into out (GABI_NET_MAX_FRAME): its length, or 0. */
size_t nic_carry_pop(struct nic_carry *c, unsigned nic, uint8_t *out);
/* A destination's taps gave f since its last round: 1 if the ring dropped its oldest. */
unsigned nic_carry_hold(struct nic_carry *c, unsigned nic, const uint8_t *f, size_t len);
/* A destination's round ended: the frames held before are stale, added to stale[nic]. */
void nic_carry_hold_drop(struct nic_carry *c, uint64_t *stale);
/* A source at switchover: its queued frames and what its guest read in the last two rounds. */
void nic_carry_save(const struct nic_carry *c, struct nic_state *st);
/*
 * A destination at switchover: the source's frames for the guest, then
 * each held frame that the source neither saw nor carries; the others
 * are added to stale[nic]. The hold is empty after.
 */
void nic_carry_merge(struct nic_carry *c, const struct nic_state *st, uint64_t *stale);

#endif
