/*
 * clusterd: clusterctl's requests. Reads are answered from this node's
 * copy of the state; changes become proposals and are answered once the
 * cluster decided them. Each handler fills a heap-owned Response.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_admit.h"
#include "cl_cpu.h"
#include "cl_settings.h"
#include "clusterd.h"
#include "core/log.h"

typedef Ferry__Cluster__Response R;

#define VM_START_TRIES 3   /* placements of one vm start, each judged where applied */
#define REQ_ROOM_BUDGET_MS 500   /* an evacuation plan's HA room judgements, in a request */

static void fail(R *r, int err, const char *msg)
{
	r->error = err;
	cl_str_set(&r->message, msg);
}

static void node_status(struct agent *a, R *r)
{
	Ferry__Cluster__NodeStatus *n = CL_NEW(Ferry__Cluster__NodeStatus,
					       ferry__cluster__node_status__init);
	struct cl_quorum_info q = { 0 };

	if (!n)
		return;
	n->name = cl_strdup(a->name);
	n->nodeid = a->nodeid;
	n->quorate = a->quorate && a->cpg;
	n->synced = a->sync.synced && a->cpg;
	if (a->cpg && !cl_cpg_quorum(a->cpg, &q)) {
		n->votes = q.votes;
		n->expected_votes = q.expected;
		n->quorum = q.quorum;
	}
	for (size_t i = 0; a->cpg && i < a->sync.n_members; i++) {
		const Ferry__Cluster__Host *h = cl_state_host_by_nodeid(a->st, a->sync.members[i]);
		char id[32];

		snprintf(id, sizeof(id), "node%u", a->sync.members[i]);
		cl_strv_add(&n->members, &n->n_members, h ? h->name : id);
	}
	r->node = n;
}

static void add_live(struct agent *a, R *r)
{
	for (size_t i = 0; i < a->st->n_hosts; i++)
		if (agent_online(a, a->st->hosts[i]->name))
			cl_strv_add(&r->online, &r->n_online, a->st->hosts[i]->name);
	r->loads = calloc(a->n_loads ? a->n_loads : 1, sizeof(*r->loads));
	for (size_t i = 0; r->loads && i < a->n_loads; i++)
		if ((r->loads[r->n_loads] = CL_DUP(Ferry__Cluster__HostLoad, a->loads[i])))
			r->n_loads++;
}

static void do_status(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	node_status(a, r);
	r->state = CL_DUP(Ferry__Cluster__State, a->st);
	add_live(a, r);
}

static void do_host_show(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	const Ferry__Cluster__Host *h = cl_state_host(a->st, q->host_show->name);
	char msg[CL_ERR_LEN];

	if (!h) {
		snprintf(msg, sizeof(msg), "host show: no such host %s", q->host_show->name);
		fail(r, -ENOENT, msg);
		return;
	}
	r->host = CL_DUP(Ferry__Cluster__Host, h);
	add_live(a, r);
}

static void do_vm_show(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	const char *name = q->cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_SHOW ?
			   q->vm_show->name : q->migrate_status->name;
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, name);
	const Ferry__Cluster__MigProgress *p = agent_progress(a, name);
	char msg[CL_ERR_LEN];

	if (!vm) {
		snprintf(msg, sizeof(msg), "%s: %s: no such VM",
			 q->cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_SHOW ? "vm show" :
			 "migrate", name);
		fail(r, -ENOENT, msg);
		return;
	}
	r->vm = CL_DUP(Ferry__Cluster__Vm, vm);
	if (p && vm->migration && p->id == vm->migration->id)
		r->progress = CL_DUP(Ferry__Cluster__MigProgress, p);
	add_live(a, r);
}

/* Propose cmd (the lock is dropped meanwhile) and answer with the outcome. */
static void propose(struct agent *a, const Ferry__Cluster__Command *cmd, R *r)
{
	char err[CL_ERR_LEN];
	int ret;

	pthread_mutex_unlock(&a->lock);
	ret = agent_propose(a, cmd, err, sizeof(err));
	pthread_mutex_lock(&a->lock);
	if (ret)
		fail(r, ret, err);
}

static void do_vm_create(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdVmCreate c = FERRY__CLUSTER__CMD_VM_CREATE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = q->vm_create;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_CREATE;
	cmd.vm_create = &c;
	propose(a, &cmd, r);
	if (!r->error && cl_state_vm(a->st, q->vm_create->name))
		r->vm = CL_DUP(Ferry__Cluster__Vm, cl_state_vm(a->st, q->vm_create->name));
}

