/*
 * Parallel data connections for page data (live protocol 2,
 * docs/migration-stream.md, "Parallel connections"). A lane is one data
 * connection; the page pfn always travels on lane mig_lane_of(pfn, n), so
 * "the last one wins" holds without any order between connections. The
 * control connection carries the stream without its pages, and a FENCE
 * after each round counts what every lane has carried.
 */
#ifndef FERRY_MIG_LANES_H
#define FERRY_MIG_LANES_H

#include "migrate/mig_live.h"

#define MIG_LANE_STRIPE_PAGES 512u  /* consecutive pages on one lane */
#define MIG_LANE_TOKEN_LEN 16u

static inline unsigned mig_lane_of(uint64_t pfn, unsigned n)
{
	return (unsigned)(pfn / MIG_LANE_STRIPE_PAGES % n);
}

/* What one lane carried since the stream began (JOIN not counted). */
struct mig_lane_count {
	uint64_t records, bytes, pages, zero_pages;
};

/* Source: one sending thread per lane and round. */
struct mig_lanes_tx;

struct mig_lanes_tx_hooks {
	bool (*stop)(void *ctx);   /* true: give up the round (a cancel) */
	/* After each record, from any lane's thread. */
	void (*progress)(void *ctx, uint64_t pages, uint64_t bytes);
	void *ctx;
};

/*
 * Open n data connections to addr (tls NULL: plain TCP) and JOIN each with
 * token. fds[0..n) get their sockets (for a cancel to shut them down).
 * hashed: send PAGE_HASHED (the destination granted it).
 */
int mig_lanes_tx_open(const struct xport_addr *addr, const struct xport_tls *tls,
		      unsigned n, const uint8_t *token, bool hashed, int io_timeout_ms,
		      struct mig_lanes_tx **out, int *fds, char *err);
/*
 * --bandwidth is a token bucket MIG_PACE_BURST_NS deep: a sender that paces
 * due_ns worth of bytes from t_start, and found now that it fell behind
 * (it did not send: a harvest, a slow peer), keeps at most that much credit.
 * Returns the start to pace from.
 */
#define MIG_PACE_BURST_NS (50ull * 1000 * 1000)
static inline uint64_t mig_pace_start(uint64_t t_start, uint64_t due_ns, uint64_t now)
{
	if (now > t_start + due_ns + MIG_PACE_BURST_NS)
		return now - due_ns - MIG_PACE_BURST_NS;
	return t_start;
}

/* How long bytes take at cap_mbps Mbit/s, in ns. */
static inline uint64_t mig_pace_due_ns(uint64_t bytes, uint64_t cap_mbps)
{
	return bytes * 8ull * 1000ull / cap_mbps;
}

/*
 * One sender's schedule: the bytes it sent since b0 are due at t_start +
 * their time at cap_mbps. The cap can change while it runs (vmon ctl
 * migrate-set); the schedule then starts again from now and the bytes sent
 * so far, with neither credit nor debt. Pacing those bytes at the new rate
 * from the old start would, for a lowered cap, stop the sender for as long
 * as they take at it (minutes, after a long round), and for a cap set
 * where there was none, count from the migration's first page.
 */
struct mig_pacer {
	uint64_t t_start;
	uint64_t b0;
	uint64_t cap_mbps;          /* the rate the schedule is for; 0: none */
};

static inline void mig_pacer_init(struct mig_pacer *p, uint64_t bytes, uint64_t cap,
				  uint64_t now)
{
	p->t_start = now;
	p->b0 = bytes;
	p->cap_mbps = cap;
}

/* Take cap (the one in force now) into the schedule; bytes: sent in all. */
static inline void mig_pacer_update(struct mig_pacer *p, uint64_t bytes, uint64_t cap,
				    uint64_t now)
{
	if (cap != p->cap_mbps)
		mig_pacer_init(p, bytes, cap, now);
	else if (cap)
		p->t_start = mig_pace_start(p->t_start,
					    mig_pace_due_ns(bytes > p->b0 ? bytes - p->b0 : 0, cap),
					    now);
}

/* How long to wait before sending more, after mig_pacer_update; 0: go on. */
static inline uint64_t mig_pacer_wait_ns(const struct mig_pacer *p, uint64_t bytes,
					 uint64_t now)
{
	uint64_t due;

	if (!p->cap_mbps)
		return 0;
	due = mig_pace_due_ns(bytes > p->b0 ? bytes - p->b0 : 0, p->cap_mbps);
	return p->t_start + due > now ? p->t_start + due - now : 0;
}

/*
 * Sleep until bytes (sent in all) fit p's schedule at the cap *cap_mbps
 * (0: no cap; read at each look, as migrate-set may change it from another
 * thread), in slices short enough that a raised or lifted cap takes effect
 * at once, and that stop(ctx) (a cancel, the time limit; may be NULL) ends
 * the wait: at 1 Mbit/s one record's wait is 16 s. The control connection
 * and each lane pace themselves with it.
 */
void mig_pace_sleep(struct mig_pacer *p, uint64_t bytes, const uint64_t *cap_mbps,
		    bool (*stop)(void *ctx), void *ctx);

/*
 * Send the pages of set from vm's RAM, each on its lane, with one thread
 * per lane; return when every lane has written its share or one failed
 * (its pages are dirtied again). The cap *cap_mbps (0: none, read as it
 * goes) is shared by the lanes, each pacing its share of it from the
 * round's start (each lane keeps its own bucket).
 */
int mig_lanes_tx_round(struct mig_lanes_tx *t, const struct dirty_set *set, struct vm *vm,
		       const uint64_t *cap_mbps,
		       const struct mig_lanes_tx_hooks *hooks, char *err);
/*
 * After a round that stopped early: take out of set the stripes that
 * went out whole, so that only what is left gets sent again.
 */
void mig_lanes_tx_forget_sent(const struct mig_lanes_tx *t, struct dirty_set *set);
/* The sum over all lanes. */
void mig_lanes_tx_total(const struct mig_lanes_tx *t, struct mig_lane_count *out);
/* The FENCE after a round's pages, on the control connection. */
int mig_lanes_tx_fence(const struct mig_lanes_tx *t, struct stream_writer *ctl,
		       unsigned round, bool final);
void mig_lanes_tx_close(struct mig_lanes_tx *t);

/* Destination: one receiving thread per lane. */
struct mig_lanes_rx;

/*
 * Accept the n data connections of the migration whose control connection
 * (ctl, from ctl->peer) brought token, within timeout_ms. Strays (another
 * host, a wrong token or lane) are closed and logged. A source that hangs
 * up the control connection meanwhile (a cancel) ends the wait at once.
 */
int mig_lanes_rx_accept(struct xport_listener *l, struct xport *ctl, unsigned n,
			const uint8_t *token, int timeout_ms, struct mig_lanes_rx **out,
			char *err);
/* Start receiving into vm's RAM; *hooks is what mig_load_stream needs. */
int mig_lanes_rx_start(struct mig_lanes_rx *rx, struct vm *vm,
		       struct mig_page_lanes *hooks, char *err);
/* The first lane's failure, or NULL. Valid until close. */
const char *mig_lanes_rx_error(struct mig_lanes_rx *rx);
/* Shut every lane down, wait for its thread, close it. NULL is fine. */
void mig_lanes_rx_close(struct mig_lanes_rx *rx);

#endif
