/*
 * Dirty tracking harvest logic over a fake KVM: the bitmap backend's
 * GET/CLEAR sequence and chunking, the ring backend's collection and reset,
 * the monitor-side bitmap, and that no page is ever lost.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/dirty.h"

#define S0_PAGES 1024u
#define S1_FIRST 1024u
#define S1_PAGES 1000u  /* not a multiple of 64: the last clear is short */
#define NR_PAGES (S1_FIRST + S1_PAGES)
#define RING 16u

struct fake_kvm {
	uint64_t bits[2][S0_PAGES / 64];  /* what KVM saw written, per slot */
	bool logging;
	int get_calls, clear_calls, reset_calls;
	int fail_get_slot;                /* -1: never fail */
	bool bad_clear;                   /* a clear broke KVM's rules */
	struct kvm_dirty_gfn ring[2][RING];
	uint32_t ring_head[2];
};

static struct fake_kvm fk;

static int fake_get_log(void *ctx, struct kvm_dirty_log *log)
{
	struct fake_kvm *f = ctx;

	f->get_calls++;
	if ((int)log->slot == f->fail_get_slot)
		return -EIO;
	memcpy(log->dirty_bitmap, f->bits[log->slot], sizeof(f->bits[0]));
	return 0;
}

static int fake_clear_log(void *ctx, struct kvm_clear_dirty_log *c)
{
	struct fake_kvm *f = ctx;
	uint64_t slot_pages = c->slot ? S1_PAGES : S0_PAGES;
	const uint64_t *bm = c->dirty_bitmap;

	f->clear_calls++;
	/* KVM's rules: 64-page aligned start, whole words unless at the end. */
	if (c->first_page % 64 ||
	    (c->num_pages % 64 && c->first_page + c->num_pages != slot_pages) ||
	    c->first_page + c->num_pages > slot_pages)
		f->bad_clear = true;
	for (uint64_t i = 0; i < c->num_pages; i++) {
		uint64_t p = c->first_page + i;

		if ((bm[i / 64] >> (i % 64)) & 1)
			f->bits[c->slot][p / 64] &= ~(1ull << (p % 64));
	}
	return 0;
}

static int fake_reset_rings(void *ctx)
{
	struct fake_kvm *f = ctx;

	f->reset_calls++;
	/* KVM takes back handed-back entries: they become free again. */
	for (int r = 0; r < 2; r++)
		for (unsigned i = 0; i < RING; i++)
			if (f->ring[r][i].flags == KVM_DIRTY_GFN_F_RESET)
				f->ring[r][i].flags = 0;
	return 0;
}

static int fake_set_logging(void *ctx, bool on)
{
	struct fake_kvm *f = ctx;

	/* KVM_DIRTY_LOG_INITIALLY_SET: logging on marks every page dirty. */
	if (on && !f->logging) {
		memset(f->bits[0], 0xff, sizeof(f->bits[0]));
		memset(f->bits[1], 0, sizeof(f->bits[1]));
		for (uint64_t p = 0; p < S1_PAGES; p++)
			f->bits[1][p / 64] |= 1ull << (p % 64);
	}
	f->logging = on;
	return 0;
}

/* The guest writes a page: KVM records it (bitmap) or pushes an entry. */
static void guest_write(uint64_t pfn, int vcpu)
{
	uint32_t slot = pfn >= S1_FIRST;
	uint64_t off = pfn - (slot ? S1_FIRST : 0);
	struct kvm_dirty_gfn *g = &fk.ring[vcpu][fk.ring_head[vcpu]++ % RING];

	fk.bits[slot][off / 64] |= 1ull << (off % 64);
	g->slot = slot;
	g->offset = off;
	g->flags = KVM_DIRTY_GFN_F_DIRTY;
}

static const struct dirty_slot slots[] = {
	{ .slot = 0, .first_pfn = 0, .nr_pages = S0_PAGES },
	{ .slot = 1, .first_pfn = S1_FIRST, .nr_pages = S1_PAGES },
};

static struct dirty *make(enum dirty_mode mode)
{
	struct dirty_kvm kvm = {
		.ctx = &fk, .get_log = fake_get_log, .clear_log = fake_clear_log,
		.reset_rings = fake_reset_rings, .set_logging = fake_set_logging,
	};
	struct dirty *d;

