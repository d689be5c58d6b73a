/*
 * State transfer after a membership change (docs/cluster.md, "Joining").
 *
 * Every member multicasts a SyncHello with its seq once it sees a new
 * view. CPG delivers them to all members in the same order, so once the
 * hellos of every member of the view are in, all members reach the same
 * verdict without another round: the newest state wins (highest seq,
 * lowest node id on a tie). If every member already has it, the view is
 * synced at once; otherwise that member (the donor) multicasts its state
 * and the view is synced where that message is delivered. Commands
 * delivered while a view is not synced are refused by every member alike.
 * A hello or state sent in an earlier view carries that view's member list
 * and is ignored.
 */
#ifndef FERRY_CL_SYNC_H
#define FERRY_CL_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.pb-c.h"

#define CL_MAX_NODES 64

struct cl_sync {
	uint32_t members[CL_MAX_NODES];  /* sorted */
	size_t n_members;
	bool have[CL_MAX_NODES];         /* hello received, by members[] index */
	uint64_t seq[CL_MAX_NODES];
	bool synced;
	uint32_t donor;
};

enum cl_sync_verdict {
	CL_SYNC_WAIT,        /* more hellos to come, or the donor's state */
	CL_SYNC_DONE,        /* every member has the newest state */
	CL_SYNC_SEND_STATE,  /* this node is the donor: multicast the state */
};

/* A new view: members in any order (at most CL_MAX_NODES). */
void cl_sync_view(struct cl_sync *s, const uint32_t *members, size_t n);
/* A hello was delivered. me: this node. */
enum cl_sync_verdict cl_sync_hello(struct cl_sync *s, uint32_t me,
				   const Ferry__Cluster__SyncHello *h);
/* A state was delivered: true when it belongs to this view's sync (install
 * it if its seq is newer, and the view is synced). */
bool cl_sync_state(struct cl_sync *s, const Ferry__Cluster__SyncState *m);
/* Whether a member list (as carried in messages) is this view's. */
bool cl_sync_same_view(const struct cl_sync *s, const uint32_t *members, size_t n);

#endif
