/*
 * Property tests for the planner (cluster/cl_plan.h) over random clusters
 * from the simulator (cluster/cl_sim.h), a few hundred seeds: no plan
 * breaks a hard rule, a capacity or a cap, leaves a VM worse off against
 * a soft rule or moves one in its hold-down; an evacuation never targets
 * a host in maintenance and accounts for every VM; every balancing move
 * cuts the imbalance, carried out it gives what the plan said, and rounds
 * reach a fixed point within the bound the threshold gives. Checked with
 * this file's own rule and capacity checks against the State and
 * cl_cpu_check, not with the planner's helpers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_admit.h"
#include "cl_cpu.h"
#include "cl_msg.h"
#include "cl_plan.h"
#include "cl_sim.h"
#include "cl_state.h"

#define NOW 1700000000000ull
/*
 * Under ASan every plan costs several times as much (33 s of the
 * sanitizer phase's 45 s for 300): the normal build checks the properties
 * on all 300 clusters, the sanitizer build looks for memory errors on the
 * first 100.
 */
#ifdef __SANITIZE_ADDRESS__
#define SEEDS 100
#else
#define SEEDS 300
#endif

/* ---- properties over random clusters ------------------------------------ */

/* The rules and capacities, checked on the State itself (migrations landed). */
static bool on_hosts(const Ferry__Cluster__Rule *r, const char *host)
{
	for (size_t i = 0; i < r->n_hosts; i++) {
		if (!strcmp(r->hosts[i], host))
			return true;
	}
	return false;
}

static bool running(const Ferry__Cluster__Vm *vm)
{
	return vm && vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING && *vm->host;
}

static void check_rules(const Ferry__Cluster__State *st, unsigned seed)
{
	for (size_t r = 0; r < st->n_rules; r++) {
		const Ferry__Cluster__Rule *ru = st->rules[r];

		for (size_t i = 0; i < ru->n_vms; i++) {
			const Ferry__Cluster__Vm *a = cl_state_vm(st, ru->vms[i]);
			bool ok = true;

			if (!running(a))
				continue;
			switch (ru->kind) {
			case FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST:
				ok = on_hosts(ru, a->host);
				break;
			case FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST_NOT:
				ok = !on_hosts(ru, a->host);
				break;
			case FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY:
			case FERRY__CLUSTER__RULE_KIND__RULE_KIND_ANTI_AFFINITY:
				for (size_t j = i + 1; j < ru->n_vms; j++) {
					const Ferry__Cluster__Vm *b = cl_state_vm(st, ru->vms[j]);
					bool same;

					if (!running(b))
						continue;
					same = !strcmp(a->host, b->host);
					if (same != (ru->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY))
						ok = false;
				}
				break;
			default:
				break;
			}
			if (!ok)
				fail_msg("seed %u: rule %s broken by %s on %s", seed, ru->name, a->name,
					 a->host);
		}
	}
}

/* Memory never overfilled; CPU under its cap unless cpu_cap_pct is 0 (not checked). */
static void check_capacity(const struct cl_sim *s, const char *host, unsigned cpu_cap_pct,
			   unsigned seed)
{
	const Ferry__Cluster__Host *h = cl_state_host(s->st, host);
	double cpu = 0;

	assert_non_null(h);
	if (cl_state_host_mem_used(s->st, host) > h->inventory->mem_bytes)
		fail_msg("seed %u: %s overfilled", seed, host);
	for (size_t v = 0; v < s->st->n_vms; v++) {
		if (running(s->st->vms[v]) && !strcmp(s->st->vms[v]->host, host))
			cpu += s->figs[v].cpu_pct / 100.0;
	}
	if (cpu_cap_pct && cpu > h->inventory->cpus * cpu_cap_pct / 100.0 + 1e-6)
		fail_msg("seed %u: %s CPU over its cap", seed, host);
}

/*
 * An evacuation goes over the CPU cap only on a host it says so of, and
 * says it only past the cap; memory it never overfills.
 */
static void check_evac_capacity(const struct cl_sim *s, const struct cl_plan *p,
				unsigned cpu_cap_pct, unsigned seed)
{
	for (size_t i = 0; i < p->n_moves; i++) {
		bool over = false;

		for (size_t j = 0; j < p->n_moves; j++)
			over |= !strcmp(p->moves[j].to, p->moves[i].to) &&
				p->moves[j].cpu_over_pct > 0;
		if (p->moves[i].cpu_over_pct > 0 &&
		    p->moves[i].cpu_over_pct <= cpu_cap_pct + 1e-6)
			fail_msg("seed %u: %s said over the CPU cap at %.1f %%", seed,
				 p->moves[i].vm_name, p->moves[i].cpu_over_pct);
		check_capacity(s, p->moves[i].to, over ? 0 : cpu_cap_pct, seed);
	}
}

