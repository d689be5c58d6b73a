/*
 * CPU compatibility in the cluster: which features a VM's CPU model needs,
 * the cluster model (the features every current host shares), and whether
 * a host can run a VM. Feature names are core/cpumodel's.
 */
#ifndef FERRY_CL_CPU_H
#define FERRY_CL_CPU_H

#include <stddef.h>

#include "cluster.pb-c.h"

#define CL_CPU_MODEL_CLUSTER "cluster"

/*
 * The cluster baseline: the features present in every host's inventory
 * (hosts with no inventory are ignored), in feature-table order. *names is
 * a malloc'ed array of static strings (free the array only). 0 or -errno.
 */
int cl_cpu_baseline(const Ferry__Cluster__State *st, const char ***names, size_t *n);
/*
 * The features model needs (x86-64-v1..v4, host: the named level's set;
 * "host" needs nothing beyond what the host it starts on has, so it is
 * checked against the VM's current host; "cluster": the baseline). 0,
 * -ENOENT for an unknown model (err says so).
 */
int cl_cpu_model_features(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
			  const char ***names, size_t *n, char *err, size_t err_len);
/*
 * Can host run vm? 0 yes; -ENOTSUP with the missing features, comma and
 * space separated, in missing; -ENOENT unknown model.
 */
int cl_cpu_check(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		 const Ferry__Cluster__Host *host, char *missing, size_t len);
/*
 * The --cpuid-hide list to give vmon so that a guest of vm's model sees
 * exactly the model's features on host (for "cluster": the host's
 * features minus the baseline). "" when nothing must be hidden.
 */
int cl_cpu_vmon_args(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		     const Ferry__Cluster__Host *host, char *model, size_t model_len,
		     char *hide, size_t hide_len);

#endif