/*
 * HA admission control (cl_admit.h), as this agent sees the cluster: may vm
 * run on host (HA or not)? True, or r refused. Two agents may admit two
 * changes at once, each against the state before the other: the command
 * carries this agent's view (agent_admit_view) and is judged again where
 * it is applied, in the total order.
 */
static bool admitted(struct agent *a, const char *what, const char *vm, const char *host,
		     bool ha, bool move, R *r)
{
	char msg[CL_ERR_LEN + 256];
	int ret = cl_admit_judge(a->st, agent_admit_up, a, what, vm, host, ha, move, msg,
				 sizeof(msg));

	if (ret)
		fail(r, ret, msg);
	return !ret;
}

/*
 * host, refused by admission control: the first other host that fits and
 * is admitted, in host. 0, or -ENOSPC when there is none.
 */
static int admit_elsewhere(struct agent *a, const Ferry__Cluster__Vm *vm, char *host, size_t len)
{
	char err[CL_ERR_LEN + 256];

	for (size_t i = 0; i < a->st->n_hosts; i++) {
		const char *h = a->st->hosts[i]->name;

		if (strcmp(h, host) && agent_online(a, h) &&
		    !cl_state_host_fits(a->st, vm, "vm start", h, err, sizeof(err)) &&
		    !cl_admit_judge(a->st, agent_admit_up, a, "vm start", vm->name, h, vm->ha,
				    false, err, sizeof(err))) {
			snprintf(host, len, "%s", h);
			return 0;
		}
	}
	return -ENOSPC;
}

/* Where a VM starts when nobody says: an online host that fits, with the
 * least guest memory placed on it. */
static int place(struct agent *a, const Ferry__Cluster__Vm *vm, char *host, size_t len,
		 char *why, size_t why_len)
{
	uint64_t best = UINT64_MAX;
	size_t used = 0;

	why[0] = 0;
	host[0] = 0;
	for (size_t i = 0; i < a->st->n_hosts; i++) {
		const Ferry__Cluster__Host *h = a->st->hosts[i];
		char err[CL_ERR_LEN];
		uint64_t mem;

		if (!agent_online(a, h->name)) {
			snprintf(err, sizeof(err), "vm start: %s: %s is down", vm->name, h->name);
		} else if (!cl_state_host_fits(a->st, vm, "vm start", h->name, err,
					       sizeof(err))) {
			mem = cl_state_host_mem_used(a->st, h->name);
			if (mem < best) {
				best = mem;
				snprintf(host, len, "%s", h->name);
			}
			continue;
		}
		/* "vm start: vm1: " is said once, in front of all the reasons. */
		used += snprintf(why + used, used < why_len ? why_len - used : 0, "%s%s",
				 used ? "; " : "", err + strlen("vm start: ") + strlen(vm->name) + 2);
	}
	return *host ? 0 : -ENOSPC;
}

/* One try of vm start: true when it came as far as proposing. */
static bool vm_start_try(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdVmStart c = FERRY__CLUSTER__CMD_VM_START__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, q->vm_start->name);
	char host[CL_NAME_MAX], why[CL_ERR_LEN], msg[CL_ERR_LEN + 64];
	struct agent_admit adm;

	snprintf(host, sizeof(host), "%s", q->vm_start->host);
	if (vm && !*host && vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
	    place(a, vm, host, sizeof(host), why, sizeof(why))) {
		snprintf(msg, sizeof(msg), "vm start: %s: no host can run it: %s", vm->name,
			 *why ? why : "the cluster has no hosts");
		fail(r, -ENOSPC, msg);
		return false;
	}
	if (*host && !cl_state_host(a->st, host)) {
		snprintf(msg, sizeof(msg), "vm start: %s: no such host %s", q->vm_start->name,
			 host);
		fail(r, -ENOENT, msg);
		return false;
	}
	if (*host && !agent_online(a, host)) {
		snprintf(msg, sizeof(msg), "vm start: %s: %s is down", q->vm_start->name, host);
		fail(r, -EHOSTDOWN, msg);
		return false;
	}
	/* Any VM: a plain one takes memory that the HA VMs' restarts may need. */
	if (vm && vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING && *host) {
		char refused[CL_ERR_LEN + 256];
		int ret = cl_admit_judge(a->st, agent_admit_up, a, "vm start", vm->name, host,
					 vm->ha, false, refused, sizeof(refused));

		/* Placed here, not named: another host that fits may keep the room. */
		if (ret == -ENOSPC && !*q->vm_start->host &&
		    !admit_elsewhere(a, vm, host, sizeof(host)))
			ret = 0;
		if (ret) {
			fail(r, ret, refused);
			return false;
		}
	}
	c.name = q->vm_start->name;
	c.host = host;
	c.admit = agent_admit_view(a, &adm);
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_START;
	cmd.vm_start = &c;
	propose(a, &cmd, r);
	if (!r->error && (vm = cl_state_vm(a->st, c.name)))
		r->vm = CL_DUP(Ferry__Cluster__Vm, vm);
	return true;
}

