/*
 * The maintenance evacuation (cl_plan_evacuate).
 *
 * Placement and order are separate questions. Placement goes by VM
 * priority (Vm.priority: when not all fit, the higher get the room; HA
 * restarts are placed the same way), then biggest first (first-fit
 * decreasing on memory: the big VMs are the hard ones to fit, the small
 * ones fill the gaps), each unit to the host with the most
 * soft rules satisfied, then the lowest resulting load. A unit is a VM, or
 * the VMs of the host that affinity rules bind together: they go to one
 * host, the one their partners elsewhere are on, if any.
 *
 * The start order is cheapest first (predicted total time, then dirty
 * rate): most VMs are off the host early, and the heavy dirtiers go last,
 * when the host's link is no longer shared. Concurrency is the smaller of
 * the per-host and cluster caps; each migration is predicted with its
 * share of the host's link (min(stream, link / concurrency)), so running
 * more at once never looks better than the link allows.
 *
 * A unit that fits nowhere is reported with the reason that held for
 * every host, and the plan carries on without it: it never loops.
 *
 * Memory is hard, CPU is not: a host in maintenance must be emptied, and
 * an HA VM must run somewhere. A unit that no host takes under cpu-cap-pct
 * goes to the host with its memory free (and the rules, and most soft
 * rules satisfied) whose CPU demand ends lowest (then memory), and the
 * move says how far over the cap that host goes (cpu_over_pct).
 * Contention slows guests; a maintenance mode that cannot finish, or an
 * HA VM left down, loses them. (vSphere's maintenance mode and HA also
 * oversubscribe CPU.)
 *
 * With HA admission control on (in->room), a host where HA's room to
 * restart the VMs of any k lost hosts would no longer hold after the unit
 * lands comes after every host where it holds, the CPU cap included: a
 * host past the cap slows its guests, one without the room may leave an
 * HA VM down after a loss. Greedy, like the rest: each unit is judged
 * with the moves placed before it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_plan_int.h"
#include "cl_state.h"
#include "core/util.h"

struct cand;

struct evac {
	const struct cl_plan_input *in;
	struct plan_work w;
	size_t src;
	size_t *unit;                  /* per VM: union-find parent */
	int *target;                   /* per VM: chosen host, -1 none */
	double *over_pct;              /* per VM: 0, or its target's CPU demand past the cap */
	bool *room_lost;               /* per VM: its target loses HA's room (in->room) */
	size_t *room_vms, *room_to;    /* room_holds' scratch: n_vms each */
	uint64_t room_t0_ns;           /* when the plan began: in->room.budget_ms from it */
	size_t room_unjudged;          /* VMs placed once the budget was spent */
	struct cand *cands;            /* unit_place's scratch: n_hosts */
	size_t stuck_cap;
};

static size_t uf_find(size_t *p, size_t x)
{
	while (p[x] != x) {
		p[x] = p[p[x]];
		x = p[x];
	}
	return x;
}

static bool on_src(const struct evac *e, size_t v)
{
	return e->in->vms[v].host == (int)e->src && e->in->vms[v].dest < 0;
}

static int stuck_add(struct evac *e, struct cl_plan *p, size_t v, enum cl_plan_why why,
		     const char *reason)
{
	struct cl_plan_stuck *s;

	if (p->n_stuck == e->stuck_cap) {
		size_t n = e->stuck_cap ? e->stuck_cap * 2 : 8;

		s = realloc(p->stuck, n * sizeof(*s));
		if (!s)
			return -ENOMEM;
		p->stuck = s;
		e->stuck_cap = n;
	}
	s = &p->stuck[p->n_stuck++];
	s->vm = v;
	s->vm_name = e->in->vms[v].name;
	s->why = why;
	snprintf(s->reason, sizeof(s->reason), "evacuate: %s: %s", s->vm_name, reason);
	return 0;
}

static const char *rule_kind_name(Ferry__Cluster__RuleKind k)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&ferry__cluster__rule_kind__descriptor, (int)k);

	return v ? v->name : "?";
}

/* Two members of the unit that an anti-affinity rule keeps apart: the rule + 1. */
static size_t unit_conflict(const struct evac *e, const size_t *members, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct cl_plan_vm *v = &e->in->vms[members[i]];

		for (size_t r = 0; r < v->n_rules; r++) {
			const struct cl_plan_rule *ru = &e->in->rules[v->rules[r]];

			if (ru->kind != FERRY__CLUSTER__RULE_KIND__RULE_KIND_ANTI_AFFINITY)
				continue;
			for (size_t j = 0; j < n; j++) {
				for (size_t k = 0; j != i && k < ru->n_vms; k++) {
					if (ru->vms[k] == members[j])
						return v->rules[r] + 1;
				}
			}
		}
	}
	return 0;
}

