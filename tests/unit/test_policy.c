/*
 * The migration policy: defaults, the bandwidth estimate, every rule of
 * mig_policy_decide (see migrate/policy.c), and mig_predict on idle, busy
 * and hopeless guests, including that it always ends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "migrate/policy.h"

#define GIB_PAGES (1024ull * 1024 * 1024 / 4096)
#define MIB_PAGES (1024ull * 1024 / 4096)
#define MS 1000000ull
#define PAGE_BYTES ((double)MIG_DEFAULT_PAGE_BYTES)
#define FIXED_MS (MIG_SWITCHOVER_FIXED_US / 1000.0)

/* A link of exactly 1 GB/s: every round below sends at that speed. */
#define BW 1e9

struct drive {
	struct mig_policy_config c;
	struct mig_policy_state s;
	struct mig_decision d;
	uint64_t elapsed_ns;
	unsigned round;
};

static void drive_init(struct drive *v)
{
	memset(v, 0, sizeof(*v));
	mig_policy_defaults(&v->c);
	mig_policy_init(&v->s);
}

/* One round that sent `sent` pages at BW and left `dirty` pages dirty. */
static enum mig_action step(struct drive *v, uint64_t sent, uint64_t dirty)
{
	struct mig_round r = { 0 };
	double bytes = (double)sent * PAGE_BYTES;

	r.round = ++v->round;
	r.pages_sent = sent;
	r.bytes_sent = (uint64_t)bytes;
	r.duration_ns = (uint64_t)(bytes / BW * 1e9);
	r.dirty_pages = dirty;
	r.throttle_pct = v->s.throttle_pct;
	v->elapsed_ns += r.duration_ns;
	mig_policy_decide(&v->c, &v->s, &r, v->elapsed_ns, &v->d);
	/* Every decision explains itself in one line that fits. */
	assert_true(strlen(v->d.reason) > 0);
	assert_true(strlen(v->d.reason) < MIG_REASON_LEN - 1);
	assert_null(strchr(v->d.reason, '\n'));
	return v->d.action;
}

/* Pages whose transfer at BW takes `ms` milliseconds. */
static uint64_t pages_for_ms(double ms)
{
	return (uint64_t)(ms / 1000.0 * BW / PAGE_BYTES);
}

static void test_defaults(void **state)
{
	struct mig_policy_config c;
	struct mig_policy_state s;

	memset(&c, 0xa5, sizeof(c));
	mig_policy_defaults(&c);
	assert_int_equal(c.downtime_ms, 30);
	assert_int_equal(c.bandwidth_mbps, 0);
	assert_int_equal(c.timeout_s, MIG_DEFAULT_TIMEOUT_S);
	assert_int_equal(c.timeout_action, MIG_TIMEOUT_ABORT);
	assert_int_equal(c.max_rounds, MIG_DEFAULT_MAX_ROUNDS);
	assert_true(c.auto_converge);
	assert_int_equal(c.throttle_step_pct, MIG_DEFAULT_THROTTLE_STEP);
	assert_int_equal(c.throttle_max_pct, MIG_DEFAULT_THROTTLE_MAX);
	assert_int_equal(c.shrink_pct, MIG_DEFAULT_SHRINK_PCT);
	assert_int_equal(c.stall_rounds, MIG_DEFAULT_STALL_ROUNDS);
	assert_int_equal(c.page_bytes, MIG_DEFAULT_PAGE_BYTES);

	memset(&s, 0xa5, sizeof(s));
	mig_policy_init(&s);
	assert_int_equal(s.rounds, 0);
	assert_int_equal(s.stalled, 0);
	assert_int_equal(s.throttle_pct, 0);
	assert_true(s.best_dirty == UINT64_MAX);
	assert_true(s.bandwidth_Bps == 0);
}

static void test_action_names(void **state)
{
	assert_string_equal(mig_action_name(MIG_CONTINUE), "continue");
	assert_string_equal(mig_action_name(MIG_STOP_AND_COPY), "stop-and-copy");
	assert_string_equal(mig_action_name(MIG_THROTTLE), "throttle");
	assert_string_equal(mig_action_name(MIG_ABORT), "abort");
	assert_string_equal(mig_action_name((enum mig_action)42), "unknown");
}

