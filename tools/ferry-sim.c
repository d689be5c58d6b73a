/*
 * ferry-sim: drives the planner (cluster/cl_plan.h) against synthetic
 * clusters (cluster/cl_sim.h), deterministic from a seed, with migration
 * durations from the migration engine's predictor. Balancing rounds
 * apply each round's moves as if they completed within the interval; an
 * evacuation reports its schedule against a naive one-at-a-time order.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_plan.h"
#include "cl_sim.h"
#include "cl_msg.h"
#include "cl_state.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: ferry-sim [options]\n"
"Builds a synthetic cluster from a seed and runs the planner on it.\n"
"\n"
"What to run (balancing by default):\n"
"  --rounds N          balancing rounds at most (default 20); stops early at\n"
"                      a fixed point (a round that proposes nothing). Each\n"
"                      round's moves, and the migrations in flight at the\n"
"                      start, complete before the next round, --interval-s later\n"
"  --evacuate HOST     put HOST (h0000, h0001, ...) in maintenance and plan its\n"
"                      evacuation instead of balancing: ETA with the planned\n"
"                      order and concurrency against one at a time in state order\n"
"  -v, --verbose       print every move (and every VM that cannot move)\n"
"\n"
"The cluster (deterministic from the seed):\n"
"  --seed N            (default 1)\n"
"  --hosts N           (default 20)\n"
"  --vms N             (default 300)\n"
"  --rules N           placement rules, of all kinds (default 12)\n"
"  --maintenance N     the last N hosts are in maintenance, empty (default 1)\n"
"  --in-flight N       up to N VMs with a migration in flight at the start (default 2)\n"
"  --busy-host-vms N   make h0000 a big host holding the first N VMs (one to evacuate)\n"
"  --skew PCT          0 spreads VMs evenly, 100 crowds the first hosts (default 60)\n"
"\n"
"The planner (defaults: cluster/cl_plan.h):\n"
"  --threshold SSD     least gain of a balancing move in sum of squared load\n"
"                      deviations (default %g)\n"
"  --link-mbps N       a host's link, shared by its migrations (default %d)\n"
"  --stream-mbps N     one migration stream (default %d)\n"
"  --max-per-host N    concurrent migrations per host (default %d)\n"
"  --max-cluster N     concurrent migrations in the cluster (default %d)\n"
"  --holddown-s N      a VM moved this recently stays put (default %d)\n"
"  --interval-s N      simulated time between balancing rounds (default %d)\n"
"  -h, --help\n",
		CL_PLAN_DEFAULT_THRESHOLD_SSD, CL_PLAN_DEFAULT_LINK_MBPS, CL_PLAN_DEFAULT_STREAM_MBPS,
		CL_PLAN_DEFAULT_MAX_MIG_PER_HOST, CL_PLAN_DEFAULT_MAX_MIG_CLUSTER,
		CL_PLAN_DEFAULT_HOLDDOWN_S, CL_PLAN_DEFAULT_INTERVAL_S);
}

/* Migrations in flight complete: the VM is on its destination. */
static void sim_land(struct cl_sim *s)
{
	for (size_t v = 0; v < s->st->n_vms; v++) {
		Ferry__Cluster__Vm *vm = s->st->vms[v];

		if (!vm->migration)
			continue;
		cl_str_set(&vm->host, vm->migration->destination);
		CL_FREE(vm->migration);
		vm->migration = NULL;
	}
}

