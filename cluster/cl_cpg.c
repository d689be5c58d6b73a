/* corosync CPG and votequorum for clusterd: see cl_cpg.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <corosync/cpg.h>
#include <corosync/votequorum.h>

#include "cl_cpg.h"
#include "cl_sync.h"

#define CL_CPG_GROUP "ferry"
#define SEND_RETRY_MS 2000

struct cl_cpg {
	cpg_handle_t cpg;
	votequorum_handle_t vq;
	uint32_t nodeid;
	const struct cl_cpg_ops *ops;
	void *opaque;
};

static struct cl_cpg *cpg_self(cpg_handle_t h)
{
	void *ctx = NULL;

	cpg_context_get(h, &ctx);
	return ctx;
}

static void cpg_deliver(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid,
			uint32_t pid, void *msg, size_t len)
{
	struct cl_cpg *c = cpg_self(h);

	c->ops->deliver(c->opaque, nodeid, msg, len);
}

static void cpg_confchg(cpg_handle_t h, const struct cpg_name *group,
			const struct cpg_address *members, size_t n_members,
			const struct cpg_address *left, size_t n_left,
			const struct cpg_address *joined, size_t n_joined)
{
	struct cl_cpg *c = cpg_self(h);
	uint32_t ids[CL_MAX_NODES];
	size_t n = 0;

	/* A restarted agent can briefly share the view with its dead self. */
	for (size_t i = 0; i < n_members && n < CL_MAX_NODES; i++) {
		bool dup = false;

		for (size_t k = 0; k < n; k++)
			dup |= ids[k] == members[i].nodeid;
		if (!dup)
			ids[n++] = members[i].nodeid;
	}
	c->ops->view(c->opaque, ids, n);
}

static void vq_notify(votequorum_handle_t h, uint64_t context, uint32_t quorate,
		      uint32_t n, votequorum_node_t nodes[])
{
	struct cl_cpg *c = (struct cl_cpg *)(uintptr_t)context;
	uint32_t ids[CL_MAX_NODES];
	size_t k = 0;

	for (uint32_t i = 0; i < n && k < CL_MAX_NODES; i++)
		if (nodes[i].state == VOTEQUORUM_NODESTATE_MEMBER)
			ids[k++] = nodes[i].nodeid;
	c->ops->quorum(c->opaque, quorate, ids, k);
}

static cpg_model_v1_data_t cpg_model = {
	.model = CPG_MODEL_V1,
	.cpg_deliver_fn = cpg_deliver,
	.cpg_confchg_fn = cpg_confchg,
};

static votequorum_callbacks_t vq_callbacks = {
	.votequorum_quorum_notify_fn = vq_notify,
};

int cl_cpg_open(struct cl_cpg **out, const struct cl_cpg_ops *ops, void *opaque,
		char *err, size_t err_len)
{
	struct cl_cpg *c = calloc(1, sizeof(*c));
	struct cpg_name group;
	cs_error_t e;
	unsigned int nodeid;

	if (!c)
		return -ENOMEM;
	c->ops = ops;
	c->opaque = opaque;
	e = cpg_model_initialize(&c->cpg, CPG_MODEL_V1, (cpg_model_data_t *)&cpg_model, c);
	if (e != CS_OK) {
		snprintf(err, err_len, "corosync: cpg_initialize: error %d (is corosync "
			 "running in this network namespace?)", e);
		free(c);
		return -ENOTCONN;
	}
	e = votequorum_initialize(&c->vq, &vq_callbacks);
	if (e != CS_OK) {
		snprintf(err, err_len, "corosync: votequorum_initialize: error %d", e);
		goto fail_cpg;
	}
	e = votequorum_trackstart(c->vq, (uint64_t)(uintptr_t)c, CS_TRACK_CURRENT | CS_TRACK_CHANGES);
	if (e != CS_OK) {
		snprintf(err, err_len, "corosync: votequorum_trackstart: error %d", e);
		goto fail_vq;
	}
	e = cpg_local_get(c->cpg, &nodeid);
	if (e != CS_OK) {
		snprintf(err, err_len, "corosync: cpg_local_get: error %d", e);
		goto fail_vq;
	}
	c->nodeid = nodeid;
	snprintf(group.value, sizeof(group.value), "%s", CL_CPG_GROUP);
	group.length = strlen(group.value);
	e = cpg_join(c->cpg, &group);
	if (e != CS_OK) {
		snprintf(err, err_len, "corosync: cpg_join %s: error %d", CL_CPG_GROUP, e);
		goto fail_vq;
	}
	*out = c;
	return 0;
fail_vq:
	votequorum_finalize(c->vq);
fail_cpg:
	cpg_finalize(c->cpg);
	free(c);
	return -ENOTCONN;
}

void cl_cpg_fds(const struct cl_cpg *c, int fds[2])
{
	fds[0] = fds[1] = -1;
	cpg_fd_get(c->cpg, &fds[0]);
	votequorum_fd_get(c->vq, &fds[1]);
}

int cl_cpg_dispatch(struct cl_cpg *c, int which)
{
	cs_error_t e = which ? votequorum_dispatch(c->vq, CS_DISPATCH_ALL)
			     : cpg_dispatch(c->cpg, CS_DISPATCH_ALL);

	return e == CS_OK || e == CS_ERR_TRY_AGAIN ? 0 : -ENOTCONN;
}

int cl_cpg_send(struct cl_cpg *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct timespec pause = { 0, 1000000 };

	/* TRY_AGAIN is corosync's flow control: it clears within milliseconds. */
	for (int i = 0; i < SEND_RETRY_MS; i++) {
		cs_error_t e = cpg_mcast_joined(c->cpg, CPG_TYPE_AGREED, &iov, 1);

		if (e == CS_OK)
			return 0;
		if (e != CS_ERR_TRY_AGAIN)
			return -ENOTCONN;
		nanosleep(&pause, NULL);
	}
	return -EAGAIN;
}

uint32_t cl_cpg_nodeid(const struct cl_cpg *c)
{
	return c->nodeid;
}

int cl_cpg_quorum(struct cl_cpg *c, struct cl_quorum_info *q)
{
	struct votequorum_info info;

	if (votequorum_getinfo(c->vq, 0, &info) != CS_OK)
		return -ENOTCONN;
	q->quorate = info.flags & VOTEQUORUM_INFO_QUORATE;
	q->votes = info.total_votes;
	q->expected = info.highest_expected;
	q->quorum = info.quorum;
	return 0;
}

void cl_cpg_close(struct cl_cpg *c)
{
	if (!c)
		return;
	votequorum_finalize(c->vq);
	cpg_finalize(c->cpg);
	free(c);
}
