/*
 * Bitmap backend: KVM_GET_DIRTY_LOG with manual protection. GET copies the
 * slot's bitmap without re-protecting anything; CLEAR then clears and
 * write-protects exactly the pages we took, chunk by chunk so the MMU lock
 * is never held for a whole large slot, and skipping clean chunks so a
 * sparse harvest costs little more than the copy.
 */
#include "core/dirty.h"

#include <errno.h>
#include <string.h>

#include "core/util.h"

int dirty_bitmap_collect_slot(struct dirty *d, const struct dirty_slot *s,
			      uint64_t *out)
{
	uint64_t words = (s->nr_pages + 63) / 64;
	uint64_t chunk = d->clear_chunk_pages;
	struct kvm_dirty_log log = { .slot = s->slot, .dirty_bitmap = d->scratch };
	int ret;

	memset(d->scratch, 0, words * sizeof(uint64_t));
	ret = d->kvm.get_log(d->kvm.ctx, &log);
	if (ret)
		return ret;

	for (uint64_t first = 0; first < s->nr_pages; first += chunk) {
		uint64_t n = MIN(chunk, s->nr_pages - first);
		uint64_t w0 = first / 64, w1 = (first + n + 63) / 64;
		struct kvm_clear_dirty_log clear = {
			.slot = s->slot,
			.num_pages = (uint32_t)n,
			.first_page = first,
			.dirty_bitmap = d->scratch + w0,
		};
		bool any = false;

		for (uint64_t w = w0; w < w1 && !any; w++)
			any = d->scratch[w] != 0;
		if (!any)
			continue;
		ret = d->kvm.clear_log(d->kvm.ctx, &clear);
		if (ret)
			return ret;
		for (uint64_t w = w0; w < w1; w++)
			out[s->first_pfn / 64 + w] |= d->scratch[w];
	}
	return 0;
}

static int dirty_bitmap_collect(struct dirty *d, uint64_t *out)
{
	for (unsigned i = 0; i < d->nr_slots; i++) {
		int ret = dirty_bitmap_collect_slot(d, &d->slots[i], out);

		if (ret)
			return ret;
	}
	return 0;
}

const struct dirty_ops dirty_bitmap_ops = {
	.name = "bitmap",
	.collect = dirty_bitmap_collect,
};