static void test_bandwidth_estimate_and_cap(void **state)
{
	struct mig_policy_config c;
	struct mig_policy_state s;
	struct mig_decision d;
	struct mig_round r = { .round = 1, .bytes_sent = 1000000000,
			       .duration_ns = 1000000000, .dirty_pages = 100000 };

	mig_policy_defaults(&c);
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, r.duration_ns, &d);
	assert_float_equal(d.bandwidth_Bps, 1e9, 1);
	assert_float_equal(s.bandwidth_Bps, 1e9, 1);
	/* 100000 pages at 1 GB/s plus the fixed switchover cost. */
	assert_float_equal(d.predicted_downtime_ms,
			   100000 * PAGE_BYTES / 1e6 + FIXED_MS, 1e-6);

	/* A slower round moves the EWMA halfway. */
	r.round = 2;
	r.bytes_sent = 500000000;
	mig_policy_decide(&c, &s, &r, 2 * r.duration_ns, &d);
	assert_float_equal(d.bandwidth_Bps, 0.75e9, 1);

	/* A round with no duration is no sample. */
	r.round = 3;
	r.duration_ns = 0;
	mig_policy_decide(&c, &s, &r, 3000000000ull, &d);
	assert_float_equal(d.bandwidth_Bps, 0.75e9, 1);

	/* The cap (megabits) bounds what a decision uses, not the EWMA. */
	c.bandwidth_mbps = 4000;                       /* 500 MB/s */
	r.round = 4;
	r.duration_ns = 1000000000;
	r.bytes_sent = 750000000;
	mig_policy_decide(&c, &s, &r, 4000000000ull, &d);
	assert_float_equal(d.bandwidth_Bps, 0.5e9, 1);
	assert_float_equal(s.bandwidth_Bps, 0.75e9, 1);
	assert_float_equal(d.predicted_downtime_ms,
			   100000 * PAGE_BYTES / 0.5e6 + FIXED_MS, 1e-6);
}

static void test_unknown_bandwidth(void **state)
{
	struct mig_policy_config c;
	struct mig_policy_state s;
	struct mig_decision d;
	struct mig_round r = { .round = 1, .pages_sent = 10, .dirty_pages = 10 };

	mig_policy_defaults(&c);
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 0, &d);
	assert_int_equal(d.action, MIG_CONTINUE);
	assert_true(isinf(d.predicted_downtime_ms));
	assert_non_null(strstr(d.reason, "unknown"));

	/* With no sample, the cap stands in for the estimate. */
	c.bandwidth_mbps = 8000;
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 0, &d);
	assert_float_equal(d.bandwidth_Bps, 1e9, 1);
}

static void test_zero_dirty_stops(void **state)
{
	struct drive v;

	drive_init(&v);
	/* Even straight after the full pass. */
	assert_int_equal(step(&v, GIB_PAGES, 0), MIG_STOP_AND_COPY);
	assert_float_equal(v.d.predicted_downtime_ms, FIXED_MS, 1e-9);
	assert_non_null(strstr(v.d.reason, "no dirty pages"));

	drive_init(&v);
	assert_int_equal(step(&v, GIB_PAGES, pages_for_ms(50)), MIG_CONTINUE);
	assert_int_equal(step(&v, pages_for_ms(50), 0), MIG_STOP_AND_COPY);
}

static void test_tiny_dirty_set_stops(void **state)
{
	struct drive v;

	drive_init(&v);
	/* 0.5 ms of pages: another round could save at most that. */
	assert_int_equal(step(&v, GIB_PAGES, pages_for_ms(0.5)), MIG_STOP_AND_COPY);
	assert_true(v.d.predicted_downtime_ms < FIXED_MS + 1.0);
	/* 2 ms of pages is worth another round. */
	drive_init(&v);
	assert_int_equal(step(&v, GIB_PAGES, pages_for_ms(2)), MIG_CONTINUE);
}

