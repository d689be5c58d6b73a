/*
 * A thread that sleeps to CLOCK_MONOTONIC deadlines and can be told to
 * quit: the shape vmon's fence and auto-resume share. The owner's thread
 * function takes t->lock, loops on ticker_wait while !t->quit, and drops
 * the lock around work that must not hold it. Fields the owner guards with
 * t->lock (a deadline, a period) wake the thread with ticker_kick.
 */
#ifndef FERRY_CORE_TICKER_H
#define FERRY_CORE_TICKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct ticker {
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* CLOCK_MONOTONIC, as now_ns() */
	bool quit;              /* under lock */
};

/* Set up t and start fn(arg) on its thread. 0, or -errno with t torn down. */
int ticker_start(struct ticker *t, void *(*fn)(void *), void *arg);
/*
 * Under t->lock: sleep until deadline_ns (now_ns() clock), a kick or quit,
 * whichever first. The caller re-checks its own condition: a wake may be
 * early.
 */
void ticker_wait(struct ticker *t, uint64_t deadline_ns);
/* Under t->lock: wake the thread to look again. */
void ticker_kick(struct ticker *t);
/* Tell the thread to quit, join it, tear t down. */
void ticker_stop(struct ticker *t);

#endif
