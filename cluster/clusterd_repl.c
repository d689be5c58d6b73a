/*
 * clusterd: what corosync delivers. Every node runs the same code on the
 * same ordered messages, so every node reaches the same state; nothing in
 * here may depend on anything but the message, the state and the view.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"

void agent_wake(struct agent *a)
{
	uint64_t one = 1;

	if (write(a->wake_fd, &one, sizeof(one)) < 0)
		log_debug("wake: %m");
}

int agent_send(struct agent *a, const Ferry__Cluster__CpgMsg *m)
{
	size_t len = ferry__cluster__cpg_msg__get_packed_size(m);
	uint8_t *buf;
	int ret;

	if (!a->cpg)
		return -ENOTCONN;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	ferry__cluster__cpg_msg__pack(m, buf);
	ret = cl_cpg_send(a->cpg, buf, len);
	free(buf);
	return ret;
}

const char *agent_refusal(const struct agent *a, char *buf, size_t len)
{
	struct cl_quorum_info q = { 0 };

	if (!a->cpg) {
		snprintf(buf, len, "%s is not connected to corosync; the cluster refuses changes",
			 a->name);
		return buf;
	}
	if (!a->quorate) {
		cl_cpg_quorum(a->cpg, &q);
		snprintf(buf, len, "no quorum: %s sees %u of %u votes (%u needed); "
			 "the cluster refuses changes", a->name, q.votes, q.expected,
			 q.quorum);
		return buf;
	}
	if (!a->sync.synced) {
		snprintf(buf, len, "membership is changing: %s is catching up with the cluster",
			 a->name);
		return buf;
	}
	return NULL;
}

bool agent_online(const struct agent *a, const char *host)
{
	const Ferry__Cluster__Host *h = cl_state_host(a->st, host);

	if (!h || !a->cpg)
		return false;
	for (size_t i = 0; i < a->sync.n_members; i++)
		if (a->sync.members[i] == h->nodeid)
			return true;
	return false;
}

bool agent_node_up(const struct agent *a, const char *host)
{
	const Ferry__Cluster__Host *h = cl_state_host(a->st, host);

	if (!h || !a->cpg)
		return false;
	for (size_t i = 0; i < a->n_nodes; i++)
		if (a->nodes[i] == h->nodeid)
			return true;
	return false;
}

/*
 * More than half of the online hosts cannot save the state (this one by
 * its own last try, the others by their last HostLoad): a change applied
 * now might be on no disk at all, and a whole-cluster restart would lose
 * it though clusterctl said it was done. Names them in buf.
 */
const char *agent_unsaved_most(const struct agent *a, char *buf, size_t len)
{
	size_t online = 0, unsaved = 0, off;
	char names[CL_ERR_LEN] = "";

	for (size_t i = 0; i < a->st->n_hosts; i++) {
		const char *host = a->st->hosts[i]->name, *why = NULL;

		if (!agent_online(a, host))
			continue;
		online++;
		if (!strcmp(host, a->name)) {
			why = a->unsaved;
		} else {
			for (size_t j = 0; j < a->n_loads; j++)
				if (!strcmp(a->loads[j]->host, host))
					why = a->loads[j]->state_unsaved;
		}
		if (!why || !*why)
			continue;
		off = strlen(names);
		snprintf(names + off, sizeof(names) - off, "%s%s (%s)", unsaved ? "; " : "", host,
			 why);
		unsaved++;
	}
	if (!cl_state_unsaved_refuses(unsaved, online))
		return NULL;
	snprintf(buf, len, "refused: the cluster state cannot be saved on %zu of the %zu online hosts: "
		 "%s; were the whole cluster to restart, this change would be lost: free their "
		 "disks (clusterctl status), then try again", unsaved, online, names);
	return buf;
}

int agent_publish_revoked(struct agent *a, char *err, size_t err_len)
{
	char path[PATH_MAX + 16];
	struct stat sb;

	/* No TLS directory (--port 0 and no node certificate): no vmon needs it. */
	if (stat(a->tls_dir, &sb) || !S_ISDIR(sb.st_mode))
		return 0;
	snprintf(path, sizeof(path), "%s/revoked", a->tls_dir);
	return cl_state_write_revoked(a->st, path, err, err_len);
}