static void test_continues_while_shrinking_under_target(void **state)
{
	struct drive v;
	uint64_t dirty = pages_for_ms(20);   /* 21 ms predicted: under 30 */

	drive_init(&v);
	assert_int_equal(step(&v, GIB_PAGES, dirty), MIG_CONTINUE);
	assert_true(v.d.predicted_downtime_ms <= 30);
	for (int i = 0; i < 5; i++) {
		uint64_t next = dirty * 3 / 4;        /* -25% each round */

		assert_int_equal(step(&v, dirty, next), MIG_CONTINUE);
		assert_true(v.d.predicted_downtime_ms <= 30);
		assert_non_null(strstr(v.d.reason, "continuing while it shrinks"));
		assert_non_null(strstr(v.d.reason, "-25%"));
		assert_non_null(strstr(v.d.reason, "<= 30 ms target"));
		assert_int_equal(v.s.best_dirty, next);
		dirty = next;
	}
	assert_int_equal(v.s.stalled, 0);
}

static void test_stops_after_stall_under_target(void **state)
{
	struct drive v;
	uint64_t dirty = pages_for_ms(10);

	drive_init(&v);
	assert_int_equal(step(&v, GIB_PAGES, dirty), MIG_CONTINUE);
	/* -3%: no progress, 1 of 2. */
	assert_int_equal(step(&v, dirty, dirty * 97 / 100), MIG_CONTINUE);
	assert_int_equal(v.s.stalled, 1);
	assert_non_null(strstr(v.d.reason, "1 of 2"));
	/* Still flat: 2 of 2, under the target: stop. */
	assert_int_equal(step(&v, dirty, dirty * 96 / 100), MIG_STOP_AND_COPY);
	assert_non_null(strstr(v.d.reason, "stopped shrinking"));
	assert_true(v.d.predicted_downtime_ms <= 30);
	assert_int_equal(v.d.throttle_pct, 0);
}

static void test_progress_is_against_the_best(void **state)
{
	struct drive v;
	uint64_t best = pages_for_ms(100);

	drive_init(&v);
	v.c.stall_rounds = 10;
	assert_int_equal(step(&v, GIB_PAGES, best), MIG_CONTINUE);
	/* A bounce up and back down to -5% of the best is no progress. */
	assert_int_equal(step(&v, best, best * 2), MIG_CONTINUE);
	assert_int_equal(step(&v, best * 2, best * 95 / 100), MIG_CONTINUE);
	assert_int_equal(v.s.stalled, 2);
	assert_int_equal(v.s.best_dirty, best * 95 / 100);
	/* 5% trickles never add up: each is measured against the new best. */
	assert_int_equal(step(&v, best, best * 95 / 100 * 95 / 100), MIG_CONTINUE);
	assert_int_equal(v.s.stalled, 3);
	/* A real cut counts again and resets the stall count. */
	assert_int_equal(step(&v, best, best / 2), MIG_CONTINUE);
	assert_int_equal(v.s.stalled, 0);
	assert_int_equal(v.s.best_dirty, best / 2);
}

static void test_throttles_when_stalled_above_target(void **state)
{
	static const unsigned want[] = { 20, 40, 60, 80, 99 };
	uint64_t wss = 64 * MIB_PAGES;   /* 64 MiB: 67 ms at 1 GB/s */
	struct drive v;

	drive_init(&v);
	assert_int_equal(step(&v, GIB_PAGES, wss), MIG_CONTINUE);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(step(&v, wss, wss), MIG_CONTINUE);
		assert_int_equal(step(&v, wss, wss), MIG_THROTTLE);
		assert_int_equal(v.d.throttle_pct, want[i]);
		assert_int_equal(v.s.throttle_pct, want[i]);
		assert_int_equal(v.s.stalled, 0);
		assert_non_null(strstr(v.d.reason, "throttling vCPUs"));
	}
	/* At the maximum: keep iterating, throttle kept. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(step(&v, wss, wss), MIG_CONTINUE);
		assert_int_equal(v.d.throttle_pct, 99);
	}
	assert_non_null(strstr(v.d.reason, "maximum"));
}

static void test_throttle_then_converges(void **state)
{
	uint64_t wss = pages_for_ms(60);
	struct drive v;

	drive_init(&v);
	assert_int_equal(step(&v, GIB_PAGES, wss), MIG_CONTINUE);
	assert_int_equal(step(&v, wss, wss), MIG_CONTINUE);
	assert_int_equal(step(&v, wss, wss), MIG_THROTTLE);
	/* Throttled, the set shrinks: progress, then it stalls under 30 ms. */
	assert_int_equal(step(&v, wss, wss / 3), MIG_CONTINUE);
	assert_int_equal(step(&v, wss / 3, wss / 3), MIG_CONTINUE);
	assert_int_equal(step(&v, wss / 3, wss / 3), MIG_STOP_AND_COPY);
	assert_int_equal(v.d.throttle_pct, 20);
}

