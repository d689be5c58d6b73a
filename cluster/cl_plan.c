/*
 * The planner's input (cl_plan.h): the cost model. A snapshot of the
 * state with live figures, normalised host loads, each VM's move cost from
 * the migration engine's own predictor, the rules resolved to indices,
 * and a memo of CPU compatibility. cl_cpu_check is exact but rebuilds
 * feature sets from names on every call, and its answer depends on nothing
 * but the VM's model (for "host", the features of the VM's host) and the
 * target's feature list. A cluster has a handful of models and of host
 * generations, so hosts with the same feature list form one group and
 * each (model, group) pair is asked once.
 */
#include <errno.h>
#include <math.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_cpu.h"
#include "cl_nic.h"
#include "cl_plan_int.h"
#include "cl_vmon.h"
#include "migrate/policy.h"

#define NO_CLASS ((unsigned)-1)

struct cl_plan_compat {
	size_t n_classes;
	size_t *rep;                   /* per class: a VM of it, the one cl_cpu_check is asked about */
	long *source;                  /* per class: for "host", its host's group (-1 unplaced); -2 */
	size_t n_groups;
	size_t *group;                 /* per host: its group */
	size_t *group_rep;             /* per group: a host of it */
	uint8_t *known;                /* [class * n_groups + group]: 0 not asked, 1 yes, 2 no */
};

void cl_plan_defaults(struct cl_plan_config *c)
{
	memset(c, 0, sizeof(*c));
	c->threshold_ssd = CL_PLAN_DEFAULT_THRESHOLD_SSD;
	c->link_mbps = CL_PLAN_DEFAULT_LINK_MBPS;
	c->stream_mbps = CL_PLAN_DEFAULT_STREAM_MBPS;
	c->max_mig_per_host = CL_PLAN_DEFAULT_MAX_MIG_PER_HOST;
	c->max_mig_cluster = CL_PLAN_DEFAULT_MAX_MIG_CLUSTER;
	c->holddown_s = CL_PLAN_DEFAULT_HOLDDOWN_S;
	c->interval_s = CL_PLAN_DEFAULT_INTERVAL_S;
	c->cpu_cap_pct = CL_PLAN_DEFAULT_CPU_CAP_PCT;
	c->downtime_ms = CL_PLAN_DEFAULT_DOWNTIME_MS;
}

const char *cl_plan_why_name(enum cl_plan_why why)
{
	switch (why) {
	case CL_PLAN_WHY_NO_COMPATIBLE_HOST: return "no compatible host";
	case CL_PLAN_WHY_NO_ROOM: return "no room";
	case CL_PLAN_WHY_RULE: return "rule";
	case CL_PLAN_WHY_IN_FLIGHT: return "in flight";
	case CL_PLAN_WHY_CANCELLED: return "cancelled";
	}
	return "?";
}

const char *cl_plan_over_cap_note(const struct cl_plan_move *m, char *buf, size_t len)
{
	if (m->cpu_over_pct <= 0)
		return "";
	snprintf(buf, len, ", over the CPU cap: no host had room under it, and %s's CPU demand "
		 "becomes %.0f %% of its CPUs", m->to, m->cpu_over_pct);
	return buf;
}

static int config_check(const struct cl_plan_config *c, char *err, size_t err_len)
{
	const char *bad = NULL;

	if (!(c->threshold_ssd > 0))
		bad = "threshold_ssd must be above 0 (a move must gain something)";
	else if (!c->link_mbps || !c->stream_mbps)
		bad = "link_mbps and stream_mbps must be above 0";
	else if (!c->max_mig_per_host || !c->max_mig_cluster)
		bad = "max_mig_per_host and max_mig_cluster must be at least 1";
	else if (!c->cpu_cap_pct)
		bad = "cpu_cap_pct must be above 0";
	if (bad && err && err_len)
		snprintf(err, err_len, "plan: config: %s", bad);
	return bad ? -EINVAL : 0;
}

/* Name lookups over index arrays sorted by name. */
struct by_name {
	const char *name;
	size_t idx;
};

static int by_name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct by_name *)a)->name, ((const struct by_name *)b)->name);
}

static long by_name_find(const struct by_name *v, size_t n, const char *name)
{
	struct by_name key = { .name = name };
	const struct by_name *hit = name ? bsearch(&key, v, n, sizeof(*v), by_name_cmp) : NULL;

	return hit ? (long)hit->idx : -1;
}