	memset(&fk, 0, sizeof(fk));
	fk.fail_get_slot = -1;
	assert_int_equal(dirty_create(&d, mode, &kvm, slots, 2), 0);
	d->clear_chunk_pages = 256;
	if (mode == DIRTY_MODE_RING) {
		assert_int_equal(dirty_attach_ring(d, 0, fk.ring[0], RING), 0);
		assert_int_equal(dirty_attach_ring(d, 1, fk.ring[1], RING), 0);
	}
	assert_int_equal(d->nr_pages, NR_PAGES);
	return d;
}

static void start_clean(struct dirty *d, struct dirty_set *s)
{
	assert_int_equal(dirty_start(d), 0);
	assert_true(fk.logging);
	/* The first harvest after start reports every page. */
	assert_int_equal(dirty_harvest(d, s), 0);
	assert_int_equal(s->count, NR_PAGES);
	assert_int_equal(dirty_harvest(d, s), 0);
	assert_int_equal(s->count, 0);
}

static void test_set_ops(void **state)
{
	struct dirty_set s;
	uint64_t pfn, n = 0, prev = 0;

	(void)state;
	assert_int_equal(dirty_set_init(&s, 130), 0);
	assert_int_equal(dirty_set_next(&s, 0), 130);
	dirty_set_add(&s, 0);
	dirty_set_add(&s, 63);
	dirty_set_add(&s, 64);
	dirty_set_add(&s, 129);
	dirty_set_add(&s, 129);  /* twice counts once */
	dirty_set_add(&s, 130);  /* outside: ignored */
	assert_int_equal(s.count, 4);
	assert_true(dirty_set_test(&s, 63));
	assert_false(dirty_set_test(&s, 62));
	assert_false(dirty_set_test(&s, 1000));
	dirty_set_for_each(&s, pfn) {
		assert_true(n == 0 || pfn > prev);
		prev = pfn;
		n++;
	}
	assert_int_equal(n, 4);
	assert_int_equal(dirty_set_next(&s, 65), 129);
	s.count = 0;
	dirty_set_recount(&s);
	assert_int_equal(s.count, 4);
	dirty_set_clear(&s);
	assert_int_equal(s.count, 0);
	assert_int_equal(dirty_set_next(&s, 0), 130);
	dirty_set_free(&s);
}

/* What a round cut short at the time limit had sent leaves the set. */
static void test_set_remove_range(void **state)
{
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, 200), 0);
	for (uint64_t pfn = 0; pfn < 200; pfn++)
		dirty_set_add(&s, pfn);
	dirty_set_remove_range(&s, 5, 5);          /* empty */
	assert_int_equal(s.count, 200);
	dirty_set_remove_range(&s, 3, 7);          /* inside one word */
	assert_int_equal(s.count, 196);
	assert_true(dirty_set_test(&s, 2));
	assert_false(dirty_set_test(&s, 3));
	assert_false(dirty_set_test(&s, 6));
	assert_true(dirty_set_test(&s, 7));
	dirty_set_remove_range(&s, 60, 130);       /* across words, one whole */
	assert_int_equal(s.count, 126);
	assert_true(dirty_set_test(&s, 59));
	assert_false(dirty_set_test(&s, 60));
	assert_false(dirty_set_test(&s, 129));
	assert_true(dirty_set_test(&s, 130));
	dirty_set_remove_range(&s, 0, 64);         /* a word, partly clear already */
	assert_int_equal(s.count, 126 - 56);
	dirty_set_remove_range(&s, 190, 1000);     /* past the end: clipped */
	assert_int_equal(s.count, 70 - 10);
	assert_int_equal(dirty_set_next(&s, 0), 130);
	dirty_set_recount(&s);
	assert_int_equal(s.count, 60);
	dirty_set_free(&s);
}

static void test_create_rejects(void **state)
{
	struct dirty_kvm kvm = { 0 };
	struct dirty_slot bad = { .slot = 0, .first_pfn = 10, .nr_pages = 64 };
	struct dirty *d;

	(void)state;
	assert_int_equal(dirty_create(&d, DIRTY_MODE_BITMAP, &kvm, &bad, 1), -EINVAL);
	assert_int_equal(dirty_create(&d, DIRTY_MODE_BITMAP, &kvm, slots, 0), -EINVAL);
	assert_int_equal(dirty_create(&d, DIRTY_MODE_AUTO, &kvm, slots, 2), -EINVAL);
}

