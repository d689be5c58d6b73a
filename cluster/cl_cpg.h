/*
 * corosync for clusterd: CPG (process group "ferry": totally ordered,
 * virtually synchronous messages and membership) and votequorum (whether
 * this partition may change anything). Only clusterd links corosync.
 */
#ifndef FERRY_CL_CPG_H
#define FERRY_CL_CPG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cl_cpg_ops {
	void (*deliver)(void *opaque, uint32_t nodeid, const void *msg, size_t len);
	/* The group's members now (node ids; one agent per node). */
	void (*view)(void *opaque, const uint32_t *members, size_t n);
	/* Whether this partition is quorate, and corosync's members (node ids,
	 * agent or not): on every change of either. */
	void (*quorum)(void *opaque, bool quorate, const uint32_t *nodes, size_t n);
};

struct cl_quorum_info {
	bool quorate;
	uint32_t votes, expected, quorum;
};

struct cl_cpg;

/* Connect to the local corosync and join the group. -ENOTCONN: corosync
 * is not running (in this network namespace). */
int cl_cpg_open(struct cl_cpg **out, const struct cl_cpg_ops *ops, void *opaque,
		char *err, size_t err_len);
/* The fds to poll: [0] CPG, [1] votequorum. */
void cl_cpg_fds(const struct cl_cpg *c, int fds[2]);
/* Dispatch what is pending on fds[which]; -ENOTCONN when corosync went away. */
int cl_cpg_dispatch(struct cl_cpg *c, int which);
/* Multicast to the group in total order (CPG_TYPE_AGREED). */
int cl_cpg_send(struct cl_cpg *c, const void *buf, size_t len);
uint32_t cl_cpg_nodeid(const struct cl_cpg *c);
int cl_cpg_quorum(struct cl_cpg *c, struct cl_quorum_info *q);
void cl_cpg_close(struct cl_cpg *c);

#endif
