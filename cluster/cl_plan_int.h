/*
 * What the planner's files share (cl_plan.c, cl_plan_work.c,
 * cl_balance.c, cl_evacuate.c): a working copy of the placement that a
 * plan changes move by move while the input stays as it was built.
 */
#ifndef FERRY_CL_PLAN_INT_H
#define FERRY_CL_PLAN_INT_H

#include "cl_plan.h"

struct plan_work {
	const struct cl_plan_input *in;
	double *cpu;                   /* per host */
	uint64_t *mem;
	unsigned *mig;
	double *load;
	int *host;                     /* per VM: where it is (or will be, once planned) */
	unsigned in_flight;            /* cluster-wide, planned moves included */
	double s1, s2;                 /* Σ load and Σ load² over the active hosts */
	size_t n_active;
};

int work_init(struct plan_work *w, const struct cl_plan_input *in);
void work_free(struct plan_work *w);
/* A host's load from CPU demand and memory (its capacity from the input). */
double work_load_of(const struct cl_plan_input *in, size_t h, double cpu, uint64_t mem);
/* Σ(load-mean)² and the standard deviation over the active hosts. */
double work_ssd(const struct plan_work *w);
double work_sd(const struct plan_work *w);
/* Record vm's move to t: loads, sums, migration counts. */
void work_move(struct plan_work *w, size_t vm, size_t t);
/* Whether t has memory and CPU for mem and cpu more. */
bool work_room(const struct plan_work *w, size_t t, uint64_t mem, double cpu);

/*
 * Hard rules for vm on t. members on host skip (-1: none) are taken to go
 * along (an evacuation moves affinity groups together). 0 allowed, else
 * the index + 1 of the first rule against it.
 */
size_t work_rules_block(const struct plan_work *w, size_t vm, size_t t, int skip);
/* How many of vm's soft rules hold on t. */
unsigned work_soft_score(const struct plan_work *w, size_t vm, size_t t);

/*
 * ask(arg) (1 compatible, 0 not) unless m knows the answer for model on
 * target, with source the features of the VM's host for "host".
 */
int memo_answer(struct cl_plan_memo *m, const char *model,
		const Ferry__Cluster__Inventory *source, const Ferry__Cluster__Inventory *target,
		int (*ask)(void *), void *arg);

int plan_moves_add(struct cl_plan *p, size_t *cap, const struct cl_plan_move *m);

#endif