/*
 * A start the cluster placed (no --host) that was refused where it was
 * applied, because a start that landed first took the memory or the room
 * HA admission control keeps, is placed again on the state after it.
 */
static void do_vm_start(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	for (int i = 1;; i++) {
		bool proposed = vm_start_try(a, q, r);

		if (!proposed || *q->vm_start->host || i == VM_START_TRIES ||
		    (r->error != -ENOSPC && r->error != -ENOMEM))
			return;
		log_info("vm start: %s: %s; placing it again", q->vm_start->name, r->message);
		r->error = 0;
		cl_str_set(&r->message, "");
	}
}

static void do_vm_stop_delete(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdVmStop stop = FERRY__CLUSTER__CMD_VM_STOP__INIT;
	Ferry__Cluster__CmdVmDelete del = FERRY__CLUSTER__CMD_VM_DELETE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	if (q->cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_STOP) {
		stop.name = q->vm_stop->name;
		cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_STOP;
		cmd.vm_stop = &stop;
	} else {
		del.name = q->vm_delete->name;
		cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_DELETE;
		cmd.vm_delete = &del;
	}
	propose(a, &cmd, r);
}

static void do_migrate(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	const Ferry__Cluster__MigrateReq *m = q->migrate;
	Ferry__Cluster__CmdMigBegin c = FERRY__CLUSTER__CMD_MIG_BEGIN__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, m->vm);
	struct agent_admit adm;
	char msg[CL_ERR_LEN];

	/* The state machine judges the rest; liveness is this node's view. */
	if (vm && cl_state_host(a->st, m->host) && !agent_online(a, m->host)) {
		snprintf(msg, sizeof(msg), "migrate: %s: %s is down (not in the cluster's "
			 "membership)", m->vm, m->host);
		fail(r, -EHOSTDOWN, msg);
		return;
	}
	if (vm && vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
	    !agent_online(a, vm->host)) {
		snprintf(msg, sizeof(msg), "migrate: %s: its host %s is down", m->vm, vm->host);
		fail(r, -EHOSTDOWN, msg);
		return;
	}
	/* The operator's moves; the planner's (evacuations, the balancer) are not judged here. */
	if (vm && vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
	    cl_state_host(a->st, m->host) &&
	    !admitted(a, "migrate", vm->name, m->host, vm->ha, true, r))
		return;
	c.vm = m->vm;
	c.destination = m->host;
	c.admit = agent_admit_view(a, &adm);
	c.downtime_ms = m->downtime_ms;
	c.bandwidth_mbps = m->bandwidth_mbps;
	c.dry_run = m->dry_run;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN;
	cmd.mig_begin = &c;
	propose(a, &cmd, r);
	vm = cl_state_vm(a->st, m->vm);
	if (!r->error && vm) {
		r->vm = CL_DUP(Ferry__Cluster__Vm, vm);
		/* Its id, even if it already ended by now. */
		r->migration_id = vm->migration ? vm->migration->id :
				  vm->last_migration ? vm->last_migration->id : 0;
	}
}

/* The migration of name as this agent sees it: the one an operator asks about. */
static uint64_t seen_migration(struct agent *a, const char *name)
{
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, name);

	return vm && vm->migration ? vm->migration->id : 0;
}

/* After a cancel or a change of migration id: the VM as it now stands. */
static void answer_vm(struct agent *a, const char *name, uint64_t id, R *r)
{
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, name);

	if (!r->error && vm) {
		r->vm = CL_DUP(Ferry__Cluster__Vm, vm);
		r->migration_id = id;
	}
}

static void do_migrate_cancel(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdMigCancel c = FERRY__CLUSTER__CMD_MIG_CANCEL__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = q->migrate_cancel->name;
	/* The one the operator saw: a migration begun since is not cancelled. */
	c.id = seen_migration(a, c.vm);
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_CANCEL;
	cmd.mig_cancel = &c;
	propose(a, &cmd, r);
	answer_vm(a, c.vm, c.id, r);
}

static void do_migrate_set(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdMigSet c = *q->migrate_set;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.id = seen_migration(a, c.vm);  /* as for a cancel */
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_SET;
	cmd.mig_set = &c;
	propose(a, &cmd, r);
	answer_vm(a, c.vm, c.id, r);
}

