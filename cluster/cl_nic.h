/*
 * A VM's NICs in the cluster (docs/networking.md): the specs the state
 * keeps, and which hosts have the bridges they need.
 */
#ifndef FERRY_CL_NIC_H
#define FERRY_CL_NIC_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster.pb-c.h"

/*
 * Rewrite vm's nets as "bridge=BR,mac=MAC", deriving the MACs not given
 * from the VM's name (as vmon would), so every node and every host shows
 * and uses the same one. Refuses (-EINVAL, the reason in err) a bad spec,
 * more than GABI_NET_MAX_NICS, or a MAC that another NIC of this VM or of
 * any VM in st already has. Deterministic: the state machine calls it.
 */
int cl_nic_normalize(const Ferry__Cluster__State *st, Ferry__Cluster__Vm *vm, char *err,
		     size_t err_len);
/*
 * The first NIC of vm whose bridge h lacks: its index, with the bridge's
 * name in bridge (IFNAMSIZ); -1 when h has them all.
 */
int cl_nic_missing_bridge(const Ferry__Cluster__Vm *vm, const Ferry__Cluster__Host *h,
			  char *bridge);
/*
 * Refresh inv's bridges from this host; true when they changed (the agent
 * then joins again, so the cluster sees them).
 */
bool cl_nic_bridges_refresh(Ferry__Cluster__Inventory *inv);

#endif
