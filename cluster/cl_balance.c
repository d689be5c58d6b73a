/*
 * The load balancer (cl_plan_balance). Greedy, one move at a time on the
 * working copy:
 *
 *   - sources: active hosts above the mean load, most loaded first;
 *   - on a source, VMs cheapest to move first (predicted total time, then
 *     dirty rate); a VM qualifies when it has figures, no migration in
 *     flight, is out of its hold-down and migrates without auto-converge
 *     (slowing a guest down is not worth a better balance);
 *   - for that VM, the target that cuts Σ(load-mean)² the most among the
 *     active hosts less loaded than the source that pass every check;
 *   - the first VM with a gain above threshold_ssd is moved; repeat while
 *     migration slots are free.
 *
 * Why Σ(load-mean)² for the gain: it is the imbalance (the standard
 * deviation) squared times the host count, so a gain in it is a cut in
 * the imbalance, but unlike the deviation itself a move's gain does not
 * shrink as the cluster grows; one threshold fits 3 hosts and 1,000.
 * Every move gains more than the threshold, so with the same figures the
 * rounds reach a fixed point after at most Σ(load-mean)²/threshold moves
 * in all: a VM can never be moved back, that would undo a gain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_plan_int.h"

static int cand_cmp(const void *a, const void *b, void *arg)
{
	const struct cl_plan_input *in = arg;
	const struct cl_plan_vm *x = &in->vms[*(const size_t *)a];
	const struct cl_plan_vm *y = &in->vms[*(const size_t *)b];

	if (x->cost.total_ms != y->cost.total_ms)
		return x->cost.total_ms < y->cost.total_ms ? -1 : 1;
	if (x->dirty_pages_per_s != y->dirty_pages_per_s)
		return x->dirty_pages_per_s < y->dirty_pages_per_s ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static int load_cmp(const void *a, const void *b, void *arg)
{
	const struct plan_work *w = arg;
	double x = w->load[*(const size_t *)a], y = w->load[*(const size_t *)b];

	if (x != y)
		return x < y ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static bool candidate(const struct cl_plan_input *in, size_t v)
{
	const struct cl_plan_vm *pv = &in->vms[v];

	return pv->host >= 0 && in->hosts[pv->host].active && pv->dest < 0 && !pv->held &&
	       pv->figs && pv->cost.converges && !pv->cost.needs_throttle;
}

/* Candidates grouped by host, each group in cost order. */
struct cands {
	size_t *vm;
	size_t *first;                 /* per host + 1: where its group starts */
};

static int cands_build(const struct cl_plan_input *in, struct cands *c)
{
	size_t n = 0, *tmp = malloc((in->n_vms ? in->n_vms : 1) * sizeof(*tmp));

	c->vm = malloc((in->n_vms ? in->n_vms : 1) * sizeof(*c->vm));
	c->first = calloc(in->n_hosts + 1, sizeof(*c->first));
	if (!tmp || !c->vm || !c->first) {
		free(tmp);
		return -ENOMEM;
	}
	for (size_t v = 0; v < in->n_vms; v++) {
		if (candidate(in, v))
			tmp[n++] = v;
	}
	qsort_r(tmp, n, sizeof(*tmp), cand_cmp, (void *)in);
	/* A stable counting sort by host keeps the cost order inside each group. */
	for (size_t i = 0; i < n; i++)
		c->first[in->vms[tmp[i]].host + 1]++;
	for (size_t h = 0; h < in->n_hosts; h++)
		c->first[h + 1] += c->first[h];
	{
		size_t *at = malloc((in->n_hosts ? in->n_hosts : 1) * sizeof(*at));

		if (!at) {
			free(tmp);
			return -ENOMEM;
		}
		memcpy(at, c->first, in->n_hosts * sizeof(*at));
		for (size_t i = 0; i < n; i++)
			c->vm[at[in->vms[tmp[i]].host]++] = tmp[i];
		free(at);
	}
	free(tmp);
	return 0;
}

/* What Σ(load-mean)² gains if vm goes from s to t. */
static double move_gain(const struct plan_work *w, size_t vm, size_t s, size_t t)
{
	const struct cl_plan_vm *v = &w->in->vms[vm];
	double ls = w->load[s], lt = w->load[t];
	double ls2 = work_load_of(w->in, s, w->cpu[s] - v->cpu, w->mem[s] - v->mem_bytes);
	double lt2 = work_load_of(w->in, t, w->cpu[t] + v->cpu, w->mem[t] + v->mem_bytes);
	double d1 = ls2 + lt2 - ls - lt;
	double d2 = ls2 * ls2 + lt2 * lt2 - ls * ls - lt * lt;

	return -(d2 - (2 * w->s1 * d1 + d1 * d1) / (double)w->n_active);
}

