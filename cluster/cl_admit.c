/* HA admission control: room to restart the HA VMs of any k lost hosts (cl_admit.h). */
#include "cl_admit.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_plan.h"
#include "cl_settings.h"
#include "cl_state.h"
#include "cl_sync.h"

struct adm_host {
	const char *name;
	uint64_t total;   /* guest memory it offers (0: unknown, no limit) */
	uint64_t used;    /* by the VMs that run there */
	bool down;        /* not in the cluster now: lost already */
	bool target;      /* takes restarts: up, and not in maintenance */
	unsigned n_ha;    /* HA VMs that run there */
	uint64_t ha_mem;  /* their memory */
};

struct adm_vm {
	const char *name;
	uint64_t mem;
	int host;         /* index in hosts */
	bool ha;
};

struct adm {
	struct adm_host hosts[CL_MAX_NODES];
	size_t n_hosts;
	struct adm_vm *vms;
	size_t n_vms;
	const struct adm_vm **ha;   /* the HA VMs placed somewhere, largest first */
	size_t n_ha;
	unsigned k;
	int lost[CL_ADMIT_MAX_FAILURES];
	int perm[CL_MAX_NODES];   /* the order hosts are tried in: most HA memory first */
	int rank[CL_MAX_NODES];   /* a host's place in perm */
	char *why;
	size_t len;
};

static int host_index(const struct adm *a, const char *name)
{
	for (size_t i = 0; name && i < a->n_hosts; i++)
		if (!strcmp(a->hosts[i].name, name))
			return (int)i;
	return -1;
}

/* Down, or among the first n of lost[]. */
static bool lost_of(const struct adm *a, int h, unsigned n)
{
	if (a->hosts[h].down)
		return true;
	for (unsigned i = 0; i < n; i++)
		if (a->lost[i] == h)
			return true;
	return false;
}

static bool is_lost(const struct adm *a, int h)
{
	return lost_of(a, h, a->k);
}

static int by_mem_desc(const void *x, const void *y)
{
	const struct adm_vm *a = *(const struct adm_vm *const *)x, *b = *(const struct adm_vm *const *)y;

	return a->mem < b->mem ? 1 : a->mem > b->mem ? -1 : strcmp(a->name, b->name);
}

static uint64_t host_free(const struct adm_host *ah)
{
	return !ah->total ? UINT64_MAX : ah->total > ah->used ? ah->total - ah->used : 0;
}

/*
 * The index among hosts with take[] set of the one with the most memory
 * free (the first on a tie), or -1.
 */
static int most_free(const struct adm *a, const uint64_t *free_mem, const bool *take)
{
	int best = -1;

	for (size_t h = 0; h < a->n_hosts; h++)
		if (take[h] && (best < 0 || free_mem[h] > free_mem[best]))
			best = (int)h;
	return best;
}

/* v restarted where most memory is free: false when it does not fit there. */
static bool place(uint64_t *free_mem, int best, const struct adm_vm *v)
{
	if (best < 0 || free_mem[best] < v->mem)
		return false;
	if (free_mem[best] != UINT64_MAX)
		free_mem[best] -= v->mem;
	return true;
}

/*
 * Could any choice of the k - i hosts still to lose, from perm[from] on,
 * strand an HA VM? A sound shortcut, so that large clusters need not try
 * every choice: the restarts, largest first each where most memory is
 * free, are monotone (fewer or smaller VMs, or hosts with more memory
 * free, never turn a fit into a misfit). So if the most those choices
 * could bring (the largest HA VMs of the hosts left to choose from, as
 * many as the k - i busiest of them run) fit into the least they could
 * leave (the hosts taking restarts less the k - i of them with the most
 * memory free), every choice fits.
 */