void agent_unsaved(struct agent *a, const char *why)
{
	if (!*a->unsaved)
		a->unsaved_unix_ms = realtime_ns() / 1000000;
	snprintf(a->unsaved, sizeof(a->unsaved), "%s", why);
}

/*
 * A failed save (a full disk) keeps the state in memory and the file as it
 * was (written whole or not at all). The node goes on: the others hold the
 * state too, and a restarted node takes the newest from them. But the
 * operator must hear of it before every node's disk fills: one error in
 * the log, the reason in this host's HostLoad (clusterctl status warns),
 * and a new try at every change and every load tick. The revocation list
 * counts as part of the state here: until it is written, this node's vmons
 * still accept a certificate the cluster revoked.
 */
void agent_persist(struct agent *a)
{
	char err[CL_ERR_LEN], rerr[CL_ERR_LEN];
	int save_rc = cl_state_save(a->state_path, a->st, err, sizeof(err));
	int list_rc = agent_publish_revoked(a, rerr, sizeof(rerr));

	if (!save_rc && list_rc)
		snprintf(err, sizeof(err), "%s", rerr);
	if (save_rc || list_rc) {
		if (!*a->unsaved)
			log_err("%s: the state (seq %llu) stays in memory and on the other nodes; "
				"clusterd tries again at every change and every %d ms",
				err, (unsigned long long)a->st->seq, CL_LOAD_PERIOD_MS);
		agent_unsaved(a, err);
	} else if (*a->unsaved) {
		log_info("state %s saved again (seq %llu), after %llu ms of failures: %s",
			 a->state_path, (unsigned long long)a->st->seq,
			 (unsigned long long)(realtime_ns() / 1000000 - a->unsaved_unix_ms),
			 a->unsaved);
		*a->unsaved = '\0';
		a->unsaved_unix_ms = 0;
	}
}

static int proposal_send(struct agent *a, const Ferry__Cluster__Command *cmd, uint64_t req_id)
{
	Ferry__Cluster__Proposal p = FERRY__CLUSTER__PROPOSAL__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;
	Ferry__Cluster__Command stamped = *cmd;

	/* The proposer's clock, so that every node records the same time. */
	stamped.unix_ms = realtime_ns() / 1000000;
	p.origin = a->nodeid;
	p.req_id = req_id;
	p.cmd = &stamped;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_PROPOSAL;
	m.proposal = &p;
	return agent_send(a, &m);
}

int agent_propose_async(struct agent *a, const Ferry__Cluster__Command *cmd)
{
	char why[CL_ERR_LEN];

	if (agent_refusal(a, why, sizeof(why)))
		return -EAGAIN;
	return proposal_send(a, cmd, 0);
}

static void cond_wait_ms(struct agent *a, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&a->cond, &a->lock, &ts);
}

