/*
 * The dirty-rate sampler: while nothing else owns dirty tracking, harvest
 * every interval and keep the pages-per-second figure that stats report and
 * a migration's prediction starts from.
 */
#ifndef FERRY_DIRTY_RATE_H
#define FERRY_DIRTY_RATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/dirty.h"

struct vm;

struct dirty_rate {
	struct vm *vm;
	pthread_t thread;
	bool running;                  /* under lock, like every field get reads */
	bool stop;
	uint64_t interval_ns;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	double pages_per_s;
	uint64_t window_ns;
	struct dirty_set set;
};

/*
 * init once, before anyone may call get (the control server); destroy
 * once at the end. start and stop may then come in any order from any
 * thread while get runs concurrently: the lock is never re-initialised.
 * start on a running sampler is -EBUSY.
 */
void dirty_rate_init(struct dirty_rate *r);
void dirty_rate_destroy(struct dirty_rate *r);
int dirty_rate_start(struct dirty_rate *r, struct vm *vm, uint64_t interval_ms);
void dirty_rate_stop(struct dirty_rate *r);
/* Latest rate (pages/s) and the window it was measured over; 0 if none yet. */
double dirty_rate_get(struct dirty_rate *r, uint64_t *window_ns);

#endif
