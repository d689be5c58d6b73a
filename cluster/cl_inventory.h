/* What a node tells the cluster about itself, measured on the host. */
#ifndef FERRY_CL_INVENTORY_H
#define FERRY_CL_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster.pb-c.h"

/*
 * Fill a heap-owned inventory: the CPUID features KVM supports
 * (KVM_GET_SUPPORTED_CPUID, minus hide: a comma-separated list of feature
 * names, for tests of mixed clusters), the TSC frequency, RAM, CPUs and the
 * kernel release, and the Linux bridges. A witness (no KVM needed) reports only its CPUs and
 * kernel. 0 or -errno with the reason in err.
 */
int cl_inventory_probe(const char *hide, bool witness, Ferry__Cluster__Inventory **out,
		       char *err, size_t err_len);
/* The host's load: 1-minute load average divided by the CPU count. */
double cl_host_load(void);

#endif