void pending_del(struct agent *a, struct pending *p)
{
	for (struct pending **pp = &a->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

void pending_add(struct agent *a, struct pending *p)
{
	p->req_id = ++a->next_req;
	p->done = false;
	p->next = a->pending;
	a->pending = p;
}

bool pending_wait(struct agent *a, struct pending *p, uint64_t deadline_ns)
{
	while (!p->done && now_ns() < deadline_ns)
		cond_wait_ms(a, 200);
	pending_del(a, p);
	return p->done;
}

void pending_done(struct agent *a, uint64_t req_id, int ret, const char *msg)
{
	for (struct pending *q = a->pending; q; q = q->next)
		if (q->req_id == req_id) {
			q->ret = ret;
			snprintf(q->msg, sizeof(q->msg), "%s", msg);
			q->done = true;
			pthread_cond_broadcast(&a->cond);
		}
}

int agent_propose(struct agent *a, const Ferry__Cluster__Command *cmd, char *err,
		  size_t err_len)
{
	uint64_t deadline = now_ns() + CL_PROPOSE_TIMEOUT_MS * 1000000ull;
	struct pending p = { 0 };
	char why[CL_ERR_LEN];
	int ret;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		const char *r = agent_refusal(a, why, sizeof(why));

		if (r) {
			/* A view being synced is a matter of milliseconds: wait. */
			bool passing = a->cpg && a->quorate && now_ns() < deadline;

			if (!passing) {
				snprintf(err, err_len, "%s", r);
				ret = -EAGAIN;
				goto out;
			}
			cond_wait_ms(a, 20);
			continue;
		}
		pending_add(a, &p);
		ret = proposal_send(a, cmd, p.req_id);
		if (ret) {
			pending_del(a, &p);
			snprintf(err, err_len, "corosync: send: %s", strerror(-ret));
			goto out;
		}
		if (!pending_wait(a, &p, deadline)) {
			ret = -ETIMEDOUT;
			snprintf(err, err_len, "the cluster did not decide within %d s "
				 "(corosync stalled?)", CL_PROPOSE_TIMEOUT_MS / 1000);
			goto out;
		}
		/* Refused because the view changed under it: propose again. */
		if (p.ret != -EAGAIN)
			break;
	}
	ret = p.ret;
	if (ret)
		snprintf(err, err_len, "%s", p.msg);
out:
	pthread_mutex_unlock(&a->lock);
	return ret;
}

static void decided(struct agent *a, const Ferry__Cluster__Proposal *p, int ret,
		    const char *msg)
{
	if (p->origin == a->nodeid && p->req_id)
		pending_done(a, p->req_id, ret, msg);
}

static void on_proposal(struct agent *a, const Ferry__Cluster__Proposal *p)
{
	char err[CL_ERR_LEN] = "";
	int ret;

	if (!p->cmd)
		return;
	if (!a->sync.synced) {
		decided(a, p, -EAGAIN, "membership is changing");
		return;
	}
	ret = cl_state_apply(a->st, p->cmd, err, sizeof(err));
	if (!ret && p->cmd->op_case == FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN) {
		struct local_vm *lv = agent_local(a, p->cmd->mig_begin->vm, false);

		if (lv)
			lv->mig_began_ns = now_ns();
	}
	if (ret) {
		log_info("refused: %s", err);
		decided(a, p, ret, err);
		return;
	}
	/*
	 * Persist before acting, so no node acts on a change it could forget.
	 * A migration's begin and ready are the exceptions: what they set off
	 * (a destination vmon that listens, a stream that starts) changes
	 * nothing a restart could trip over, since only the end moves the VM,
	 * and the migration should not wait two fsyncs to start.
	 */
	bool early = p->cmd->op_case == FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN ||
		     p->cmd->op_case == FERRY__CLUSTER__COMMAND__OP_MIG_READY;

	if (!early)
		agent_persist(a);
	decided(a, p, ret, err);
	agent_reconcile(a);
	if (early)
		agent_persist(a);
}

static void sync_done(struct agent *a)
{
	log_info("synced with %zu member(s) at seq %llu", a->sync.n_members,
		 (unsigned long long)a->st->seq);
	pthread_cond_broadcast(&a->cond);
	agent_reconcile(a);
}

static void send_state(struct agent *a)
{
	Ferry__Cluster__SyncState s = FERRY__CLUSTER__SYNC_STATE__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;

	s.nodeid = a->nodeid;
	s.state = a->st;
	s.members = a->sync.members;
	s.n_members = a->sync.n_members;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_STATE;
	m.state = &s;
	if (agent_send(a, &m))
		log_err("sync: could not send the state");
}

static void on_state(struct agent *a, const Ferry__Cluster__SyncState *s)
{
	if (!s->state || !cl_sync_state(&a->sync, s))
		return;
	if (s->state->seq > a->st->seq) {
		Ferry__Cluster__State *copy = CL_DUP(Ferry__Cluster__State, s->state);

		if (copy) {
			log_info("sync: took the state at seq %llu from node %u (had %llu)",
				 (unsigned long long)copy->seq, s->nodeid,
				 (unsigned long long)a->st->seq);
			CL_FREE(a->st);
			a->st = copy;
			agent_persist(a);
		}
	}
	sync_done(a);
}

static void keep_live(Ferry__Cluster__MigProgress ***arr, size_t *n, const char *key,
		      const ProtobufCMessage *m, size_t key_off)
{
	ProtobufCMessage *copy = cl_msg_dup(m);
	void **v = (void **)*arr;

	if (!copy)
		return;
	for (size_t i = 0; i < *n; i++) {
		const char *k = *(const char **)((const char *)v[i] + key_off);

		if (!strcmp(k, key)) {
			cl_msg_free(v[i]);
			v[i] = copy;
			return;
		}
	}
	v = realloc(v, (*n + 1) * sizeof(*v));
	if (!v) {
		cl_msg_free(copy);
		return;
	}
	v[(*n)++] = copy;
	*arr = (Ferry__Cluster__MigProgress **)v;
}

static void on_deliver(void *opaque, uint32_t nodeid, const void *msg, size_t len)
{
	struct agent *a = opaque;
	Ferry__Cluster__CpgMsg *m = ferry__cluster__cpg_msg__unpack(NULL, len, msg);

	if (!m) {
		log_warn("corosync: undecodable message from node %u ignored", nodeid);
		return;
	}
	switch (m->m_case) {
	case FERRY__CLUSTER__CPG_MSG__M_HELLO:
		switch (cl_sync_hello(&a->sync, a->nodeid, m->hello)) {
		case CL_SYNC_DONE:
			sync_done(a);
			break;
		case CL_SYNC_SEND_STATE:
			send_state(a);
			break;
		case CL_SYNC_WAIT:
			break;
		}
		break;
	case FERRY__CLUSTER__CPG_MSG__M_STATE:
		on_state(a, m->state);
		break;
	case FERRY__CLUSTER__CPG_MSG__M_PROPOSAL:
		on_proposal(a, m->proposal);
		break;
	case FERRY__CLUSTER__CPG_MSG__M_PROGRESS:
		keep_live(&a->progress, &a->n_progress, m->progress->vm, &m->progress->base,
			  offsetof(Ferry__Cluster__MigProgress, vm));
		break;
	case FERRY__CLUSTER__CPG_MSG__M_SOURCE_GONE:
		agent_mig_source_gone(a, m->source_gone);
		break;
	case FERRY__CLUSTER__CPG_MSG__M_VM_RESUME:
		agent_on_vm_resume(a, m->vm_resume);
		break;
	case FERRY__CLUSTER__CPG_MSG__M_VM_RESUME_REPLY:
		agent_on_vm_resume_reply(a, m->vm_resume_reply);
		break;
	case FERRY__CLUSTER__CPG_MSG__M_LOAD:
		keep_live((Ferry__Cluster__MigProgress ***)&a->loads, &a->n_loads,
			  m->load->host, &m->load->base, offsetof(Ferry__Cluster__HostLoad, host));
		break;
	default:
		break;
	}
	ferry__cluster__cpg_msg__free_unpacked(m, NULL);
}

static void on_view(void *opaque, const uint32_t *members, size_t n)
{
	struct agent *a = opaque;
	Ferry__Cluster__SyncHello h = FERRY__CLUSTER__SYNC_HELLO__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;

	cl_sync_view(&a->sync, members, n);
	log_info("membership: %zu member(s)", n);
	for (size_t i = 0; i < n; i++)
		log_debug("  member node %u", members[i]);
	/* Proposals in flight were sent in the old view: they come back refused. */
	h.nodeid = a->nodeid;
	h.seq = a->st->seq;
	h.members = a->sync.members;
	h.n_members = a->sync.n_members;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_HELLO;
	m.hello = &h;
	if (agent_send(a, &m))
		log_err("sync: could not send the hello");
	a->joined_seq = 0;
}

static void on_quorum(void *opaque, bool quorate, const uint32_t *nodes, size_t n)
{
	struct agent *a = opaque;

	if (n > CL_MAX_NODES)
		n = CL_MAX_NODES;
	if (n != a->n_nodes || memcmp(a->nodes, nodes, n * sizeof(*nodes))) {
		char list[CL_MAX_NODES * 11 + 1] = "";
		size_t used = 0;

		for (size_t i = 0; i < n && used < sizeof(list); i++)
			used += (size_t)snprintf(list + used, sizeof(list) - used, " %u", nodes[i]);
		log_info("corosync members:%s", n ? list : " none");
	}
	memcpy(a->nodes, nodes, n * sizeof(*nodes));
	a->n_nodes = n;

	if (quorate != a->quorate)
		log_info("quorum %s", quorate ? "gained" : "lost: refusing changes");
	a->quorate = quorate;
	pthread_cond_broadcast(&a->cond);
}

const struct cl_cpg_ops agent_cpg_ops = {
	.deliver = on_deliver,
	.view = on_view,
	.quorum = on_quorum,
};