static bool rest_fits(const struct adm *a, unsigned i, int from)
{
	unsigned r = a->k - i, counts[CL_MAX_NODES], n_counts = 0, extra = 0, taken = 0;
	uint64_t free_mem[CL_MAX_NODES];
	bool take[CL_MAX_NODES], cand[CL_MAX_NODES], c_take[CL_MAX_NODES];

	for (size_t h = 0; h < a->n_hosts; h++) {
		free_mem[h] = host_free(&a->hosts[h]);
		cand[h] = a->rank[h] >= from && !a->hosts[h].down;
		take[h] = a->hosts[h].target && !lost_of(a, (int)h, i);
		if (cand[h])
			counts[n_counts++] = a->hosts[h].n_ha;
	}
	/* As many VMs as the r busiest hosts left to choose run. */
	for (unsigned j = 0; j < r && j < n_counts; j++) {
		unsigned *m = &counts[j];

		for (unsigned q = j + 1; q < n_counts; q++)
			if (counts[q] > *m)
				m = &counts[q];
		extra += *m;
		*m = counts[j];
	}
	/* Less the r hosts left to choose that have the most memory free. */
	for (size_t h = 0; h < a->n_hosts; h++)
		c_take[h] = take[h] && cand[h];
	for (unsigned j = 0; j < r; j++) {
		int h = most_free(a, free_mem, c_take);

		if (h < 0)
			break;
		take[h] = c_take[h] = false;
	}
	for (size_t v = 0; v < a->n_ha; v++) {
		const struct adm_vm *vm = a->ha[v];

		if (!lost_of(a, vm->host, i)) {
			if (!cand[vm->host] || taken == extra)
				continue;
			taken++;
		}
		if (!place(free_mem, most_free(a, free_mem, take), vm))
			return false;
	}
	return true;
}

/* Were a->lost[] lost: the largest HA VM first, each where most memory is free. */
static int fits_after_loss(struct adm *a)
{
	uint64_t free_mem[CL_MAX_NODES];
	bool take[CL_MAX_NODES];
	size_t off;

	for (size_t h = 0; h < a->n_hosts; h++) {
		free_mem[h] = host_free(&a->hosts[h]);
		take[h] = a->hosts[h].target && !is_lost(a, (int)h);
	}
	for (size_t i = 0; i < a->n_ha; i++) {
		const struct adm_vm *v = a->ha[i];
		int best;

		if (!is_lost(a, v->host))
			continue;
		best = most_free(a, free_mem, take);
		if (place(free_mem, best, v))
			continue;
		off = (size_t)snprintf(a->why, a->len, "were ");
		for (unsigned j = 0; j < a->k && off < a->len; j++)
			off += (size_t)snprintf(a->why + off, a->len - off, "%s%s",
						j ? (j + 1 == a->k ? " and " : ", ") : "",
						a->hosts[a->lost[j]].name);
		for (size_t h = 0; h < a->n_hosts && off < a->len; h++)
			if (a->hosts[h].down)
				off += (size_t)snprintf(a->why + off, a->len - off,
							" (with %s, down)", a->hosts[h].name);
		if (off < a->len)
			off += (size_t)snprintf(a->why + off, a->len - off,
						" lost, HA VM %s (%llu MiB) could not restart: %s",
						v->name, (unsigned long long)(v->mem >> 20),
						best < 0 ? "no host would be left to take it" :
						"the most memory left on a host would be");
		if (best >= 0 && off < a->len)
			snprintf(a->why + off, a->len - off, " %llu MiB (%s)",
				 (unsigned long long)(free_mem[best] >> 20), a->hosts[best].name);
		return -ENOSPC;
	}
	return 0;
}

/* qsort has no context argument: the adm being sorted, one per thread at a time. */
static _Thread_local const struct adm *adm_sorting;

/* Most HA memory first, then most memory free, then the state's order. */
static int by_weight(const void *x, const void *y)
{
	const struct adm_host *a = &adm_sorting->hosts[*(const int *)x];
	const struct adm_host *b = &adm_sorting->hosts[*(const int *)y];
	uint64_t fa = host_free(a), fb = host_free(b);

	if (a->ha_mem != b->ha_mem)
		return a->ha_mem < b->ha_mem ? 1 : -1;
	if (fa != fb)
		return fa < fb ? 1 : -1;
	return *(const int *)x - *(const int *)y;
}

/*
 * Every choice of k hosts, in perm's order: lost[] from index i of the k.
 * The hosts whose loss weighs most come first, so that what is left to
 * choose from soon weighs little enough for rest_fits to answer for it.
 */
static int each_loss(struct adm *a, unsigned i, int from)
{
	if (i == a->k)
		return fits_after_loss(a);
	if (rest_fits(a, i, from))
		return 0;
	for (int p = from; p < (int)a->n_hosts; p++) {
		int h = a->perm[p], ret;

		if (a->hosts[h].down)
			continue;
		a->lost[i] = h;
		ret = each_loss(a, i + 1, p + 1);
		if (ret)
			return ret;
	}
	return 0;
}

static int by_vm_then_order(const void *x, const void *y)
{
	const struct cl_admit_change *a = *(const struct cl_admit_change *const *)x;
	const struct cl_admit_change *b = *(const struct cl_admit_change *const *)y;
	int c = strcmp(a->vm, b->vm);

	return c ? c : a < b ? -1 : a > b;
}

