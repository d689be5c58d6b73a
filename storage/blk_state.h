/*
 * The disks' DEVICE_STATE "blk" (docs/migration-stream.md): text, one
 * "SIZE SPEC\n" per disk, then, in version 2, one "ring DISK GPA HEAD\n"
 * per ring the guest set up, in disk order. Written and read here only, so
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

struct blk_state {
	unsigned n;
	struct blk_spec specs[GABI_BLK_MAX_DISKS];
	uint64_t sizes[GABI_BLK_MAX_DISKS];
	unsigned nr_rings;
	struct { unsigned disk; uint64_t gpa; uint32_t head; } rings[GABI_BLK_MAX_DISKS];
};

/* Version 1 without rings (older destinations read it), else 2. *buf: free(). */
int blk_state_format(const struct blk_state *st, uint32_t *version, uint8_t **buf,
		     size_t *len);
/* 0, or -EBADMSG with the first fault in err. */
int blk_state_parse(uint32_t version, const uint8_t *data, size_t len, struct blk_state *st,
		    char *err, size_t err_len);

#endif
