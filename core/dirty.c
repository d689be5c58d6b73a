/*
 * The mechanism-independent half of dirty tracking: the page set, the
 * monitor-side bitmap, and the harvest sequence around a backend's collect.
 */
#include "core/dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#define WORDS(pages) (((pages) + 63) / 64)

const char *dirty_mode_name(enum dirty_mode mode)
{
	switch (mode) {
	case DIRTY_MODE_BITMAP: return "bitmap";
	case DIRTY_MODE_RING:   return "ring";
	default:                return "auto";
	}
}

int dirty_mode_parse(const char *s, enum dirty_mode *out)
{
	if (!strcasecmp(s, "bitmap"))
		*out = DIRTY_MODE_BITMAP;
	else if (!strcasecmp(s, "ring"))
		*out = DIRTY_MODE_RING;
	else if (!strcasecmp(s, "auto"))
		*out = DIRTY_MODE_AUTO;
	else
		return -EINVAL;
	return 0;
}

int dirty_set_init(struct dirty_set *s, uint64_t nr_pages)
{
	s->bits = calloc(WORDS(nr_pages) ? WORDS(nr_pages) : 1, sizeof(uint64_t));
	if (!s->bits)
		return -ENOMEM;
	s->nr_pages = nr_pages;
	s->count = 0;
	return 0;
}

void dirty_set_free(struct dirty_set *s)
{
	free(s->bits);
	s->bits = NULL;
	s->nr_pages = s->count = 0;
}

void dirty_set_clear(struct dirty_set *s)
{
	memset(s->bits, 0, WORDS(s->nr_pages) * sizeof(uint64_t));
	s->count = 0;
}

bool dirty_set_test(const struct dirty_set *s, uint64_t pfn)
{
	return pfn < s->nr_pages && (s->bits[pfn / 64] >> (pfn % 64)) & 1;
}

void dirty_set_add(struct dirty_set *s, uint64_t pfn)
{
	uint64_t bit;

	if (pfn >= s->nr_pages)
		return;
	bit = 1ull << (pfn % 64);
	if (!(s->bits[pfn / 64] & bit)) {
		s->bits[pfn / 64] |= bit;
		s->count++;
	}
}

uint64_t dirty_set_next(const struct dirty_set *s, uint64_t from)
{
	uint64_t w, word;

	if (from >= s->nr_pages)
		return s->nr_pages;
	w = from / 64;
	word = s->bits[w] & (~0ull << (from % 64));
	for (;;) {
		if (word) {
			uint64_t pfn = w * 64 + (uint64_t)__builtin_ctzll(word);

			return pfn < s->nr_pages ? pfn : s->nr_pages;
		}
		if (++w >= WORDS(s->nr_pages))
			return s->nr_pages;
		word = s->bits[w];
	}
}

void dirty_set_remove_range(struct dirty_set *s, uint64_t lo, uint64_t hi)
{
	hi = MIN(hi, s->nr_pages);
	for (uint64_t pfn = lo; pfn < hi;) {
		uint64_t w = pfn / 64, end = MIN(hi, (w + 1) * 64), mask;
		unsigned a = (unsigned)(pfn % 64), b = (unsigned)(end - w * 64);

		mask = (b == 64 ? ~0ull : (1ull << b) - 1) & (~0ull << a);
		s->count -= (uint64_t)__builtin_popcountll(s->bits[w] & mask);
		s->bits[w] &= ~mask;
		pfn = end;
	}
}

void dirty_set_recount(struct dirty_set *s)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < WORDS(s->nr_pages); w++)
		n += (uint64_t)__builtin_popcountll(s->bits[w]);
	s->count = n;
}

void dirty_set_merge(struct dirty_set *dst, const struct dirty_set *src)
{
	uint64_t n = MIN(dst->nr_pages, src->nr_pages);

	for (uint64_t w = 0; w < WORDS(n); w++)
		dst->bits[w] |= src->bits[w];
	dirty_set_recount(dst);
}