static bool slot_free(const struct plan_work *w, size_t h)
{
	return w->mig[h] < w->in->cfg.max_mig_per_host;
}

/* The best target for vm on s among targets (ascending load); -1 none. */
static long best_target(const struct plan_work *w, size_t vm, size_t s, const size_t *targets,
			size_t n_targets, double *gain_out)
{
	const struct cl_plan_input *in = w->in;
	const struct cl_plan_vm *v = &in->vms[vm];
	unsigned soft_here = work_soft_score(w, vm, s);
	double best = in->cfg.threshold_ssd;
	long pick = -1;

	for (size_t i = 0; i < n_targets; i++) {
		size_t t = targets[i];
		double g;

		if (w->load[t] >= w->load[s])
			break;         /* the rest are at least as loaded */
		if (t == s || !slot_free(w, t))
			continue;
		g = move_gain(w, vm, s, t);
		if (!(g > best) || !work_room(w, t, v->mem_bytes, v->cpu) ||
		    !cl_plan_compatible(in, vm, t) || work_rules_block(w, vm, t, -1) ||
		    work_soft_score(w, vm, t) < soft_here)
			continue;
		best = g;
		pick = (long)t;
	}
	*gain_out = best;
	return pick;
}

/* The active hosts, least loaded first. */
static size_t hosts_by_load(const struct plan_work *w, size_t *out)
{
	size_t n = 0;

	for (size_t h = 0; h < w->in->n_hosts; h++) {
		if (w->in->hosts[h].active)
			out[n++] = h;
	}
	qsort_r(out, n, sizeof(*out), load_cmp, (void *)w);
	return n;
}

/* One more move into out; 1 found, 0 none, -ENOMEM. */
static int balance_step(struct plan_work *w, const struct cands *c, bool *moved,
			size_t *order, struct cl_plan *out, size_t *cap)
{
	const struct cl_plan_input *in = w->in;
	size_t n = hosts_by_load(w, order);
	double mean = w->n_active ? w->s1 / (double)w->n_active : 0;

	for (size_t i = n; i-- > 0;) {
		size_t s = order[i];

		if (w->load[s] <= mean)
			break;
		if (!slot_free(w, s))
			continue;
		for (size_t k = c->first[s]; k < c->first[s + 1]; k++) {
			size_t vm = c->vm[k];
			double gain;
			long t;
			struct cl_plan_move m = { 0 };

			if (moved[vm])
				continue;
			t = best_target(w, vm, s, order, n, &gain);
			if (t < 0)
				continue;
			m.vm = vm;
			m.vm_name = in->vms[vm].name;
			m.from = in->hosts[s].name;
			m.to = in->hosts[t].name;
			m.cost = in->vms[vm].cost;
			m.imbalance_before = work_sd(w);
			work_move(w, vm, (size_t)t);
			m.imbalance_after = work_sd(w);
			moved[vm] = true;
			out->bytes += m.cost.bytes;
			return plan_moves_add(out, cap, &m) ? -ENOMEM : 1;
		}
	}
	return 0;
}

int cl_plan_balance(const struct cl_plan_input *in, struct cl_plan *out)
{
	struct plan_work w;
	struct cands c = { 0 };
	bool *moved = NULL;
	size_t *order = NULL, cap = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = work_init(&w, in);
	if (ret)
		return ret;
	ret = -ENOMEM;
	moved = calloc(in->n_vms ? in->n_vms : 1, sizeof(*moved));
	order = malloc((in->n_hosts ? in->n_hosts : 1) * sizeof(*order));
	if (!moved || !order || cands_build(in, &c))
		goto out;
	out->imbalance_before = work_sd(&w);
	ret = 0;
	while (w.in_flight < in->cfg.max_mig_cluster) {
		ret = balance_step(&w, &c, moved, order, out, &cap);
		if (ret <= 0)
			break;
		ret = 0;
	}
	out->imbalance_after = work_sd(&w);
out:
	if (ret)
		cl_plan_free(out);
	free(c.vm);
	free(c.first);
	free(moved);
	free(order);
	work_free(&w);
	return ret;
}