static void do_cpu_baseline(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CpuResult *c = CL_NEW(Ferry__Cluster__CpuResult,
					      ferry__cluster__cpu_result__init);
	const char **names = NULL;
	size_t n = 0;

	if (!c)
		return;
	c->model = cl_strdup(CL_CPU_MODEL_CLUSTER);
	if (!cl_cpu_baseline(a->st, &names, &n))
		for (size_t i = 0; i < n; i++)
			cl_strv_add(&c->features, &c->n_features, names[i]);
	free(names);
	c->compatible = true;
	r->cpu = c;
}

static void do_cpu_check(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, q->cpu_check->vm);
	const Ferry__Cluster__Host *h = cl_state_host(a->st, q->cpu_check->host);
	Ferry__Cluster__CpuResult *c;
	char missing[CL_ERR_LEN], msg[CL_ERR_LEN + 64];
	int ret;

	if (!vm || !h) {
		snprintf(msg, sizeof(msg), "cpu check: no such %s %s", vm ? "host" : "VM",
			 vm ? q->cpu_check->host : q->cpu_check->vm);
		fail(r, -ENOENT, msg);
		return;
	}
	c = CL_NEW(Ferry__Cluster__CpuResult, ferry__cluster__cpu_result__init);
	if (!c)
		return;
	c->model = cl_strdup(vm->cpu_model);
	ret = cl_cpu_check(a->st, vm, h, missing, sizeof(missing));
	c->compatible = !ret;
	if (ret == -ENOTSUP) {
		for (char *save = NULL, *t = strtok_r(missing, ", ", &save); t;
		     t = strtok_r(NULL, ", ", &save))
			cl_strv_add(&c->missing, &c->n_missing, t);
	} else if (ret) {
		snprintf(msg, sizeof(msg), "cpu check: %s: %s", vm->name, missing);
		fail(r, ret, msg);
	}
	r->cpu = c;
}

/*
 * What a maintenance entry was judged on, carried by its command so that
 * every node judges it again where it applies it: the agent's view of the
 * hosts and the evacuation plan's moves (the plan's own strings go with
 * its input).
 */
struct maint_admit {
	struct agent_admit view;
	Ferry__Cluster__AdmitMove *mv, **pmv;
	size_t n;
};

static void maint_admit_free(struct maint_admit *m)
{
	for (size_t i = 0; m->mv && i < m->n; i++) {
		free(m->mv[i].vm);
		free(m->mv[i].to);
	}
	free(m->mv);
	free(m->pmv);
}

static int maint_admit_moves(struct maint_admit *m, const struct cl_plan *plan)
{
	size_t n = plan->n_moves;

	m->mv = calloc(n + 1, sizeof(*m->mv));
	m->pmv = calloc(n + 1, sizeof(*m->pmv));
	if (!m->mv || !m->pmv)
		return -ENOMEM;
	for (; m->n < n; m->n++) {
		Ferry__Cluster__AdmitMove *mv = &m->mv[m->n];

		ferry__cluster__admit_move__init(mv);
		mv->vm = strdup(plan->moves[m->n].vm_name);
		mv->to = strdup(plan->moves[m->n].to);
		m->pmv[m->n] = mv;
		if (!mv->vm || !mv->to) {
			m->n++;
			return -ENOMEM;
		}
	}
	m->view.msg.moves = m->pmv;
	m->view.msg.n_moves = n;
	return 0;
}

/*
 * host into maintenance under HA admission control: refused when its
 * evacuation, as planned now, leaves a cluster that would not survive the
 * loss it survives now (vSphere's admission control blocks such an
 * evacuation part-way; we say so before the first move). The plan needs
 * the hosts' loads, which the state does not hold: made here, and carried
 * for the judgement where the command is applied (cl_state.c). True with
 * *admit what to carry (NULL: nothing judged), or false with r failed;
 * m, zeroed by the caller, is freed by the caller either way.
 */
static bool maintenance_admitted(struct agent *a, const char *what, const char *host,
				 struct maint_admit *m, Ferry__Cluster__Admit **admit, R *r)
{
	const Ferry__Cluster__Host *h = cl_state_host(a->st, host);
	struct cl_plan_input *in = NULL;
	struct cl_admit_room room;
	struct cl_plan plan;
	char msg[CL_ERR_LEN + 512] = "";
	int ret;

