/*
 * The fence: an HA VM's vmon stops its guest for good when its node agent
 * has not said "keepalive" for period_s (docs/cluster.md, "HA"). The agent
 * says it only while its node is in the quorate part of the cluster, so a
 * host cut off from the others, or whose agent died, stops its HA guests
 * before the rest of the cluster restarts them elsewhere: never two copies
 * of one VM, and never two writers of its disks.
 */
#ifndef FERRY_FENCE_H
#define FERRY_FENCE_H

#include <stdint.h>

struct vm;
struct fence;

/* Start the timer on vm (first deadline: period_s from now). 0 or -errno. */
int fence_start(struct vm *vm, unsigned period_s, struct fence **out);
void fence_renew(struct fence *f);
/* A new period, the next deadline period_s from now (a keepalive with it). */
void fence_set_period(struct fence *f, unsigned period_s);
/* ms left before it fires (0 once fired), and the period. */
uint64_t fence_left_ms(struct fence *f);
unsigned fence_period_s(const struct fence *f);
/* End the timer thread (NULL: nothing). */
void fence_stop(struct fence *f);

#endif
