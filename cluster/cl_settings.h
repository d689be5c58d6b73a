/*
 * Cluster-wide settings (State.settings, `clusterctl config`): what an
 * operator tunes once for the whole cluster. They live in the replicated
 * state rather than on agents' command lines because the node that runs
 * the planner, or the source agent that carries a migration out, changes
 * with membership: a value one agent alone knew would change behaviour at
 * every failover.
 *
 * A field at 0 is not set and means the built-in default. Changes are
 * commands (CmdConfigSet), checked all or none like any other.
 */
#ifndef FERRY_CL_SETTINGS_H
#define FERRY_CL_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "cl_plan.h"
#include "cluster.pb-c.h"

#define CL_HA_DEFAULT_FENCE_S 30   /* an HA vmon stops this long after its agent's last keepalive */
#define CL_HA_MARGIN_S 10          /* the leader waits fence + this before it recovers a VM */
#define CL_CRASH_DEFAULT_RESTARTS 3    /* crashes restarted within the window (vSphere HA's default) */
#define CL_CRASH_DEFAULT_WINDOW_S 3600

/* The table's rows: code names a setting by these, users by its key. */
enum cl_setting_id {
	CL_SET_MIG_BANDWIDTH_MBPS,
	CL_SET_MIG_DOWNTIME_MS,
	CL_SET_LINK_MBPS,
	CL_SET_MAX_MIG_PER_HOST,
	CL_SET_MAX_MIG,
	CL_SET_HOLDDOWN_S,
	CL_SET_CPU_CAP_PCT,
	CL_SET_HA_FENCE_S,
	CL_SET_CRASH_RESTARTS,
	CL_SET_CRASH_WINDOW_S,
	CL_SET_DISK_AUTO_RESUME_S,
	CL_SET_HA_HOST_FAILURES,
	CL_SET_NR
};

struct cl_setting {
	const char *key;        /* as clusterctl config names it */
	const char *unit;
	uint64_t min, max;      /* a value set must lie here */
	uint64_t def;           /* built-in default; 0: none (e.g. no cap) */
	size_t offset;          /* of its uint64_t in Ferry__Cluster__Settings */
	const char *help;
	uint32_t proto;         /* set only once every agent applies this (CL_PROTO_*; 0: any) */
};

extern const struct cl_setting cl_settings[CL_SET_NR];
extern const size_t cl_settings_n;

const struct cl_setting *cl_setting_find(const char *key);
/* What st sets it to, 0 when not set. */
uint64_t cl_setting_raw(const Ferry__Cluster__State *st, const struct cl_setting *k);
/* What applies: the value set, else the default. */
uint64_t cl_setting_value(const Ferry__Cluster__State *st, const struct cl_setting *k);
/* v with its unit ("1000 Mbit/s"), or "none" for 0. Returns buf. */
const char *cl_setting_fmt(const struct cl_setting *k, uint64_t v, char *buf, size_t len);
/* cl_setting_value of a row. */
uint64_t cl_setting_get(const Ferry__Cluster__State *st, enum cl_setting_id id);

/*
 * Apply a CmdConfigSet: every item is checked first (a known key, a value
 * in range or 0 for the default, no key twice), then all are set. 0 or
 * -EINVAL/-ENOENT with "config: ..." in err and st unchanged.
 */
int cl_settings_set(Ferry__Cluster__State *st, const Ferry__Cluster__CmdConfigSet *c,
		    char *err, size_t err_len);

/* The planner's configuration under st's settings, over base's other fields. */
void cl_settings_plan_config(const Ferry__Cluster__State *st, const struct cl_plan_config *base,
			     struct cl_plan_config *out);

#endif
