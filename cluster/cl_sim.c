/*
 * Synthetic clusters (cl_sim.h). The mix is meant to look like a real
 * fleet rather than to be uniform: hosts of a few generations (x86-64-v2,
 * v3, v4 feature sets, 16 to 96 CPUs, 64 to 512 GiB), mostly small VMs
 * with a tail of big ones, mostly idle CPUs, and dirty rates from quiet
 * to ones only auto-converge can migrate. The placement is skewed toward
 * the first hosts so that there is something to balance.
 *
 * Hosts carry exactly a psABI level's features (plus aes), so during
 * generation "does the VM's level fit the host's" stands in for
 * cl_cpu_check; the planner itself asks cl_cpu_check.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_msg.h"
#include "cl_sim.h"
#include "core/cpumodel.h"

#define GIB (1ull << 30)

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_u(struct rng *r)
{
	return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static unsigned rng_below(struct rng *r, unsigned n)
{
	return n ? (unsigned)(rng_next(r) % n) : 0;
}

void cl_sim_defaults(struct cl_sim_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->hosts = 20;
	o->vms = 300;
	o->rules = 12;
	o->maintenance = 1;
	o->in_flight = 2;
	o->skew_pct = 60;
	o->now_unix_ms = 1700000000000ull;
}

/* Generation bookkeeping, by index. */
struct gen {
	struct rng r;
	const struct cl_sim_opts *o;
	Ferry__Cluster__State *st;
	unsigned *level;               /* per host: psABI level; per VM in vm_level */
	unsigned *vm_level;            /* 0: "host" */
	double *cpu_used;
	uint64_t *mem_used;
	int *vm_host;                  /* -1 stopped */
	int *vm_dest;
	bool *vm_busy;                 /* in flight, or already in a rule */
};

static int feature_list(unsigned level, const char ***out, size_t *n)
{
	char name[16];
	const struct cpumodel *m;
	size_t count;
	const struct cpu_feature *t = cpu_features(&count);

	snprintf(name, sizeof(name), "x86-64-v%u", level);
	m = cpumodel_find(name);
	*out = malloc((count + 1) * sizeof(**out));
	*n = 0;
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; m && i < count; i++) {
		if (cpumodel_requires(m, &t[i]))
			(*out)[(*n)++] = t[i].name;
	}
	(*out)[(*n)++] = "aes";
	return 0;
}

static int gen_hosts(struct gen *g)
{
	static const unsigned cpus[] = { 16, 32, 48, 64, 96 };
	static const unsigned mem_gib[] = { 64, 128, 192, 256, 384, 512 };
	const char **feat[5] = { 0 };
	size_t nfeat[5] = { 0 };
	int ret = 0;

	for (unsigned l = 2; l <= 4 && !ret; l++)
		ret = feature_list(l, &feat[l], &nfeat[l]);
	g->st->hosts = calloc(g->o->hosts ? g->o->hosts : 1, sizeof(*g->st->hosts));
	if (ret || !g->st->hosts)
		ret = -ENOMEM;
	for (unsigned h = 0; !ret && h < g->o->hosts; h++) {
		Ferry__Cluster__Host *ho = CL_NEW(Ferry__Cluster__Host, ferry__cluster__host__init);
		double u = rng_u(&g->r);
		char name[16];

		if (!ho) {
			ret = -ENOMEM;
			break;
		}
		g->st->hosts[g->st->n_hosts++] = ho;
		snprintf(name, sizeof(name), "h%04u", h);
		ho->name = cl_strdup(name);
		ho->nodeid = h + 1;
		ho->inventory = CL_NEW(Ferry__Cluster__Inventory, ferry__cluster__inventory__init);
		if (!ho->name || !ho->inventory) {
			ret = -ENOMEM;
			break;
		}
		g->level[h] = u < 0.2 ? 2 : u < 0.7 ? 3 : 4;
		ho->inventory->cpus = cpus[rng_below(&g->r, 5)];
		ho->inventory->mem_bytes = mem_gib[rng_below(&g->r, 6)] * GIB;
		if (h == 0 && g->o->busy_host_vms) {
			g->level[h] = 4;
			ho->inventory->cpus = 1024;
			ho->inventory->mem_bytes = 8192 * GIB;
		}
		if (h >= g->o->hosts - g->o->maintenance && h > 0)
			ho->mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
		for (size_t i = 0; i < nfeat[g->level[h]] && !ret; i++)
			ret = cl_strv_add(&ho->inventory->cpu_features,
					  &ho->inventory->n_cpu_features, feat[g->level[h]][i]);
	}
	for (unsigned l = 2; l <= 4; l++)
		free(feat[l]);
	return ret;
}