static struct by_name *by_name_sort(size_t n, const char *(*name_of)(const void *, size_t),
				    const void *ctx)
{
	struct by_name *v = malloc((n ? n : 1) * sizeof(*v));

	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct by_name){ .name = name_of(ctx, i), .idx = i };
	qsort(v, n, sizeof(*v), by_name_cmp);
	return v;
}

static const char *host_name_of(const void *ctx, size_t i)
{
	return ((const Ferry__Cluster__State *)ctx)->hosts[i]->name;
}

static const char *vm_name_of(const void *ctx, size_t i)
{
	return ((const Ferry__Cluster__State *)ctx)->vms[i]->name;
}

static const char *fig_name_of(const void *ctx, size_t i)
{
	const char *n = ((const struct cl_plan_vm_figs *)ctx)[i].name;

	return n ? n : "";
}

void cl_plan_cost(const struct cl_plan_input *in, size_t vm, double bandwidth_Bps,
		  struct cl_plan_cost *out)
{
	const struct cl_plan_vm *v = &in->vms[vm];
	struct mig_policy_config pc;
	struct mig_workload wl = { 0 };
	struct mig_prediction p;

	mig_policy_defaults(&pc);
	pc.downtime_ms = in->cfg.downtime_ms;
	/* The limit the source's agent will give vmon at this rate (or a longer one). */
	pc.timeout_s = cl_vmon_mig_timeout_s(v->mem_bytes, (uint64_t)(bandwidth_Bps * 8 / 1e6));
	wl.mem_pages = v->mem_bytes / CL_PLAN_PAGE_BYTES;
	wl.nonzero_pages = wl.mem_pages;   /* unknown: assume all of it travels */
	wl.dirty_pages_per_s = v->dirty_pages_per_s;
	wl.bandwidth_Bps = bandwidth_Bps;
	mig_predict(&pc, &wl, &p);
	*out = (struct cl_plan_cost){ .total_ms = p.total_ms, .downtime_ms = p.downtime_ms,
				      .bytes = p.bytes, .converges = p.converges,
				      .needs_throttle = p.needs_throttle };
}

static bool model_is_host(const Ferry__Cluster__Vm *vm)
{
	return !vm->cpu_model || !*vm->cpu_model || !strcmp(vm->cpu_model, "host");
}

static uint64_t features_hash(const Ferry__Cluster__Inventory *inv)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; inv && i < inv->n_cpu_features; i++) {
		for (const char *c = inv->cpu_features[i]; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		h = (h ^ ',') * 1099511628211ull;
	}
	return h;
}

static bool features_equal(const Ferry__Cluster__Inventory *a, const Ferry__Cluster__Inventory *b)
{
	size_t na = a ? a->n_cpu_features : 0, nb = b ? b->n_cpu_features : 0;

	if (na != nb || (!a) != (!b))
		return false;
	for (size_t i = 0; i < na; i++) {
		if (strcmp(a->cpu_features[i], b->cpu_features[i]))
			return false;
	}
	return true;
}

/* Hosts with the same feature list (in the same order) share a group. */
static int groups_build(struct cl_plan_input *in, struct cl_plan_compat *c)
{
	uint64_t *hash = malloc((in->n_hosts + 1) * sizeof(*hash));

	c->group = malloc((in->n_hosts + 1) * sizeof(*c->group));
	c->group_rep = malloc((in->n_hosts + 1) * sizeof(*c->group_rep));
	if (!hash || !c->group || !c->group_rep) {
		free(hash);
		return -ENOMEM;
	}
	for (size_t h = 0; h < in->n_hosts; h++) {
		const Ferry__Cluster__Inventory *inv = in->hosts[h].host->inventory;
		uint64_t x = features_hash(inv);
		size_t g = 0;

		while (g < c->n_groups &&
		       (hash[g] != x || !features_equal(in->hosts[c->group_rep[g]].host->inventory, inv)))
			g++;
		if (g == c->n_groups) {
			hash[g] = x;
			c->group_rep[c->n_groups++] = h;
		}
		c->group[h] = g;
	}
	free(hash);
	return 0;
}

/*
 * Compatibility classes: VMs of one named model share a class; "host"
 * depends on the features of the host the VM runs on, so those share one
 * per host group.
 */
