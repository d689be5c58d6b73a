/*
 * The source's data connections (live protocol 2): open and JOIN them,
 * send each round's pages with one thread per lane, and count what each
 * lane carried for the FENCE.
 */
#include "migrate/mig_lanes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "migrate/mig_proto.h"

struct tx_lane {
	struct mig_lanes_tx *t;
	unsigned idx;
	struct xport *x;
	struct stream_io io;
	struct stream_writer w;
	pthread_t thread;
	struct mig_pacer pace;  /* its share of --bandwidth */
	uint64_t next_stripe;   /* this round: the stripes before it went out */
	int ret;
	char err[MIG_ERR_LEN];
};

struct mig_lanes_tx {
	unsigned n;
	struct tx_lane lane[MIG_CONN_MAX];
	/* The round in progress. */
	const struct dirty_set *set;
	struct vm *vm;
	const uint64_t *cap_mbps;   /* the whole stream's; each lane takes 1/n of it */
	const struct mig_lanes_tx_hooks *hooks;
	bool stop;                  /* atomic: a lane failed or a cancel came */
};

int mig_lanes_tx_open(const struct xport_addr *addr, const struct xport_tls *tls,
		      unsigned n, const uint8_t *token, bool hashed, int io_timeout_ms,
		      struct mig_lanes_tx **out, int *fds, char *err)
{
	struct mig_lanes_tx *t = calloc(1, sizeof(*t));
	char xerr[XPORT_ERR_LEN];
	int ret = 0;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	for (unsigned i = 0; i < n && !ret; i++) {
		struct tx_lane *ln = &t->lane[i];
		Ferry__Mig__Join j = FERRY__MIG__JOIN__INIT;

		ln->t = t;
		ln->idx = i;
		ret = xport_connect(addr, tls, MIG_HANDSHAKE_TIMEOUT_MS, &ln->x, xerr);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "data connection %u: %s", i, xerr);
			break;
		}
		t->n = i + 1;
		fds[i] = ln->x->fd;
		xport_set_timeout(ln->x, io_timeout_ms);
		mig_xport_io(ln->x, &ln->io);
		stream_writer_init(&ln->w, -1);
		ln->w.io = &ln->io;
		j.token.data = (uint8_t *)token;
		j.token.len = MIG_LANE_TOKEN_LEN;
		j.lane = i;
		ret = mig_send_msg(&ln->w, STREAM_REC_JOIN, &j.base);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "data connection %u: JOIN: %s", i,
				 ln->x->err[0] ? ln->x->err : strerror(-ret));
			break;
		}
		/* The FENCE counts pages, not the JOIN. */
		stream_writer_destroy(&ln->w);
		stream_writer_init(&ln->w, -1);
		ln->w.io = &ln->io;
		ln->w.hashed = hashed;
	}
	if (ret) {
		mig_lanes_tx_close(t);
		return ret;
	}
	*out = t;
	return 0;
}

#define MIG_PACE_SLICE_NS (50ull * 1000 * 1000)

void mig_pace_sleep(struct mig_pacer *p, uint64_t bytes, const uint64_t *cap_mbps,
		    bool (*stop)(void *ctx), void *ctx)
{
	for (;;) {
		uint64_t now = now_ns(), wait;

		mig_pacer_update(p, bytes, __atomic_load_n(cap_mbps, __ATOMIC_ACQUIRE), now);
		wait = mig_pacer_wait_ns(p, bytes, now);
		if (!wait || (stop && stop(ctx)))
			return;
		usleep((useconds_t)(MIN(wait, MIG_PACE_SLICE_NS) / 1000));
	}
}

