/*
 * clusterctl vm resume: a VM whose vmon paused it on its own (a disk full
 * or gone, docs/storage.md) runs again once the storage has room or is
 * back; one the operator paused (vm pause) runs again. clusterctl vm
 * pause: the operator's pause, which holds through migrations until vm
 * resume. Only the agent of the VM's host reaches that vmon: another
 * agent asks it over CPG (VmResume, pause set for a pause) and waits for
 * its answer (VmResumeReply), as a proposal waits for its decision.
 * Nothing of the replicated state changes, so this needs no quorum beyond
 * the two agents hearing each other.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"

#define CL_RESUME_TIMEOUT_MS 10000

/* Resume (or pause) the vmon here; the outcome as text in msg. */
static int act_here(struct agent *a, const char *name, bool pause, char *msg, size_t len)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	struct local_vm *lv = agent_local(a, name, false);
	char err[CL_ERR_LEN];
	int ret;

	if (!lv) {
		snprintf(msg, len, "%s runs no vmon of %s", a->name, name);
		return -ENOENT;
	}
	if (pause) {
		req.cmd_case = FERRY__CTL__REQUEST__CMD_PAUSE;
		req.pause = &empty;
	} else {
		req.cmd_case = FERRY__CTL__REQUEST__CMD_RESUME;
		req.resume = &empty;
	}
	ret = cl_vmon_call(lv->v, &req, CL_STATS_TIMEOUT_MS, &resp, err, sizeof(err));
	if (ret) {
		snprintf(msg, len, "its vmon on %s: %s", a->name, err);
		return ret;
	}
	ret = resp->error;
	if (ret)
		snprintf(msg, len, "its vmon on %s could not %s it: %s", a->name,
			 pause ? "pause" : "resume",
			 resp->message && *resp->message ? resp->message : strerror(-ret));
	else if (pause)
		snprintf(msg, len, "its vmon on %s paused it; it stays paused, migrations and "
			 "evacuations included, until vm resume", a->name);
	else
		snprintf(msg, len, "its vmon on %s resumed it; a request that still fails "
			 "(no room, storage still gone) pauses it again, and vm show says why",
			 a->name);
	ferry__ctl__response__free_unpacked(resp, NULL);
	log_info("%s: vm %s asked: %s", name, pause ? "pause" : "resume", msg);
	return ret;
}

int agent_vm_resume(struct agent *a, const Ferry__Cluster__Vm *vm, bool pause, char *msg,
		    size_t len)
{
	Ferry__Cluster__VmResume q = FERRY__CLUSTER__VM_RESUME__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;
	uint64_t deadline = now_ns() + CL_RESUME_TIMEOUT_MS * 1000000ull;
	struct pending p = { 0 };
	int ret;

	if (vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING || !*vm->host) {
		snprintf(msg, len, "%s is not running: vm start starts it", vm->name);
		return -EINVAL;
	}
	if (vm->migration) {
		snprintf(msg, len, "%s is migrating to %s: ask again once it has landed",
			 vm->name, vm->migration->destination);
		return -EBUSY;
	}
	if (!strcmp(vm->host, a->name))
		return act_here(a, vm->name, pause, msg, len);
	if (!agent_online(a, vm->host)) {
		snprintf(msg, len, "%s runs on %s, which is down", vm->name, vm->host);
		return -EHOSTDOWN;
	}
	/* An older agent would not see the flag, and resume it. */
	if (pause && agent_proto_of(a, vm->host) < CL_PROTO_10) {
		snprintf(msg, len, "the agent of %s predates vm pause; upgrade it first", vm->host);
		return -EPROTO;
	}
	pending_add(a, &p);
	q.vm = vm->name;
	q.host = vm->host;
	q.origin = a->nodeid;
	q.req_id = p.req_id;
	q.pause = pause;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_VM_RESUME;
	m.vm_resume = &q;
	ret = agent_send(a, &m);
	if (ret) {
		pending_del(a, &p);
		snprintf(msg, len, "corosync: send: %s", strerror(-ret));
		return ret;
	}
	if (!pending_wait(a, &p, deadline)) {
		snprintf(msg, len, "%s's agent did not answer within %d s", vm->host,
			 CL_RESUME_TIMEOUT_MS / 1000);
		return -ETIMEDOUT;
	}
	snprintf(msg, len, "%s", p.msg);
	return p.ret;
}

void agent_on_vm_resume(struct agent *a, const Ferry__Cluster__VmResume *q)
{
	Ferry__Cluster__VmResumeReply r = FERRY__CLUSTER__VM_RESUME_REPLY__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;
	char msg[CL_ERR_LEN];

	if (strcmp(q->host, a->name))
		return;
	r.error = act_here(a, q->vm, q->pause, msg, sizeof(msg));
	r.message = msg;
	r.origin = q->origin;
	r.req_id = q->req_id;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_VM_RESUME_REPLY;
	m.vm_resume_reply = &r;
	if (agent_send(a, &m))
		log_err("%s: vm %s: could not answer node %u", q->vm, q->pause ? "pause" : "resume",
			q->origin);
}

void agent_on_vm_resume_reply(struct agent *a, const Ferry__Cluster__VmResumeReply *r)
{
	if (r->origin == a->nodeid)
		pending_done(a, r->req_id, r->error, r->message);
}