static void land(struct cl_sim *s)
{
	for (size_t v = 0; v < s->st->n_vms; v++) {
		Ferry__Cluster__Vm *vm = s->st->vms[v];

		if (vm->migration) {
			cl_str_set(&vm->host, vm->migration->destination);
			CL_FREE(vm->migration);
			vm->migration = NULL;
		}
	}
}

/*
 * cl_cpu_check answers from the model and the host's feature list alone
 * (for the named models); it is slow (it parses model tables per call),
 * so the properties keep its answers keyed by exactly those, across seeds.
 */
struct cpu_memo {
	char *key[256];
	bool ok[256];
	size_t n;
};

static struct cpu_memo memo;

static bool cpu_ok(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		   const char *host)
{
	const Ferry__Cluster__Host *h = cl_state_host(st, host);
	char missing[256], key[4096];
	size_t len;
	unsigned level;

	assert_non_null(h);
	if (sscanf(vm->cpu_model, "x86-64-v%u", &level) != 1 || !h->inventory)
		return !cl_cpu_check(st, vm, h, missing, sizeof(missing));
	len = (size_t)snprintf(key, sizeof(key), "%s|", vm->cpu_model);
	for (size_t i = 0; i < h->inventory->n_cpu_features && len < sizeof(key); i++)
		len += (size_t)snprintf(key + len, sizeof(key) - len, "%s,",
					h->inventory->cpu_features[i]);
	assert_true(len < sizeof(key));
	for (size_t i = 0; i < memo.n; i++) {
		if (!strcmp(memo.key[i], key))
			return memo.ok[i];
	}
	assert_true(memo.n < 256);
	memo.key[memo.n] = strdup(key);
	assert_non_null(memo.key[memo.n]);
	memo.ok[memo.n] = !cl_cpu_check(st, vm, h, missing, sizeof(missing));
	return memo.ok[memo.n++];
}

static void memo_clear(void)
{
	for (size_t i = 0; i < memo.n; i++)
		free(memo.key[i]);
	memo.n = 0;
}

static void check_move(const struct cl_sim *s, const struct cl_plan_move *m, unsigned seed)
{
	const Ferry__Cluster__Host *to = cl_state_host(s->st, m->to);

	assert_non_null(to);
	if (to->mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE)
		fail_msg("seed %u: %s sent to %s in maintenance", seed, m->vm_name, m->to);
	assert_string_not_equal(m->from, m->to);
	if (!cpu_ok(s->st, s->st->vms[m->vm], m->to))
		fail_msg("seed %u: %s sent to %s, which lacks its model's features", seed,
			 m->vm_name, m->to);
	assert_null(s->st->vms[m->vm]->migration);
}

static unsigned soft_score(const Ferry__Cluster__State *st, const char *vm, const char *host)
{
	unsigned n = 0;

	for (size_t r = 0; r < st->n_rules; r++) {
		const Ferry__Cluster__Rule *ru = st->rules[r];
		bool named = false;

		for (size_t i = 0; i < ru->n_vms; i++)
			named |= !strcmp(ru->vms[i], vm);
		if (!named)
			continue;
		if (ru->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD && on_hosts(ru, host))
			n++;
		if (ru->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD_NOT &&
		    !on_hosts(ru, host))
			n++;
	}
	return n;
}

static void sim_opts(struct cl_sim_opts *o, unsigned seed)
{
	cl_sim_defaults(o);
	o->hosts = 6 + seed % 10;
	o->vms = 40 + seed % 120;
	o->rules = 4 + seed % 16;
	o->maintenance = 1 + seed % 2;
	o->skew_pct = (seed * 37) % 101;
	o->now_unix_ms = NOW;
}