static int balance(struct cl_sim *s, const struct cl_plan_config *cfg, unsigned rounds,
		   bool verbose)
{
	double first = -1, last = 0, bytes = 0;
	unsigned moves = 0, r;
	size_t n;
	char err[256];
	int ret = 0;
	struct cl_plan_memo *cpu = cl_plan_memo_new();   /* NULL: none, slower */

	for (r = 1; r <= rounds; r++) {
		struct cl_plan_input *in;
		struct cl_plan p;

		ret = cl_plan_input_build(&in, s->st, s->figs, s->n_figs, s->now_unix_ms, cfg, err,
					  sizeof(err));
		if (ret) {
			fprintf(stderr, "ferry-sim: %s\n", err);
			break;
		}
		in->memo = cpu;
		ret = cl_plan_balance(in, &p);
		if (ret) {
			cl_plan_input_free(in);
			fprintf(stderr, "ferry-sim: balance: %s\n", strerror(-ret));
			break;
		}
		if (first < 0)
			first = p.imbalance_before;
		last = p.imbalance_after;
		printf("round %2u: %zu moves, imbalance %.4f -> %.4f, %.1f GiB\n", r, p.n_moves,
		       p.imbalance_before, p.imbalance_after, p.bytes / (1u << 30));
		for (size_t i = 0; verbose && i < p.n_moves; i++)
			printf("  %s %s -> %s: %.0f ms, downtime %.1f ms, %.2f GiB, imbalance %.4f -> %.4f\n",
			       p.moves[i].vm_name, p.moves[i].from, p.moves[i].to,
			       p.moves[i].cost.total_ms, p.moves[i].cost.downtime_ms,
			       p.moves[i].cost.bytes / (1u << 30), p.moves[i].imbalance_before,
			       p.moves[i].imbalance_after);
		moves += (unsigned)p.n_moves;
		bytes += p.bytes;
		n = p.n_moves;
		/* The moves end within the interval, those in flight at the start too. */
		cl_sim_apply(s, &p, s->now_unix_ms + cfg->interval_s * 1000);
		sim_land(s);
		cl_plan_free(&p);
		cl_plan_input_free(in);
		if (!n)
			break;
	}
	cl_plan_memo_free(cpu);
	if (ret)
		return ret;
	printf("balance: imbalance %.4f -> %.4f, %u moves, %.1f GiB moved, %s after %u round%s\n",
	       first, last, moves, bytes / (1u << 30),
	       r <= rounds ? "fixed point" : "no fixed point yet", r > rounds ? rounds : r,
	       r == 1 ? "" : "s");
	return 0;
}