int dirty_create(struct dirty **out, enum dirty_mode mode,
		 const struct dirty_kvm *kvm, const struct dirty_slot *slots,
		 unsigned nr_slots)
{
	struct dirty *d;
	uint64_t max_slot_pages = 0;
	int ret = -ENOMEM;

	if (!nr_slots || (mode != DIRTY_MODE_BITMAP && mode != DIRTY_MODE_RING))
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	d->mode = mode;
	d->ops = mode == DIRTY_MODE_RING ? &dirty_ring_ops : &dirty_bitmap_ops;
	d->kvm = *kvm;
	d->clear_chunk_pages = 64 * 1024; /* 256 MiB per KVM_CLEAR_DIRTY_LOG */
	d->nr_slots = nr_slots;
	d->slots = calloc(nr_slots, sizeof(*slots));
	if (!d->slots)
		goto fail;
	memcpy(d->slots, slots, nr_slots * sizeof(*slots));
	for (unsigned i = 0; i < nr_slots; i++) {
		/* Word-aligned slots let a slot's bitmap be ORed in word-wise. */
		if (slots[i].first_pfn % 64 || !slots[i].nr_pages) {
			ret = -EINVAL;
			goto fail;
		}
		d->nr_pages = MAX(d->nr_pages, slots[i].first_pfn + slots[i].nr_pages);
		max_slot_pages = MAX(max_slot_pages, slots[i].nr_pages);
	}
	d->monitor_bits = calloc(WORDS(d->nr_pages), sizeof(uint64_t));
	d->ring_bits = calloc(WORDS(d->nr_pages), sizeof(uint64_t));
	d->scratch = calloc(WORDS(max_slot_pages), sizeof(uint64_t));
	d->written = calloc(WORDS(d->nr_pages), sizeof(uint64_t));
	if (!d->monitor_bits || !d->ring_bits || !d->scratch || !d->written)
		goto fail;
	*out = d;
	return 0;

fail:
	dirty_destroy(d);
	return ret;
}