/*
 * Over the cap, the lower CPU demand after the move wins; where two hosts
 * end equal (same CPUs, same load: common among idle hosts), the one whose
 * memory ends emptier, so an evacuation does not stack RAM on one of them.
 */
static bool over_better(double ratio, double memf, double best_ratio, double best_memf)
{
	if (fabs(ratio - best_ratio) > 1e-9)
		return ratio < best_ratio;
	return memf < best_memf;
}

/*
 * Would the room HA keeps (in->room) hold with the unit on t, after the
 * moves placed so far and those of the host already in flight? Always,
 * without in->room.
 */
static bool room_holds(struct evac *e, const size_t *members, size_t n, size_t t)
{
	const struct cl_plan_input *in = e->in;
	size_t k = 0;

	if (!in->room.holds)
		return true;
	for (size_t v = 0; v < in->n_vms; v++) {
		int to = e->target[v] >= 0 ? e->target[v] :
			 in->vms[v].host == (int)e->src ? in->vms[v].dest : -1;

		if (to >= 0) {
			e->room_vms[k] = v;
			e->room_to[k++] = (size_t)to;
		}
	}
	for (size_t i = 0; i < n; i++) {
		e->room_vms[k] = members[i];
		e->room_to[k++] = t;
	}
	return in->room.holds(in->room.opaque, in, e->src, e->room_vms, e->room_to, k);
}

/* A host that can take the unit, and how much it is wanted. */
struct cand {
	size_t t;
	bool over;                     /* only past the CPU cap */
	unsigned soft;
	double load;                   /* under the cap: the load after */
	double ratio, memf;            /* over it: CPU demand and memory after */
};

/* Most wanted first: under the cap; most soft rules kept; then the lowest load, or demand. */
static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->over != y->over)
		return x->over ? 1 : -1;
	if (x->soft != y->soft)
		return x->soft > y->soft ? -1 : 1;
	if (!x->over && x->load != y->load)
		return x->load < y->load ? -1 : 1;
	if (x->over && (fabs(x->ratio - y->ratio) > 1e-9 || x->memf != y->memf))
		return over_better(x->ratio, x->memf, y->ratio, y->memf) ? -1 : 1;
	return x->t < y->t ? -1 : 1;
}

static bool room_budget_left(const struct evac *e)
{
	return !e->in->room.budget_ms ||
	       now_ns() - e->room_t0_ns < e->in->room.budget_ms * 1000000ull;
}

/*
 * Of the hosts that can take the unit (n, most wanted first), the first
 * where HA's room holds after it, tried in that order and only as far as
 * needed (a judgement is the costly part of a plan); the first of all
 * where it holds nowhere (*room_lost), or once the budget is spent.
 */
static size_t cand_pick(struct evac *e, const size_t *members, size_t n_members,
			const struct cand *c, size_t n, bool *room_lost)
{
	if (!e->in->room.holds)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!room_budget_left(e)) {
			e->room_unjudged += n_members;
			return 0;
		}
		if (room_holds(e, members, n_members, c[i].t))
			return i;
	}
	*room_lost = true;
	return 0;
}

/*
 * Place one unit; a reason in why/reason when it cannot go anywhere. Over
 * the CPU cap only where no host takes it under it: *over_pct is then the
 * target's CPU demand after, in % of its CPUs. HA's room comes before
 * the CPU cap (a contended host slows guests, a lost room may leave one
 * down), and a host that loses it takes the unit only where none keeps
 * it: *room_lost.
 */
