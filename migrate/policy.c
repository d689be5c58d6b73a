/*
 * The default migration policy. Pure: no I/O, no clock, no globals, no
 * logging; everything it knows comes in through its arguments.
 *
 * Bandwidth. Each round with a duration and bytes gives a sample
 * bytes_sent / duration; the state keeps an EWMA of the samples (the first
 * one is taken as is, later ones weigh MIG_BANDWIDTH_EWMA_PCT percent).
 * The estimate a decision uses is that EWMA capped by bandwidth_mbps when
 * a cap is set (the engine never sends faster than the cap); with no
 * sample yet it is the cap, and with neither it is unknown.
 *
 * Predicted downtime after a round: dirty_pages * page_bytes / bandwidth
 * + MIG_SWITCHOVER_FIXED_US (1 ms: vCPU and device state, the clock, END
 * and the destination's ack). Unknown bandwidth with dirty pages left
 * predicts an infinite downtime: never under the target.
 *
 * Progress: a round makes progress when its dirty set is at most
 * (100 - shrink_pct)% of the smallest dirty set seen so far; round 1 (the
 * full pass) always does. best_dirty always tracks the smallest set seen,
 * so a trickle of small gains never adds up to progress.
 *
 * The rules, after each round, first match wins:
 *  1. Timeout (timeout_s != 0 and elapsed >= timeout_s): stop-and-copy if
 *     the predicted downtime is under the target anyway (nothing is
 *     forced); else FORCE -> stop-and-copy, ABORT -> abort. (A round that
 *     the engine cut short at the limit comes here with what it had left.)
 *  2. No dirty pages, or pages that take less than MIG_TINY_DOWNTIME_US to
 *     send: stop-and-copy (another round cannot gain anything).
 *  3. Round limit (max_rounds != 0 and rounds >= max_rounds):
 *     stop-and-copy when under the target, else the timeout action.
 *  4. Progress: continue, even under the target: downtime is minimised,
 *     not merely kept under the target.
 *  5. Fewer than stall_rounds rounds without progress: continue.
 *  6. Stalled, under the target: stop-and-copy.
 *  7. Stalled above the target with auto-converge and throttle below
 *     throttle_max_pct: throttle, raising it by throttle_step_pct (capped
 *     at the max), and count stalled rounds from zero again.
 *  8. Stalled above the target with auto-converge off or at the maximum
 *     throttle: continue; rule 1 or 3 ends it (the timeout action).
 * stall_rounds 0 acts like 1; shrink_pct above 100 like 100.
 */
#include "migrate/policy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NS_PER_S 1000000000.0

void mig_policy_defaults(struct mig_policy_config *c)
{
	memset(c, 0, sizeof(*c));
	c->downtime_ms = MIG_DEFAULT_DOWNTIME_MS;
	c->bandwidth_mbps = 0;
	c->timeout_s = MIG_DEFAULT_TIMEOUT_S;
	c->timeout_action = MIG_TIMEOUT_ABORT;
	c->max_rounds = MIG_DEFAULT_MAX_ROUNDS;
	c->auto_converge = true;
	c->throttle_step_pct = MIG_DEFAULT_THROTTLE_STEP;
	c->throttle_max_pct = MIG_DEFAULT_THROTTLE_MAX;
	c->shrink_pct = MIG_DEFAULT_SHRINK_PCT;
	c->stall_rounds = MIG_DEFAULT_STALL_ROUNDS;
	c->page_bytes = MIG_DEFAULT_PAGE_BYTES;
}

void mig_policy_init(struct mig_policy_state *s)
{
	memset(s, 0, sizeof(*s));
	s->best_dirty = UINT64_MAX;
}

const char *mig_action_name(enum mig_action a)
{
	switch (a) {
	case MIG_CONTINUE:      return "continue";
	case MIG_STOP_AND_COPY: return "stop-and-copy";
	case MIG_THROTTLE:      return "throttle";
	case MIG_ABORT:         return "abort";
	}
	return "unknown";
}

static double page_cost(const struct mig_policy_config *c)
{
	return c->page_bytes ? (double)c->page_bytes : (double)MIG_DEFAULT_PAGE_BYTES;
}

static double cap_Bps(const struct mig_policy_config *c)
{
	return (double)c->bandwidth_mbps * 1e6 / 8.0;
}

