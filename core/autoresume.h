/*
 * vmon --auto-resume-s: a VM that a device paused on its own (a disk full
 * or gone, docs/storage.md) is resumed without the operator once its
 * storage can take the held requests again, as oVirt's auto-resume does.
 * The operator's pause and the program's own (a switchover, a snapshot)
 * are never undone here.
 */
#ifndef FERRY_CORE_AUTORESUME_H
#define FERRY_CORE_AUTORESUME_H

struct vm;
struct autoresume;

/*
 * The back-off between failed tries stops growing here: a try of a gone
 * NBD disk is a few connects, and a VM waits at most this long past its
 * storage's return.
 */
#define AUTORESUME_MAX_WAIT_S 30
#define AUTORESUME_MAX_PERIOD_S 3600 /* --auto-resume-s, vmon ctl auto-resume */

/*
 * Look every period_s; try a resume where the devices say a retry may go
 * through (vm_devs_retry_ready), and wait twice as long after each failed
 * try, period_s again after one that resumed it. 0 and *out, or -errno.
 */
int autoresume_start(struct vm *vm, unsigned period_s, struct autoresume **out);
/* A new period: the next look period_s from now, the back-off anew. */
void autoresume_set_period(struct autoresume *ar, unsigned period_s);
unsigned autoresume_period_s(struct autoresume *ar);
/* Stop the thread and free it (NULL: nothing). */
void autoresume_stop(struct autoresume *ar);

#endif