void dirty_destroy(struct dirty *d)
{
	if (!d)
		return;
	for (unsigned i = 0; i < d->nr_rings; i++)
		pthread_mutex_destroy(&d->rings[i].lock);
	free(d->rings);
	free(d->slots);
	free(d->monitor_bits);
	free(d->ring_bits);
	free(d->scratch);
	free(d->written);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int dirty_attach_ring(struct dirty *d, unsigned vcpu, struct kvm_dirty_gfn *gfns,
		      uint32_t entries)
{
	if (d->mode != DIRTY_MODE_RING || !entries || (entries & (entries - 1)))
		return -EINVAL;
	if (vcpu >= d->nr_rings) {
		struct dirty_ring *r = realloc(d->rings, (vcpu + 1) * sizeof(*r));

		if (!r)
			return -ENOMEM;
		memset(r + d->nr_rings, 0, (vcpu + 1 - d->nr_rings) * sizeof(*r));
		for (unsigned i = d->nr_rings; i <= vcpu; i++)
			pthread_mutex_init(&r[i].lock, NULL);
		d->rings = r;
		d->nr_rings = vcpu + 1;
	}
	d->rings[vcpu].gfns = gfns;
	d->rings[vcpu].size = entries;
	d->rings[vcpu].next = 0;
	return 0;
}

static void bits_set_all(uint64_t *bits, uint64_t nr_pages)
{
	memset(bits, 0xff, (nr_pages / 64) * sizeof(uint64_t));
	if (nr_pages % 64)
		bits[nr_pages / 64] |= (1ull << (nr_pages % 64)) - 1;
}

int dirty_start(struct dirty *d)
{
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (d->tracking)
		goto out;
	if (!d->logging) {
		ret = d->kvm.set_logging(d->kvm.ctx, true);
		if (ret)
			goto out;
		d->logging = true;
		d->log_fresh = true;
	}
	/* The first harvest reports every page: see the contract in dirty.h. */
	d->report_all = true;
	d->tracking = true;
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int dirty_stop(struct dirty *d)
{
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (!d->tracking)
		goto out;
	d->tracking = false;
	/*
	 * The written map lives on logging: keep it on (it costs the guest
	 * one fault per page until the next consumer re-protects anything).
	 */
	if (d->written_valid || d->written_scanning)
		goto out;
	ret = d->kvm.set_logging(d->kvm.ctx, false);
	d->logging = false;
	d->log_epoch++;
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

/* Move the pages of an atomically updated bitmap into out. */
static void bits_drain(uint64_t *src, uint64_t *out, uint64_t words)
{
	for (uint64_t w = 0; w < words; w++) {
		uint64_t v;

		if (!__atomic_load_n(&src[w], __ATOMIC_RELAXED))
			continue;
		v = __atomic_exchange_n(&src[w], 0, __ATOMIC_ACQ_REL);
		out[w] |= v;
	}
}

int dirty_harvest(struct dirty *d, struct dirty_set *out)
{
	int ret;

	if (out->nr_pages != d->nr_pages)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	if (!d->tracking) {
		ret = -ENOTCONN;
		goto out;
	}
	dirty_set_clear(out);
	ret = d->ops->collect(d, out->bits);
	if (ret) {
		/*
		 * Some slots may already be collected and re-protected: keep
		 * their pages for the next harvest rather than lose them.
		 */
		for (uint64_t w = 0; w < WORDS(d->nr_pages); w++)
			if (out->bits[w])
				__atomic_fetch_or(&d->monitor_bits[w], out->bits[w],
						  __ATOMIC_RELEASE);
		dirty_set_clear(out);
		goto out;
	}
	bits_drain(d->ring_bits, out->bits, WORDS(d->nr_pages));
	bits_drain(d->monitor_bits, out->bits, WORDS(d->nr_pages));
	for (uint64_t w = 0; !d->log_fresh && w < WORDS(d->nr_pages); w++)
		if (out->bits[w])
			__atomic_fetch_or(&d->written[w], out->bits[w], __ATOMIC_RELAXED);
	d->log_fresh = false;
	if (d->report_all) {
		bits_set_all(out->bits, d->nr_pages);
		d->report_all = false;
	}
	dirty_set_recount(out);

	/* Fault injection: the oracle test proves it notices a lost page. */
	while (d->test_drop_pages && out->count) {
		uint64_t pfn = dirty_set_next(out, d->test_drop_min_pfn);

		if (pfn >= out->nr_pages)
			break;
		out->bits[pfn / 64] &= ~(1ull << (pfn % 64));
		out->count--;
		d->test_drop_pages--;
		log_warn("dirty: test fault injection dropped page 0x%llx",
			 (unsigned long long)pfn);
	}
	d->stats.harvests++;
	d->stats.pages_harvested += out->count;
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int dirty_sample(struct dirty *d, unsigned prev_stripe, unsigned stripe, uint64_t *hits)
{
	int ret;

	*hits = 0;
	if (prev_stripe >= DIRTY_STRIPES || stripe >= DIRTY_STRIPES)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	if (!d->tracking)
		ret = -ENOTCONN;
	else if (!d->ops->sample)
		ret = -EOPNOTSUPP;
	else if (d->log_fresh)
		ret = -EAGAIN;   /* a full harvest first: INITIALLY_SET's marks are no writes */
	else
		ret = d->ops->sample(d, prev_stripe, stripe, hits);
	/* The monitor's marks stay queued for the next harvest; the map has them now. */
	for (uint64_t w = 0; !ret && w < WORDS(d->nr_pages); w++) {
		uint64_t v = __atomic_load_n(&d->monitor_bits[w], __ATOMIC_ACQUIRE);

		if (v)
			__atomic_fetch_or(&d->written[w], v, __ATOMIC_RELAXED);
	}
	if (!ret)
		d->stats.samples++;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void dirty_mark(struct dirty *d, uint64_t gpa, uint64_t len)
{
	uint64_t first, last;

	if (!d || !len)
		return;
	first = gpa >> MEM_PAGE_SHIFT;
	last = (gpa + len - 1) >> MEM_PAGE_SHIFT;
	for (uint64_t pfn = first; pfn <= last && pfn < d->nr_pages; pfn++) {
		uint64_t bit = 1ull << (pfn % 64);

		__atomic_fetch_or(&d->monitor_bits[pfn / 64], bit, __ATOMIC_RELEASE);
		__atomic_fetch_add(&d->stats.monitor_pages, 1, __ATOMIC_RELAXED);
	}
}