/* The last change of vm among moves (sorted by by_vm_then_order), or NULL. */
static const struct cl_admit_change *change_of(const struct cl_admit_change *const *moves,
					       size_t n, const char *vm)
{
	size_t lo = 0, hi = n;

	/* The first past vm's changes; the one before it is vm's last, if any. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(moves[mid]->vm, vm) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && !strcmp(moves[lo - 1]->vm, vm) ? moves[lo - 1] : NULL;
}

int cl_admit_ha(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
		const void *opaque, const struct cl_admit_change *changes, size_t n_changes,
		char *why, size_t len)
{
	struct adm a = { .k = k, .why = why, .len = len };
	const struct adm_vm **order = NULL;
	const struct cl_admit_change **moves = NULL;
	size_t online = 0, n_moves = 0;
	int ret = 0;

	if (len)
		why[0] = 0;
	if (!k)
		return 0;
	if (k > CL_ADMIT_MAX_FAILURES)
		k = a.k = CL_ADMIT_MAX_FAILURES;
	/* Every host that runs VMs, down or not: a host down now is lost already. */
	for (size_t i = 0; i < st->n_hosts && a.n_hosts < CL_MAX_NODES; i++) {
		const Ferry__Cluster__Host *h = st->hosts[i];
		struct adm_host *ah = &a.hosts[a.n_hosts];

		if (h->witness)
			continue;
		ah->name = h->name;
		ah->total = h->inventory ? h->inventory->mem_bytes : 0;
		ah->down = !up(opaque, h->name);
		ah->target = !ah->down && h->mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
		for (size_t c = 0; c < n_changes; c++)
			if (changes[c].maintenance && !strcmp(changes[c].host, h->name))
				ah->target = false;
		online += !ah->down;
		a.n_hosts++;
	}
	a.vms = calloc(st->n_vms + n_changes + 1, sizeof(*a.vms));
	order = calloc(st->n_vms + n_changes + 1, sizeof(*order));
	moves = calloc(n_changes + 1, sizeof(*moves));
	if (!a.vms || !order || !moves) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t c = 0; c < n_changes; c++)
		if (!changes[c].maintenance && !changes[c].mem)
			moves[n_moves++] = &changes[c];
	/* By name, the later of one VM's changes last: an evacuation plan judges many at once. */
	qsort(moves, n_moves, sizeof(*moves), by_vm_then_order);
	for (size_t i = 0; i < st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = st->vms[i];
		struct adm_vm *v = &a.vms[a.n_vms];
		bool running = vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
		const char *host = running ? vm->host : NULL;
		const struct cl_admit_change *ch = change_of(moves, n_moves, vm->name);

		v->ha = vm->ha;
		if (ch) {
			host = ch->host;
			v->ha = ch->ha;
		}
		v->host = host_index(&a, host);
		if (v->host < 0)
			continue;
		v->name = vm->name;
		v->mem = vm->mem_bytes;
		a.hosts[v->host].used += v->mem;
		order[a.n_vms] = v;
		a.n_vms++;
	}
	for (size_t c = 0; c < n_changes; c++) {
		struct adm_vm *v = &a.vms[a.n_vms];

		if (changes[c].maintenance || !changes[c].mem ||
		    (v->host = host_index(&a, changes[c].host)) < 0)
			continue;
		v->name = changes[c].vm;
		v->mem = changes[c].mem;
		v->ha = changes[c].ha;
		a.hosts[v->host].used += v->mem;
		order[a.n_vms++] = v;
	}
	if (online <= k) {
		snprintf(why, len, "ha-host-failures %u needs at least %u hosts online to take "
			 "the restarts (online now: %zu)", k, k + 1, online);
		ret = -ENOSPC;
		goto out;
	}
	qsort(order, a.n_vms, sizeof(*order), by_mem_desc);
	a.ha = order;   /* the HA ones first, in the same order: the rest are not read */
	for (size_t i = 0; i < a.n_vms; i++)
		if (order[i]->ha) {
			a.hosts[order[i]->host].n_ha++;
			a.hosts[order[i]->host].ha_mem += order[i]->mem;
			order[a.n_ha++] = order[i];
		}
	for (size_t h = 0; h < a.n_hosts; h++)
		a.perm[h] = (int)h;
	adm_sorting = &a;
	qsort(a.perm, a.n_hosts, sizeof(a.perm[0]), by_weight);
	for (size_t p = 0; p < a.n_hosts; p++)
		a.rank[a.perm[p]] = (int)p;
	/* Hosts down now are lost in every case: the k chosen among the others add to them. */
	ret = each_loss(&a, 0, 0);