/* The set pfns of stripe c: at most MIG_LANE_STRIPE_PAGES. */
static size_t stripe_pfns(const struct dirty_set *s, uint64_t c, uint64_t *pfns)
{
	uint64_t lo = c * MIG_LANE_STRIPE_PAGES;
	uint64_t hi = MIN(lo + MIG_LANE_STRIPE_PAGES, s->nr_pages);
	size_t n = 0;

	/* A stripe is a whole number of 64-bit words. */
	for (uint64_t wi = lo / 64; wi * 64 < hi; wi++) {
		uint64_t bits = s->bits[wi];

		while (bits) {
			uint64_t pfn = wi * 64 + (uint64_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			if (pfn < hi)
				pfns[n++] = pfn;
		}
	}
	return n;
}

/* Another lane failed, or the engine says stop. */
static bool tx_stopping(void *arg)
{
	struct mig_lanes_tx *t = arg;

	return __atomic_load_n(&t->stop, __ATOMIC_ACQUIRE) ||
	       (t->hooks->stop && t->hooks->stop(t->hooks->ctx));
}

static void *tx_lane_thread(void *arg)
{
	struct tx_lane *ln = arg;
	struct mig_lanes_tx *t = ln->t;
	const struct dirty_set *set = t->set;
	uint64_t pfns[MIG_LANE_STRIPE_PAGES];
	uint64_t nstripes = (set->nr_pages + MIG_LANE_STRIPE_PAGES - 1) / MIG_LANE_STRIPE_PAGES;

	for (uint64_t c = ln->idx; c < nstripes; c += t->n) {
		size_t n = stripe_pfns(set, c, pfns);
		uint64_t off0 = ln->w.off;

		if (!n)
			continue;
		if (tx_stopping(t)) {
			ln->ret = -ECANCELED;
			snprintf(ln->err, MIG_ERR_LEN, "cancelled");
			break;
		}
		ln->ret = stream_write_pages(&ln->w, pfns, n, t->vm->mem.base);
		if (ln->ret) {
			/* The pages did not go: they are still dirty. */
			for (size_t i = 0; i < n; i++)
				dirty_mark(t->vm->dirty, pfns[i] << MEM_PAGE_SHIFT, 1);
			snprintf(ln->err, MIG_ERR_LEN, "send pages on data connection %u: %s",
				 ln->idx, ln->x->err[0] ? ln->x->err : strerror(-ln->ret));
			__atomic_store_n(&t->stop, true, __ATOMIC_RELEASE);
			break;
		}
		ln->next_stripe = c + t->n;
		if (t->hooks->progress)
			t->hooks->progress(t->hooks->ctx, n, ln->w.off - off0);
		/* this lane's bytes against its share of the cap */
		mig_pace_sleep(&ln->pace, ln->w.off * t->n, t->cap_mbps, tx_stopping, t);
	}
	return NULL;
}

int mig_lanes_tx_round(struct mig_lanes_tx *t, const struct dirty_set *set, struct vm *vm,
		       const uint64_t *cap_mbps,
		       const struct mig_lanes_tx_hooks *hooks, char *err)
{
	unsigned started = 0;
	int ret = 0;

	t->set = set;
	t->vm = vm;
	t->cap_mbps = cap_mbps;
	t->hooks = hooks;
	t->stop = false;
	for (unsigned i = 0; i < t->n; i++) {
		t->lane[i].ret = 0;
		t->lane[i].err[0] = 0;
		t->lane[i].next_stripe = i;
		/* Ahead of its cap by at most the record before each sleep: no debt to carry. */
		mig_pacer_init(&t->lane[i].pace, t->lane[i].w.off * t->n,
			       __atomic_load_n(cap_mbps, __ATOMIC_ACQUIRE), now_ns());
		t->lane[i].w.written = dirty_written_map(vm->dirty);
		if (pthread_create(&t->lane[i].thread, NULL, tx_lane_thread, &t->lane[i])) {
			__atomic_store_n(&t->stop, true, __ATOMIC_RELEASE);
			snprintf(err, MIG_ERR_LEN, "cannot start the sending threads");
			ret = -EAGAIN;
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(t->lane[i].thread, NULL);
	/* A real failure says more than the cancels it caused in other lanes. */
	for (unsigned i = 0; i < started && !ret; i++)
		if (t->lane[i].ret && t->lane[i].ret != -ECANCELED) {
			ret = t->lane[i].ret;
			snprintf(err, MIG_ERR_LEN, "%s", t->lane[i].err);
		}
	for (unsigned i = 0; i < started && !ret; i++)
		if (t->lane[i].ret) {
			ret = t->lane[i].ret;
			snprintf(err, MIG_ERR_LEN, "%s", t->lane[i].err);
		}
	return ret;
}

void mig_lanes_tx_forget_sent(const struct mig_lanes_tx *t, struct dirty_set *set)
{
	for (unsigned i = 0; i < t->n; i++)
		for (uint64_t c = i; c < t->lane[i].next_stripe; c += t->n)
			dirty_set_remove_range(set, c * MIG_LANE_STRIPE_PAGES,
					       (c + 1) * MIG_LANE_STRIPE_PAGES);
}

void mig_lanes_tx_total(const struct mig_lanes_tx *t, struct mig_lane_count *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; t && i < t->n; i++) {
		out->records += t->lane[i].w.records;
		out->bytes += t->lane[i].w.off;
		out->pages += t->lane[i].w.pages;
		out->zero_pages += t->lane[i].w.zero_pages;
	}
}

int mig_lanes_tx_fence(const struct mig_lanes_tx *t, struct stream_writer *ctl,
		       unsigned round, bool final)
{
	Ferry__Mig__Fence f = FERRY__MIG__FENCE__INIT;
	Ferry__Mig__LaneCount c[MIG_CONN_MAX], *cp[MIG_CONN_MAX];

	for (unsigned i = 0; i < t->n; i++) {
		ferry__mig__lane_count__init(&c[i]);
		c[i].records = t->lane[i].w.records;
		c[i].bytes = t->lane[i].w.off;
		c[i].pages = t->lane[i].w.pages;
		c[i].zero_pages = t->lane[i].w.zero_pages;
		cp[i] = &c[i];
	}
	f.round = round;
	f.final = final;
	f.n_lanes = t->n;
	f.lanes = cp;
	return stream_write_pb(ctl, STREAM_REC_FENCE, &f.base);
}

void mig_lanes_tx_close(struct mig_lanes_tx *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < t->n; i++) {
		xport_close(t->lane[i].x);
		stream_writer_destroy(&t->lane[i].w);
	}
	free(t);
}