static void check_round_caps(const struct cl_plan_input *in, const struct cl_plan *p,
			     unsigned seed)
{
	unsigned *per = calloc(in->n_hosts, sizeof(*per));

	assert_non_null(per);
	if (in->in_flight + p->n_moves > in->cfg.max_mig_cluster)
		fail_msg("seed %u: cluster cap exceeded", seed);
	for (size_t h = 0; h < in->n_hosts; h++)
		per[h] = in->hosts[h].migrations;
	for (size_t i = 0; i < p->n_moves; i++) {
		const struct cl_plan_vm *v = &in->vms[p->moves[i].vm];

		if (v->held)
			fail_msg("seed %u: %s moved within its hold-down", seed, v->name);
		for (size_t h = 0; h < in->n_hosts; h++) {
			if (!strcmp(in->hosts[h].name, p->moves[i].from) ||
			    !strcmp(in->hosts[h].name, p->moves[i].to))
				per[h]++;
		}
	}
	for (size_t h = 0; h < in->n_hosts; h++) {
		if (per[h] > in->cfg.max_mig_per_host &&
		    per[h] > in->hosts[h].migrations)
			fail_msg("seed %u: host cap exceeded on %s", seed, in->hosts[h].name);
	}
	free(per);
}

/* The planner's CPU memo: content-keyed, so one serves every seed. */
static int memo_setup(void **state)
{
	*state = cl_plan_memo_new();
	return *state ? 0 : -1;
}

static int memo_teardown(void **state)
{
	cl_plan_memo_free(*state);
	return 0;
}

static void test_property_balance(void **state)
{
	struct cl_plan_memo *cpu = *state;

	for (unsigned seed = 1; seed <= SEEDS; seed++) {
		struct cl_sim_opts o;
		struct cl_sim s;
		struct cl_plan_config cfg;
		double ssd0 = 0, moves = 0;
		unsigned quiet = 0, rounds = 0;
		unsigned quiet_needed;

		sim_opts(&o, seed);
		cl_plan_defaults(&cfg);
		/* Short, so that the rounds after the last move are few: a fixed
		 * point is a round with nothing to do once no VM is held. */
		cfg.holddown_s = 2 * cfg.interval_s;
		cfg.max_mig_per_host = 1 + seed % 4;
		cfg.max_mig_cluster = 4 + seed % 13;
		quiet_needed = (unsigned)(cfg.holddown_s / cfg.interval_s) + 1;
		assert_int_equal(cl_sim_build(&s, seed, &o), 0);
		while (quiet < quiet_needed) {
			struct cl_plan_input *in;
			struct cl_plan p;
			double indep, after;

			assert_int_equal(cl_plan_input_build(&in, s.st, s.figs, s.n_figs,
							     s.now_unix_ms, &cfg, NULL, 0), 0);
			in->memo = cpu;
			indep = cl_plan_imbalance(in);
			if (rounds < 2) {
				/* Σ(load-mean)² at the start, and again once those in flight landed. */
				size_t active = 0;

				for (size_t h = 0; h < in->n_hosts; h++)
					active += in->hosts[h].active;
				ssd0 += indep * indep * (double)active;
			}
			assert_int_equal(cl_plan_balance(in, &p), 0);
			assert_true(fabs(p.imbalance_before - indep) < 1e-9);
			check_round_caps(in, &p, seed);
			for (size_t i = 0; i < p.n_moves; i++) {
				const struct cl_plan_move *m = &p.moves[i];

				check_move(&s, m, seed);
				if (!(m->imbalance_after < m->imbalance_before))
					fail_msg("seed %u: a move does not cut the imbalance", seed);
				if (soft_score(s.st, m->vm_name, m->to) <
				    soft_score(s.st, m->vm_name, m->from))
					fail_msg("seed %u: %s worse off against a soft rule", seed,
						 m->vm_name);
			}
			quiet = p.n_moves ? 0 : quiet + 1;
			moves += (double)p.n_moves;
			cl_sim_apply(&s, &p, s.now_unix_ms + cfg.interval_s * 1000);
			/* Carried out, the moves give the imbalance the plan promised. */
			cl_plan_input_free(in);
			assert_int_equal(cl_plan_input_build(&in, s.st, s.figs, s.n_figs,
							     s.now_unix_ms, &cfg, NULL, 0), 0);
			after = cl_plan_imbalance(in);
			if (after > p.imbalance_before + 1e-9 || fabs(after - p.imbalance_after) > 1e-9)
				fail_msg("seed %u: imbalance %.6f -> %.6f, planned %.6f", seed,
					 p.imbalance_before, after, p.imbalance_after);
			land(&s);
			check_rules(s.st, seed);
			for (size_t i = 0; i < p.n_moves; i++)
				check_capacity(&s, p.moves[i].to, cfg.cpu_cap_pct, seed);
			cl_plan_free(&p);
			cl_plan_input_free(in);
			if (++rounds > 400)
				fail_msg("seed %u: no fixed point in 400 rounds", seed);
		}
		/* Each move gains more than the threshold: a bound on them all. */
		if (moves > ssd0 / cfg.threshold_ssd + 1)
			fail_msg("seed %u: %.0f moves, more than the bound", seed, moves);
		cl_sim_free(&s);
	}
}

