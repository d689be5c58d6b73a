/*
 * admit_bench: what HA admission control costs (cluster/cl_admit.h) as the
 * cluster grows. Every choice of k lost hosts is tried, so the work grows
 * with C(hosts, k). Run by hand; not pass/fail.
 *
 * For 8 to 64 hosts (15 VMs a host, every third one HA, cluster/cl_sim.h)
 * and k = 1..4, in CPU time of one core: one judgement (what a vm start
 * pays on the agent and again where it is applied), clusterctl status's
 * two lines (the losses survived, tried for k = 1..4, and the room on
 * every host), and the baseline of a full sort of the VMs by memory, the
 * least any judgement must do. Twice: as the simulator fills the hosts
 * (roomy), and tight: every host's memory free scaled down by the same
 * factor, the least with which the cluster survives k losses (a judgement
 * that holds there cannot stop early; "-1" is the next factor down,
 * refused).
 *
 * usage: admit_bench [SEED]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_admit.h"
#include "cl_sim.h"
#include "cl_state.h"

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

static int by_mem(const void *x, const void *y)
{
	const Ferry__Cluster__Vm *a = *(Ferry__Cluster__Vm *const *)x;
	const Ferry__Cluster__Vm *b = *(Ferry__Cluster__Vm *const *)y;

	return a->mem_bytes < b->mem_bytes ? 1 : a->mem_bytes > b->mem_bytes ? -1 : 0;
}

/*
 * Tight: every host's memory free scaled by the same factor (in 1/4096),
 * the least with which the cluster survives k losses; the factor 4096
 * gives the simulator's hosts back.
 */
static uint64_t used_of[64], free_of[64];
static uint64_t scale_now;

static void scale_to(Ferry__Cluster__State *st, uint64_t f)
{
	for (size_t h = 0; h < st->n_hosts && h < 64; h++)
		st->hosts[h]->inventory->mem_bytes = used_of[h] + free_of[h] / 4096 * f;
	scale_now = f;
}

static void scale_keep(Ferry__Cluster__State *st)
{
	for (size_t h = 0; h < st->n_hosts && h < 64; h++) {
		uint64_t total = st->hosts[h]->inventory->mem_bytes;

		used_of[h] = cl_state_host_mem_used(st, st->hosts[h]->name);
		free_of[h] = total > used_of[h] ? total - used_of[h] : 0;
	}
}

static void scale_set(Ferry__Cluster__State *st, unsigned k)
{
	uint64_t lo = 0, hi = 4096;
	char why[CL_ERR_LEN];

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		scale_to(st, mid);
		if (cl_admit_ha(st, k, all_up, NULL, NULL, 0, why, sizeof(why)))
			lo = mid + 1;
		else
			hi = mid;
	}
	scale_to(st, lo);
}

int main(int argc, char **argv)
{
	static const unsigned sizes[] = { 8, 16, 32, 64 };
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	char why[CL_ERR_LEN];

	printf("%6s %5s %2s %-6s %12s %8s %14s %14s %12s %11s\n", "hosts", "vms", "k", "hosts",
	       "judgement ms", "result", "tolerates ms", "room all ms", "sort ms",
	       "-1 ms");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct cl_sim_opts o;
		struct cl_sim s;
		Ferry__Cluster__Vm **copy;
		double t0, sort_ms;

		cl_sim_defaults(&o);
		o.hosts = sizes[i];
		o.vms = sizes[i] * 15;
		o.rules = 0;
		o.in_flight = 0;
		o.maintenance = 0;
		if (cl_sim_build(&s, seed, &o)) {
			fprintf(stderr, "admit_bench: out of memory\n");
			return 1;
		}
		for (size_t v = 0; v < s.st->n_vms; v++)
			s.st->vms[v]->ha = v % 3 == 0;
		scale_keep(s.st);
		copy = malloc(s.st->n_vms * sizeof(*copy));
		if (!copy)
			return 1;
		memcpy(copy, s.st->vms, s.st->n_vms * sizeof(*copy));
		t0 = now_ms();
		qsort(copy, s.st->n_vms, sizeof(*copy), by_mem);
		sort_ms = now_ms() - t0;
		free(copy);
		for (unsigned k = 1; k <= CL_ADMIT_MAX_FAILURES; k++)
			for (int tight = 0; tight < 2; tight++) {
			double judge_ms, tol_ms, room_ms, refused_ms = 0;
			unsigned tol;
			int ret;

			if (tight)
				scale_set(s.st, k);
			else
				scale_to(s.st, 4096);
			t0 = now_ms();
			ret = cl_admit_ha(s.st, k, all_up, NULL, NULL, 0, why, sizeof(why));
			judge_ms = now_ms() - t0;
			t0 = now_ms();
			tol = cl_admit_tolerates(s.st, all_up, NULL);
			tol_ms = now_ms() - t0;
			t0 = now_ms();
			for (size_t h = 0; h < s.st->n_hosts; h++)
				(void)cl_admit_room(s.st, k, all_up, NULL, s.st->hosts[h]->name);
			room_ms = now_ms() - t0;
			if (tight && scale_now) {
				scale_to(s.st, scale_now - 1);
				t0 = now_ms();
				(void)cl_admit_ha(s.st, k, all_up, NULL, NULL, 0, why, sizeof(why));
				refused_ms = now_ms() - t0;
			}
			printf("%6u %5u %2u %-6s %12.3f %8s %14.3f %14.3f %12.3f %11.3f   "
			       "(survives %u)\n", sizes[i], o.vms, k, tight ? "tight" : "roomy",
			       judge_ms, ret ? "refused" : "holds", tol_ms, room_ms, sort_ms,
			       refused_ms, tol);
			fflush(stdout);
			}
		cl_sim_free(&s);
	}
	return 0;
}