/* Writes a line into buf, cut to size (a reason is one line, never more). */
__attribute__((format(printf, 3, 4)))
static void say(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

#define SAY(out, ...) say((out)->reason, sizeof((out)->reason), __VA_ARGS__)

/* "3.1 ms", "19.3 s", "unknown": for reasons and summaries. */
static const char *fmt_ms(char *buf, size_t size, double ms)
{
	if (isinf(ms) || isnan(ms))
		say(buf, size, "unknown");
	else if (ms >= 10000.0)
		say(buf, size, "%.1f s", ms / 1000.0);
	else
		say(buf, size, "%.1f ms", ms);
	return buf;
}

static void finish(struct mig_decision *out, struct mig_policy_state *s,
		   enum mig_action a)
{
	out->action = a;
	out->throttle_pct = s->throttle_pct;
}

void mig_policy_decide(const struct mig_policy_config *c, struct mig_policy_state *s,
		       const struct mig_round *r, uint64_t elapsed_ns,
		       struct mig_decision *out)
{
	unsigned shrink = c->shrink_pct > 100 ? 100 : c->shrink_pct;
	unsigned stall = c->stall_rounds ? c->stall_rounds : 1;
	uint64_t dirty = r->dirty_pages, prev_best = s->best_dirty;
	double bw, pages_ms, pred, target = (double)c->downtime_ms;
	bool progress, under;
	char dt[32];
	unsigned n;

	memset(out, 0, sizeof(*out));
	n = ++s->rounds;

	/* Bandwidth: EWMA of this round's sample, then the cap. */
	if (r->duration_ns && r->bytes_sent) {
		double sample = (double)r->bytes_sent * NS_PER_S / (double)r->duration_ns;

		if (s->bandwidth_Bps > 0)
			s->bandwidth_Bps += (sample - s->bandwidth_Bps) *
					    MIG_BANDWIDTH_EWMA_PCT / 100.0;
		else
			s->bandwidth_Bps = sample;
	}
	bw = s->bandwidth_Bps;
	if (c->bandwidth_mbps && (bw <= 0 || bw > cap_Bps(c)))
		bw = cap_Bps(c);
	out->bandwidth_Bps = bw;

	/* Predicted downtime if we stopped now. */
	if (dirty == 0)
		pages_ms = 0;
	else if (bw > 0)
		pages_ms = (double)dirty * page_cost(c) * 1000.0 / bw;
	else
		pages_ms = INFINITY;
	pred = pages_ms + MIG_SWITCHOVER_FIXED_US / 1000.0;
	out->predicted_downtime_ms = pred;
	under = pred <= target;
	fmt_ms(dt, sizeof(dt), pred);

	/* Progress against the smallest dirty set so far. */
	progress = prev_best == UINT64_MAX ||
		   (double)dirty * 100.0 <= (double)prev_best * (100 - shrink);
	if (progress) {
		s->best_dirty = dirty;
		s->stalled = 0;
	} else {
		if (dirty < s->best_dirty)
			s->best_dirty = dirty;
		s->stalled++;
	}

	/* 1. The hard timeout. */
	if (c->timeout_s && elapsed_ns / NS_PER_S >= (double)c->timeout_s) {
		if (under) {
			finish(out, s, MIG_STOP_AND_COPY);
			SAY(out, "round %u: timeout after %llu s, but predicted downtime %s <= %llu ms target: stop-and-copy",
			    n, (unsigned long long)c->timeout_s, dt,
			    (unsigned long long)c->downtime_ms);
		} else if (c->timeout_action == MIG_TIMEOUT_FORCE) {
			finish(out, s, MIG_STOP_AND_COPY);
			SAY(out, "round %u: timeout after %llu s%s: forcing stop-and-copy, predicted downtime %s > %llu ms target",
			    n, (unsigned long long)c->timeout_s,
			    r->cut ? ", the round cut short" : "", dt,
			    (unsigned long long)c->downtime_ms);
		} else {
			finish(out, s, MIG_ABORT);
			SAY(out, "round %u: timeout after %llu s: aborting, predicted downtime %s > %llu ms target; the VM stays on the source",
			    n, (unsigned long long)c->timeout_s, dt,
			    (unsigned long long)c->downtime_ms);
		}
		return;
	}

	/* 2. Nothing (or nothing worth a round) left. */
	if (dirty == 0) {
		finish(out, s, MIG_STOP_AND_COPY);
		SAY(out, "round %u: no dirty pages left: stop-and-copy, predicted downtime %s",
		    n, dt);
		return;
	}
	if (pages_ms * 1000.0 < MIG_TINY_DOWNTIME_US) {
		finish(out, s, MIG_STOP_AND_COPY);
		SAY(out, "round %u: dirty set %llu pages takes %.2f ms to send, another round cannot gain more: stop-and-copy, predicted downtime %s",
		    n, (unsigned long long)dirty, pages_ms, dt);
		return;
	}

	/* 3. The round limit. */
	if (c->max_rounds && n >= c->max_rounds) {
		if (under) {
			finish(out, s, MIG_STOP_AND_COPY);
			SAY(out, "round %u: round limit %u reached, predicted downtime %s <= %llu ms target: stop-and-copy",
			    n, c->max_rounds, dt, (unsigned long long)c->downtime_ms);
		} else if (c->timeout_action == MIG_TIMEOUT_FORCE) {
			finish(out, s, MIG_STOP_AND_COPY);
			SAY(out, "round %u: round limit %u reached: forcing stop-and-copy, predicted downtime %s > %llu ms target",
			    n, c->max_rounds, dt, (unsigned long long)c->downtime_ms);
		} else {
			finish(out, s, MIG_ABORT);
			SAY(out, "round %u: round limit %u reached: aborting, predicted downtime %s > %llu ms target; the VM stays on the source",
			    n, c->max_rounds, dt, (unsigned long long)c->downtime_ms);
		}
		return;
	}

	/* 4. Still shrinking: go on, under the target or not. */
	if (progress) {
		finish(out, s, MIG_CONTINUE);
		if (prev_best == UINT64_MAX)
			SAY(out, "round %u: first pass done, dirty set %llu pages, predicted downtime %s (target %llu ms): continuing",
			    n, (unsigned long long)dirty, dt,
			    (unsigned long long)c->downtime_ms);
		else
			SAY(out, "round %u: dirty set %llu pages (%+.0f%%), predicted downtime %s %s %llu ms target: continuing while it shrinks",
			    n, (unsigned long long)dirty,
			    ((double)dirty - (double)prev_best) * 100.0 / (double)prev_best,
			    dt, under ? "<=" : ">", (unsigned long long)c->downtime_ms);
		return;
	}

	/* 5. Not shrinking, but not for long enough to act. */
	if (s->stalled < stall) {
		finish(out, s, MIG_CONTINUE);
		SAY(out, "round %u: dirty set %llu pages, not shrinking (%u of %u rounds), predicted downtime %s %s %llu ms target: continuing",
		    n, (unsigned long long)dirty, s->stalled, stall, dt,
		    under ? "<=" : ">", (unsigned long long)c->downtime_ms);
		return;
	}

	/* 6. Stalled under the target: this is as good as it gets. */
	if (under) {
		finish(out, s, MIG_STOP_AND_COPY);
		SAY(out, "round %u: dirty set stopped shrinking at %llu pages, predicted downtime %s <= %llu ms target: stop-and-copy",
		    n, (unsigned long long)dirty, dt,
		    (unsigned long long)c->downtime_ms);
		return;
	}

	/* 7. Stalled above the target: auto-converge. */
	if (c->auto_converge && c->throttle_step_pct &&
	    s->throttle_pct < c->throttle_max_pct) {
		unsigned from = s->throttle_pct, to = from + c->throttle_step_pct;

		if (to > c->throttle_max_pct || to < from)
			to = c->throttle_max_pct;
		s->throttle_pct = to;
		s->stalled = 0;
		finish(out, s, MIG_THROTTLE);
		SAY(out, "round %u: dirty set stuck at %llu pages, predicted downtime %s > %llu ms target: throttling vCPUs %u%% -> %u%%",
		    n, (unsigned long long)dirty, dt,
		    (unsigned long long)c->downtime_ms, from, to);
		return;
	}

	/* 8. Nothing left to try: iterate until the round limit or timeout. */
	finish(out, s, MIG_CONTINUE);
	SAY(out, "round %u: dirty set stuck at %llu pages, predicted downtime %s > %llu ms target, %s: continuing until the round limit or timeout",
	    n, (unsigned long long)dirty, dt, (unsigned long long)c->downtime_ms,
	    c->auto_converge && c->throttle_step_pct ? "throttle at its maximum" :
	    "no auto-converge");
}

/* ---- Prediction: the same decide function over simulated rounds. ---- */

struct sim {
	enum mig_action last;       /* STOP_AND_COPY, ABORT, or CONTINUE if cut off */
	unsigned rounds;
	double total_ms;
	double downtime_ms;         /* of the stop-and-copy; predicted at the stop */
	double bytes;
	bool throttled;
	unsigned throttle_pct;
	uint64_t last_dirty;
};

static uint64_t to_u64(double x)
{
	if (!(x > 0))
		return 0;
	if (x >= 1.8e19)
		return UINT64_MAX;
	return (uint64_t)(x + 0.5);
}

static void simulate(const struct mig_policy_config *c, const struct mig_workload *w,
		     double bw, struct sim *out)
{
	uint64_t mem = w->mem_pages;
	uint64_t nonzero = w->nonzero_pages < mem ? w->nonzero_pages : mem;
	uint64_t wss = w->wss_pages && w->wss_pages < mem ? w->wss_pages : mem;
	uint64_t send = nonzero, zero = mem - nonzero;
	unsigned limit = MIG_PREDICT_MAX_ROUNDS;
	struct mig_policy_state s;
	struct mig_decision d;
	double elapsed_s = 0;

	memset(out, 0, sizeof(*out));
	out->last = MIG_CONTINUE;
	mig_policy_init(&s);
	if (c->max_rounds && c->max_rounds < limit)
		limit = c->max_rounds;

	for (unsigned i = 1; i <= limit; i++) {
		double rate = w->dirty_pages_per_s > 0 ? w->dirty_pages_per_s : 0;
		double bytes = (double)send * page_cost(c) + (double)zero * MIG_ZERO_PAGE_BYTES;
		double t = (double)send * page_cost(c) / bw;
		struct mig_round r = { 0 };
		uint64_t dirty;

		if (w->zero_page_Bps > 0)
			t += (double)zero * 4096.0 / w->zero_page_Bps;
		else
			t += (double)zero * MIG_ZERO_PAGE_BYTES / bw;
		rate = rate * (100 - (s.throttle_pct > 100 ? 100 : s.throttle_pct)) / 100.0;
		dirty = to_u64(rate * t);
		if (dirty > wss)
			dirty = wss;

		elapsed_s += t;
		r.round = i;
		r.pages_sent = send + zero;
		r.zero_pages = zero;
		r.bytes_sent = to_u64(bytes);
		r.duration_ns = to_u64(t * NS_PER_S);
		r.dirty_pages = dirty;
		r.throttle_pct = s.throttle_pct;
		mig_policy_decide(c, &s, &r,
				  to_u64(elapsed_s * NS_PER_S), &d);

		out->rounds = i;
		out->total_ms = elapsed_s * 1000.0;
		out->bytes += bytes;
		out->last_dirty = dirty;
		out->throttle_pct = s.throttle_pct;
		if (d.action == MIG_THROTTLE)
			out->throttled = true;
		if (d.action == MIG_STOP_AND_COPY) {
			out->last = MIG_STOP_AND_COPY;
			out->downtime_ms = d.predicted_downtime_ms;
			out->total_ms += d.predicted_downtime_ms;
			out->bytes += (double)dirty * page_cost(c);
			return;
		}
		if (d.action == MIG_ABORT) {
			out->last = MIG_ABORT;
			return;
		}
		send = dirty;
		zero = 0;
	}
}

/* "412 ms", "19.3 s". */
static const char *fmt_total(char *buf, size_t size, double ms)
{
	if (ms >= 1000.0)
		say(buf, size, "%.1f s", ms / 1000.0);
	else
		say(buf, size, "%.0f ms", ms);
	return buf;
}

void mig_predict(const struct mig_policy_config *c, const struct mig_workload *w,
		 struct mig_prediction *out)
{
	double bw = w->bandwidth_Bps, target = (double)c->downtime_ms;
	double rate_Bps = w->dirty_pages_per_s * page_cost(c);
	char tot[32], dt[32], cause[80], fix[48], end[64];
	struct sim sim;

	memset(out, 0, sizeof(*out));
	if (c->bandwidth_mbps && (bw <= 0 || bw > cap_Bps(c)))
		bw = cap_Bps(c);
	if (!(bw > 0)) {
		say(out->summary, sizeof(out->summary),
		    "cannot predict: no link bandwidth estimate");
		return;
	}

	simulate(c, w, bw, &sim);
	out->rounds = sim.rounds;
	sim.total_ms += w->setup_ms > 0 ? w->setup_ms : 0;
	out->total_ms = sim.total_ms;
	out->downtime_ms = sim.last == MIG_STOP_AND_COPY ? sim.downtime_ms : 0;
	out->bytes = sim.bytes;
	out->throttle_pct = sim.throttle_pct;
	out->needs_throttle = sim.throttled;
	out->converges = sim.last == MIG_STOP_AND_COPY && sim.downtime_ms <= target;

	if (out->converges) {
		fmt_total(tot, sizeof(tot), out->total_ms);
		fmt_ms(dt, sizeof(dt), out->downtime_ms);
		if (sim.throttled)
			say(out->summary, sizeof(out->summary),
			    "converges in %u round%s with auto-converge at %u%% throttle: about %s in total, %s downtime (target %llu ms)",
			    sim.rounds, sim.rounds == 1 ? "" : "s", sim.throttle_pct, tot, dt,
			    (unsigned long long)c->downtime_ms);
		else
			say(out->summary, sizeof(out->summary),
			    "converges in %u round%s: about %s in total, %s downtime (target %llu ms)",
			    sim.rounds, sim.rounds == 1 ? "" : "s", tot, dt, (unsigned long long)c->downtime_ms);
		return;
	}

	/* Why not. */
	if (sim.last == MIG_STOP_AND_COPY && sim.last_dirty == 0)
		say(cause, sizeof(cause), "the switchover alone takes %.1f ms",
		    MIG_SWITCHOVER_FIXED_US / 1000.0);
	else if (rate_Bps >= bw)
		say(cause, sizeof(cause), "dirty rate %.1f GB/s exceeds the link (%.1f GB/s)",
		    w->dirty_pages_per_s * 4096.0 / 1e9, bw / 1e9);
	else
		say(cause, sizeof(cause), "the dirty set stays at %llu pages (%s to send)",
		    (unsigned long long)sim.last_dirty,
		    fmt_ms(dt, sizeof(dt),
			   (double)sim.last_dirty * page_cost(c) * 1000.0 / bw));

	/* What would help: the same simulation with auto-converge on. */
	fix[0] = '\0';
	if (c->auto_converge && sim.throttled) {
		say(fix, sizeof(fix), "; even %u%% throttle is not enough", sim.throttle_pct);
	} else if (!c->auto_converge) {
		struct mig_policy_config ac = *c;
		struct sim alt;

		ac.auto_converge = true;
		simulate(&ac, w, bw, &alt);
		if (alt.last == MIG_STOP_AND_COPY && alt.downtime_ms <= target &&
		    alt.throttled) {
			out->needs_throttle = true;
			out->throttle_pct = alt.throttle_pct;
			say(fix, sizeof(fix), "; auto-converge needs ~%u%% throttle",
			    alt.throttle_pct);
		} else {
			out->throttle_pct = 0;
		}
	}

	/* How it ends. */
	fmt_total(tot, sizeof(tot), sim.total_ms);
	if (sim.last == MIG_STOP_AND_COPY)
		say(end, sizeof(end), "; forced stop-and-copy: %s downtime",
		    fmt_ms(dt, sizeof(dt), sim.downtime_ms));
	else if (sim.last == MIG_ABORT)
		say(end, sizeof(end), "; aborts after %u rounds (%s)", sim.rounds, tot);
	else
		say(end, sizeof(end), "; still iterating after %u rounds", sim.rounds);

	say(out->summary, sizeof(out->summary), "will not converge under %llu ms: %s%s%s",
	    (unsigned long long)c->downtime_ms, cause, fix, end);
}
