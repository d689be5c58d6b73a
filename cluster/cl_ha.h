/*
 * HA (docs/cluster.md, "HA"): where the HA VMs of a lost host restart.
 * Pure code over a planner input, like cl_plan.h; the leader (clusterd_ha.c)
 * decides when a host counts as lost and proposes the result as
 * CmdVmRecover.
 *
 * Safety does not rest on this placement but on the fence: an HA VM's
 * vmon stops itself ha-fence-s after its agent's last keepalive, and
 * agents send keepalives only while in the quorate part of the cluster;
 * the leader recovers only after fence + CL_HA_MARGIN_S out of its view.
 */
#ifndef FERRY_CL_HA_H
#define FERRY_CL_HA_H

#include "cl_plan.h"

/*
 * The recoveries for host: plan.moves (vm -> to) for its HA VMs that run
 * and are not migrating, plan.stuck for those that fit nowhere, with why.
 * Non-HA VMs of the host are left out (they stay stopped where they were
 * placed). Marks in's non-HA VMs on host as running nowhere. The caller
 * marks the hosts that are down as inactive first. 0 or -errno.
 */
int cl_ha_plan(struct cl_plan_input *in, const char *host, struct cl_plan *plan);

/* The leader waits this long (ms) out of its view before recovering a host's VMs. */
uint64_t cl_ha_wait_ms(const Ferry__Cluster__State *st);

#endif
