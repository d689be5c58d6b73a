/* HA placement (cl_ha.h): an evacuation of the lost host's HA VMs. */
#include "cl_ha.h"

#include <string.h>

#include "cl_settings.h"

int cl_ha_plan(struct cl_plan_input *in, const char *host, struct cl_plan *plan)
{
	for (size_t v = 0; v < in->n_vms; v++) {
		struct cl_plan_vm *pv = &in->vms[v];

		/* HA turned on while it ran, not yet armed there: it may still run. */
		if (pv->host >= 0 && !strcmp(in->hosts[pv->host].name, host) &&
		    (!pv->vm->ha || pv->vm->ha_unarmed))
			pv->host = -1;
	}
	/*
	 * The evacuation's placement (compatible, allowed by the rules, with
	 * room, soft rules first, then the least loaded) is what a restart
	 * needs too; its order and timings, for migrations, do not matter.
	 */
	return cl_plan_evacuate(in, host, plan);
}

uint64_t cl_ha_wait_ms(const Ferry__Cluster__State *st)
{
	return (cl_setting_get(st, CL_SET_HA_FENCE_S) + CL_HA_MARGIN_S) * 1000;
}