	*admit = NULL;
	if (!h || h->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE ||
	    !agent_admit_view(a, &m->view))
		return true;
	ret = agent_plan_input(a, &in, msg, sizeof(msg));
	if (!ret) {
		in->memo = NULL;   /* the main loop's */
		cl_admit_room_set(in, &room, agent_admit_up, a, REQ_ROOM_BUDGET_MS);
		ret = cl_plan_evacuate(in, host, &plan);
		if (!ret) {
			ret = maint_admit_moves(m, &plan);
			if (!ret)
				ret = cl_admit_maintenance(a->st, agent_admit_up, a, what, host,
							   m->pmv, plan.n_moves, msg,
							   sizeof(msg));
			cl_plan_free(&plan);
		}
		cl_plan_input_free(in);
	}
	if (!ret) {
		*admit = &m->view.msg;
		return true;
	}
	if (!*msg || ret == -ENOMEM)
		snprintf(msg, sizeof(msg), "%s: %s: HA admission control: %s", what, host,
			 strerror(-ret));
	fail(r, ret, msg);
	return false;
}

/*
 * host into mode, for both commands that say it (what: "host mode", "host
 * maintenance"): into maintenance judged by HA admission control first,
 * and the judgement carried for where the command is applied.
 */
static void host_mode_propose(struct agent *a, const char *what, const char *host,
			      Ferry__Cluster__HostMode mode, R *r)
{
	Ferry__Cluster__CmdHostMode c = FERRY__CLUSTER__CMD_HOST_MODE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	struct maint_admit m = { 0 };

	c.host = (char *)host;
	c.mode = mode;
	if (mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE ||
	    maintenance_admitted(a, what, host, &m, &c.admit, r)) {
		cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_MODE;
		cmd.host_mode = &c;
		propose(a, &cmd, r);
	}
	maint_admit_free(&m);
}

static void do_host_mode(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	host_mode_propose(a, "host mode", q->host_mode->host, q->host_mode->mode, r);
}

/*
 * Only a host that is down may go: one that is up would join again at
 * once. Membership is not part of the state, so this check is the
 * agent's, before it proposes; the state machine checks the rest.
 */
static void do_host_remove(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdHostRemove c = FERRY__CLUSTER__CMD_HOST_REMOVE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	const char *host = q->host_remove->name;
	char msg[CL_ERR_LEN];

	if (cl_state_host(a->st, host) && (!strcmp(host, a->name) || agent_online(a, host))) {
		snprintf(msg, sizeof(msg), "host remove: %s is online: stop its clusterd and "
			 "corosync first (and take it out of corosync.conf, or it joins again)",
			 host);
		fail(r, -EBUSY, msg);
		return;
	}
	c.host = (char *)host;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_REMOVE;
	cmd.host_remove = &c;
	propose(a, &cmd, r);
}

static void do_vm_set(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	Ferry__Cluster__CmdVmSet c = *q->vm_set;
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, c.name);
	struct agent_admit adm;

	if (vm && c.set_ha && c.ha && !vm->ha &&
	    vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
	    !admitted(a, "vm set", vm->name, vm->host, true, false, r))
		return;

	/* Whatever a client put there: only the agent speaks for its view. */
	c.admit = c.set_ha && c.ha ? agent_admit_view(a, &adm) : NULL;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_SET;
	cmd.vm_set = &c;
	propose(a, &cmd, r);
}

static void do_revoke(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdRevoke c = FERRY__CLUSTER__CMD_REVOKE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.serial = q->revoke->serial;
	c.name = q->revoke->name;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_REVOKE;
	cmd.revoke = &c;
	propose(a, &cmd, r);
}

/* A plan as clusterctl shows it. */
static Ferry__Cluster__PlanInfo *plan_info(struct agent *a, const struct cl_plan *p)
{
	Ferry__Cluster__PlanInfo *pi = CL_NEW(Ferry__Cluster__PlanInfo,
					      ferry__cluster__plan_info__init);

	if (!pi)
		return NULL;
	pi->mode = a->st->balance_mode;
	pi->leader = cl_strdup(agent_leader_name(a));
	pi->interval_s = a->plan_cfg.interval_s;
	pi->host = cl_strdup("");
	for (size_t i = 0; i < a->st->n_vms; i++)
		pi->in_flight += a->st->vms[i]->migration != NULL;
	if (!p)
		return pi;
	pi->imbalance_before = p->imbalance_before;
	pi->imbalance_after = p->imbalance_after;
	pi->eta_ms = p->eta_ms;
	pi->concurrency = p->concurrency;
	pi->moves = calloc(p->n_moves ? p->n_moves : 1, sizeof(*pi->moves));
	pi->stuck = calloc(p->n_stuck ? p->n_stuck : 1, sizeof(*pi->stuck));
	for (size_t i = 0; pi->moves && i < p->n_moves; i++) {
		const struct cl_plan_move *m = &p->moves[i];
		Ferry__Cluster__PlanMove *pm = CL_NEW(Ferry__Cluster__PlanMove,
						      ferry__cluster__plan_move__init);

		if (!pm)
			break;
		pm->vm = cl_strdup(m->vm_name);
		pm->from = cl_strdup(m->from);
		pm->to = cl_strdup(m->to);
		pm->total_ms = m->cost.total_ms;
		pm->downtime_ms = m->cost.downtime_ms;
		pm->bytes = m->cost.bytes;
		pm->imbalance_before = m->imbalance_before;
		pm->imbalance_after = m->imbalance_after;
		pm->cpu_over_pct = m->cpu_over_pct;
		pm->room_lost = m->room_lost;
		pi->moves[pi->n_moves++] = pm;
	}
	for (size_t i = 0; pi->stuck && i < p->n_stuck; i++) {
		Ferry__Cluster__PlanStuck *ps = CL_NEW(Ferry__Cluster__PlanStuck,
						       ferry__cluster__plan_stuck__init);

		if (!ps)
			break;
		ps->vm = cl_strdup(p->stuck[i].vm_name);
		ps->why = cl_strdup(cl_plan_why_name(p->stuck[i].why));
		ps->reason = cl_strdup(p->stuck[i].reason);
		pi->stuck[pi->n_stuck++] = ps;
	}
	return pi;
}