static void test_harvest_needs_start(void **state)
{
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	assert_int_equal(dirty_harvest(d, &s), -ENOTCONN);
	start_clean(d, &s);
	assert_int_equal(dirty_stop(d), 0);
	assert_false(fk.logging);
	assert_int_equal(dirty_harvest(d, &s), -ENOTCONN);
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_bitmap_harvest(void **state)
{
	static const uint64_t pages[] = { 0, 5, 63, 64, 700, 1023, 1024, 1500, 2023 };
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	fk.clear_calls = 0;
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		guest_write(pages[i], 0);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 9);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		assert_true(dirty_set_test(&s, pages[i]));
	/*
	 * Chunks of 256 pages: slot 0 has dirty pages in chunks 0, 2 and 3,
	 * slot 1 in chunks 0, 1 and 3 (the short last one). Clean chunks
	 * cost no ioctl.
	 */
	assert_int_equal(fk.clear_calls, 6);
	assert_false(fk.bad_clear);
	/* KVM's bitmap was cleared: nothing is reported twice. */
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 0);
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_monitor_marks(void **state)
{
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	dirty_mark(d, 3 * 4096 + 100, 8);           /* inside one page */
	dirty_mark(d, 10 * 4096 - 4, 8);            /* straddles pages 9, 10 */
	dirty_mark(d, (uint64_t)NR_PAGES * 4096, 8); /* beyond RAM: ignored */
	dirty_mark(d, 0, 0);                        /* empty: ignored */
	guest_write(3, 0);                          /* also written by the guest */
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 3);
	assert_true(dirty_set_test(&s, 3));
	assert_true(dirty_set_test(&s, 9));
	assert_true(dirty_set_test(&s, 10));
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 0);
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_failed_collect_loses_nothing(void **state)
{
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	guest_write(7, 0);     /* slot 0: collected and cleared before...   */
	guest_write(1100, 0);  /* ...slot 1 fails                           */
	fk.fail_get_slot = 1;
	assert_int_equal(dirty_harvest(d, &s), -EIO);
	assert_int_equal(s.count, 0);
	fk.fail_get_slot = -1;
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 2);
	assert_true(dirty_set_test(&s, 7));
	assert_true(dirty_set_test(&s, 1100));
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_ring_harvest(void **state)
{
	struct dirty *d = make(DIRTY_MODE_RING);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	fk.reset_calls = 0;
	/* Nothing in the rings: no reset ioctl at all. */
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(fk.reset_calls, 0);

	guest_write(1, 0);
	guest_write(1, 0);      /* duplicates collapse */
	guest_write(2000, 1);
	guest_write(1024, 1);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 3);
	assert_true(dirty_set_test(&s, 1));
	assert_true(dirty_set_test(&s, 1024));
	assert_true(dirty_set_test(&s, 2000));
	assert_int_equal(fk.reset_calls, 1);
	for (unsigned i = 0; i < RING; i++)
		assert_int_equal(fk.ring[0][i].flags, 0);

	/* Wrap around the ring end. */
	for (unsigned i = 0; i < RING - 2; i++)
		guest_write(100 + i, 0);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, RING - 2);
	assert_true(dirty_set_test(&s, 100 + RING - 3));
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_ring_bad_entries(void **state)
{
	struct dirty *d = make(DIRTY_MODE_RING);
	struct dirty_set s;
	struct kvm_dirty_gfn *g;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	g = &fk.ring[0][fk.ring_head[0]++ % RING];
	g->slot = 7;                      /* no such slot */
	g->offset = 0;
	g->flags = KVM_DIRTY_GFN_F_DIRTY;
	g = &fk.ring[0][fk.ring_head[0]++ % RING];
	g->slot = 1;
	g->offset = S1_PAGES;             /* one past the slot's end */
	g->flags = KVM_DIRTY_GFN_F_DIRTY;
	g = &fk.ring[0][fk.ring_head[0]++ % RING];
	g->slot = 1u << 16;               /* address space 1: not ours */
	g->offset = 0;
	g->flags = KVM_DIRTY_GFN_F_DIRTY;
	guest_write(42, 0);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 1);
	assert_true(dirty_set_test(&s, 42));
	assert_int_equal(d->stats.bad_ring_entries, 3);
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_ring_full_exit(void **state)
{
	struct dirty *d = make(DIRTY_MODE_RING);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	for (unsigned i = 0; i < RING; i++)
		guest_write(200 + i, 1);
	/* vCPU 1's ring is full: it empties it itself. */
	assert_int_equal(dirty_ring_full(d, 1), 0);
	assert_int_equal(fk.ring[1][0].flags, 0);
	assert_int_equal(dirty_ring_full(d, 5), -EINVAL);
	guest_write(300, 1);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, RING + 1);
	assert_true(dirty_set_test(&s, 200));
	assert_true(dirty_set_test(&s, 200 + RING - 1));
	assert_true(dirty_set_test(&s, 300));
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_fault_injection(void **state)
{
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);
	guest_write(11, 0);
	guest_write(12, 0);
	d->test_drop_pages = 1;
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, 1);
	assert_false(dirty_set_test(&s, 11));
	assert_int_equal(d->test_drop_pages, 0);
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_mode_names(void **state)
{
	enum dirty_mode m;

	(void)state;
	assert_int_equal(dirty_mode_parse("ring", &m), 0);
	assert_int_equal(m, DIRTY_MODE_RING);
	assert_int_equal(dirty_mode_parse("BITMAP", &m), 0);
	assert_int_equal(m, DIRTY_MODE_BITMAP);
	assert_int_equal(dirty_mode_parse("auto", &m), 0);
	assert_int_equal(dirty_mode_parse("rings", &m), -EINVAL);
	assert_string_equal(dirty_mode_name(DIRTY_MODE_RING), "ring");
}