out:
	free(moves);
	free(order);
	free(a.vms);
	return ret;
}

bool cl_admit_up_unless_down(const void *admit, const char *host)
{
	const Ferry__Cluster__Admit *adm = admit;

	for (size_t i = 0; i < adm->n_down; i++)
		if (!strcmp(adm->down[i], host))
			return false;
	return true;
}

/*
 * Do changes[n_base..n) break what holds with changes[0..n_base)? Only
 * then are they refused: in a cluster that already would not survive, a
 * change that takes no memory (a move, a host emptied) goes on. 0, or
 * -ENOSPC with why as cl_admit_ha's after all n; -ENOMEM.
 */
static int admit_breaks(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
			const void *opaque, const struct cl_admit_change *changes,
			size_t n_base, size_t n, char *why, size_t len)
{
	char before[CL_ERR_LEN];
	int ret = cl_admit_ha(st, k, up, opaque, changes, n, why, len);

	if (ret == -ENOSPC &&
	    cl_admit_ha(st, k, up, opaque, changes, n_base, before, sizeof(before)) == -ENOSPC) {
		if (len)
			why[0] = 0;
		return 0;
	}
	return ret;
}

int cl_admit_judge(const Ferry__Cluster__State *st, cl_admit_up_fn up, const void *opaque,
		   const char *what, const char *vm, const char *host, bool ha, bool move,
		   char *err, size_t len)
{
	unsigned k = (unsigned)cl_setting_get(st, CL_SET_HA_HOST_FAILURES);
	struct cl_admit_change c = { .vm = vm, .host = host, .ha = ha };
	char why[CL_ERR_LEN];
	int ret;

	if (len)
		err[0] = 0;
	ret = move ? admit_breaks(st, k, up, opaque, &c, 0, 1, why, sizeof(why)) :
		     cl_admit_ha(st, k, up, opaque, &c, 1, why, sizeof(why));
	if (ret == -ENOSPC)
		snprintf(err, len, "%s: %s: refused by HA admission control (ha-host-failures %u): "
			 "%s; free memory or add hosts, or lower ha-host-failures", what, vm, k, why);
	else if (ret)
		snprintf(err, len, "%s: %s: HA admission control: %s", what, vm, strerror(-ret));
	return ret;
}

unsigned cl_admit_tolerates(const Ferry__Cluster__State *st, cl_admit_up_fn up,
			    const void *opaque)
{
	char why[CL_ERR_LEN];
	unsigned k = 0;

	while (k < CL_ADMIT_MAX_FAILURES && !cl_admit_ha(st, k + 1, up, opaque, NULL, 0, why,
							 sizeof(why)))
		k++;
	return k;
}

uint64_t cl_admit_room(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
		       const void *opaque, const char *host)
{
	const Ferry__Cluster__Host *h = cl_state_host(st, host);
	struct cl_admit_change c = { .vm = "(new)", .host = host };
	uint64_t lo = 0, hi, total, used;
	char why[CL_ERR_LEN];

	if (!h || h->witness || !up(opaque, host) || !h->inventory ||
	    h->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE)
		return 0;
	total = h->inventory->mem_bytes >> 20;
	used = cl_state_host_mem_used(st, host) >> 20;
	hi = total > used ? total - used : 0;
	/* Admitted sizes are those up to a bound: find it, in MiB. */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;

		c.mem = mid << 20;
		if (!cl_admit_ha(st, k, up, opaque, &c, 1, why, sizeof(why)))
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo << 20;
}

