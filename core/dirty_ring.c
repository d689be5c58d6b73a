/*
 * Ring backend: each vCPU has a ring of (slot, offset) entries that KVM
 * fills as the guest dirties pages. An entry is ours once its DIRTY flag is
 * visible (acquire); we hand it back by setting RESET (release), and
 * KVM_RESET_DIRTY_RINGS re-protects the pages of all handed-back entries.
 *
 * A ring that fills up stops its vCPU with KVM_EXIT_DIRTY_RING_FULL; that
 * vCPU empties its own ring into ring_bits (dirty_ring_full), so a slow
 * harvester never stalls the guest for long.
 */
#include "core/dirty.h"

#include <errno.h>

#include "core/log.h"

static const struct dirty_slot *ring_slot(const struct dirty *d, uint32_t id)
{
	/* Slots are usually numbered by position: try that first. */
	if (id < d->nr_slots && d->slots[id].slot == id)
		return &d->slots[id];
	for (unsigned i = 0; i < d->nr_slots; i++)
		if (d->slots[i].slot == id)
			return &d->slots[i];
	return NULL;
}

int dirty_ring_collect_one(struct dirty *d, struct dirty_ring *r, uint64_t *out)
{
	int n = 0;

	if (!r->gfns)
		return 0;
	for (;;) {
		struct kvm_dirty_gfn *g = &r->gfns[r->next & (r->size - 1)];
		uint32_t flags = __atomic_load_n(&g->flags, __ATOMIC_ACQUIRE);
		const struct dirty_slot *s;

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		/* Address space 0 only: Ferry runs no SMM. */
		s = (g->slot >> 16) ? NULL : ring_slot(d, g->slot & 0xffff);
		if (!s || g->offset >= s->nr_pages) {
			__atomic_fetch_add(&d->stats.bad_ring_entries, 1, __ATOMIC_RELAXED);
			log_warn("dirty ring: entry for unknown slot %u offset 0x%llx",
				 g->slot, (unsigned long long)g->offset);
		} else {
			uint64_t pfn = s->first_pfn + g->offset;

			__atomic_fetch_or(&out[pfn / 64], 1ull << (pfn % 64),
					  __ATOMIC_RELAXED);
		}
		__atomic_store_n(&g->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		r->next++;
		n++;
	}
	return n;
}

static int dirty_ring_collect(struct dirty *d, uint64_t *out)
{
	int total = 0;

	for (unsigned i = 0; i < d->nr_rings; i++) {
		struct dirty_ring *r = &d->rings[i];

		pthread_mutex_lock(&r->lock);
		total += dirty_ring_collect_one(d, r, out);
		pthread_mutex_unlock(&r->lock);
	}
	if (total)
		return d->kvm.reset_rings(d->kvm.ctx);
	return 0;
}

int dirty_ring_full(struct dirty *d, unsigned vcpu)
{
	struct dirty_ring *r;
	int n;

	if (vcpu >= d->nr_rings)
		return -EINVAL;
	r = &d->rings[vcpu];
	pthread_mutex_lock(&r->lock);
	n = dirty_ring_collect_one(d, r, d->ring_bits);
	pthread_mutex_unlock(&r->lock);
	return n ? d->kvm.reset_rings(d->kvm.ctx) : 0;
}

const struct dirty_ops dirty_ring_ops = {
	.name = "ring",
	.collect = dirty_ring_collect,
};
