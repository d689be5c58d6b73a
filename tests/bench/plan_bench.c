/*
 * plan_bench: the planner's speed and the evacuation's quality on
 * synthetic clusters (cluster/cl_sim.h). Run by hand; not pass/fail.
 *
 *   1. 1,000 hosts and 20,000 VMs: building the input, one balancing
 *      round, and the evacuation plan of a host with 100 VMs (target:
 *      under 1 s each), in CPU time of one core;
 *   2. the simulated evacuation time of a host with N = 10, 50, 100 VMs,
 *      planned (cheapest first, concurrency from the caps, each migration
 *      with its share of the link) against one at a time in state order;
 *   3. what keeping HA's room costs an evacuation plan (ha-host-failures
 *      K, every third VM HA) on 16 and 64 hosts, the cluster's limit.
 *
 * usage: plan_bench [SEED]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_admit.h"
#include "cl_plan.h"
#include "cl_sim.h"
#include "cl_state.h"

/* CPU time of this process: the figures hold on a shared, busy machine too. */
static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static bool all_up(const void *opaque, const char *host)
{
	(void)opaque;
	(void)host;
	return true;
}

/* h0000's evacuation plan; with room, one that keeps HA's room (all hosts up). */
static int evacuation(struct cl_sim *s, const struct cl_plan_config *cfg,
		      struct cl_admit_room *room, double *build_ms, double *plan_ms,
		      struct cl_plan *p, struct cl_plan_input **in)
{
	double t0;
	int ret;

	cl_state_host(s->st, "h0000")->mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	t0 = now_ms();
	ret = cl_plan_input_build(in, s->st, s->figs, s->n_figs, s->now_unix_ms, cfg, NULL, 0);
	*build_ms = now_ms() - t0;
	if (ret)
		return ret;
	if (room)
		cl_admit_room_set(*in, room, all_up, NULL, 0);
	t0 = now_ms();
	ret = cl_plan_evacuate(*in, "h0000", p);
	*plan_ms = now_ms() - t0;
	return ret;
}

static int big(uint64_t seed)
{
	struct cl_sim_opts o;
	struct cl_plan_config cfg;
	struct cl_plan_input *in;
	struct cl_plan p;
	struct cl_sim s;
	double t0, build_ms, plan_ms;

	cl_sim_defaults(&o);
	cl_plan_defaults(&cfg);
	o.hosts = 1000;
	o.vms = 20000;
	o.rules = 400;
	o.maintenance = 10;
	o.in_flight = 4;
	o.busy_host_vms = 100;
	if (cl_sim_build(&s, seed, &o))
		return 1;
	t0 = now_ms();
	if (cl_plan_input_build(&in, s.st, s.figs, s.n_figs, s.now_unix_ms, &cfg, NULL, 0))
		return 1;
	build_ms = now_ms() - t0;
	t0 = now_ms();
	if (cl_plan_balance(in, &p))
		return 1;
	plan_ms = now_ms() - t0;
	printf("1000 hosts, 20000 VMs, %zu rules: input %.1f ms, balancing round %.1f ms "
	       "(%zu moves, imbalance %.4f -> %.4f)\n", s.st->n_rules, build_ms, plan_ms,
	       p.n_moves, p.imbalance_before, p.imbalance_after);
	cl_plan_free(&p);
	cl_plan_input_free(in);
	if (evacuation(&s, &cfg, NULL, &build_ms, &plan_ms, &p, &in))
		return 1;
	printf("1000 hosts, 20000 VMs: evacuation plan of h0000 (%zu VMs): input %.1f ms, "
	       "plan %.1f ms (%zu moves, %zu stuck)\n", p.n_moves + p.n_stuck, build_ms,
	       plan_ms, p.n_moves, p.n_stuck);
	cl_plan_free(&p);
	cl_plan_input_free(in);
	/* No caps: rounds go on until no move gains enough; the last one
	 * tries every candidate against every target, the worst case. */
	cl_state_host(s.st, "h0000")->mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE;
	cfg.max_mig_per_host = 1u << 30;
	cfg.max_mig_cluster = 1u << 30;
	for (unsigned r = 1; r <= 8; r++) {
		if (cl_plan_input_build(&in, s.st, s.figs, s.n_figs, s.now_unix_ms, &cfg, NULL, 0))
			return 1;
		t0 = now_ms();
		if (cl_plan_balance(in, &p))
			return 1;
		plan_ms = now_ms() - t0;
		printf("1000 hosts, 20000 VMs: uncapped round %u: %.1f ms (%zu moves, "
		       "imbalance %.4f -> %.4f)\n", r, plan_ms, p.n_moves, p.imbalance_before,
		       p.imbalance_after);
		/* Carried out, and past the hold-down before the next round. */
		cl_sim_apply(&s, &p, s.now_unix_ms);
		s.now_unix_ms += cfg.holddown_s * 1000 + 1;
		r = p.n_moves ? r : 100;
		cl_plan_free(&p);
		cl_plan_input_free(in);
	}
	cl_sim_free(&s);
	return 0;
}

