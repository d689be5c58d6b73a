/*
 * The planners' working copy (cl_plan_int.h) and the rule checks against
 * it. Rules are checked against where VMs are in the working copy, so a
 * plan's earlier moves count for its later ones. A VM with a migration in
 * flight counts on its destination too: it will be there soon.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cl_plan_int.h"

double work_load_of(const struct cl_plan_input *in, size_t h, double cpu, uint64_t mem)
{
	const struct cl_plan_host *ho = &in->hosts[h];
	double c = ho->cpus > 0 ? cpu / ho->cpus : 0;
	double m = ho->mem_bytes ? (double)mem / (double)ho->mem_bytes : 0;

	/* The dominant resource: a host is as full as its fullest resource. */
	return c > m ? c : m;
}

static void work_sums(struct plan_work *w)
{
	w->s1 = w->s2 = 0;
	w->n_active = 0;
	for (size_t h = 0; h < w->in->n_hosts; h++) {
		if (!w->in->hosts[h].active)
			continue;
		w->s1 += w->load[h];
		w->s2 += w->load[h] * w->load[h];
		w->n_active++;
	}
}

int work_init(struct plan_work *w, const struct cl_plan_input *in)
{
	size_t nh = in->n_hosts ? in->n_hosts : 1, nv = in->n_vms ? in->n_vms : 1;

	memset(w, 0, sizeof(*w));
	w->in = in;
	w->cpu = malloc(nh * sizeof(*w->cpu));
	w->mem = malloc(nh * sizeof(*w->mem));
	w->mig = malloc(nh * sizeof(*w->mig));
	w->load = malloc(nh * sizeof(*w->load));
	w->host = malloc(nv * sizeof(*w->host));
	if (!w->cpu || !w->mem || !w->mig || !w->load || !w->host) {
		work_free(w);
		return -ENOMEM;
	}
	for (size_t h = 0; h < in->n_hosts; h++) {
		w->cpu[h] = in->hosts[h].cpu_demand;
		w->mem[h] = in->hosts[h].mem_committed;
		w->mig[h] = in->hosts[h].migrations;
		w->load[h] = in->hosts[h].load;
	}
	for (size_t v = 0; v < in->n_vms; v++)
		w->host[v] = in->vms[v].host;
	w->in_flight = in->in_flight;
	work_sums(w);
	return 0;
}

void work_free(struct plan_work *w)
{
	free(w->cpu);
	free(w->mem);
	free(w->mig);
	free(w->load);
	free(w->host);
	memset(w, 0, sizeof(*w));
}

double work_ssd(const struct plan_work *w)
{
	double ssd;

	if (!w->n_active)
		return 0;
	ssd = w->s2 - w->s1 * w->s1 / (double)w->n_active;
	return ssd > 0 ? ssd : 0;
}

double work_sd(const struct plan_work *w)
{
	return w->n_active ? sqrt(work_ssd(w) / (double)w->n_active) : 0;
}

void work_move(struct plan_work *w, size_t vm, size_t t)
{
	const struct cl_plan_vm *v = &w->in->vms[vm];
	int s = w->host[vm];

	if (s >= 0) {
		w->cpu[s] -= v->cpu;
		w->mem[s] -= v->mem_bytes;
		w->mig[s]++;
		w->load[s] = work_load_of(w->in, (size_t)s, w->cpu[s], w->mem[s]);
	}
	w->cpu[t] += v->cpu;
	w->mem[t] += v->mem_bytes;
	w->mig[t]++;
	w->load[t] = work_load_of(w->in, t, w->cpu[t], w->mem[t]);
	w->host[vm] = (int)t;
	w->in_flight++;
	/* From scratch rather than by differences: no drift over many moves. */
	work_sums(w);
}

bool work_room(const struct plan_work *w, size_t t, uint64_t mem, double cpu)
{
	const struct cl_plan_host *h = &w->in->hosts[t];
	double cpu_cap = h->cpus * w->in->cfg.cpu_cap_pct / 100.0;

	return w->mem[t] + mem <= h->mem_bytes && w->cpu[t] + cpu <= cpu_cap + 1e-9;
}

/* Where member m is or soon will be, as far as rules care: on at. */
static bool member_on(const struct plan_work *w, size_t m, size_t at)
{
	return w->host[m] == (int)at || w->in->vms[m].dest == (int)at;
}

static bool rule_allows(const struct plan_work *w, const struct cl_plan_rule *r, size_t vm,
			size_t t, int skip)
{
	switch (r->kind) {
	case FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST:
		return r->hosts[t];
	case FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST_NOT:
		return !r->hosts[t];
	case FERRY__CLUSTER__RULE_KIND__RULE_KIND_ANTI_AFFINITY:
		for (size_t i = 0; i < r->n_vms; i++) {
			size_t m = r->vms[i];

			if (m != vm && member_on(w, m, t))
				return false;
		}
		return true;
	case FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY:
		for (size_t i = 0; i < r->n_vms; i++) {
			size_t m = r->vms[i];

			if (m == vm || w->host[m] < 0 || (skip >= 0 && w->host[m] == skip))
				continue;
			if (w->host[m] != (int)t)
				return false;
		}
		return true;
	default:
		return true;
	}
}

size_t work_rules_block(const struct plan_work *w, size_t vm, size_t t, int skip)
{
	const struct cl_plan_vm *v = &w->in->vms[vm];

	for (size_t i = 0; i < v->n_rules; i++) {
		if (!rule_allows(w, &w->in->rules[v->rules[i]], vm, t, skip))
			return v->rules[i] + 1;
	}
	return 0;
}

unsigned work_soft_score(const struct plan_work *w, size_t vm, size_t t)
{
	const struct cl_plan_vm *v = &w->in->vms[vm];
	unsigned score = 0;

	for (size_t i = 0; i < v->n_rules; i++) {
		const struct cl_plan_rule *r = &w->in->rules[v->rules[i]];

		if (r->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD && r->hosts[t])
			score++;
		if (r->kind == FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD_NOT && !r->hosts[t])
			score++;
	}
	return score;
}

int plan_moves_add(struct cl_plan *p, size_t *cap, const struct cl_plan_move *m)
{
	if (p->n_moves == *cap) {
		size_t n = *cap ? *cap * 2 : 16;
		struct cl_plan_move *v = realloc(p->moves, n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->moves = v;
		*cap = n;
	}
	p->moves[p->n_moves++] = *m;
	return 0;
}