static bool gen_fits(const struct gen *g, size_t v, size_t h)
{
	const Ferry__Cluster__Host *ho = g->st->hosts[h];

	return ho->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE &&
	       g->vm_level[v] <= g->level[h] &&
	       g->mem_used[h] + g->st->vms[v]->mem_bytes <= ho->inventory->mem_bytes;
}

static bool gen_fits_cpu(const struct gen *g, const struct cl_sim *s, size_t v, size_t h)
{
	return gen_fits(g, v, h) &&
	       g->cpu_used[h] + s->figs[v].cpu_pct / 100.0 <= g->st->hosts[h]->inventory->cpus;
}

static void gen_put(struct gen *g, const struct cl_sim *s, size_t v, size_t h)
{
	g->vm_host[v] = (int)h;
	g->mem_used[h] += g->st->vms[v]->mem_bytes;
	g->cpu_used[h] += s->figs[v].cpu_pct / 100.0;
}

static long gen_pick(struct gen *g, const struct cl_sim *s, size_t v)
{
	unsigned n = g->o->hosts, lo = g->o->busy_host_vms ? 1 : 0;
	double power = 1 + g->o->skew_pct / 25.0;

	if (n <= lo)
		return -1;
	for (int tries = 0; tries < 30; tries++) {
		double u = rng_u(&g->r), p = u;

		for (double k = 1; k < power; k++)
			p *= u;
		size_t h = lo + (size_t)(p * (n - lo));

		if (h < n && gen_fits_cpu(g, s, v, h))
			return (long)h;
	}
	for (unsigned i = 0, start = rng_below(&g->r, n - lo); i < n - lo; i++) {
		size_t h = lo + (start + i) % (n - lo);

		if (gen_fits_cpu(g, s, v, h))
			return (long)h;
	}
	return -1;
}

static int gen_vms(struct gen *g, struct cl_sim *s)
{
	static const unsigned mem_gib[] = { 1, 1, 2, 2, 2, 4, 4, 8, 16, 32 };
	static const unsigned vcpus[] = { 1, 2, 2, 4, 4, 8 };
	unsigned n = g->o->vms;

	g->st->vms = calloc(n ? n : 1, sizeof(*g->st->vms));
	s->figs = calloc(n ? n : 1, sizeof(*s->figs));
	if (!g->st->vms || !s->figs)
		return -ENOMEM;
	for (unsigned v = 0; v < n; v++) {
		Ferry__Cluster__Vm *vm = CL_NEW(Ferry__Cluster__Vm, ferry__cluster__vm__init);
		double u = rng_u(&g->r), d = rng_u(&g->r);
		char name[16];
		long h;

		if (!vm)
			return -ENOMEM;
		g->st->vms[g->st->n_vms++] = vm;
		snprintf(name, sizeof(name), "vm%05u", v);
		vm->name = cl_strdup(name);
		if (!vm->name)
			return -ENOMEM;
		vm->mem_bytes = mem_gib[rng_below(&g->r, 10)] * GIB;
		vm->vcpus = vcpus[rng_below(&g->r, 6)];
		g->vm_level[v] = u < 0.12 ? 1 : u < 0.62 ? 2 : u < 0.92 ? 3 : u < 0.98 ? 4 : 0;
		if (v < g->o->busy_host_vms && !g->vm_level[v])
			g->vm_level[v] = 2;   /* "host" would tie it to h0000, the host to empty */
		snprintf(name, sizeof(name), g->vm_level[v] ? "x86-64-v%u" : "host", g->vm_level[v]);
		vm->cpu_model = cl_strdup(name);
		s->figs[v].name = vm->name;
		s->figs[v].cpu_pct = vm->vcpus * 100.0 * (0.05 + 0.6 * rng_u(&g->r) * rng_u(&g->r));
		s->figs[v].dirty_pages_per_s = d < 0.7 ? 2000 * rng_u(&g->r)
					     : d < 0.95 ? 2000 + 28000 * rng_u(&g->r)
							: 30000 + 170000 * rng_u(&g->r);
		if (rng_below(&g->r, 20) == 0)
			s->figs[v].moved_unix_ms = g->o->now_unix_ms -
				rng_below(&g->r, 2 * CL_PLAN_DEFAULT_HOLDDOWN_S * 1000);
		h = v < g->o->busy_host_vms && gen_fits_cpu(g, s, v, 0) ? 0 : gen_pick(g, s, v);
		g->vm_host[v] = -1;
		if (h >= 0) {
			gen_put(g, s, v, (size_t)h);
			vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
			vm->host = cl_strdup(g->st->hosts[h]->name);
		}
	}
	return 0;
}

