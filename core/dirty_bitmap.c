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

/*
 * Clear (and so re-protect) the pages set in scratch, a chunk at a time,
 * skipping clean chunks. Each chunk's pages go into out (if any) as soon
 * as it is cleared: a failure later loses none of them.
 */
static int clear_chunks(struct dirty *d, const struct dirty_slot *s, uint64_t *out)
{
	uint64_t chunk = d->clear_chunk_pages;

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
		int ret;

		for (uint64_t w = w0; w < w1 && !any; w++)
			any = d->scratch[w] != 0;
		if (!any)
			continue;
		ret = d->kvm.clear_log(d->kvm.ctx, &clear);
		if (ret)
			return ret;
		for (uint64_t w = w0; out && w < w1; w++)
			out[s->first_pfn / 64 + w] |= d->scratch[w];
	}
	return 0;
}

/* KVM's log of one slot into scratch. */
static int get_slot(struct dirty *d, const struct dirty_slot *s)
{
	struct kvm_dirty_log log = { .slot = s->slot, .dirty_bitmap = d->scratch };

	memset(d->scratch, 0, (s->nr_pages + 63) / 64 * sizeof(uint64_t));
	return d->kvm.get_log(d->kvm.ctx, &log);
}

int dirty_bitmap_collect_slot(struct dirty *d, const struct dirty_slot *s,
			      uint64_t *out)
{
	int ret = get_slot(d, s);

	return ret ? ret : clear_chunks(d, s, out);
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

/* One bit of every word: the pages of a stripe (slots start 64-aligned). */
static int dirty_bitmap_sample(struct dirty *d, unsigned prev_stripe, unsigned stripe,
			       uint64_t *hits)
{
	const uint64_t prev = 1ull << prev_stripe, next = 1ull << stripe;

	*hits = 0;
	for (unsigned i = 0; i < d->nr_slots; i++) {
		const struct dirty_slot *s = &d->slots[i];
		int ret = get_slot(d, s);

		if (ret)
			return ret;
		for (uint64_t w = 0; w < (s->nr_pages + 63) / 64; w++) {
			uint64_t v = d->scratch[w];

			if (v)
				__atomic_fetch_or(&d->written[s->first_pfn / 64 + w], v,
						  __ATOMIC_RELAXED);
			*hits += !!(v & prev);
			/* Only the stripe's pages are re-protected; the rest stay writable. */
			d->scratch[w] = v & next;
		}
		ret = clear_chunks(d, s, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

const struct dirty_ops dirty_bitmap_ops = {
	.name = "bitmap",
	.collect = dirty_bitmap_collect,
	.sample = dirty_bitmap_sample,
};