static int compat_build(struct cl_plan_input *in)
{
	struct cl_plan_compat *c = calloc(1, sizeof(*c));
	unsigned *host_class = malloc((in->n_hosts + 1) * sizeof(*host_class));
	size_t cap = 8;
	int ret = -ENOMEM;

	in->compat = c;
	if (!c || !host_class || groups_build(in, c))
		goto out;
	c->rep = malloc(cap * sizeof(*c->rep));
	c->source = malloc(cap * sizeof(*c->source));
	if (!c->rep || !c->source)
		goto out;
	for (size_t h = 0; h <= in->n_hosts; h++)
		host_class[h] = NO_CLASS;
	for (size_t v = 0; v < in->n_vms; v++) {
		const Ferry__Cluster__Vm *vm = in->vms[v].vm;
		unsigned cls = NO_CLASS;
		unsigned *slot = NULL;

		if (model_is_host(vm)) {
			/* Unplaced: index n_hosts. */
			slot = &host_class[in->vms[v].host >= 0 ? c->group[in->vms[v].host] : in->n_hosts];
			cls = *slot;
		} else {
			for (size_t k = 0; k < c->n_classes && cls == NO_CLASS; k++) {
				const Ferry__Cluster__Vm *r = in->vms[c->rep[k]].vm;

				if (!model_is_host(r) && !strcmp(r->cpu_model, vm->cpu_model))
					cls = (unsigned)k;
			}
		}
		if (cls == NO_CLASS) {
			if (c->n_classes == cap) {
				size_t *nv = realloc(c->rep, cap * 2 * sizeof(*nv));
				long *ns = nv ? realloc(c->source, cap * 2 * sizeof(*ns)) : NULL;

				if (nv)
					c->rep = nv;
				if (!ns)
					goto out;
				c->source = ns;
				cap *= 2;
			}
			cls = (unsigned)c->n_classes;
			c->source[cls] = !slot ? -2 : in->vms[v].host >= 0
					 ? (long)c->group[in->vms[v].host] : -1;
			c->rep[c->n_classes++] = v;
			if (slot)
				*slot = cls;
		}
		in->vms[v].cpu_class = cls;
	}
	c->known = calloc(c->n_classes * c->n_groups + 1, 1);
	ret = c->known ? 0 : -ENOMEM;
out:
	free(host_class);
	return ret;
}

struct ask {
	const struct cl_plan_input *in;
	const Ferry__Cluster__Vm *vm;
	const Ferry__Cluster__Host *host;
};

static int ask_cl_cpu(void *arg)
{
	const struct ask *a = arg;
	char missing[8];

	return !cl_cpu_check(a->in->st, a->vm, a->host, missing, sizeof(missing));
}

bool cl_plan_compatible(const struct cl_plan_input *in, size_t vm, size_t host)
{
	struct cl_plan_compat *c = in->compat;
	size_t g = c->group[host];
	uint8_t *k = &c->known[in->vms[vm].cpu_class * c->n_groups + g];
	char bridge[IFNAMSIZ];

	/* The NICs' bridges: few names, not worth a memo. */
	if (in->vms[vm].vm->n_nets &&
	    cl_nic_missing_bridge(in->vms[vm].vm, in->hosts[host].host, bridge) >= 0)
		return false;

	if (!*k) {
		unsigned cls = in->vms[vm].cpu_class;
		struct ask a = { .in = in, .vm = in->vms[c->rep[cls]].vm,
				 .host = in->hosts[c->group_rep[g]].host };
		const Ferry__Cluster__Inventory *source = NULL;
		const char *model = a.vm->cpu_model;

		if (c->source[cls] != -2) {
			model = "host";
			source = c->source[cls] >= 0
				 ? in->hosts[c->group_rep[c->source[cls]]].host->inventory : NULL;
		}
		*k = memo_answer(in->memo, model, source, a.host->inventory, ask_cl_cpu, &a) ? 1 : 2;
	}
	return *k == 1;
}

double cl_plan_imbalance(const struct cl_plan_input *in)
{
	double s1 = 0, s2 = 0, n = 0, ssd;

	for (size_t h = 0; h < in->n_hosts; h++) {
		if (!in->hosts[h].active)
			continue;
		s1 += in->hosts[h].load;
		s2 += in->hosts[h].load * in->hosts[h].load;
		n++;
	}
	if (!n)
		return 0;
	ssd = s2 - s1 * s1 / n;
	return ssd > 0 ? sqrt(ssd / n) : 0;
}