static void test_throttle_step_capped(void **state)
{
	uint64_t wss = pages_for_ms(100);
	struct drive v;

	drive_init(&v);
	v.c.throttle_step_pct = 30;
	v.c.throttle_max_pct = 50;
	v.c.stall_rounds = 1;
	assert_int_equal(step(&v, GIB_PAGES, wss), MIG_CONTINUE);
	assert_int_equal(step(&v, wss, wss), MIG_THROTTLE);
	assert_int_equal(v.d.throttle_pct, 30);
	assert_int_equal(step(&v, wss, wss), MIG_THROTTLE);
	assert_int_equal(v.d.throttle_pct, 50);
	assert_int_equal(step(&v, wss, wss), MIG_CONTINUE);
	assert_int_equal(v.d.throttle_pct, 50);
}

static void test_no_auto_converge_continues_until_timeout(void **state)
{
	uint64_t wss = pages_for_ms(100);
	struct drive v;

	drive_init(&v);
	v.c.auto_converge = false;
	v.c.max_rounds = 0;           /* no round limit: the timeout ends it */
	v.c.timeout_s = 5;
	assert_int_equal(step(&v, GIB_PAGES, wss), MIG_CONTINUE);
	/* A 1.1 s first pass, then 100 ms rounds: about 39 of them. */
	int rounds = 0;
	while (step(&v, wss, wss) == MIG_CONTINUE) {
		assert_int_equal(v.d.throttle_pct, 0);
		assert_true(v.elapsed_ns < 5000 * MS);
		rounds++;
		assert_true(rounds < 100);
	}
	assert_true(rounds > 30);
	assert_int_equal(v.d.action, MIG_ABORT);
	assert_true(v.elapsed_ns >= 5000 * MS);
	assert_non_null(strstr(v.d.reason, "timeout after 5 s"));
}

static void test_timeout_abort_vs_force(void **state)
{
	uint64_t dirty = pages_for_ms(200);
	struct mig_round r = { .round = 7, .bytes_sent = 200000000,
			       .duration_ns = 200 * MS, .dirty_pages = dirty };
	struct mig_policy_config c;
	struct mig_policy_state s;
	struct mig_decision d;

	mig_policy_defaults(&c);
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 300000 * MS, &d);
	assert_int_equal(d.action, MIG_ABORT);
	assert_non_null(strstr(d.reason, "timeout after 300 s"));
	assert_non_null(strstr(d.reason, "aborting"));

	c.timeout_action = MIG_TIMEOUT_FORCE;
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 300000 * MS, &d);
	assert_int_equal(d.action, MIG_STOP_AND_COPY);
	assert_non_null(strstr(d.reason, "timeout"));
	assert_non_null(strstr(d.reason, "forcing stop-and-copy"));
	assert_null(strstr(d.reason, "cut short"));
	assert_true(d.predicted_downtime_ms > 30);

	/* A round the engine cut at the limit: the same, on what it left. */
	r.cut = true;
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 300000 * MS, &d);
	assert_int_equal(d.action, MIG_STOP_AND_COPY);
	assert_non_null(strstr(d.reason, "timeout after 300 s, the round cut short: forcing"));
	r.cut = false;

	/* Just before the timeout it is not one. */
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 300000 * MS - 1, &d);
	assert_int_equal(d.action, MIG_CONTINUE);

	/* Under the target at the timeout: stop-and-copy, nothing forced,
	 * whatever the action. */
	c.timeout_action = MIG_TIMEOUT_ABORT;
	r.dirty_pages = pages_for_ms(5);
	mig_policy_init(&s);
	mig_policy_decide(&c, &s, &r, 301000 * MS, &d);
	assert_int_equal(d.action, MIG_STOP_AND_COPY);
	assert_non_null(strstr(d.reason, "<= 30 ms target"));
}

