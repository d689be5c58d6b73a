/*
 * Dirty-page tracking over KVM's two mechanisms, behind one interface:
 *
 *   bitmap: KVM_GET_DIRTY_LOG per slot with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
 *           then KVM_CLEAR_DIRTY_LOG in chunks for the pages that were dirty;
 *   ring:   the per-vCPU dirty rings (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]),
 *           collected by the harvester and by a vCPU whose ring is full,
 *           then KVM_RESET_DIRTY_RINGS.
 *
 * The monitor's own writes into guest RAM are invisible to KVM; they are
 * recorded with dirty_mark() in a monitor-side bitmap and merged in.
 *
 * Contract:
 *  - dirty_start() begins tracking; the first harvest after it reports every
 *    page (a consumer's first pass must see all of memory anyway);
 *  - dirty_harvest() returns the pages written since the previous harvest.
 *    Pages are re-protected before it returns, so contents read afterwards
 *    include every write that was not reported, and later writes are caught
 *    by the next harvest;
 *  - dirty_set_add() puts a page back (e.g. its send failed): no dirty page
 *    is ever lost.
 */
#ifndef FERRY_DIRTY_H
#define FERRY_DIRTY_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum dirty_mode {
	DIRTY_MODE_AUTO = 0, /* bitmap with manual protection where offered, else ring */
	DIRTY_MODE_BITMAP,
	DIRTY_MODE_RING,
};

const char *dirty_mode_name(enum dirty_mode mode);
int dirty_mode_parse(const char *s, enum dirty_mode *out);

/* A set of guest page frame numbers, as a bitmap. */
struct dirty_set {
	uint64_t *bits;
	uint64_t nr_pages;
	uint64_t count;   /* number of set bits, kept exact */
};

int dirty_set_init(struct dirty_set *s, uint64_t nr_pages);
void dirty_set_free(struct dirty_set *s);
void dirty_set_clear(struct dirty_set *s);
bool dirty_set_test(const struct dirty_set *s, uint64_t pfn);
void dirty_set_add(struct dirty_set *s, uint64_t pfn);
/* Next set pfn at or after from, or s->nr_pages when there is none. */
uint64_t dirty_set_next(const struct dirty_set *s, uint64_t from);
/* Take the pfns in [lo, hi) out (pages a cut-short round did send). */
void dirty_set_remove_range(struct dirty_set *s, uint64_t lo, uint64_t hi);
/* Recount after bits were ORed in word-wise. */
void dirty_set_recount(struct dirty_set *s);
/* dst |= src (same size); dst's count is kept exact. */
void dirty_set_merge(struct dirty_set *dst, const struct dirty_set *src);

#define dirty_set_for_each(s, pfn) \
	for ((pfn) = dirty_set_next((s), 0); (pfn) < (s)->nr_pages; \
	     (pfn) = dirty_set_next((s), (pfn) + 1))

/* One KVM memory slot as the tracker sees it. */
struct dirty_slot {
	uint32_t slot;
	uint64_t first_pfn;
	uint64_t nr_pages;
};

/*
 * The KVM calls the backends make, so that unit tests can put a fake KVM
 * underneath the harvest logic.
 */
struct dirty_kvm {
	void *ctx;
	int (*get_log)(void *ctx, struct kvm_dirty_log *log);
	int (*clear_log)(void *ctx, struct kvm_clear_dirty_log *clear);
	int (*reset_rings)(void *ctx);
	int (*set_logging)(void *ctx, bool on);
};

/* One vCPU's dirty ring as mapped from the vCPU fd. */
struct dirty_ring {
	struct kvm_dirty_gfn *gfns;
	uint32_t size;     /* entries, a power of two */
	uint32_t next;     /* next entry to look at */
	pthread_mutex_t lock;
};

struct dirty;

struct dirty_ops {
	const char *name;
	/* OR the pages KVM saw written into out, and re-protect them. */
	int (*collect)(struct dirty *d, uint64_t *out);
	/* dirty_sample()'s work; NULL where the backend cannot (the ring). */
	int (*sample)(struct dirty *d, unsigned prev_stripe, unsigned stripe, uint64_t *hits);
};

struct dirty_stats {
	uint64_t harvests;
	uint64_t samples;          /* dirty_sample() calls that succeeded */
	uint64_t pages_harvested;
	uint64_t monitor_pages;    /* pages marked through dirty_mark() */
	uint64_t bad_ring_entries; /* entries naming no slot we know */
};