static long unit_place(struct evac *e, const size_t *members, size_t n, enum cl_plan_why *why,
		       char *reason, size_t len, double *over_pct, bool *room_lost)
{
	const struct cl_plan_input *in = e->in;
	uint64_t mem = 0;
	double cpu = 0;
	bool any_compat = false, any_allowed = false;
	size_t first_rule = unit_conflict(e, members, n), n_cands = 0, pick;
	struct cand *cands = e->cands;

	*over_pct = 0;
	*room_lost = false;
	if (first_rule) {
		*why = CL_PLAN_WHY_RULE;
		snprintf(reason, len, "rule '%s' (%s) keeps apart VMs that affinity binds together",
			 in->rules[first_rule - 1].name, rule_kind_name(in->rules[first_rule - 1].kind));
		return -1;
	}

	for (size_t i = 0; i < n; i++) {
		mem += in->vms[members[i]].mem_bytes;
		cpu += in->vms[members[i]].cpu;
	}
	for (size_t t = 0; t < in->n_hosts; t++) {
		struct cand c = { .t = t };
		bool ok = true;

		if (t == e->src || !in->hosts[t].active)
			continue;
		for (size_t i = 0; ok && i < n; i++)
			ok = cl_plan_compatible(in, members[i], t);
		if (!ok)
			continue;
		any_compat = true;
		for (size_t i = 0; i < n; i++) {
			size_t r = work_rules_block(&e->w, members[i], t, (int)e->src);

			if (r) {
				first_rule = first_rule ? first_rule : r;
				ok = false;
				break;
			}
			c.soft += work_soft_score(&e->w, members[i], t);
		}
		if (!ok)
			continue;
		any_allowed = true;
		c.over = !work_room(&e->w, t, mem, cpu);
		if (c.over && e->w.mem[t] + mem > in->hosts[t].mem_bytes)
			continue;
		c.ratio = (e->w.cpu[t] + cpu) / in->hosts[t].cpus;
		c.memf = (double)(e->w.mem[t] + mem) / (double)in->hosts[t].mem_bytes;
		c.load = work_load_of(in, t, e->w.cpu[t] + cpu, e->w.mem[t] + mem);
		cands[n_cands++] = c;
	}
	if (n_cands) {
		qsort(cands, n_cands, sizeof(*cands), cand_cmp);
		pick = cand_pick(e, members, n, cands, n_cands, room_lost);
		if (cands[pick].over)
			*over_pct = cands[pick].ratio * 100.0;
		return (long)cands[pick].t;
	}
	if (!any_compat) {
		*why = CL_PLAN_WHY_NO_COMPATIBLE_HOST;
		snprintf(reason, len, "no active host other than %s runs CPU model %s",
			 in->hosts[e->src].name, in->vms[members[0]].vm->cpu_model);
	} else if (!any_allowed) {
		*why = CL_PLAN_WHY_RULE;
		snprintf(reason, len, "rule '%s' (%s) rules out every compatible host",
			 in->rules[first_rule - 1].name, rule_kind_name(in->rules[first_rule - 1].kind));
	} else {
		*why = CL_PLAN_WHY_NO_ROOM;
		snprintf(reason, len, "no compatible host allowed by the rules has %llu MiB free",
			 (unsigned long long)(mem >> 20));
	}
	if (n > 1) {
		size_t l = strlen(reason);

		snprintf(reason + l, len - l, " (with its affinity group of %zu)", n);
	}
	return -1;
}