/*
 * The written map: a scan with tracking on, then the OR of every harvest.
 * It outlives a consumer's stop (logging stays on) and dies with logging.
 */
static void test_written_map(void **state)
{
	static uint8_t ram[NR_PAGES][4096] __attribute__((aligned(4096)));
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;
	const uint64_t *map;
	bool stop = false;

	(void)state;
	memset(ram, 0, sizeof(ram));
	ram[3][100] = 1;                /* data from before tracking: the scan's */
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	/* no scan without tracking, no map before a scan */
	assert_int_equal(dirty_written_scan(d, ram[0], &stop), -ENOTCONN);
	assert_null(dirty_written_map(d));
	start_clean(d, &s);
	/* a stopped scan leaves no map */
	stop = true;
	assert_int_equal(dirty_written_scan(d, ram[0], &stop), -EINTR);
	assert_null(dirty_written_map(d));
	stop = false;
	assert_int_equal(dirty_written_scan(d, ram[0], &stop), 0);
	assert_int_equal(dirty_written_scan(d, ram[0], &stop), -EALREADY);
	map = dirty_written_map(d);
	assert_non_null(map);
	assert_true(map[0] == 1ull << 3);
	/* the guest and the monitor write: the next harvest adds them */
	guest_write(70, 0);
	dirty_mark(d, (uint64_t)S1_FIRST * 4096 + 5, 1);
	assert_false(map[70 / 64] >> (70 % 64) & 1);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_true(map[70 / 64] >> (70 % 64) & 1);
	assert_true(map[S1_FIRST / 64] & 1);
	/* a consumer's stop keeps logging (and the map) on ... */
	assert_int_equal(dirty_stop(d), 0);
	assert_true(fk.logging);
	assert_non_null(dirty_written_map(d));
	/* ... a written page waits in KVM for the next consumer's harvest */
	guest_write(900, 0);
	assert_int_equal(dirty_start(d), 0);
	assert_int_equal(dirty_harvest(d, &s), 0);
	assert_int_equal(s.count, NR_PAGES);  /* still: the first one reports all */
	assert_true(map[900 / 64] >> (900 % 64) & 1);
	assert_false(map[901 / 64] >> (901 % 64) & 1);
	dirty_set_free(&s);
	dirty_destroy(d);
}

/* Without a map, a stop turns logging off as it always did. */
static void test_written_none(void **state)
{
	struct dirty *d = make(DIRTY_MODE_RING);

	(void)state;
	assert_int_equal(dirty_start(d), 0);
	assert_true(fk.logging);
	assert_int_equal(dirty_stop(d), 0);
	assert_false(fk.logging);
	assert_null(dirty_written_map(d));
	dirty_destroy(d);
}

static bool kvm_logged(uint64_t pfn)
{
	uint32_t slot = pfn >= S1_FIRST;
	uint64_t off = pfn - (slot ? S1_FIRST : 0);

	return (fk.bits[slot][off / 64] >> (off % 64)) & 1;
}

/*
 * The sampler's striped look: it counts the pages of the stripe the look
 * before re-protected, re-protects only the next stripe's, puts every
 * logged page into the written map and takes nothing from the consumer.
 */