static bool all_up(const void *opaque, const char *host)
{
	(void)opaque;
	(void)host;
	return true;
}

/* Does HA's room hold with src in maintenance and p's moves made? */
static bool plan_keeps_room(const struct cl_sim *s, const char *src, const struct cl_plan *p,
			    char *why, size_t len)
{
	struct cl_admit_change *c = calloc(p->n_moves + 1, sizeof(*c));
	int ret;

	assert_non_null(c);
	c[0] = (struct cl_admit_change){ .host = src, .maintenance = true };
	for (size_t i = 0; i < p->n_moves; i++)
		c[i + 1] = (struct cl_admit_change){ .vm = p->moves[i].vm_name, .host = p->moves[i].to,
						     .ha = s->st->vms[p->moves[i].vm]->ha };
	ret = cl_admit_ha(s->st, 1, all_up, NULL, c, p->n_moves + 1, why, len);
	free(c);
	return !ret;
}

/* The evacuation of src, with HA's room asked for or not. */
static void evacuate_room(struct cl_sim *s, const struct cl_plan_config *cfg,
			  struct cl_plan_memo *cpu, const char *src, bool room, struct cl_plan *p)
{
	struct cl_admit_room r;
	struct cl_plan_input *in;

	assert_int_equal(cl_plan_input_build(&in, s->st, s->figs, s->n_figs, s->now_unix_ms,
					     cfg, NULL, 0), 0);
	in->memo = cpu;
	if (room)
		cl_admit_room_set(in, &r, all_up, NULL, 0);
	assert_int_equal(cl_plan_evacuate(in, src, p), 0);
	cl_plan_input_free(in);
}

/*
 * The same evacuation under ha-host-failures 1, every third VM HA: a plan
 * with moves, none of which says room_lost, leaves a cluster (src in
 * maintenance, the moves made, the stuck VMs still there) where HA's room
 * holds, by cl_admit_ha itself. kept counts such plans; fixed, those
 * where the plan without the room asked for lost it (none in these
 * roomy clusters: test_cl_plan's test_evacuate_room_random has tight ones).
 */
static void check_room(struct cl_sim *s, const struct cl_plan_config *cfg,
		       struct cl_plan_memo *cpu, const char *src, unsigned seed, unsigned *kept,
		       unsigned *fixed)
{
	Ferry__Cluster__Settings set = FERRY__CLUSTER__SETTINGS__INIT, *was = s->st->settings;
	struct cl_plan p, naive;
	bool lost = false;
	char why[512];

	set.ha_host_failures = 1;
	s->st->settings = &set;
	for (size_t v = 0; v < s->st->n_vms; v++)
		s->st->vms[v]->ha = v % 3 == 0;
	evacuate_room(s, cfg, cpu, src, true, &p);
	evacuate_room(s, cfg, cpu, src, false, &naive);
	for (size_t i = 0; i < p.n_moves; i++)
		lost |= p.moves[i].room_lost;
	/* Each move's placement was judged with those before it; the last with them all. */
	if (p.n_moves && !lost) {
		if (!plan_keeps_room(s, src, &p, why, sizeof(why)))
			fail_msg("seed %u: no move lost HA's room, yet: %s", seed, why);
		(*kept)++;
		*fixed += !plan_keeps_room(s, src, &naive, why, sizeof(why));
	}
	cl_plan_free(&p);
	cl_plan_free(&naive);
	for (size_t v = 0; v < s->st->n_vms; v++)
		s->st->vms[v]->ha = false;
	s->st->settings = was;
}