static void build_hosts(struct cl_plan_input *in)
{
	const Ferry__Cluster__State *st = in->st;

	for (size_t h = 0; h < in->n_hosts; h++) {
		const Ferry__Cluster__Host *ho = st->hosts[h];
		struct cl_plan_host *ph = &in->hosts[h];

		ph->host = ho;
		ph->name = ho->name;
		if (ho->inventory) {
			ph->cpus = ho->inventory->cpus;
			ph->mem_bytes = ho->inventory->mem_bytes;
		}
		ph->active = ho->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE &&
			     !ho->witness && ph->cpus > 0 && ph->mem_bytes > 0;
	}
}

static void build_vm(struct cl_plan_input *in, size_t v, const struct by_name *hosts,
		     const struct by_name *figs_sorted, const struct cl_plan_vm_figs *figs,
		     size_t n_figs)
{
	const Ferry__Cluster__Vm *vm = in->st->vms[v];
	struct cl_plan_vm *pv = &in->vms[v];
	long f = by_name_find(figs_sorted, n_figs, vm->name);
	uint64_t moved = 0;
	double bw;

	pv->vm = vm;
	pv->name = vm->name;
	pv->host = -1;
	pv->dest = -1;
	if (vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING && vm->host && *vm->host)
		pv->host = (int)by_name_find(hosts, in->n_hosts, vm->host);
	if (pv->host >= 0 && vm->migration)
		pv->dest = (int)by_name_find(hosts, in->n_hosts, vm->migration->destination);
	pv->mem_bytes = vm->mem_bytes;
	pv->figs = f >= 0;
	if (pv->figs) {
		pv->cpu = figs[f].cpu_pct > 0 ? figs[f].cpu_pct / 100.0 : 0;
		pv->dirty_pages_per_s = figs[f].dirty_pages_per_s > 0 ? figs[f].dirty_pages_per_s : 0;
		moved = figs[f].moved_unix_ms;
	} else {
		pv->cpu = vm->vcpus * CL_PLAN_UNKNOWN_CPU_PCT_PER_VCPU / 100.0;
	}
	/* A move an operator cancelled is not proposed again before the hold-down either. */
	if (vm->last_migration && (vm->last_migration->ok || vm->last_migration->cancelled) &&
	    !vm->last_migration->dry_run && vm->last_migration->ended_unix_ms > moved)
		moved = vm->last_migration->ended_unix_ms;
	pv->held = moved && in->now_unix_ms < moved + in->cfg.holddown_s * 1000;
	bw = (double)(in->cfg.stream_mbps < in->cfg.link_mbps ? in->cfg.stream_mbps
							      : in->cfg.link_mbps) * 1e6 / 8;
	cl_plan_cost(in, v, bw, &pv->cost);
}

static void place_vms(struct cl_plan_input *in)
{
	for (size_t v = 0; v < in->n_vms; v++) {
		const struct cl_plan_vm *pv = &in->vms[v];

		if (pv->host < 0)
			continue;
		in->hosts[pv->host].cpu_demand += pv->cpu;
		in->hosts[pv->host].mem_committed += pv->mem_bytes;
		if (pv->dest >= 0 && pv->dest != pv->host) {
			/* Reserved on the destination until the switchover. */
			in->hosts[pv->dest].mem_committed += pv->mem_bytes;
			in->hosts[pv->dest].migrations++;
			in->hosts[pv->host].migrations++;
			in->in_flight++;
		}
	}
	for (size_t h = 0; h < in->n_hosts; h++)
		in->hosts[h].load = work_load_of(in, h, in->hosts[h].cpu_demand,
						 in->hosts[h].mem_committed);
}