static int evac_n(uint64_t seed, unsigned n)
{
	struct cl_sim_opts o;
	struct cl_plan_config cfg;
	struct cl_plan_input *in;
	struct cl_plan p;
	struct cl_sim s;
	double build_ms, plan_ms;

	cl_sim_defaults(&o);
	cl_plan_defaults(&cfg);
	o.hosts = 40;
	o.vms = 600 + n;
	o.rules = 20;
	o.in_flight = 0;
	o.busy_host_vms = n;
	if (cl_sim_build(&s, seed, &o) || evacuation(&s, &cfg, NULL, &build_ms, &plan_ms, &p, &in))
		return 1;
	printf("N=%3u: %3zu moves %2zu stuck %6.1f GiB | planned ETA %7.1f s, mean off-host %6.1f s"
	       " (%u at a time) | naive %7.1f s, mean %6.1f s | %.2fx faster\n",
	       n, p.n_moves, p.n_stuck, p.bytes / (1u << 30), p.eta_ms / 1e3,
	       p.mean_done_ms / 1e3, p.concurrency, p.naive_ms / 1e3,
	       p.naive_mean_done_ms / 1e3, p.eta_ms > 0 ? p.naive_ms / p.eta_ms : 0);
	cl_plan_free(&p);
	cl_plan_input_free(in);
	cl_sim_free(&s);
	return 0;
}

/* One evacuation plan of a 100-VM host, with HA's room kept for k losses or not. */
static int evac_room(uint64_t seed, unsigned hosts, unsigned k)
{
	Ferry__Cluster__Settings set = FERRY__CLUSTER__SETTINGS__INIT;
	struct cl_sim_opts o;
	struct cl_plan_config cfg;
	struct cl_admit_room room;
	struct cl_plan_input *in;
	struct cl_plan p;
	struct cl_sim s;
	double build_ms, ms[2];
	size_t lost[2] = { 0 }, moves[2];

	cl_sim_defaults(&o);
	cl_plan_defaults(&cfg);
	o.hosts = hosts;
	o.vms = hosts * 15 + 100;
	o.rules = 0;
	o.maintenance = 0;
	o.in_flight = 0;
	o.busy_host_vms = 100;
	if (cl_sim_build(&s, seed, &o))
		return 1;
	for (size_t v = 0; v < s.st->n_vms; v++)
		s.st->vms[v]->ha = v % 3 == 0;
	set.ha_host_failures = k;
	s.st->settings = &set;
	for (int r = 0; r < 2; r++) {
		if (evacuation(&s, &cfg, r ? &room : NULL, &build_ms, &ms[r], &p, &in))
			return 1;
		moves[r] = p.n_moves;
		for (size_t i = 0; i < p.n_moves; i++)
			lost[r] += p.moves[i].room_lost;
		cl_plan_free(&p);
		cl_plan_input_free(in);
	}
	printf("%2u hosts, K=%u: evacuation plan of h0000 (%zu moves): %.1f ms, with HA's room "
	       "kept %.1f ms (%zu moves where no host kept it)\n", hosts, k, moves[0], ms[0],
	       ms[1], lost[1]);
	s.st->settings = NULL;
	cl_sim_free(&s);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
	static const unsigned ns[] = { 10, 50, 100 };

	printf("plan_bench: seed %llu; link %d Mb/s per host, %d Mb/s per stream, "
	       "%d migrations per host\n", (unsigned long long)seed, CL_PLAN_DEFAULT_LINK_MBPS,
	       CL_PLAN_DEFAULT_STREAM_MBPS, CL_PLAN_DEFAULT_MAX_MIG_PER_HOST);
	if (big(seed))
		return 1;
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		if (evac_n(seed, ns[i]))
			return 1;
	}
	if (evac_room(seed, 16, 1) || evac_room(seed, 16, 4) || evac_room(seed, 64, 1) ||
	    evac_room(seed, 64, 3))
		return 1;
	return 0;
}
