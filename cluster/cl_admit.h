/*
 * HA admission control (docs/cluster.md, "HA admission control"): with the
 * setting ha-host-failures K, an operator's change is refused when, were
 * any K of the online hosts lost after it, the HA VMs running on them could
 * not all restart on the hosts left. As vSphere HA's "host failures cluster
 * tolerates": room for restarts is kept when VMs start, not looked for when
 * a host has already died. By memory, the one resource a restart cannot
 * overcommit; CPU is shared, and CPU models and rules are the restart's
 * own to judge.
 */
#ifndef FERRY_CL_ADMIT_H
#define FERRY_CL_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.pb-c.h"

#define CL_ADMIT_MAX_FAILURES 4   /* the setting's range: 1..this */

/*
 * The change judged: vm runs on host after it (host NULL: not at all), HA
 * ha; with mem, vm is a new VM of that much memory, not in the state; or,
 * with maintenance, host goes into maintenance and takes no restarts (vm
 * unused).
 */
struct cl_admit_change {
	const char *vm;
	const char *host;
	bool ha;
	bool maintenance;
	uint64_t mem;
};

/* Whether host's node is in the cluster now (the agent's view). */
typedef bool (*cl_admit_up_fn)(const void *opaque, const char *host);

/*
 * Would the state after the n changes (in order; a later one of the same
 * VM wins) tolerate losing any k online hosts? 0, or -ENOSPC with why:
 * the hosts lost, the HA VM that finds no room, and the room there is.
 * Hosts that are down now count as lost already, their VMs as restarting
 * elsewhere.
 */
int cl_admit_ha(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
		const void *opaque, const struct cl_admit_change *changes, size_t n,
		char *why, size_t len);

/* Up unless named in admit's down (opaque: a Ferry__Cluster__Admit). */
bool cl_admit_up_unless_down(const void *admit, const char *host);

/*
 * The change of one request judged under st's ha-host-failures (what: "vm
 * start", "migrate", "vm set"): vm to run on host, HA ha. A move (move)
 * takes no memory from the cluster: it is refused only when it breaks
 * what holds now, so that one that helps or changes nothing goes on after
 * a host was lost. 0, or -ENOSPC (-ENOMEM) with the refusal, as the
 * operator reads it, in err.
 */
int cl_admit_judge(const Ferry__Cluster__State *st, cl_admit_up_fn up, const void *opaque,
		   const char *what, const char *vm, const char *host, bool ha, bool move,
		   char *err, size_t len);

/* The most host losses (0..CL_ADMIT_MAX_FAILURES) the HA VMs survive now. */
unsigned cl_admit_tolerates(const Ferry__Cluster__State *st, cl_admit_up_fn up,
			    const void *opaque);

/*
 * The largest new plain VM host could run, by memory, while the cluster
 * survives k losses (whole MiB, in bytes): 0 where none, or where host is
 * down or in maintenance.
 */
uint64_t cl_admit_room(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
		       const void *opaque, const char *host);

/*
 * host into maintenance (what: "host maintenance", "host mode"), its VMs
 * moved as the evacuation plan said when the proposer judged it (moves;
 * those stuck stay): refused because it breaks what holds now? A move of
 * a VM no longer running on host is left out: the state counts it where
 * it is. 0; -ENOSPC with the refusal, as the operator reads it, in err;
 * -ESTALE when a move's target has gone into maintenance or left since
 * (the plan no longer says where the VMs would go); -ENOMEM.
 */
int cl_admit_maintenance(const Ferry__Cluster__State *st, cl_admit_up_fn up,
			 const void *opaque, const char *what, const char *host,
			 Ferry__Cluster__AdmitMove *const *moves, size_t n, char *err,
			 size_t len);

struct cl_plan;
struct cl_plan_input;
/*
 * An evacuation that keeps HA's room where it can (cl_plan_room): k lost
 * hosts in up's view (opaque its argument). cl_admit_room_set fills room
 * with in->st's ha-host-failures and points in->room at it, with
 * budget_ms (0: none) for each plan's judgements, or leaves in->room
 * empty when the setting is off. room must outlive the plans.
 */
struct cl_admit_room {
	unsigned k;
	cl_admit_up_fn up;
	const void *opaque;
};
void cl_admit_room_set(struct cl_plan_input *in, struct cl_admit_room *room, cl_admit_up_fn up,
		       const void *opaque, unsigned budget_ms);
/*
 * The balancer's plan, its moves applied in order: drop each move that
 * breaks what holds with the moves kept before it (a move in a cluster
 * that already would not survive goes on, as an operator's does). The
 * number dropped, why for the first in why; -ENOMEM.
 */
long cl_admit_plan(const Ferry__Cluster__State *st, unsigned k, cl_admit_up_fn up,
		   const void *opaque, struct cl_plan *plan, char *why, size_t len);

#endif