struct dirty {
	enum dirty_mode mode;
	const struct dirty_ops *ops;
	struct dirty_kvm kvm;
	unsigned nr_slots;
	struct dirty_slot *slots;
	uint64_t nr_pages;          /* pfns covered: max over slots of end */
	uint64_t *monitor_bits;     /* atomically ORed by dirty_mark()      */
	uint64_t *ring_bits;        /* pages collected on ring-full exits   */
	uint64_t *scratch;          /* one slot's KVM bitmap                */
	unsigned nr_rings;
	struct dirty_ring *rings;
	bool tracking;              /* a consumer harvests (start..stop)    */
	bool logging;               /* KVM logs writes (may outlive stop)   */
	bool report_all;            /* the next harvest reports every page  */
	/*
	 * Logging just went on: what the next collect returns is not all
	 * writes (the bitmap's INITIALLY_SET marks every page), so it stays
	 * out of the written map; the scan that follows reads the pages.
	 */
	bool log_fresh;
	/*
	 * Pages that may hold data: OR of every harvest since logging went
	 * on, plus what dirty_written_scan() found then. A page outside it
	 * has been zero throughout, so a sender need not read it. Valid only
	 * while logging has stayed on since the scan began (log_epoch).
	 */
	uint64_t *written;
	bool written_valid;
	bool written_scanning;
	uint64_t log_epoch;         /* +1 each time KVM logging goes off    */
	uint64_t clear_chunk_pages; /* KVM_CLEAR_DIRTY_LOG granularity      */
	struct dirty_stats stats;
	pthread_mutex_t lock;       /* serialises harvest/start/stop        */
	/*
	 * Fault injection for the oracle test: drop test_drop_pages pages at
	 * or above test_drop_min_pfn from the next harvests.
	 */
	uint64_t test_drop_pages;
	uint64_t test_drop_min_pfn;
};

/*
 * Create a tracker over the given slots. rings/nr_rings are used in ring
 * mode only (the caller maps them from the vCPU fds).
 */
int dirty_create(struct dirty **out, enum dirty_mode mode,
		 const struct dirty_kvm *kvm, const struct dirty_slot *slots,
		 unsigned nr_slots);
void dirty_destroy(struct dirty *d);
/* Ring mode: attach vCPU i's ring (entries mapped by the caller). */
int dirty_attach_ring(struct dirty *d, unsigned vcpu, struct kvm_dirty_gfn *gfns,
		      uint32_t entries);

int dirty_start(struct dirty *d);
int dirty_stop(struct dirty *d);
int dirty_harvest(struct dirty *d, struct dirty_set *out);

/*
 * The sampler's harvest, cheap for the guest (bitmap mode only).
 *
 * A harvest re-protects every page written since the one before, and each
 * page's next write then costs the guest a fault (about 25 us under PVM):
 * a guest that keeps writing many pages, harvested once a second for the
 * dirty-rate figure, ran at a fraction of a percent of its speed for as
 * long as it lived. This one reads what KVM logged into the written map
 * and re-protects only the pages of one stripe of DIRTY_STRIPES (pfn %
 * DIRTY_STRIPES == stripe): each page is re-protected once per
 * DIRTY_STRIPES samples. *hits is the number of pages of prev_stripe
 * (re-protected by the call before, or by a full harvest) written since:
 * times DIRTY_STRIPES, an estimate of the pages written in the interval.
 *
 * Reports nothing to a consumer: the pages stay logged in KVM for the
 * next dirty_harvest(), and the monitor's own marks stay queued for it.
 * -EOPNOTSUPP in ring mode, whose ring resets re-protect all it collects;
 * -EAGAIN before the first dirty_harvest() since logging went on.
 */
#define DIRTY_STRIPES 64u
int dirty_sample(struct dirty *d, unsigned prev_stripe, unsigned stripe, uint64_t *hits);

/*
 * Build the written map: with tracking on (so every later write is
 * logged), find the pages of ram that are not zero now. Runs for as long
 * as a read of all guest RAM takes; gives up with -EINTR when *stop turns
 * true. From then on, and for as long as logging stays on, KVM logging is
 * kept on by dirty_stop() too, and dirty_written_map() answers.
 */
int dirty_written_scan(struct dirty *d, const uint8_t *ram, const bool *stop);
/*
 * One bit per page, set where the page may hold data; NULL when no scan
 * completed or logging went off since. Updated by every harvest: read it
 * after the harvest whose pages are about to be sent.
 */
const uint64_t *dirty_written_map(struct dirty *d);

/* Record a monitor write to [gpa, gpa + len). Safe from any thread. */
void dirty_mark(struct dirty *d, uint64_t gpa, uint64_t len);
/* Ring mode: a vCPU thread empties its own full ring. */
int dirty_ring_full(struct dirty *d, unsigned vcpu);

/* Pure helpers, exposed for unit tests. */
int dirty_ring_collect_one(struct dirty *d, struct dirty_ring *r, uint64_t *out);
int dirty_bitmap_collect_slot(struct dirty *d, const struct dirty_slot *s,
			      uint64_t *out);

extern const struct dirty_ops dirty_bitmap_ops;
extern const struct dirty_ops dirty_ring_ops;

#endif