static int gen_in_flight(struct gen *g, const struct cl_sim *s)
{
	for (unsigned i = 0; i < g->o->in_flight && g->o->vms; i++) {
		size_t v = rng_below(&g->r, g->o->vms);
		Ferry__Cluster__Vm *vm = g->st->vms[v];
		long d = -1;

		if (g->vm_host[v] < 0 || g->vm_busy[v] || !g->vm_level[v])
			continue;
		for (unsigned k = 0; k < 10 && d < 0; k++) {
			size_t h = rng_below(&g->r, g->o->hosts);

			if ((int)h != g->vm_host[v] && gen_fits(g, v, h))
				d = (long)h;
		}
		if (d < 0)
			continue;
		vm->migration = CL_NEW(Ferry__Cluster__Migration, ferry__cluster__migration__init);
		if (!vm->migration)
			return -ENOMEM;
		vm->migration->id = i + 1;
		vm->migration->source = cl_strdup(vm->host);
		vm->migration->destination = cl_strdup(g->st->hosts[d]->name);
		g->mem_used[d] += vm->mem_bytes;
		g->vm_dest[v] = (int)d;
		g->vm_busy[v] = true;
	}
	(void)s;
	return 0;
}


/* A running VM not yet in a rule or in flight; -1 after a few misses. */
static long gen_free_vm(struct gen *g)
{
	for (int tries = 0; tries < 50 && g->o->vms; tries++) {
		size_t v = rng_below(&g->r, g->o->vms);

		if (g->vm_host[v] >= 0 && !g->vm_busy[v])
			return (long)v;
	}
	return -1;
}

static int rule_add(struct gen *g, Ferry__Cluster__RuleKind kind, unsigned i,
		    Ferry__Cluster__Rule **out)
{
	Ferry__Cluster__Rule *r = CL_NEW(Ferry__Cluster__Rule, ferry__cluster__rule__init);
	Ferry__Cluster__Rule **v = realloc(g->st->rules, (g->st->n_rules + 1) * sizeof(*v));
	char name[24];

	if (v)
		g->st->rules = v;
	if (!r || !v) {
		free(r);
		return -ENOMEM;
	}
	snprintf(name, sizeof(name), "r%u", i);
	r->name = cl_strdup(name);
	r->kind = kind;
	g->st->rules[g->st->n_rules++] = r;
	*out = r;
	return r->name ? 0 : -ENOMEM;
}

static int rule_vm(struct gen *g, Ferry__Cluster__Rule *r, size_t v)
{
	g->vm_busy[v] = true;
	return cl_strv_add(&r->vms, &r->n_vms, g->st->vms[v]->name);
}

static int rule_host(struct gen *g, Ferry__Cluster__Rule *r, size_t h)
{
	for (size_t i = 0; i < r->n_hosts; i++) {
		if (!strcmp(r->hosts[i], g->st->hosts[h]->name))
			return 0;
	}
	return cl_strv_add(&r->hosts, &r->n_hosts, g->st->hosts[h]->name);
}

/* A partner for v on its own host (affinity), or on another one (anti). */
static long gen_partner(struct gen *g, size_t v, bool same)
{
	for (int tries = 0; tries < 400; tries++) {
		long w = gen_free_vm(g);

		if (w >= 0 && (size_t)w != v && (g->vm_host[w] == g->vm_host[v]) == same)
			return w;
	}
	return -1;
}