static int evacuate(struct cl_sim *s, const struct cl_plan_config *cfg, const char *host,
		    bool verbose)
{
	Ferry__Cluster__Host *h = cl_state_host(s->st, host);
	struct cl_plan_input *in;
	struct cl_plan p;
	char err[256];
	size_t on_host = 0;
	int ret;

	if (!h) {
		fprintf(stderr, "ferry-sim: evacuate: no host %s in this cluster\n", host);
		return -ENOENT;
	}
	h->mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	for (size_t v = 0; v < s->st->n_vms; v++)
		on_host += s->st->vms[v]->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
			   !strcmp(s->st->vms[v]->host, host);
	ret = cl_plan_input_build(&in, s->st, s->figs, s->n_figs, s->now_unix_ms, cfg, err,
				  sizeof(err));
	if (ret) {
		fprintf(stderr, "ferry-sim: %s\n", err);
		return ret;
	}
	ret = cl_plan_evacuate(in, host, &p);
	if (ret) {
		cl_plan_input_free(in);
		fprintf(stderr, "ferry-sim: evacuate: %s\n", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; verbose && i < p.n_moves; i++)
		printf("  %6.1f s .. %6.1f s  %s -> %s: %.0f ms, downtime %.1f ms, %.2f GiB\n",
		       p.moves[i].start_ms / 1000, p.moves[i].end_ms / 1000, p.moves[i].vm_name,
		       p.moves[i].to, p.moves[i].cost.total_ms, p.moves[i].cost.downtime_ms,
		       p.moves[i].cost.bytes / (1u << 30));
	for (size_t i = 0; verbose && i < p.n_stuck; i++)
		printf("  stuck: %s\n", p.stuck[i].reason);
	printf("evacuate %s: %zu VMs, %zu moves, %zu stuck, %.1f GiB, %u at a time\n", host,
	       on_host, p.n_moves, p.n_stuck, p.bytes / (1u << 30), p.concurrency);
	printf("  planned: ETA %.1f s, a VM is off on average after %.1f s\n", p.eta_ms / 1000,
	       p.mean_done_ms / 1000);
	printf("  naive (one at a time, state order): %.1f s, on average after %.1f s\n",
	       p.naive_ms / 1000, p.naive_mean_done_ms / 1000);
	printf("  imbalance of the active hosts %.4f -> %.4f\n", p.imbalance_before,
	       p.imbalance_after);
	cl_plan_free(&p);
	cl_plan_input_free(in);
	return 0;
}

static int num(const char *opt, const char *arg, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-') {
		fprintf(stderr, "ferry-sim: --%s: '%s' is not a number\n", opt, arg);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "hosts", required_argument, NULL, 'H' },
		{ "vms", required_argument, NULL, 'V' },
		{ "rules", required_argument, NULL, 'R' },
		{ "maintenance", required_argument, NULL, 'M' },
		{ "in-flight", required_argument, NULL, 'F' },
		{ "busy-host-vms", required_argument, NULL, 'B' },
		{ "skew", required_argument, NULL, 'K' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "evacuate", required_argument, NULL, 'e' },
		{ "threshold", required_argument, NULL, 't' },
		{ "link-mbps", required_argument, NULL, 'l' },
		{ "stream-mbps", required_argument, NULL, 'S' },
		{ "max-per-host", required_argument, NULL, 'p' },
		{ "max-cluster", required_argument, NULL, 'c' },
		{ "holddown-s", required_argument, NULL, 'd' },
		{ "interval-s", required_argument, NULL, 'i' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct cl_sim_opts so;
	struct cl_plan_config cfg;
	struct cl_sim s;
	unsigned long long seed = 1, rounds = 20, x = 0;
	const char *evac = NULL;
	bool verbose = false;
	int c, ret;

	cl_sim_defaults(&so);
	cl_plan_defaults(&cfg);
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		const char *name = "?";
		char *end;

		if (c == 'h') {
			usage(stdout);
			return 0;
		}
		if (c == 'v') {
			verbose = true;
			continue;
		}
		if (c == '?') {
			usage(stderr);
			return 2;
		}
		if (c == 'e') {
			evac = optarg;
			continue;
		}
		if (c == 't') {
			cfg.threshold_ssd = strtod(optarg, &end);
			if (end == optarg || *end) {
				fprintf(stderr, "ferry-sim: --threshold: '%s' is not a number\n", optarg);
				return 2;
			}
			continue;
		}
		for (size_t i = 0; opts[i].name; i++) {
			if (opts[i].val == c)
				name = opts[i].name;
		}
		if (num(name, optarg, &x))
			return 2;
		switch (c) {
		case 's': seed = x; break;
		case 'H': so.hosts = (unsigned)x; break;
		case 'V': so.vms = (unsigned)x; break;
		case 'R': so.rules = (unsigned)x; break;
		case 'M': so.maintenance = (unsigned)x; break;
		case 'F': so.in_flight = (unsigned)x; break;
		case 'B': so.busy_host_vms = (unsigned)x; break;
		case 'K': so.skew_pct = (unsigned)x; break;
		case 'r': rounds = x; break;
		case 'l': cfg.link_mbps = x; break;
		case 'S': cfg.stream_mbps = x; break;
		case 'p': cfg.max_mig_per_host = (unsigned)x; break;
		case 'c': cfg.max_mig_cluster = (unsigned)x; break;
		case 'd': cfg.holddown_s = x; break;
		case 'i': cfg.interval_s = x; break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry-sim: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!so.hosts) {
		fprintf(stderr, "ferry-sim: --hosts must be at least 1\n");
		return 2;
	}
	if (so.maintenance >= so.hosts)
		so.maintenance = so.hosts - 1;
	if (cl_sim_build(&s, seed, &so)) {
		fprintf(stderr, "ferry-sim: out of memory building the cluster\n");
		return 1;
	}
	printf("cluster: seed %llu, %u hosts (%u in maintenance), %u VMs, %zu rules\n", seed,
	       so.hosts, so.maintenance, so.vms, s.st->n_rules);
	ret = evac ? evacuate(&s, &cfg, evac, verbose)
		   : balance(&s, &cfg, (unsigned)rounds, verbose);
	cl_sim_free(&s);
	return ret ? 1 : 0;
}
