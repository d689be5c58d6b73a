/*
 * What the source side's files share (mig_send.c, mig_job.c): one run's
 * state, and the phases the job thread calls in turn.
 */
#ifndef FERRY_MIG_SEND_INT_H
#define FERRY_MIG_SEND_INT_H

#include "migrate/mig_lanes.h"
#include "migrate/mig_live.h"
#include "migrate/mig_throttle.h"

/* Everything one run needs, on the job thread's stack. */
struct mig_run {
	struct mig_job *job;
	struct vm *vm;
	struct xport *x;
	struct mig_lanes_tx *lanes; /* data connections (--connections > 1) */
	uint8_t token[MIG_LANE_TOKEN_LEN];
	struct stream_io io;
	struct stream_writer w;
	struct stream_reader r;
	struct dirty_set set;
	struct mig_throttle throttle;
	bool hashed;        /* the destination takes PAGE_HASHED: no page copies */
	bool sync;          /* the destination answers SYNC: it catches up after each round */
	bool keeps_paused;  /* the destination keeps a guest that arrives paused paused */
	char held_why[VM_ERR_LEN]; /* why the guest was held paused at switchover, for the result */
	bool tracking;      /* we took dirty tracking from the sampler */
	bool paused;        /* we paused the guest */
	bool acked;         /* the destination owns the guest now */
	uint64_t pause_realtime_ns;
	/*
	 * --bandwidth on the control connection. Zeroed, it has no cap: the
	 * first cap it sees (at the first page record, or set later) starts
	 * its schedule then.
	 */
	struct mig_pacer pace;
	char err[MIG_ERR_LEN];
};

void mig_prog_set(struct mig_job *job, enum mig_job_state st, const char *phase);
/*
 * The policy as it stands now: migrate-set changes the downtime target,
 * the cap and the timeout from the control thread (under job->lock, the
 * cap also atomically, for the pacers that read it without the lock).
 */
void mig_policy_now(struct mig_job *job, struct mig_policy_config *out);
void mig_mark(struct mig_run *m, enum mig_mark k);
bool mig_cancelled(struct mig_job *job);
void mig_shutdown_io(struct mig_job *job);
void mig_totals(const struct mig_run *m, struct mig_lane_count *t);
/*
 * Dirty tracking, taken from the dirty-rate sampler (m->tracking) and given
 * back; sampler false leaves the sampler off (the guest has gone). A take
 * that fails gives it straight back: the sampler never stays stopped.
 */
int mig_tracking_take(struct mig_run *m);
void mig_tracking_give(struct mig_run *m, bool sampler);
/* -ESRCH, with m->err saying why, when the guest ended here (crash, stop); else 0. */
int mig_guest_gone(struct mig_run *m);

/* The phases (mig_send.c), in the order the job thread calls them. */
int mig_connect(struct mig_run *m);
int mig_handshake(struct mig_run *m);
int mig_open_lanes(struct mig_run *m);
int mig_precopy(struct mig_run *m);
int mig_switchover(struct mig_run *m);
void mig_commit(struct mig_run *m);
/* Instead of the phases after the handshake (--dry-run). */
int mig_dry_run(struct mig_run *m);

#endif
