/*
 * Synthetic clusters for the planner (cl_plan.h): a State with hosts of
 * different sizes and CPU levels, VMs with sizes, CPU loads, dirty rates
 * and models, and rules, plus the live figures, all deterministic from a
 * seed. The simulator (tools/ferry-sim.c), the property tests and the
 * benchmark share it. Pure: no I/O, no clock.
 *
 * Every rule holds in the generated placement, every host fits what is
 * placed on it (memory, and CPU under the default cap), and VMs that fit
 * nowhere are left stopped.
 */
#ifndef FERRY_CL_SIM_H
#define FERRY_CL_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "cl_plan.h"

struct cl_sim_opts {
	unsigned hosts;
	unsigned vms;
	unsigned rules;                /* about this many, of every kind */
	unsigned maintenance;          /* hosts in maintenance (empty) */
	unsigned in_flight;            /* VMs with a migration in flight */
	unsigned busy_host_vms;        /* > 0: host h0000 is big and gets this many VMs first */
	unsigned skew_pct;             /* 0 spread evenly .. 100 crowd the first hosts */
	uint64_t now_unix_ms;          /* the clock the figures' hold-down is relative to */
};

void cl_sim_defaults(struct cl_sim_opts *o);

struct cl_sim {
	Ferry__Cluster__State *st;
	struct cl_plan_vm_figs *figs;  /* one per VM, names point into st */
	size_t n_figs;
	uint64_t now_unix_ms;
};

/* 0 or -ENOMEM; s is all zero on failure. */
int cl_sim_build(struct cl_sim *s, uint64_t seed, const struct cl_sim_opts *o);
/* Carry out a plan's moves as if they completed at now_unix_ms. */
void cl_sim_apply(struct cl_sim *s, const struct cl_plan *p, uint64_t now_unix_ms);
void cl_sim_free(struct cl_sim *s);

#endif
