/*
 * Migration policy: the engine runs rounds and reports what each one did;
 * the policy alone decides what happens next. Pure code: no I/O, no clock
 * reads, no globals, so it can be unit-tested and driven by a simulator
 * (the cluster's load balancer uses mig_predict too).
 *
 * The default policy minimises downtime rather than just meeting the
 * target: it keeps iterating while rounds still shrink the dirty set
 * meaningfully, then stops as soon as the predicted downtime is under the
 * target. If the dirty set stops shrinking above the target it throttles
 * the vCPUs (auto-converge) in steps; at the hard timeout it aborts or
 * forces stop-and-copy, as configured.
 */
#ifndef FERRY_MIG_POLICY_H
#define FERRY_MIG_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define MIG_REASON_LEN 160

/* Defaults and limits, with units in the names. */
#define MIG_DEFAULT_DOWNTIME_MS     30
#define MIG_DEFAULT_TIMEOUT_S       300
#define MIG_DEFAULT_MAX_ROUNDS      64
#define MIG_DEFAULT_THROTTLE_STEP   20   /* percent of vCPU time taken away */
#define MIG_DEFAULT_THROTTLE_MAX    99
#define MIG_DEFAULT_SHRINK_PCT      10   /* a round must cut the dirty set by this much to count as progress */
#define MIG_DEFAULT_STALL_ROUNDS    2    /* rounds without progress before acting */
#define MIG_DEFAULT_PAGE_BYTES      4104 /* a DATA page on the wire: 4096 + its 8-byte entry */
#define MIG_ZERO_PAGE_BYTES         8    /* a ZERO page on the wire: its entry alone */
#define MIG_SWITCHOVER_FIXED_US     1000 /* added to every downtime prediction: vCPU and device state, clock, END and the ack */
#define MIG_TINY_DOWNTIME_US        1000 /* remaining pages cheaper than this: another round cannot gain anything */
#define MIG_BANDWIDTH_EWMA_PCT      50   /* weight of a new round's bandwidth sample */
#define MIG_PREDICT_MAX_ROUNDS      100000 /* mig_predict's own bound when max_rounds and timeout_s are 0 */

enum mig_timeout_action {
	MIG_TIMEOUT_ABORT = 0,      /* leave the VM running on the source */
	MIG_TIMEOUT_FORCE,          /* stop and copy whatever the downtime */
};

struct mig_policy_config {
	uint64_t downtime_ms;       /* target for the stop-and-copy phase */
	uint64_t bandwidth_mbps;    /* cap, megabits per second; 0 = none */
	uint64_t timeout_s;         /* hard limit on the whole migration */
	enum mig_timeout_action timeout_action;
	unsigned max_rounds;
	bool auto_converge;
	unsigned throttle_step_pct;
	unsigned throttle_max_pct;
	unsigned shrink_pct;
	unsigned stall_rounds;
	uint64_t page_bytes;        /* one dirty page on the wire; 0 = MIG_DEFAULT_PAGE_BYTES */
};

void mig_policy_defaults(struct mig_policy_config *c);

/* What one pre-copy round did, as measured by the engine. */
struct mig_round {
	unsigned round;             /* 1 = the full first pass */
	uint64_t pages_sent;        /* including zero pages */
	uint64_t zero_pages;
	uint64_t bytes_sent;        /* on the wire */
	uint64_t duration_ns;
	uint64_t send_ns;           /* of duration_ns, sending (the rest: the harvest) */
	uint64_t dirty_pages;       /* pages dirtied while it ran: the next round's work */
	unsigned throttle_pct;      /* throttle in force during the round */
	bool cut;                   /* stopped at the time limit (action force): */
				    /* dirty_pages are the pages it had left */
};

enum mig_action {
	MIG_CONTINUE = 0,           /* another pre-copy round */
	MIG_STOP_AND_COPY,          /* pause the vCPUs and send the rest */
	MIG_THROTTLE,               /* another round with throttle_pct applied */
	MIG_ABORT,                  /* give up; the VM stays on the source */
};

const char *mig_action_name(enum mig_action a);

struct mig_decision {
	enum mig_action action;
	unsigned throttle_pct;      /* for MIG_THROTTLE (and kept while continuing) */
	double bandwidth_Bps;       /* the estimate the decision used */
	double predicted_downtime_ms;
	char reason[MIG_REASON_LEN]; /* one line: why */
};

/* State the policy carries from round to round. */
struct mig_policy_state {
	unsigned rounds;
	unsigned stalled;           /* consecutive rounds without progress */
	uint64_t best_dirty;        /* smallest dirty set seen */
	unsigned throttle_pct;
	double bandwidth_Bps;       /* smoothed estimate */
};

void mig_policy_init(struct mig_policy_state *s);

/*
 * Decide after a round. elapsed_ns is the migration's time so far, this
 * round included; what one dirty page costs on the wire is
 * c->page_bytes. The rules are written out at the top of policy.c.
 */
void mig_policy_decide(const struct mig_policy_config *c, struct mig_policy_state *s,
		       const struct mig_round *r, uint64_t elapsed_ns,
		       struct mig_decision *out);

/*
 * Prediction before anything moves: from the guest's size, how much of it
 * is non-zero, its measured dirty rate and working set, and the link
 * bandwidth. Simulates the rounds the policy would run.
 */
struct mig_prediction {
	bool converges;             /* stop-and-copy under the target without forcing */
	bool needs_throttle;
	unsigned rounds;
	double total_ms;
	double downtime_ms;
	double bytes;
	unsigned throttle_pct;      /* throttle at the end; with auto-converge off, the one it would need (0: none helps) */
	char summary[MIG_REASON_LEN];
};

struct mig_workload {
	uint64_t mem_pages;
	uint64_t nonzero_pages;     /* pages that must travel with data in round 1 */
	double dirty_pages_per_s;
	uint64_t wss_pages;         /* distinct pages the guest dirties (upper bound of a round); 0 = mem_pages */
	double bandwidth_Bps;       /* link estimate, bytes per second (capped by bandwidth_mbps) */
	double zero_page_Bps;       /* zero pages handled per second * 4096; 0 = each costs MIG_ZERO_PAGE_BYTES on the link */
	double setup_ms;            /* before the first page: connection and precheck; added to the total */
};

void mig_predict(const struct mig_policy_config *c, const struct mig_workload *w,
		 struct mig_prediction *out);

#endif
