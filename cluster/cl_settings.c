/* Cluster-wide settings: the table, their checks, and what they feed. */
#include "cl_settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_admit.h"
#include "cl_msg.h"
#include "cl_state.h"

#define S(field) offsetof(Ferry__Cluster__Settings, field)

const struct cl_setting cl_settings[CL_SET_NR] = {
	[CL_SET_MIG_BANDWIDTH_MBPS] = { "migration-bandwidth-mbps", "Mbit/s", 1, 10000000, 0, S(migration_bandwidth_mbps),
	  "caps every migration that names no --bandwidth, the planner's too", 0 },
	[CL_SET_MIG_DOWNTIME_MS] = { "migration-downtime-ms", "ms", 1, 60000, CL_PLAN_DEFAULT_DOWNTIME_MS,
	  S(migration_downtime_ms),
	  "downtime target of a migration that names no --downtime-ms", 0 },
	[CL_SET_LINK_MBPS] = { "link-mbps", "Mbit/s", 1, 10000000, CL_PLAN_DEFAULT_LINK_MBPS, S(link_mbps),
	  "a host's migration link, shared by its migrations (planner)", 0 },
	[CL_SET_MAX_MIG_PER_HOST] = { "max-migrations-per-host", "", 1, 64, CL_PLAN_DEFAULT_MAX_MIG_PER_HOST,
	  S(max_mig_per_host),
	  "migrations one host takes part in at once (planner)", 0 },
	[CL_SET_MAX_MIG] = { "max-migrations", "", 1, 1024, CL_PLAN_DEFAULT_MAX_MIG_CLUSTER, S(max_mig_cluster),
	  "migrations in the whole cluster at once (planner)", 0 },
	[CL_SET_HOLDDOWN_S] = { "holddown-s", "s", 1, 7 * 86400, CL_PLAN_DEFAULT_HOLDDOWN_S, S(holddown_s),
	  "the balancer leaves a VM this long after it moved", 0 },
	[CL_SET_CPU_CAP_PCT] = { "cpu-cap-pct", "%", 1, 1000, CL_PLAN_DEFAULT_CPU_CAP_PCT, S(cpu_cap_pct),
	  "CPU demand a target may reach, in % of its CPUs (the balancer; an "
	  "evacuation or HA restart passes it where no host has room under it)", 0 },
	[CL_SET_HA_FENCE_S] = { "ha-fence-s", "s", 5, 3600, CL_HA_DEFAULT_FENCE_S, S(ha_fence_s),
	  "an HA VM's vmon stops this long after its agent's last keepalive; the VM is "
	  "recovered elsewhere 10 s later (fixed while HA VMs run)", 0 },
	[CL_SET_CRASH_RESTARTS] = { "crash-restarts", "", 1, 100, CL_CRASH_DEFAULT_RESTARTS,
	  S(crash_restarts),
	  "a crashed guest is restarted in place unless it crashed this many times within "
	  "crash-window-s already (fences and lost hosts do not count)", CL_PROTO_10 },
	[CL_SET_CRASH_WINDOW_S] = { "crash-window-s", "s", 1, 30 * 86400, CL_CRASH_DEFAULT_WINDOW_S,
	  S(crash_window_s),
	  "the time crash-restarts counts crashes over", CL_PROTO_10 },
	[CL_SET_DISK_AUTO_RESUME_S] = { "disk-auto-resume-s", "s", 1, 3600, 0,
	  S(disk_auto_resume_s),
	  "a VM its disk paused (no room, storage gone) is resumed without the operator "
	  "once it can go on, looked at this often (vmon --auto-resume-s); none: vm resume "
	  "does it; running vmons take a change within a second", CL_PROTO_10 },
	[CL_SET_HA_HOST_FAILURES] = { "ha-host-failures", "", 1, CL_ADMIT_MAX_FAILURES, 0,
	  S(ha_host_failures),
	  "HA admission control: vm start, vm set --ha on and migrate are refused when, were "
	  "this many hosts lost, the HA VMs on them could not all restart on the others "
	  "(by memory); none: no check", CL_PROTO_11 },
};
const size_t cl_settings_n = CL_SET_NR;

const struct cl_setting *cl_setting_find(const char *key)
{
	for (size_t i = 0; i < cl_settings_n; i++)
		if (!strcmp(cl_settings[i].key, key))
			return &cl_settings[i];
	return NULL;
}

static uint64_t *field(Ferry__Cluster__Settings *s, const struct cl_setting *k)
{
	return (uint64_t *)((char *)s + k->offset);
}