static void test_property_evacuate(void **state)
{
	struct cl_plan_memo *cpu = *state;
	unsigned kept = 0, fixed = 0;

	for (unsigned seed = 1; seed <= SEEDS; seed++) {
		struct cl_sim_opts o;
		struct cl_sim s;
		struct cl_plan_config cfg;
		struct cl_plan_input *in;
		struct cl_plan p;
		const char *src;
		size_t on_src = 0, best = 0;

		sim_opts(&o, seed);
		cl_plan_defaults(&cfg);
		cfg.max_mig_per_host = 1 + seed % 4;
		assert_int_equal(cl_sim_build(&s, seed, &o), 0);
		land(&s);
		/* The busiest active host goes into maintenance. */
		src = s.st->hosts[0]->name;
		for (size_t h = 0; h < s.st->n_hosts; h++) {
			size_t n = 0;

			if (s.st->hosts[h]->mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE)
				continue;
			for (size_t v = 0; v < s.st->n_vms; v++)
				n += running(s.st->vms[v]) && !strcmp(s.st->vms[v]->host,
								      s.st->hosts[h]->name);
			if (n > best) {
				best = n;
				src = s.st->hosts[h]->name;
			}
		}
		cl_state_host(s.st, src)->mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
		for (size_t v = 0; v < s.st->n_vms; v++)
			on_src += running(s.st->vms[v]) && !strcmp(s.st->vms[v]->host, src);
		assert_int_equal(cl_plan_input_build(&in, s.st, s.figs, s.n_figs, s.now_unix_ms,
						     &cfg, NULL, 0), 0);
		in->memo = cpu;
		assert_int_equal(cl_plan_evacuate(in, src, &p), 0);
		/* Every VM either moves or is reported, once. */
		if (p.n_moves + p.n_stuck != on_src)
			fail_msg("seed %u: %zu moves + %zu stuck for %zu VMs", seed, p.n_moves,
				 p.n_stuck, on_src);
		assert_true(p.concurrency >= 1 && p.concurrency <= cfg.max_mig_per_host);
		for (size_t i = 0; i < p.n_stuck; i++)
			assert_true(p.stuck[i].why >= CL_PLAN_WHY_NO_COMPATIBLE_HOST &&
				    p.stuck[i].why <= CL_PLAN_WHY_RULE);
		for (size_t i = 0; i < p.n_moves; i++) {
			check_move(&s, &p.moves[i], seed);
			assert_string_equal(p.moves[i].from, src);
			assert_true(p.moves[i].end_ms <= p.eta_ms + 1e-6);
			assert_false(p.moves[i].room_lost);   /* no room asked for */
		}
		if (seed % 3 == 0)   /* a judgement per host and VM: costly under ASan */
			check_room(&s, &cfg, cpu, src, seed, &kept, &fixed);
		cl_sim_apply(&s, &p, s.now_unix_ms);
		check_rules(s.st, seed);
		check_evac_capacity(&s, &p, cfg.cpu_cap_pct, seed);
		cl_plan_free(&p);
		cl_plan_input_free(in);
		cl_sim_free(&s);
	}
	/* Not vacuous: most random clusters have a placement that keeps the room. */
	print_message("evacuations that kept HA's room: %u of %u (%u where the plan without "
		      "it lost it)\n", kept, SEEDS / 3, fixed);
	(void)fixed;
	assert_true(kept >= SEEDS / 6);
}

/* Same seed, same cluster, same plan. */
static void test_sim_deterministic(void **state)
{
	struct cl_sim_opts o;
	struct cl_sim a, b;
	struct cl_plan_input *ia, *ib;
	struct cl_plan pa, pb;

	(void)state;
	sim_opts(&o, 42);
	assert_int_equal(cl_sim_build(&a, 42, &o), 0);
	assert_int_equal(cl_sim_build(&b, 42, &o), 0);
	assert_int_equal(cl_plan_input_build(&ia, a.st, a.figs, a.n_figs, NOW, NULL, NULL, 0), 0);
	assert_int_equal(cl_plan_input_build(&ib, b.st, b.figs, b.n_figs, NOW, NULL, NULL, 0), 0);
	assert_int_equal(cl_plan_balance(ia, &pa), 0);
	assert_int_equal(cl_plan_balance(ib, &pb), 0);
	assert_int_equal(pa.n_moves, pb.n_moves);
	for (size_t i = 0; i < pa.n_moves; i++) {
		assert_string_equal(pa.moves[i].vm_name, pb.moves[i].vm_name);
		assert_string_equal(pa.moves[i].to, pb.moves[i].to);
	}
	cl_plan_free(&pa);
	cl_plan_free(&pb);
	cl_plan_input_free(ia);
	cl_plan_input_free(ib);
	cl_sim_free(&a);
	cl_sim_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_property_balance, memo_setup, memo_teardown),
		cmocka_unit_test_setup_teardown(test_property_evacuate, memo_setup, memo_teardown),
		cmocka_unit_test(test_sim_deterministic),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	memo_clear();
	return failed;
}