static int build_rules(struct cl_plan_input *in, const struct by_name *hosts,
		       const struct by_name *vms)
{
	const Ferry__Cluster__State *st = in->st;
	size_t *count;

	in->n_rules = st->n_rules;
	in->rules = calloc(in->n_rules ? in->n_rules : 1, sizeof(*in->rules));
	count = calloc(in->n_vms ? in->n_vms : 1, sizeof(*count));
	if (!in->rules || !count) {
		free(count);
		return -ENOMEM;
	}
	for (size_t r = 0; r < in->n_rules; r++) {
		const Ferry__Cluster__Rule *ru = st->rules[r];
		struct cl_plan_rule *pr = &in->rules[r];

		pr->rule = ru;
		pr->name = ru->name;
		pr->kind = ru->kind;
		pr->vms = malloc((ru->n_vms ? ru->n_vms : 1) * sizeof(*pr->vms));
		pr->hosts = calloc(in->n_hosts ? in->n_hosts : 1, sizeof(*pr->hosts));
		if (!pr->vms || !pr->hosts)
			goto nomem;
		for (size_t i = 0; i < ru->n_vms; i++) {
			long v = by_name_find(vms, in->n_vms, ru->vms[i]);
			bool dup = false;

			for (size_t j = 0; v >= 0 && j < pr->n_vms; j++)
				dup |= pr->vms[j] == (size_t)v;
			if (v >= 0 && !dup) {
				pr->vms[pr->n_vms++] = (size_t)v;
				count[v]++;
			}
		}
		for (size_t i = 0; i < ru->n_hosts; i++) {
			long h = by_name_find(hosts, in->n_hosts, ru->hosts[i]);

			if (h >= 0)
				pr->hosts[h] = true;
		}
	}
	for (size_t v = 0; v < in->n_vms; v++) {
		if (!count[v])
			continue;
		in->vms[v].rules = malloc(count[v] * sizeof(size_t));
		if (!in->vms[v].rules)
			goto nomem;
	}
	for (size_t r = 0; r < in->n_rules; r++) {
		for (size_t i = 0; i < in->rules[r].n_vms; i++) {
			struct cl_plan_vm *pv = &in->vms[in->rules[r].vms[i]];

			pv->rules[pv->n_rules++] = r;
		}
	}
	free(count);
	return 0;
nomem:
	free(count);
	return -ENOMEM;
}

int cl_plan_input_build(struct cl_plan_input **out, const Ferry__Cluster__State *st,
			const struct cl_plan_vm_figs *figs, size_t n_figs, uint64_t now_unix_ms,
			const struct cl_plan_config *cfg, char *err, size_t err_len)
{
	struct cl_plan_input *in = calloc(1, sizeof(*in));
	struct by_name *hosts = NULL, *vms = NULL, *fsorted = NULL;
	int ret = -ENOMEM;

	*out = NULL;
	if (!in)
		goto fail;
	if (cfg)
		in->cfg = *cfg;
	else
		cl_plan_defaults(&in->cfg);
	ret = config_check(&in->cfg, err, err_len);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	in->st = st;
	in->now_unix_ms = now_unix_ms;
	in->n_hosts = st->n_hosts;
	in->n_vms = st->n_vms;
	in->hosts = calloc(in->n_hosts ? in->n_hosts : 1, sizeof(*in->hosts));
	in->vms = calloc(in->n_vms ? in->n_vms : 1, sizeof(*in->vms));
	hosts = by_name_sort(st->n_hosts, host_name_of, st);
	vms = by_name_sort(st->n_vms, vm_name_of, st);
	fsorted = by_name_sort(n_figs, fig_name_of, figs);
	if (!in->hosts || !in->vms || !hosts || !vms || !fsorted)
		goto fail;
	build_hosts(in);
	for (size_t v = 0; v < in->n_vms; v++)
		build_vm(in, v, hosts, fsorted, figs, n_figs);
	place_vms(in);
	ret = build_rules(in, hosts, vms);
	if (!ret)
		ret = compat_build(in);
	if (ret)
		goto fail;
	*out = in;
	in = NULL;
fail:
	if (ret == -ENOMEM && err && err_len)
		snprintf(err, err_len, "plan: out of memory building the input");
	cl_plan_input_free(in);
	free(hosts);
	free(vms);
	free(fsorted);
	return ret;
}

void cl_plan_input_free(struct cl_plan_input *in)
{
	if (!in)
		return;
	for (size_t v = 0; in->vms && v < in->n_vms; v++)
		free(in->vms[v].rules);
	for (size_t r = 0; in->rules && r < in->n_rules; r++) {
		free(in->rules[r].vms);
		free(in->rules[r].hosts);
	}
	if (in->compat) {
		free(in->compat->rep);
		free(in->compat->source);
		free(in->compat->group);
		free(in->compat->group_rep);
		free(in->compat->known);
		free(in->compat);
	}
	free(in->rules);
	free(in->vms);
	free(in->hosts);
	free(in);
}

void cl_plan_free(struct cl_plan *p)
{
	free(p->moves);
	free(p->stuck);
	memset(p, 0, sizeof(*p));
}