static void test_max_rounds(void **state)
{
	struct drive v;
	uint64_t dirty = pages_for_ms(400);

	/* Still shrinking above the target when the limit hits: abort. */
	drive_init(&v);
	v.c.max_rounds = 4;
	assert_int_equal(step(&v, GIB_PAGES, dirty), MIG_CONTINUE);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(step(&v, dirty, dirty / 2), MIG_CONTINUE);
		dirty /= 2;
	}
	assert_int_equal(step(&v, dirty, dirty / 2), MIG_ABORT);
	assert_non_null(strstr(v.d.reason, "round limit 4"));

	/* The same with FORCE: stop-and-copy above the target. */
	drive_init(&v);
	v.c.max_rounds = 2;
	v.c.timeout_action = MIG_TIMEOUT_FORCE;
	assert_int_equal(step(&v, GIB_PAGES, pages_for_ms(400)), MIG_CONTINUE);
	assert_int_equal(step(&v, pages_for_ms(400), pages_for_ms(200)), MIG_STOP_AND_COPY);
	assert_true(v.d.predicted_downtime_ms > 30);

	/* Shrinking under the target at the limit: stop-and-copy. */
	drive_init(&v);
	v.c.max_rounds = 2;
	assert_int_equal(step(&v, GIB_PAGES, pages_for_ms(20)), MIG_CONTINUE);
	assert_int_equal(step(&v, pages_for_ms(20), pages_for_ms(10)), MIG_STOP_AND_COPY);
	assert_non_null(strstr(v.d.reason, "round limit 2"));
}

/* ---- Predictions ---- */

static void check_prediction(const struct mig_policy_config *c,
			     const struct mig_prediction *p)
{
	assert_true(strlen(p->summary) > 0);
	assert_true(strlen(p->summary) < MIG_REASON_LEN - 1);
	assert_null(strchr(p->summary, '\n'));
	if (p->converges) {
		assert_true(p->downtime_ms <= (double)c->downtime_ms);
		assert_non_null(strstr(p->summary, "converges in"));
		assert_true(p->total_ms >= p->downtime_ms);
	} else {
		assert_non_null(strstr(p->summary, "will not converge"));
	}
	assert_true(p->rounds <= MIG_PREDICT_MAX_ROUNDS);
}

static void test_predict_idle_zero_guest(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = GIB_PAGES, .bandwidth_Bps = 2.5e9 };
	struct mig_prediction p;

	mig_policy_defaults(&c);
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_true(p.converges);
	assert_false(p.needs_throttle);
	assert_int_equal(p.rounds, 1);
	assert_float_equal(p.downtime_ms, FIXED_MS, 1e-9);
	/* 8 bytes per zero page. */
	assert_float_equal(p.bytes, GIB_PAGES * (double)MIG_ZERO_PAGE_BYTES, 1);
	assert_true(p.total_ms < 5);
	assert_string_equal(p.summary,
		"converges in 1 round: about 2 ms in total, 1.0 ms downtime (target 30 ms)");
}

static void test_predict_random_idle_512m(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = 512 * MIB_PAGES,
				  .nonzero_pages = 512 * MIB_PAGES,
				  .bandwidth_Bps = 2.5e9 };
	struct mig_prediction p;

	mig_policy_defaults(&c);
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_true(p.converges);
	assert_int_equal(p.rounds, 1);
	assert_true(p.total_ms > 213 && p.total_ms < 218);
	assert_true(p.downtime_ms < 2);
	assert_float_equal(p.bytes, 512 * MIB_PAGES * PAGE_BYTES, 1);
	assert_string_equal(p.summary,
		"converges in 1 round: about 216 ms in total, 1.0 ms downtime (target 30 ms)");
}

