/*
 * Fuzz target for the disks' DEVICE_STATE text (storage/blk_state.c), which
 * a destination reads off the network in the precheck and at switchover.
 * The first byte picks the version (0-3), the rest is the text. Whatever
 * is accepted must be within the limits, and exactly what the writer
 * writes for what was parsed: one form only, so nothing else slips in.
 * Whatever is refused must say why. Broken promises trap.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/blk_state.h"

#define fuzz_assert(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct blk_state st;
	char err[BLK_ERR_LEN];
	uint32_t version, v2;
	uint8_t *out;
	size_t len;
	int ret;

	if (!size)
		return 0;
	version = data[0] & 3;
	memset(err, 'x', sizeof(err));
	ret = blk_state_parse(version, data + 1, size - 1, &st, err, sizeof(err));
	if (ret) {
		fuzz_assert(ret == -EBADMSG);
		fuzz_assert(memchr(err, '\0', sizeof(err)) && err[0] != '\0');
		return 0;
	}
	fuzz_assert(version >= BLK_STATE_VERSION && version <= BLK_STATE_VERSION_HELD);
	fuzz_assert(st.n <= GABI_BLK_MAX_DISKS && st.nr_rings <= st.n && st.nr_stalled <= st.n);
	fuzz_assert(!st.nr_rings || version >= BLK_STATE_VERSION_RING);
	fuzz_assert((st.nr_stalled > 0) == (version == BLK_STATE_VERSION_HELD));
	fuzz_assert(st.nr_held <= BLK_STATE_HELD_MAX);
	for (unsigned i = 0; i < st.nr_held; i++) {
		bool stalled = false, ring = false;

		for (unsigned k = 0; k < st.nr_stalled; k++)
			stalled |= st.stalled[k].disk == st.held[i].disk;
		for (unsigned k = 0; k < st.nr_rings; k++)
			ring |= st.rings[k].disk == st.held[i].disk;
		fuzz_assert(stalled && (!st.held[i].ring || ring));
	}
	for (unsigned i = 0; i < st.n; i++) {
		fuzz_assert(st.specs[i].kind == BLK_FILE || st.specs[i].kind == BLK_NBD);
		fuzz_assert(st.specs[i].spec[0] && !strchr(st.specs[i].spec, '\n'));
		fuzz_assert(st.specs[i].kind != BLK_NBD || st.specs[i].lease[0]);
	}
	for (unsigned i = 0; i < st.nr_rings; i++)
		fuzz_assert(st.rings[i].disk < st.n &&
			    (!i || st.rings[i].disk > st.rings[i - 1].disk));
	ret = blk_state_format(&st, &v2, &out, &len);
	fuzz_assert(!ret);
	fuzz_assert(len == size - 1 && !memcmp(out, data + 1, len));
	fuzz_assert(v2 == version || (!st.nr_rings && !st.nr_stalled && v2 == BLK_STATE_VERSION));
	free(out);
	return 0;
}