static void test_sample_stripes(void **state)
{
	/* stripe 0: pfn % 64 == 0; stripe 1: pfn % 64 == 1 (slot 1 too) */
	static const uint64_t s0[] = { 0, 64, 640, S1_FIRST, S1_FIRST + 128 };
	static const uint64_t s1[] = { 1, 65, S1_FIRST + 1 };
	static const uint64_t other[] = { 5, 700, S1_FIRST + 999 };
	struct dirty *d = make(DIRTY_MODE_BITMAP);
	struct dirty_set s;
	uint64_t hits;

	(void)state;
	assert_int_equal(dirty_set_init(&s, NR_PAGES), 0);
	start_clean(d, &s);         /* a full harvest: every page re-protected */
	for (size_t i = 0; i < 5; i++)
		guest_write(s0[i], 0);
	for (size_t i = 0; i < 3; i++) {
		guest_write(s1[i], 0);
		guest_write(other[i], 0);
	}
	dirty_mark(d, 300ull * 4096, 1);
	fk.clear_calls = 0;
	assert_int_equal(dirty_sample(d, 0, 1, &hits), 0);
	assert_int_equal(hits, 5);
	assert_false(fk.bad_clear);
	for (size_t i = 0; i < 3; i++) {
		/* stripe 1 re-protected; everything else stays writable */
		assert_false(kvm_logged(s1[i]));
		assert_true(kvm_logged(other[i]));
		assert_true(d->written[other[i] / 64] >> (other[i] % 64) & 1);
		assert_true(d->written[s1[i] / 64] >> (s1[i] % 64) & 1);
	}
	for (size_t i = 0; i < 5; i++)
		assert_true(kvm_logged(s0[i]));
	assert_true(d->written[300 / 64] >> (300 % 64) & 1);
	/* Only chunks with stripe-1 pages were cleared: slot 0's first, slot 1's first. */
	assert_int_equal(fk.clear_calls, 2);

	/* Next look: stripe 1's pages written since, not the ones before. */
	guest_write(65, 0);
	assert_int_equal(dirty_sample(d, 1, 2, &hits), 0);
	assert_int_equal(hits, 1);
	/* A writable page written again is no news for the stripe count. */
	guest_write(5, 0);
	assert_int_equal(dirty_sample(d, 2, 3, &hits), 0);
	assert_int_equal(hits, 0);
	assert_int_equal(d->stats.samples, 3);

	/* The next consumer's harvest still sees what stayed logged, and the marks. */
	assert_int_equal(dirty_harvest(d, &s), 0);
	for (size_t i = 0; i < 3; i++)
		assert_true(dirty_set_test(&s, other[i]));
	assert_true(dirty_set_test(&s, 300));
	assert_true(dirty_set_test(&s, 65));
	assert_false(dirty_set_test(&s, 1));   /* re-protected by the sample, unwritten since */
	dirty_set_free(&s);
	dirty_destroy(d);
}

static void test_sample_refusals(void **state)
{
	struct dirty *d = make(DIRTY_MODE_RING);
	uint64_t hits = 7;

	(void)state;
	assert_int_equal(dirty_sample(d, 0, 1, &hits), -ENOTCONN);
	assert_int_equal(hits, 0);
	assert_int_equal(dirty_start(d), 0);
	/* a ring's reset re-protects all it collected: no stripes there */
	assert_int_equal(dirty_sample(d, 0, 1, &hits), -EOPNOTSUPP);
	dirty_destroy(d);
	d = make(DIRTY_MODE_BITMAP);
	assert_int_equal(dirty_start(d), 0);
	assert_int_equal(dirty_sample(d, DIRTY_STRIPES, 0, &hits), -EINVAL);
	assert_int_equal(dirty_sample(d, 0, DIRTY_STRIPES, &hits), -EINVAL);
	dirty_destroy(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_ops),
		cmocka_unit_test(test_set_remove_range),
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test(test_harvest_needs_start),
		cmocka_unit_test(test_bitmap_harvest),
		cmocka_unit_test(test_monitor_marks),
		cmocka_unit_test(test_failed_collect_loses_nothing),
		cmocka_unit_test(test_ring_harvest),
		cmocka_unit_test(test_ring_bad_entries),
		cmocka_unit_test(test_ring_full_exit),
		cmocka_unit_test(test_fault_injection),
		cmocka_unit_test(test_mode_names),
		cmocka_unit_test(test_written_map),
		cmocka_unit_test(test_written_none),
		cmocka_unit_test(test_sample_stripes),
		cmocka_unit_test(test_sample_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