/* Host rules: must names its host and some able to run it, the others avoid it. */
static int gen_host_rule(struct gen *g, Ferry__Cluster__Rule *r, size_t v)
{
	unsigned n = 1 + rng_below(&g->r, 3);
	int ret = 0;

	if (r->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST)
		ret = rule_host(g, r, (size_t)g->vm_host[v]);
	for (unsigned i = 0; !ret && i < n; i++) {
		size_t h = rng_below(&g->r, g->o->hosts);
		bool here = (int)h == g->vm_host[v];

		if (r->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST_NOT && here)
			continue;
		if (r->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST &&
		    g->vm_level[v] > g->level[h])
			continue;
		ret = rule_host(g, r, h);
	}
	return ret;
}

static int gen_rules(struct gen *g)
{
	int ret = 0;

	for (unsigned i = 0; !ret && i < g->o->rules; i++) {
		Ferry__Cluster__RuleKind kind = (Ferry__Cluster__RuleKind)(i % 6);
		long v = gen_free_vm(g), w = -1, x = -1;
		Ferry__Cluster__Rule *r;

		if (v < 0)
			break;
		if (kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY ||
		    kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_ANTI_AFFINITY) {
			bool same = kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY;

			g->vm_busy[v] = true;   /* not its own partner */
			w = gen_partner(g, (size_t)v, same);
			if (w >= 0 && !same && rng_below(&g->r, 2)) {
				g->vm_busy[w] = true;
				x = gen_partner(g, (size_t)v, false);
				if (x >= 0 && g->vm_host[x] == g->vm_host[w])
					x = -1;
			}
			if (w < 0)
				continue;
		}
		ret = rule_add(g, kind, i, &r);
		if (!ret)
			ret = rule_vm(g, r, (size_t)v);
		if (!ret && w >= 0)
			ret = rule_vm(g, r, (size_t)w);
		if (!ret && x >= 0)
			ret = rule_vm(g, r, (size_t)x);
		if (!ret && w < 0)
			ret = gen_host_rule(g, r, (size_t)v);
	}
	return ret;
}

int cl_sim_build(struct cl_sim *s, uint64_t seed, const struct cl_sim_opts *o)
{
	struct gen g = { .r = { seed * 0x2545f4914f6cdd1dull + 1 }, .o = o };
	size_t nh = o->hosts + 1, nv = o->vms + 1;
	int ret = -ENOMEM;

	memset(s, 0, sizeof(*s));
	s->now_unix_ms = o->now_unix_ms;
	g.st = CL_NEW(Ferry__Cluster__State, ferry__cluster__state__init);
	g.level = calloc(nh, sizeof(*g.level));
	g.vm_level = calloc(nv, sizeof(*g.vm_level));
	g.cpu_used = calloc(nh, sizeof(*g.cpu_used));
	g.mem_used = calloc(nh, sizeof(*g.mem_used));
	g.vm_host = calloc(nv, sizeof(*g.vm_host));
	g.vm_dest = calloc(nv, sizeof(*g.vm_dest));
	g.vm_busy = calloc(nv, sizeof(*g.vm_busy));
	s->st = g.st;
	if (!g.st || !g.level || !g.vm_level || !g.cpu_used || !g.mem_used || !g.vm_host ||
	    !g.vm_dest || !g.vm_busy)
		goto out;
	g.st->cluster_name = cl_strdup("sim");
	for (size_t v = 0; v < nv; v++)
		g.vm_dest[v] = -1;
	ret = gen_hosts(&g);
	if (!ret)
		ret = gen_vms(&g, s);
	s->n_figs = g.st->n_vms;
	if (!ret)
		ret = gen_in_flight(&g, s);
	if (!ret)
		ret = gen_rules(&g);
out:
	free(g.level);
	free(g.vm_level);
	free(g.cpu_used);
	free(g.mem_used);
	free(g.vm_host);
	free(g.vm_dest);
	free(g.vm_busy);
	if (ret)
		cl_sim_free(s);
	return ret;
}

void cl_sim_apply(struct cl_sim *s, const struct cl_plan *p, uint64_t now_unix_ms)
{
	for (size_t i = 0; i < p->n_moves; i++) {
		Ferry__Cluster__Vm *vm = s->st->vms[p->moves[i].vm];

		cl_str_set(&vm->host, p->moves[i].to);
		s->figs[p->moves[i].vm].moved_unix_ms = now_unix_ms;
	}
	s->now_unix_ms = now_unix_ms;
}

void cl_sim_free(struct cl_sim *s)
{
	CL_FREE(s->st);
	free(s->figs);
	memset(s, 0, sizeof(*s));
}