/* Run a planner on this node's copy of the state; fills r->plan. */
static int plan_run(struct agent *a, const char *evacuate_host, R *r, struct cl_plan *out)
{
	struct cl_plan_input *in = NULL;
	struct cl_admit_room room;
	char err[CL_ERR_LEN], msg[CL_ERR_LEN + 32];
	int ret = agent_plan_input(a, &in, err, sizeof(err));

	if (!ret) {
		/* The memo is the main loop's; a request thread plans without it. */
		in->memo = NULL;
		cl_admit_room_set(in, &room, agent_admit_up, a, REQ_ROOM_BUDGET_MS);
		ret = evacuate_host ? cl_plan_evacuate(in, evacuate_host, out)
				    : cl_plan_balance(in, out);
		if (!ret && !evacuate_host)
			agent_plan_admit(a, out);
		if (ret)
			snprintf(err, sizeof(err), "%s", strerror(-ret));
	}
	cl_plan_input_free(in);
	if (ret) {
		snprintf(msg, sizeof(msg), "plan: %s", err);
		fail(r, ret, msg);
		return ret;
	}
	r->plan = plan_info(a, out);
	return 0;
}

static void do_balance(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	const Ferry__Cluster__BalanceReq *b = q->balance;
	Ferry__Cluster__CmdBalanceMode c = FERRY__CLUSTER__CMD_BALANCE_MODE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	struct cl_plan plan;

	if (!strcmp(b->action, "mode")) {
		c.mode = b->mode;
		cmd.op_case = FERRY__CLUSTER__COMMAND__OP_BALANCE_MODE;
		cmd.balance_mode = &c;
		propose(a, &cmd, r);
		if (!r->error)
			r->plan = plan_info(a, NULL);
		return;
	}
	if (!strcmp(b->action, "status")) {
		r->plan = plan_info(a, NULL);
		return;
	}
	if (strcmp(b->action, "recommend") && strcmp(b->action, "apply")) {
		fail(r, -EINVAL, "balance: the action is status, recommend, apply or mode");
		return;
	}
	if (plan_run(a, NULL, r, &plan))
		return;
	if (!strcmp(b->action, "apply")) {
		/* Proposed one by one: each is judged against the state of its turn. */
		for (size_t i = 0; i < r->plan->n_moves; i++) {
			Ferry__Cluster__CmdMigBegin mb = FERRY__CLUSTER__CMD_MIG_BEGIN__INIT;
			R one = FERRY__CLUSTER__RESPONSE__INIT;
			struct agent_admit adm;

			mb.vm = r->plan->moves[i]->vm;
			mb.destination = r->plan->moves[i]->to;
			mb.reason = "operator's balance apply";
			mb.admit = agent_admit_view(a, &adm);
			cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN;
			cmd.mig_begin = &mb;
			propose(a, &cmd, &one);
			if (one.error && !r->error)
				fail(r, one.error, one.message);
			if (one.message != protobuf_c_empty_string)
				free(one.message);
		}
	}
	cl_plan_free(&plan);
}

static void do_rule_add(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdRuleAdd c = FERRY__CLUSTER__CMD_RULE_ADD__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.rule = q->rule_add;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_RULE_ADD;
	cmd.rule_add = &c;
	propose(a, &cmd, r);
}

static void do_rule_delete(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__CmdRuleDelete c = FERRY__CLUSTER__CMD_RULE_DELETE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.name = q->rule_delete->name;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_RULE_DELETE;
	cmd.rule_delete = &c;
	propose(a, &cmd, r);
}

