/*
 * clusterd: the balancer and maintenance evacuations (issue 6). The
 * planning is cluster/cl_plan.c's, pure; this file gives it the state and
 * the live figures, and turns its moves into migrations. One node does
 * that: the lowest node id of a synced, quorate view (every member knows
 * which, from the same membership). Its proposals go through the state
 * machine like an operator's, so a move that no longer fits (a rule, the
 * memory, one migration per VM) is refused there, whoever proposed it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_admit.h"
#include "cl_plan.h"
#include "cl_settings.h"
#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"

#define EVACUATE_PERIOD_MS 1000
/* The main loop's: each second's evacuation plan judges HA's room this long at most. */
#define EVACUATE_ROOM_BUDGET_MS 20

bool agent_is_leader(const struct agent *a)
{
	return a->cpg && a->quorate && a->sync.synced && a->sync.n_members &&
	       a->sync.members[0] == a->nodeid;
}

const char *agent_leader_name(const struct agent *a)
{
	const Ferry__Cluster__Host *h;

	if (!a->cpg || !a->sync.n_members)
		return "";
	h = cl_state_host_by_nodeid(a->st, a->sync.members[0]);
	return h ? h->name : "";
}

int agent_plan_input(struct agent *a, struct cl_plan_input **in, char *err, size_t err_len)
{
	struct cl_plan_vm_figs *figs;
	struct cl_plan_config cfg;
	size_t n = 0, cap = 0;
	int ret;

	for (size_t i = 0; i < a->n_loads; i++)
		cap += a->loads[i]->n_vms;
	figs = calloc(cap ? cap : 1, sizeof(*figs));
	if (!figs)
		return -ENOMEM;
	for (size_t i = 0; i < a->n_loads; i++)
		for (size_t k = 0; k < a->loads[i]->n_vms; k++) {
			const Ferry__Cluster__VmLoad *l = a->loads[i]->vms[k];

			figs[n].name = l->name;
			figs[n].cpu_pct = l->cpu_pct;
			figs[n].dirty_pages_per_s = l->dirty_pages_per_s;
			n++;
		}
	cl_settings_plan_config(a->st, &a->plan_cfg, &cfg);
	ret = cl_plan_input_build(in, a->st, figs, n, realtime_ns() / 1000000, &cfg,
				  err, err_len);
	free(figs);
	if (ret)
		return ret;
	(*in)->memo = a->plan_memo;
	/* A host out of the membership takes nothing: its agent would not start it. */
	for (size_t h = 0; h < (*in)->n_hosts; h++)
		if (!agent_online(a, (*in)->hosts[h].name))
			(*in)->hosts[h].active = false;
	return 0;
}

bool agent_admit_up(const void *opaque, const char *host)
{
	return agent_online(opaque, host);
}

Ferry__Cluster__Admit *agent_admit_view(struct agent *a, struct agent_admit *adm)
{
	if (!cl_setting_get(a->st, CL_SET_HA_HOST_FAILURES))
		return NULL;
	ferry__cluster__admit__init(&adm->msg);
	adm->msg.down = adm->down;
	for (size_t i = 0; i < a->st->n_hosts && adm->msg.n_down < CL_MAX_NODES; i++) {
		const char *h = a->st->hosts[i]->name;

		if (agent_online(a, h))
			continue;
		snprintf(adm->names[adm->msg.n_down], CL_NAME_MAX, "%s", h);
		adm->down[adm->msg.n_down] = adm->names[adm->msg.n_down];
		adm->msg.n_down++;
	}
	return &adm->msg;
}

void agent_plan_admit(struct agent *a, struct cl_plan *plan)
{
	unsigned k = (unsigned)cl_setting_get(a->st, CL_SET_HA_HOST_FAILURES);
	char why[CL_ERR_LEN];
	long n = cl_admit_plan(a->st, k, agent_admit_up, a, plan, why, sizeof(why));

	if (n > 0)
		log_info("balance: %ld move(s) left out by HA admission control "
			 "(ha-host-failures %u): %s", n, k, why);
}

