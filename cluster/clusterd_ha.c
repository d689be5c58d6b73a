/*
 * clusterd: HA recovery, on the leader (the node that also plans, see
 * clusterd_plan.c). A host out of the membership for cl_ha_wait_ms has
 * had its HA vmons stop themselves (core/fence.h): either its agent lost
 * quorum and stopped sending keepalives, or its agent or the whole host
 * died. Its HA VMs then restart elsewhere, by CmdVmRecover. The clock for
 * a host starts when this leader first saw it gone, so a new leader waits
 * the whole time again: later, never sooner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_ha.h"
#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"

#define HA_PERIOD_MS 1000
#define HA_STUCK_LOG_MS 30000   /* a VM that fits nowhere is named this often */

/* Keep a->lost in step with the membership: hosts gone, and since when. */
static void lost_update(struct agent *a, uint64_t now)
{
	size_t n = 0;
	struct ha_lost *v = calloc(a->st->n_hosts ? a->st->n_hosts : 1, sizeof(*v));

	if (!v)
		return;
	for (size_t i = 0; i < a->st->n_hosts; i++) {
		const char *name = a->st->hosts[i]->name;
		uint64_t since = now;
		bool known = false;

		if (agent_online(a, name))
			continue;
		for (size_t k = 0; k < a->n_lost && !known; k++)
			if (!strcmp(a->lost[k].host, name)) {
				since = a->lost[k].since_ns;
				known = true;
			}
		if (!known && cl_state_ha_running(a->st, name))
			log_warn("ha: host %s is out of the cluster; its HA VMs restart elsewhere "
				 "if it stays out for %llu s", name,
				 (unsigned long long)(cl_ha_wait_ms(a->st) / 1000));
		snprintf(v[n].host, sizeof(v[n].host), "%s", name);
		v[n++].since_ns = since;
	}
	free(a->lost);
	a->lost = v;
	a->n_lost = n;
}

static void recover_host(struct agent *a, const char *host, uint64_t lost_ms)
{
	struct cl_plan_input *in = NULL;
	struct cl_plan plan;
	char err[CL_ERR_LEN], over[CL_ERR_LEN];

	if (agent_plan_input(a, &in, err, sizeof(err))) {
		log_warn("ha: %s: %s", host, err);
		return;
	}
	if (!cl_ha_plan(in, host, &plan)) {
		for (size_t i = 0; i < plan.n_moves; i++) {
			Ferry__Cluster__CmdVmRecover c = FERRY__CLUSTER__CMD_VM_RECOVER__INIT;
			Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
			const Ferry__Cluster__Vm *vm = in->vms[plan.moves[i].vm].vm;

			c.vm = (char *)vm->name;
			c.from = (char *)host;
			c.host = (char *)plan.moves[i].to;
			c.generation = vm->generation;
			c.lost_ms = lost_ms;
			cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_RECOVER;
			cmd.vm_recover = &c;
			if (!agent_propose_async(a, &cmd))
				log_warn("ha: %s: host %s lost for %llu s: restarting it on %s%s",
					 vm->name, host, (unsigned long long)(lost_ms / 1000),
					 plan.moves[i].to,
					 cl_plan_over_cap_note(&plan.moves[i], over, sizeof(over)));
		}
		if (plan.n_stuck && now_ns() - a->ha_stuck_ns >= HA_STUCK_LOG_MS * 1000000ull) {
			a->ha_stuck_ns = now_ns();
			for (size_t i = 0; i < plan.n_stuck; i++)
				log_warn("ha: %s: host %s is lost and it cannot restart anywhere: %s",
					 plan.stuck[i].vm_name, host, plan.stuck[i].reason);
		}
		cl_plan_free(&plan);
	}
	cl_plan_input_free(in);
}

void agent_ha_tick(struct agent *a)
{
	uint64_t now = now_ns(), wait_ns;

	if (!agent_is_leader(a)) {
		a->n_lost = 0;   /* a leader again starts its clocks afresh */
		return;
	}
	if (now - a->ha_ns < HA_PERIOD_MS * 1000000ull)
		return;
	a->ha_ns = now;
	lost_update(a, now);
	wait_ns = cl_ha_wait_ms(a->st) * 1000000ull;
	for (size_t i = 0; i < a->n_lost; i++)
		if (now - a->lost[i].since_ns >= wait_ns &&
		    cl_state_ha_running(a->st, a->lost[i].host))
			recover_host(a, a->lost[i].host, (now - a->lost[i].since_ns) / 1000000);
}