static void do_maintenance(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	host_mode_propose(a, "host maintenance", q->maintenance->host,
			  q->maintenance->enter ? FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE :
			  FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE, r);
}

/*
 * A VM still on host whose last move from it failed: the evacuation tries
 * it again, and the operator following it sees why it has not left yet (a
 * destination that cannot reach the VM's storage, say). Best effort.
 */
static void plan_failed_add(Ferry__Cluster__PlanInfo *p, const Ferry__Cluster__Vm *vm,
			    const char *host)
{
	const Ferry__Cluster__MigrationResult *m = vm->last_migration;
	Ferry__Cluster__PlanFailed *f, **list;

	if (!m || m->ok || m->dry_run || strcmp(m->source, host))
		return;
	list = realloc(p->failed, (p->n_failed + 1) * sizeof(*list));
	if (!list)
		return;
	p->failed = list;
	f = CL_NEW(Ferry__Cluster__PlanFailed, ferry__cluster__plan_failed__init);
	if (!f)
		return;
	f->vm = cl_strdup(vm->name);
	f->to = cl_strdup(m->destination);
	f->error = cl_strdup(m->error);
	f->id = m->id;
	p->failed[p->n_failed++] = f;
}

/* How an evacuation stands: the VMs still there, the moves left, the
 * ones that cannot leave. */
static void do_evacuation(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	const char *host = q->evacuation->name;
	const Ferry__Cluster__Host *h = cl_state_host(a->st, host);
	struct cl_plan plan;
	char msg[CL_ERR_LEN];

	if (!h) {
		snprintf(msg, sizeof(msg), "evacuate: no such host %s", host);
		fail(r, -ENOENT, msg);
		return;
	}
	if (plan_run(a, host, r, &plan))
		return;
	cl_plan_free(&plan);
	cl_str_set(&r->plan->host, host);
	/* No agent there to migrate from: nothing leaves until it is back. */
	r->plan->host_down = !agent_online(a, host);
	r->plan->in_flight = 0;
	for (size_t i = 0; i < a->st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = a->st->vms[i];

		if (vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING)
			continue;
		/* The host is not empty while one is on its way in: its move is
		 * cancelled (clusterd_mig.c, dest_maintenance), or it lands and
		 * leaves again. */
		if (vm->migration && !vm->migration->dry_run &&
		    !strcmp(vm->migration->destination, host)) {
			r->plan->incoming++;
			continue;
		}
		if (strcmp(vm->host, host))
			continue;
		r->plan->remaining++;
		r->plan->in_flight += vm->migration != NULL;
		if (!vm->migration)
			plan_failed_add(r->plan, vm, host);
	}
	r->host = CL_DUP(Ferry__Cluster__Host, h);
}

static void do_config_set(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_CONFIG_SET;
	cmd.config_set = q->config_set;
	propose(a, &cmd, r);
	if (!r->error)
		r->state = CL_DUP(Ferry__Cluster__State, a->st);
}

/*
 * vm resume: its vmon paused it (a disk full or gone), or the operator did:
 * run it again. vm pause: the operator's pause (clusterd_resume.c).
 */
static void do_vm_resume(struct agent *a, const Ferry__Cluster__Request *q, R *r)
{
	bool pause = q->cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_PAUSE;
	const char *name = pause ? q->vm_pause->name : q->vm_resume->name,
		   *what = pause ? "vm pause" : "vm resume";
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, name);
	char msg[CL_ERR_LEN], full[CL_ERR_LEN + 64];
	int ret;

	if (!vm) {
		snprintf(msg, sizeof(msg), "%s: %s: no such VM", what, name);
		fail(r, -ENOENT, msg);
		return;
	}
	ret = agent_vm_resume(a, vm, pause, msg, sizeof(msg));
	snprintf(full, sizeof(full), "%s: %s: %s", what, vm->name, msg);
	if (ret)
		fail(r, ret, full);
	else
		cl_str_set(&r->message, full);
}

typedef void (*req_fn)(struct agent *, const Ferry__Cluster__Request *, R *);

