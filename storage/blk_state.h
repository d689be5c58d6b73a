/*
 * The disks' DEVICE_STATE "blk" (docs/migration-stream.md): text, one
 * "SIZE SPEC\n" per disk, then, in version 2, one "ring DISK GPA HEAD\n"
 * per ring the guest set up, in disk order; in version 3 then one
 * "stalled DISK full|gone\n" per disk that stalled and one "held DISK
 * RING GPA OP FLAGS OFFSET LEN BUF TAG\n" per request held. Written and read here only, so
 * that the reader takes exactly what the writer writes: a state that is
 * not in that one form is refused, whatever else it says.
 */
#ifndef FERRY_BLK_STATE_H
#define FERRY_BLK_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/blk.h"

#define BLK_STATE_VERSION      1   /* disks only */
#define BLK_STATE_VERSION_RING 2   /* disks, then their rings */
#define BLK_STATE_VERSION_HELD 3   /* ...then the disks that stalled and their held requests */

/* Held per disk: a queue depth from blk_submit, a ring's worth from its ring. */
#define BLK_STATE_HELD_MAX (GABI_BLK_MAX_DISKS * (GABI_BLK_QUEUE_DEPTH + GABI_BLK_RING_SIZE))

/* A request held because its disk stalled, as the source checked it. */
struct blk_state_held {
	unsigned disk;
	bool ring;                 /* taken from the disk's ring, not blk_submit */
	uint64_t gpa;              /* where the request lives in guest RAM */
	struct gabi_blk_req q;     /* op, flags, offset, len, buf_gpa, tag; the rest 0 */
};

struct blk_state {
	unsigned n;
	struct blk_spec specs[GABI_BLK_MAX_DISKS];
	uint64_t sizes[GABI_BLK_MAX_DISKS];
	unsigned nr_rings;
	struct { unsigned disk; uint64_t gpa; uint32_t head; } rings[GABI_BLK_MAX_DISKS];
	unsigned nr_stalled;       /* disks whose storage went away or filled up */
	struct { unsigned disk; bool full; } stalled[GABI_BLK_MAX_DISKS];
	unsigned nr_held;
	struct blk_state_held held[BLK_STATE_HELD_MAX];
};

/*
 * Version 1 without rings (older destinations read it), 2 with rings and
 * nothing stalled, else 3. *buf: free().
 */
int blk_state_format(const struct blk_state *st, uint32_t *version, uint8_t **buf,
		     size_t *len);
/* 0, or -EBADMSG with the first fault in err. */
int blk_state_parse(uint32_t version, const uint8_t *data, size_t len, struct blk_state *st,
		    char *err, size_t err_len);

#endif