uint64_t cl_setting_raw(const Ferry__Cluster__State *st, const struct cl_setting *k)
{
	return st->settings ? *field(st->settings, k) : 0;
}

uint64_t cl_setting_value(const Ferry__Cluster__State *st, const struct cl_setting *k)
{
	uint64_t v = cl_setting_raw(st, k);

	return v ? v : k->def;
}

const char *cl_setting_fmt(const struct cl_setting *k, uint64_t v, char *buf, size_t len)
{
	if (v)
		snprintf(buf, len, "%llu%s%s", (unsigned long long)v, *k->unit ? " " : "", k->unit);
	else
		snprintf(buf, len, "none");
	return buf;
}

uint64_t cl_setting_get(const Ferry__Cluster__State *st, enum cl_setting_id id)
{
	return cl_setting_value(st, &cl_settings[id]);
}

/*
 * Running HA vmons fence on the value they were started with, and the
 * leader recovers on the value in the state: the two must not differ.
 */
static int fence_fixed(const Ferry__Cluster__State *st, const Ferry__Cluster__ConfigItem *it,
		       char *err, size_t err_len)
{
	const struct cl_setting *k = &cl_settings[CL_SET_HA_FENCE_S];
	const Ferry__Cluster__Vm *vm;

	if ((it->value ? it->value : k->def) == cl_setting_value(st, k) ||
	    !(vm = cl_state_ha_running(st, NULL)))
		return 0;
	snprintf(err, err_len, "config: %s: HA VM %s runs, and its vmon fences on the value it "
		 "started with; stop the HA VMs first", k->key, vm->name);
	return -EBUSY;
}

int cl_settings_set(Ferry__Cluster__State *st, const Ferry__Cluster__CmdConfigSet *c,
		    char *err, size_t err_len)
{
	const Ferry__Cluster__Host *old;
	int ret = 0;

	if (!c->n_items) {
		snprintf(err, err_len, "config: nothing to set");
		return -EINVAL;
	}
	for (size_t i = 0; i < c->n_items; i++) {
		const Ferry__Cluster__ConfigItem *it = c->items[i];
		const struct cl_setting *k = cl_setting_find(it->key);

		if (!k) {
			snprintf(err, err_len, "config: no such setting '%s'", it->key);
			return -ENOENT;
		}
		if (it->value && (it->value < k->min || it->value > k->max)) {
			snprintf(err, err_len, "config: %s: %llu is not in %llu..%llu%s%s", k->key,
				 (unsigned long long)it->value, (unsigned long long)k->min,
				 (unsigned long long)k->max, *k->unit ? " " : "", k->unit);
			return -EINVAL;
		}
		/* An older agent would refuse the key: every node must refuse it alike. */
		if (k->proto && (old = cl_state_host_below(st, k->proto, NULL))) {
			snprintf(err, err_len, "config: %s: the agent of %s predates it; upgrade it "
				 "first", k->key, old->name);
			return -EPROTO;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->items[j]->key, it->key)) {
				snprintf(err, err_len, "config: %s is set twice", k->key);
				return -EINVAL;
			}
		if (k == &cl_settings[CL_SET_HA_FENCE_S])
			ret = fence_fixed(st, it, err, err_len);
		if (ret)
			return ret;
	}
	if (!st->settings) {
		st->settings = CL_NEW(Ferry__Cluster__Settings, ferry__cluster__settings__init);
		if (!st->settings)
			return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_items; i++)
		*field(st->settings, cl_setting_find(c->items[i]->key)) = c->items[i]->value;
	return 0;
}

void cl_settings_plan_config(const Ferry__Cluster__State *st, const struct cl_plan_config *base,
			     struct cl_plan_config *out)
{
	uint64_t cap = cl_setting_get(st, CL_SET_MIG_BANDWIDTH_MBPS);

	*out = *base;
	out->link_mbps = cl_setting_get(st, CL_SET_LINK_MBPS);
	out->max_mig_per_host = cl_setting_get(st, CL_SET_MAX_MIG_PER_HOST);
	out->max_mig_cluster = cl_setting_get(st, CL_SET_MAX_MIG);
	out->holddown_s = cl_setting_get(st, CL_SET_HOLDDOWN_S);
	out->cpu_cap_pct = cl_setting_get(st, CL_SET_CPU_CAP_PCT);
	out->downtime_ms = cl_setting_get(st, CL_SET_MIG_DOWNTIME_MS);
	/* A capped stream pushes no more than its cap, whatever the link. */
	if (cap && cap < out->stream_mbps)
		out->stream_mbps = cap;
}