/* The dry run's measured connection and precheck count in the total only. */
static void test_predict_setup_time(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = 512 * MIB_PAGES,
				  .nonzero_pages = 512 * MIB_PAGES,
				  .bandwidth_Bps = 2.5e9 };
	struct mig_prediction p0, p;

	mig_policy_defaults(&c);
	mig_predict(&c, &w, &p0);
	w.setup_ms = 40;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_float_equal(p.total_ms, p0.total_ms + 40, 1e-6);
	assert_float_equal(p.downtime_ms, p0.downtime_ms, 1e-9);
	assert_int_equal(p.rounds, p0.rounds);
	assert_string_equal(p.summary,
		"converges in 1 round: about 256 ms in total, 1.0 ms downtime (target 30 ms)");
	/* And in how a migration that ends badly is told. */
	w.dirty_pages_per_s = 1e8;
	w.wss_pages = 0;
	mig_predict(&c, &w, &p);
	assert_false(p.converges);
	assert_true(p.total_ms >= 40);
}

/*
 * A 64 MiB working set rewritten at full speed (5 M pages/s) in a 512 MiB
 * guest: every round dirties the whole set, so it stalls at once. What
 * happens then depends on whether sending the set fits the target; the
 * prediction must match what decide does with the same rounds.
 */
static void test_predict_hot_working_set(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = 512 * MIB_PAGES,
				  .nonzero_pages = 512 * MIB_PAGES,
				  .dirty_pages_per_s = 5e6,
				  .wss_pages = 64 * MIB_PAGES,
				  .bandwidth_Bps = 2.5e9 };
	double set_ms = 64 * MIB_PAGES * PAGE_BYTES / 2.5e6;
	struct mig_prediction p;
	struct mig_policy_state s;
	struct mig_decision d;
	struct mig_round r = { 0 };
	double elapsed = 0;

	mig_policy_defaults(&c);
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);

	/* Replay by hand: full pass, then the set every round. */
	mig_policy_init(&s);
	for (unsigned i = 1; i <= 3; i++) {
		uint64_t sent = i == 1 ? 512 * MIB_PAGES : 64 * MIB_PAGES;

		r.round = i;
		r.bytes_sent = (uint64_t)(sent * PAGE_BYTES);
		r.duration_ns = (uint64_t)(sent * PAGE_BYTES / 2.5e9 * 1e9);
		r.dirty_pages = 64 * MIB_PAGES;
		elapsed += r.duration_ns;
		mig_policy_decide(&c, &s, &r, (uint64_t)elapsed, &d);
		if (d.action != MIG_CONTINUE)
			break;
	}
	/* 26.9 ms of pages + 1 ms fits 30 ms: stop after the stall. */
	assert_true(set_ms + FIXED_MS <= 30);
	assert_int_equal(d.action, MIG_STOP_AND_COPY);
	assert_true(p.converges);
	assert_false(p.needs_throttle);
	assert_int_equal(p.rounds, r.round);
	assert_float_equal(p.downtime_ms, d.predicted_downtime_ms, 0.01);
	assert_float_equal(p.downtime_ms, set_ms + FIXED_MS, 0.01);

	/* At half the bandwidth the set takes 54 ms: only a throttle helps. */
	w.bandwidth_Bps = 1.25e9;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_true(p.needs_throttle);
	assert_true(p.throttle_pct > 0 && p.throttle_pct <= c.throttle_max_pct);
	assert_true(p.converges);
	assert_non_null(strstr(p.summary, "auto-converge"));

	/* Without auto-converge it cannot, and says what it would take. */
	c.auto_converge = false;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_true(p.needs_throttle);
	assert_non_null(strstr(p.summary, "auto-converge needs ~"));
	assert_non_null(strstr(p.summary, "aborts"));

	c.timeout_action = MIG_TIMEOUT_FORCE;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_true(p.downtime_ms > 30);
	assert_non_null(strstr(p.summary, "forced stop-and-copy"));
}