static void move_start(struct agent *a, const struct cl_plan_move *m, const char *reason)
{
	Ferry__Cluster__CmdMigBegin c = FERRY__CLUSTER__CMD_MIG_BEGIN__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	struct agent_admit adm;
	char over[CL_ERR_LEN];

	c.vm = (char *)m->vm_name;
	c.destination = (char *)m->to;
	c.reason = (char *)reason;
	/* The balancer's moves keep the room as the operator's do; an evacuation must empty its host. */
	if (!strcmp(reason, "balancer"))
		c.admit = agent_admit_view(a, &adm);
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN;
	cmd.mig_begin = &c;
	if (!agent_propose_async(a, &cmd))
		log_msg(m->cpu_over_pct > 0 || m->room_lost ? LOGL_WARN : LOGL_INFO,
			"%s: %s %s -> %s (predicted %.0f ms)%s%s", reason, m->vm_name, m->from,
			m->to, m->cost.total_ms, cl_plan_over_cap_note(m, over, sizeof(over)),
			m->room_lost ? "; HA room lost: no host that takes it keeps room for "
			"ha-host-failures" : "");
}

static unsigned migrations_from(const Ferry__Cluster__State *st, const char *host)
{
	unsigned n = 0;

	for (size_t i = 0; i < st->n_vms; i++)
		n += st->vms[i]->migration && !strcmp(st->vms[i]->migration->source, host);
	return n;
}

static void evacuate(struct agent *a, const char *host)
{
	struct cl_plan_input *in = NULL;
	struct cl_admit_room room;
	struct cl_plan plan;
	char err[CL_ERR_LEN];
	unsigned running = migrations_from(a->st, host);

	if (agent_plan_input(a, &in, err, sizeof(err))) {
		log_warn("evacuate %s: %s", host, err);
		return;
	}
	/* Judged as a whole when the host went in; each second's plan keeps the room where it can. */
	cl_admit_room_set(in, &room, agent_admit_up, a, EVACUATE_ROOM_BUDGET_MS);
	if (!cl_plan_evacuate(in, host, &plan)) {
		if (plan.room_unjudged)
			log_info("evacuate %s: %zu VM(s) placed without HA's room judged "
				 "(%u ms spent judging)", host, plan.room_unjudged,
				 EVACUATE_ROOM_BUDGET_MS);
		for (size_t i = 0; i < plan.n_moves && running < plan.concurrency; i++, running++)
			move_start(a, &plan.moves[i], "evacuation");
		cl_plan_free(&plan);
	}
	cl_plan_input_free(in);
}

static void balance(struct agent *a)
{
	struct cl_plan_input *in = NULL;
	struct cl_plan plan;
	char err[CL_ERR_LEN];

	if (agent_plan_input(a, &in, err, sizeof(err))) {
		log_warn("balance: %s", err);
		return;
	}
	if (!cl_plan_balance(in, &plan)) {
		agent_plan_admit(a, &plan);
		if (plan.n_moves)
			log_info("balance: imbalance %.3f -> %.3f with %zu move(s)",
				 plan.imbalance_before, plan.imbalance_after, plan.n_moves);
		for (size_t i = 0; i < plan.n_moves; i++)
			move_start(a, &plan.moves[i], "balancer");
		cl_plan_free(&plan);
	}
	cl_plan_input_free(in);
}

void agent_plan_tick(struct agent *a)
{
	uint64_t now = now_ns();

	if (!agent_is_leader(a))
		return;
	if (now - a->evacuated_ns >= EVACUATE_PERIOD_MS * 1000000ull) {
		a->evacuated_ns = now;
		/* A host out of the membership has no agent to migrate its VMs: HA's part. */
		for (size_t i = 0; i < a->st->n_hosts; i++)
			if (a->st->hosts[i]->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE &&
			    agent_online(a, a->st->hosts[i]->name))
				evacuate(a, a->st->hosts[i]->name);
	}
	if (a->st->balance_mode == FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC &&
	    now - a->balanced_ns >= a->plan_cfg.interval_s * 1000000000ull) {
		a->balanced_ns = now;
		balance(a);
	}
}