static int mem_desc(const void *a, const void *b, void *arg)
{
	const struct evac *e = arg;
	const struct cl_plan_vm *x = &e->in->vms[*(const size_t *)a];
	const struct cl_plan_vm *y = &e->in->vms[*(const size_t *)b];
	unsigned px = cl_priority_rank(x->vm->priority), py = cl_priority_rank(y->vm->priority);

	/* When not all fit, the higher priority gets the room. */
	if (px != py)
		return px > py ? -1 : 1;
	if (x->mem_bytes != y->mem_bytes)
		return x->mem_bytes > y->mem_bytes ? -1 : 1;
	if (x->cpu != y->cpu)
		return x->cpu > y->cpu ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Units in placement order; each unit's members are contiguous in list. */
static int place_all(struct evac *e, size_t *list, size_t n, struct cl_plan *out)
{
	size_t *members = malloc((n ? n : 1) * sizeof(*members));
	char reason[CL_PLAN_REASON_LEN];
	int ret = 0;

	if (!members)
		return -ENOMEM;
	qsort_r(list, n, sizeof(*list), mem_desc, e);
	for (size_t i = 0; !ret && i < n; i++) {
		size_t root = uf_find(e->unit, list[i]), k = 0;
		enum cl_plan_why why = CL_PLAN_WHY_NO_ROOM;
		double over_pct;
		bool room_lost;
		long t;

		if (e->target[list[i]] != -1)
			continue;   /* its unit is done */
		for (size_t j = 0; j < n; j++) {
			if (uf_find(e->unit, list[j]) == root)
				members[k++] = list[j];
		}
		t = unit_place(e, members, k, &why, reason, sizeof(reason), &over_pct, &room_lost);
		for (size_t j = 0; j < k; j++) {
			e->target[members[j]] = t >= 0 ? (int)t : -2;
			e->over_pct[members[j]] = over_pct;
			e->room_lost[members[j]] = room_lost;
			if (t >= 0)
				work_move(&e->w, members[j], (size_t)t);
			else
				ret = stuck_add(e, out, members[j], why, reason);
		}
	}
	free(members);
	return ret;
}

static int cost_asc(const void *a, const void *b, void *arg)
{
	const struct cl_plan_move *x = a, *y = b;
	const struct cl_plan_input *in = arg;

	if (x->cost.total_ms != y->cost.total_ms)
		return x->cost.total_ms < y->cost.total_ms ? -1 : 1;
	if (in->vms[x->vm].dirty_pages_per_s != in->vms[y->vm].dirty_pages_per_s)
		return in->vms[x->vm].dirty_pages_per_s < in->vms[y->vm].dirty_pages_per_s ? -1 : 1;
	return x->vm < y->vm ? -1 : 1;
}

static int dbl_asc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * List scheduling: each move starts when one of the concurrency slots is
 * free and its destination takes part in fewer than the per-host cap;
 * starts never go backwards, so what runs at a start is what ended later.
 */
static int schedule(const struct cl_plan_input *in, struct cl_plan *p)
{
	unsigned k = p->concurrency;
	double *slot = calloc(k, sizeof(*slot)), *ends = malloc((p->n_moves + 1) * sizeof(*ends));
	double start = 0, done_sum = 0;

	if (!slot || !ends) {
		free(slot);
		free(ends);
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->n_moves; i++) {
		struct cl_plan_move *m = &p->moves[i];
		size_t j = 0, n = 0;

		for (size_t s = 1; s < k; s++)
			j = slot[s] < slot[j] ? s : j;
		start = slot[j] > start ? slot[j] : start;
		for (size_t q = 0; q < i; q++) {
			if (!strcmp(p->moves[q].to, m->to) && p->moves[q].end_ms > start)
				ends[n++] = p->moves[q].end_ms;
		}
		if (n >= in->cfg.max_mig_per_host) {
			qsort(ends, n, sizeof(*ends), dbl_asc);
			start = ends[n - in->cfg.max_mig_per_host];
		}
		m->start_ms = start;
		m->end_ms = start + m->cost.total_ms;
		slot[j] = m->end_ms;
		if (m->end_ms > p->eta_ms)
			p->eta_ms = m->end_ms;
		done_sum += m->end_ms;
	}
	p->mean_done_ms = p->n_moves ? done_sum / (double)p->n_moves : 0;
	free(slot);
	free(ends);
	return 0;
}

static int moves_build(struct evac *e, struct cl_plan *out)
{
	const struct cl_plan_input *in = e->in;
	const struct cl_plan_config *c = &in->cfg;
	double share, bw, naive_done = 0;
	size_t cap = 0;
	struct plan_work w;
	int ret;

	out->concurrency = c->max_mig_per_host < c->max_mig_cluster ? c->max_mig_per_host
								      : c->max_mig_cluster;
	share = (double)c->link_mbps / out->concurrency;
	bw = ((double)c->stream_mbps < share ? (double)c->stream_mbps : share) * 1e6 / 8;
	for (size_t v = 0; v < in->n_vms; v++) {
		struct cl_plan_move m = { .vm = v };

		if (e->target[v] < 0)
			continue;
		m.vm_name = in->vms[v].name;
		m.from = in->hosts[e->src].name;
		m.to = in->hosts[e->target[v]].name;
		m.cpu_over_pct = e->over_pct[v];
		m.room_lost = e->room_lost[v];
		cl_plan_cost(in, v, bw, &m.cost);
		if (plan_moves_add(out, &cap, &m))
			return -ENOMEM;
		out->bytes += m.cost.bytes;
		/* One at a time, in the state's order, each with the whole stream. */
		out->naive_ms += in->vms[v].cost.total_ms;
		naive_done += out->naive_ms;
	}
	out->naive_mean_done_ms = out->n_moves ? naive_done / (double)out->n_moves : 0;
	if (out->n_moves)
		qsort_r(out->moves, out->n_moves, sizeof(*out->moves), cost_asc, (void *)in);
	ret = work_init(&w, in);
	if (ret)
		return ret;
	out->imbalance_before = work_sd(&w);
	for (size_t i = 0; i < out->n_moves; i++) {
		out->moves[i].imbalance_before = work_sd(&w);
		work_move(&w, out->moves[i].vm, (size_t)e->target[out->moves[i].vm]);
		out->moves[i].imbalance_after = work_sd(&w);
	}
	out->imbalance_after = work_sd(&w);
	work_free(&w);
	return schedule(in, out);
}

static long host_find(const struct cl_plan_input *in, const char *name)
{
	for (size_t h = 0; name && h < in->n_hosts; h++) {
		if (!strcmp(in->hosts[h].name, name))
			return (long)h;
	}
	return -1;
}

/*
 * An operator cancelled its move off this host since the evacuation
 * began: trying again would overrule them. Entering maintenance anew
 * starts a new evacuation, which tries it again.
 */
static bool cancelled_here(const struct evac *e, const struct cl_plan_vm *pv)
{
	const Ferry__Cluster__MigrationResult *r = pv->vm->last_migration;
	const struct cl_plan_host *h = &e->in->hosts[e->src];

	return r && r->cancelled && !r->dry_run && h->host && !strcmp(r->source, h->name) &&
	       r->ended_unix_ms >= h->host->mode_unix_ms;
}

/* VMs that cannot be planned because they are moving already; the rest in list. */
static int collect(struct evac *e, struct cl_plan *out, size_t *list, size_t *n)
{
	const struct cl_plan_input *in = e->in;
	char reason[CL_PLAN_REASON_LEN];

	*n = 0;
	for (size_t v = 0; v < in->n_vms; v++) {
		const struct cl_plan_vm *pv = &in->vms[v];
		int ret = 0;

		if (on_src(e, v) && cancelled_here(e, pv)) {
			snprintf(reason, sizeof(reason), "its migration to %s was cancelled by an "
				 "operator; move or stop it by hand",
				 pv->vm->last_migration->destination);
			ret = stuck_add(e, out, v, CL_PLAN_WHY_CANCELLED, reason);
		} else if (on_src(e, v)) {
			list[(*n)++] = v;
		} else if (pv->host == (int)e->src && pv->dest >= 0) {
			snprintf(reason, sizeof(reason), "already migrating to %s",
				 in->hosts[pv->dest].name);
			ret = stuck_add(e, out, v, CL_PLAN_WHY_IN_FLIGHT, reason);
		} else if (pv->host >= 0 && pv->dest == (int)e->src) {
			snprintf(reason, sizeof(reason),
				 "migrating here from %s; plan again once it has arrived",
				 in->hosts[pv->host].name);
			ret = stuck_add(e, out, v, CL_PLAN_WHY_IN_FLIGHT, reason);
		}
		if (ret)
			return ret;
	}
	/* Affinity binds the host's VMs into units. */
	for (size_t r = 0; r < in->n_rules; r++) {
		const struct cl_plan_rule *ru = &in->rules[r];
		long first = -1;

		if (ru->kind != FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY)
			continue;
		for (size_t i = 0; i < ru->n_vms; i++) {
			if (!on_src(e, ru->vms[i]))
				continue;
			if (first < 0)
				first = (long)ru->vms[i];
			else
				e->unit[uf_find(e->unit, ru->vms[i])] = uf_find(e->unit, (size_t)first);
		}
	}
	return 0;
}

int cl_plan_evacuate(const struct cl_plan_input *in, const char *host, struct cl_plan *out)
{
	struct evac e = { .in = in };
	long src = host_find(in, host);
	size_t *list = NULL, n = 0, nv = in->n_vms ? in->n_vms : 1;
	int ret;

	memset(out, 0, sizeof(*out));
	if (src < 0)
		return -ENOENT;
	e.src = (size_t)src;
	ret = work_init(&e.w, in);
	if (ret)
		return ret;
	ret = -ENOMEM;
	e.unit = malloc(nv * sizeof(*e.unit));
	e.target = malloc(nv * sizeof(*e.target));
	e.over_pct = calloc(nv, sizeof(*e.over_pct));
	e.room_lost = calloc(nv, sizeof(*e.room_lost));
	e.room_vms = malloc(nv * sizeof(*e.room_vms));
	e.room_to = malloc(nv * sizeof(*e.room_to));
	e.cands = malloc((in->n_hosts ? in->n_hosts : 1) * sizeof(*e.cands));
	list = malloc(nv * sizeof(*list));
	if (!e.unit || !e.target || !e.over_pct || !e.room_lost || !e.room_vms || !e.room_to ||
	    !e.cands || !list)
		goto out;
	for (size_t v = 0; v < in->n_vms; v++) {
		e.unit[v] = v;
		e.target[v] = -1;
	}
	e.room_t0_ns = now_ns();
	ret = collect(&e, out, list, &n);
	if (!ret)
		ret = place_all(&e, list, n, out);
	out->room_unjudged = e.room_unjudged;
	if (!ret)
		ret = moves_build(&e, out);
out:
	if (ret)
		cl_plan_free(out);
	free(e.unit);
	free(e.target);
	free(e.over_pct);
	free(e.room_lost);
	free(e.room_vms);
	free(e.room_to);
	free(e.cands);
	free(list);
	work_free(&e.w);
	return ret;
}