int cl_admit_maintenance(const Ferry__Cluster__State *st, cl_admit_up_fn up,
			 const void *opaque, const char *what, const char *host,
			 Ferry__Cluster__AdmitMove *const *moves, size_t n, char *err,
			 size_t len)
{
	unsigned k = (unsigned)cl_setting_get(st, CL_SET_HA_HOST_FAILURES);
	struct cl_admit_change *c;
	char why[CL_ERR_LEN], said[256] = "";
	size_t nc = 1, off = 0;
	int ret;

	if (len)
		err[0] = 0;
	if (!k)
		return 0;
	c = calloc(n + 1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c[0] = (struct cl_admit_change){ .host = host, .maintenance = true };
	for (size_t i = 0; i < n; i++) {
		const Ferry__Cluster__Vm *vm = cl_state_vm(st, moves[i]->vm);
		const Ferry__Cluster__Host *to = cl_state_host(st, moves[i]->to);

		if (!vm || vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING ||
		    !vm->host || strcmp(vm->host, host))
			continue;
		if (!to || to->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE) {
			snprintf(err, len, "%s: %s: HA admission control judged it with %s moved to "
				 "%s, which %s since; ask again", what, host, moves[i]->vm,
				 moves[i]->to, to ? "went into maintenance" : "left the cluster");
			free(c);
			return -ESTALE;
		}
		if (off < sizeof(said))
			off += (size_t)snprintf(said + off, sizeof(said) - off, "%s%s -> %s",
						nc > 1 ? ", " : "", vm->name, to->name);
		c[nc++] = (struct cl_admit_change){ .vm = vm->name, .host = to->name,
						    .ha = vm->ha };
	}
	ret = admit_breaks(st, k, up, opaque, c, 0, nc, why, sizeof(why));
	free(c);
	if (ret == -ENOSPC)
		snprintf(err, len, "%s: %s: refused by HA admission control (ha-host-failures %u): "
			 "with %s in maintenance and its VMs moved (%s), %s; make room first, or "
			 "lower ha-host-failures while %s is in maintenance", what, host, k, host,
			 nc > 1 ? said : "none to move", why, host);
	else if (ret)
		snprintf(err, len, "%s: %s: HA admission control: %s", what, host, strerror(-ret));
	return ret;
}

long cl_admit_plan(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
		   const void *opaque, struct cl_plan *plan, char *why, size_t len)
{
	struct cl_admit_change *kept;
	size_t n_kept = 0, out = 0;
	char said[512];
	long dropped = 0;

	if (len)
		why[0] = 0;
	if (!k || !plan->n_moves)
		return 0;
	kept = calloc(plan->n_moves, sizeof(*kept));
	if (!kept)
		return -ENOMEM;
	for (size_t i = 0; i < plan->n_moves; i++) {
		const struct cl_plan_move *m = &plan->moves[i];
		const Ferry__Cluster__Vm *vm = cl_state_vm(st, m->vm_name);

		kept[n_kept] = (struct cl_admit_change){ .vm = m->vm_name, .host = m->to,
							 .ha = vm && vm->ha };
		if (!admit_breaks(st, k, up, opaque, kept, n_kept, n_kept + 1, said,
				  sizeof(said))) {
			n_kept++;
			plan->moves[out++] = *m;
			continue;
		}
		if (!dropped++ && len)
			snprintf(why, len, "%s -> %s: %s", m->vm_name, m->to, said);
	}
	plan->n_moves = out;
	/* The figures after: as far as the last move kept. */
	if (dropped)
		plan->imbalance_after = out ? plan->moves[out - 1].imbalance_after :
					      plan->imbalance_before;
	free(kept);
	return dropped;
}

/* cl_plan_room.holds: out of memory, no host is preferred over another. */
static bool room_holds(void *opaque, const struct cl_plan_input *in, size_t src,
		       const size_t *vms, const size_t *to, size_t n)
{
	const struct cl_admit_room *room = opaque;
	struct cl_admit_change *c = calloc(n + 1, sizeof(*c));
	char why[CL_ERR_LEN];
	int ret;

	if (!c)
		return true;
	c[0] = (struct cl_admit_change){ .host = in->hosts[src].name, .maintenance = true };
	for (size_t i = 0; i < n; i++)
		c[i + 1] = (struct cl_admit_change){ .vm = in->vms[vms[i]].name,
						     .host = in->hosts[to[i]].name,
						     .ha = in->vms[vms[i]].vm->ha };
	ret = cl_admit_ha(in->st, room->k, room->up, room->opaque, c, n + 1, why, sizeof(why));
	free(c);
	return ret != -ENOSPC;
}

void cl_admit_room_set(struct cl_plan_input *in, struct cl_admit_room *room, cl_admit_up_fn up,
		       const void *opaque, unsigned budget_ms)
{
	*room = (struct cl_admit_room){ .k = (unsigned)cl_setting_get(in->st,
								  CL_SET_HA_HOST_FAILURES),
					.up = up, .opaque = opaque };
	in->room = room->k ? (struct cl_plan_room){ .holds = room_holds, .opaque = room,
						    .budget_ms = budget_ms } :
			     (struct cl_plan_room){ 0 };
}