static const req_fn req_ops[] = {
	[FERRY__CLUSTER__REQUEST__CMD_STATUS] = do_status,
	[FERRY__CLUSTER__REQUEST__CMD_HOST_LIST] = do_status,
	[FERRY__CLUSTER__REQUEST__CMD_HOST_SHOW] = do_host_show,
	[FERRY__CLUSTER__REQUEST__CMD_VM_LIST] = do_status,
	[FERRY__CLUSTER__REQUEST__CMD_VM_SHOW] = do_vm_show,
	[FERRY__CLUSTER__REQUEST__CMD_VM_CREATE] = do_vm_create,
	[FERRY__CLUSTER__REQUEST__CMD_VM_START] = do_vm_start,
	[FERRY__CLUSTER__REQUEST__CMD_VM_STOP] = do_vm_stop_delete,
	[FERRY__CLUSTER__REQUEST__CMD_VM_DELETE] = do_vm_stop_delete,
	[FERRY__CLUSTER__REQUEST__CMD_MIGRATE] = do_migrate,
	[FERRY__CLUSTER__REQUEST__CMD_MIGRATE_STATUS] = do_vm_show,
	[FERRY__CLUSTER__REQUEST__CMD_CPU_BASELINE] = do_cpu_baseline,
	[FERRY__CLUSTER__REQUEST__CMD_CPU_CHECK] = do_cpu_check,
	[FERRY__CLUSTER__REQUEST__CMD_HOST_MODE] = do_host_mode,
	[FERRY__CLUSTER__REQUEST__CMD_REVOKE] = do_revoke,
	[FERRY__CLUSTER__REQUEST__CMD_BALANCE] = do_balance,
	[FERRY__CLUSTER__REQUEST__CMD_RULE_ADD] = do_rule_add,
	[FERRY__CLUSTER__REQUEST__CMD_RULE_DELETE] = do_rule_delete,
	[FERRY__CLUSTER__REQUEST__CMD_RULE_LIST] = do_status,
	[FERRY__CLUSTER__REQUEST__CMD_EVENTS] = do_status,
	[FERRY__CLUSTER__REQUEST__CMD_MAINTENANCE] = do_maintenance,
	[FERRY__CLUSTER__REQUEST__CMD_EVACUATION] = do_evacuation,
	[FERRY__CLUSTER__REQUEST__CMD_CONFIG_SET] = do_config_set,
	[FERRY__CLUSTER__REQUEST__CMD_HOST_REMOVE] = do_host_remove,
	[FERRY__CLUSTER__REQUEST__CMD_VM_SET] = do_vm_set,
	[FERRY__CLUSTER__REQUEST__CMD_MIGRATE_SET] = do_migrate_set,
	[FERRY__CLUSTER__REQUEST__CMD_MIGRATE_CANCEL] = do_migrate_cancel,
	[FERRY__CLUSTER__REQUEST__CMD_VM_RESUME] = do_vm_resume,
	[FERRY__CLUSTER__REQUEST__CMD_VM_PAUSE] = do_vm_resume,
};

/*
 * The operator's changes to what the cluster keeps: refused while most
 * hosts cannot save the state (agent_unsaved_most). Starts, stops, moves,
 * maintenance, pauses, cancels and revocations go on: an operator freeing
 * a disk may need them, and a revocation protects at once.
 */
static const bool req_defines[] = {
	[FERRY__CLUSTER__REQUEST__CMD_VM_CREATE] = true,
	[FERRY__CLUSTER__REQUEST__CMD_VM_DELETE] = true,
	[FERRY__CLUSTER__REQUEST__CMD_VM_SET] = true,
	[FERRY__CLUSTER__REQUEST__CMD_CONFIG_SET] = true,
	[FERRY__CLUSTER__REQUEST__CMD_RULE_ADD] = true,
	[FERRY__CLUSTER__REQUEST__CMD_RULE_DELETE] = true,
	[FERRY__CLUSTER__REQUEST__CMD_HOST_REMOVE] = true,
};

Ferry__Cluster__Response *agent_handle(void *opaque, const Ferry__Cluster__Request *req,
				       const struct cl_peer *peer)
{
	struct agent *a = opaque;
	R *r = CL_NEW(R, ferry__cluster__response__init);
	unsigned op = req->cmd_case;
	char why[2 * CL_ERR_LEN];

	if (!r)
		return NULL;
	pthread_mutex_lock(&a->lock);
	if (op < sizeof(req_defines) / sizeof(req_defines[0]) && req_defines[op] &&
	    agent_unsaved_most(a, why, sizeof(why)))
		fail(r, -ENOSPC, why);
	else if (op < sizeof(req_ops) / sizeof(req_ops[0]) && req_ops[op])
		req_ops[op](a, req, r);
	else
		fail(r, -EINVAL, "unknown request");
	pthread_mutex_unlock(&a->lock);
	if (r->error)
		log_info("request from %s refused: %s", peer->name, r->message);
	return r;
}

bool agent_revoked(void *opaque, const char *serial)
{
	struct agent *a = opaque;
	bool revoked;

	pthread_mutex_lock(&a->lock);
	revoked = cl_state_revoked(a->st, serial);
	pthread_mutex_unlock(&a->lock);
	return revoked;
}