static void test_predict_dirty_rate_above_link(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = 4 * GIB_PAGES,
				  .nonzero_pages = 4 * GIB_PAGES,
				  .dirty_pages_per_s = 2.1e9 / 4096,
				  .bandwidth_Bps = 1.9e9 };
	struct mig_prediction p;

	/* Auto-converge on: it must throttle to get there. */
	mig_policy_defaults(&c);
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_true(p.needs_throttle);
	assert_true(p.throttle_pct >= c.throttle_step_pct);
	assert_true(p.converges);

	/* Off: no convergence, and the summary names the cause. */
	c.auto_converge = false;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_true(p.needs_throttle);
	assert_non_null(strstr(p.summary,
		"will not converge under 30 ms: dirty rate 2.1 GB/s exceeds the link (1.9 GB/s)"));
	assert_non_null(strstr(p.summary, "auto-converge needs ~20% throttle"));

	/* Far above the link, even the maximum throttle may not be enough:
	 * either way the prediction is consistent. */
	c.auto_converge = true;
	c.throttle_max_pct = 40;
	w.dirty_pages_per_s = 20e9 / 4096;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_true(p.needs_throttle);
	assert_int_equal(p.throttle_pct, 40);
	assert_non_null(strstr(p.summary, "even 40% throttle is not enough"));
}

static void test_predict_always_ends(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = GIB_PAGES,
				  .nonzero_pages = GIB_PAGES,
				  .dirty_pages_per_s = 1e7,
				  .bandwidth_Bps = 1e9 };
	struct mig_prediction p;

	/* The defaults: the round limit ends it. */
	mig_policy_defaults(&c);
	c.auto_converge = false;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_true(p.rounds <= MIG_DEFAULT_MAX_ROUNDS);

	/* A short timeout ends it first. */
	c.timeout_s = 2;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_true(p.rounds < 10);
	assert_true(p.total_ms >= 2000);

	/* Neither a round limit nor a timeout: the predictor's own bound. */
	c.timeout_s = 0;
	c.max_rounds = 0;
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_false(p.converges);
	assert_int_equal(p.rounds, MIG_PREDICT_MAX_ROUNDS);
	assert_non_null(strstr(p.summary, "still iterating"));
}

static void test_predict_bandwidth_cap_and_unknown(void **state)
{
	struct mig_policy_config c;
	struct mig_workload w = { .mem_pages = 512 * MIB_PAGES,
				  .nonzero_pages = 512 * MIB_PAGES,
				  .bandwidth_Bps = 2.5e9 };
	struct mig_prediction p;

	mig_policy_defaults(&c);
	c.bandwidth_mbps = 8000;                 /* 1 GB/s */
	mig_predict(&c, &w, &p);
	check_prediction(&c, &p);
	assert_float_equal(p.total_ms, 512 * MIB_PAGES * PAGE_BYTES / 1e6 + FIXED_MS, 0.01);

	/* No link estimate: the cap stands in. */
	w.bandwidth_Bps = 0;
	mig_predict(&c, &w, &p);
	assert_true(p.converges);

	c.bandwidth_mbps = 0;
	mig_predict(&c, &w, &p);
	assert_false(p.converges);
	assert_int_equal(p.rounds, 0);
	assert_string_equal(p.summary, "cannot predict: no link bandwidth estimate");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_action_names),
		cmocka_unit_test(test_bandwidth_estimate_and_cap),
		cmocka_unit_test(test_unknown_bandwidth),
		cmocka_unit_test(test_zero_dirty_stops),
		cmocka_unit_test(test_tiny_dirty_set_stops),
		cmocka_unit_test(test_continues_while_shrinking_under_target),
		cmocka_unit_test(test_stops_after_stall_under_target),
		cmocka_unit_test(test_progress_is_against_the_best),
		cmocka_unit_test(test_throttles_when_stalled_above_target),
		cmocka_unit_test(test_throttle_then_converges),
		cmocka_unit_test(test_throttle_step_capped),
		cmocka_unit_test(test_no_auto_converge_continues_until_timeout),
		cmocka_unit_test(test_timeout_abort_vs_force),
		cmocka_unit_test(test_max_rounds),
		cmocka_unit_test(test_predict_idle_zero_guest),
		cmocka_unit_test(test_predict_random_idle_512m),
		cmocka_unit_test(test_predict_setup_time),
		cmocka_unit_test(test_predict_hot_working_set),
		cmocka_unit_test(test_predict_dirty_rate_above_link),
		cmocka_unit_test(test_predict_always_ends),
		cmocka_unit_test(test_predict_bandwidth_cap_and_unknown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
