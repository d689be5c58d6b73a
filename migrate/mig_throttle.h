/*
 * Auto-converge: take pct % of every period away from the guest's vCPUs
 * by parking them, so it dirties memory more slowly than the link drains
 * it. Coarse (a 20 ms period) but exact in the share it takes, and it needs
 * nothing from the guest.
 */
#ifndef FERRY_MIG_THROTTLE_H
#define FERRY_MIG_THROTTLE_H

#include <pthread.h>
#include <stdbool.h>

#include "core/vm.h"

#define MIG_THROTTLE_PERIOD_MS 20

struct mig_throttle {
	struct vm *vm;
	unsigned pct;
	bool running;
	bool stop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

void mig_throttle_init(struct mig_throttle *t, struct vm *vm);
/* 0 stops throttling; the guest is left running. */
int mig_throttle_set(struct mig_throttle *t, unsigned pct);
void mig_throttle_stop(struct mig_throttle *t);

#endif
