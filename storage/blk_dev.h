/*
 * Inside the guest's block device: shared by blk_dev.c (the hypercalls, the
 * I/O threads, the lifecycle) and blk_ring.c (the submission rings and their
 * poller). Nothing outside storage/ includes this.
 */
#ifndef FERRY_BLK_DEV_H
#define FERRY_BLK_DEV_H

#include <pthread.h>
#include <stdbool.h>

#include "storage/blk.h"

/*
 * Per disk, up to a queue depth from blk_submit and a ring's worth from its
 * ring may be queued, running or held at once.
 */
#define BLK_PER_DISK_MAX (GABI_BLK_QUEUE_DEPTH + GABI_BLK_RING_SIZE)
#define BLK_QUEUE_MAX    (GABI_BLK_MAX_DISKS * BLK_PER_DISK_MAX)
#define BLK_WORKERS_MAX  16

struct blk_job {
	unsigned disk;
	bool ring;               /* taken from the disk's ring, not blk_submit */
	uint64_t gpa;            /* the request in guest RAM */
	struct gabi_blk_req q;   /* the validated copy */
};

/* The monitor's side of one disk's ring; under blk_dev.lock. */
struct blk_ring {
	bool armed;              /* set up by the guest, or loaded from a stream */
	uint64_t gpa;
	struct gabi_blk_ring *hva;
	uint32_t head;           /* the next entry to take */
	unsigned inflight;       /* taken, not yet completed (held ones too) */
	bool fault_logged;       /* an entry that named no slot was logged */
};

struct blk_dev {
	struct vm *vm;
	unsigned nr_disks;
	struct blk_disk disks[GABI_BLK_MAX_DISKS];
	pthread_mutex_t lock;
	pthread_cond_t work;     /* a job was queued, or stopping */
	pthread_cond_t idle;     /* nothing in flight any more, or the poller found no work */
	struct blk_job queue[BLK_QUEUE_MAX];
	unsigned head, count;
	unsigned inflight;       /* queued or running (inline ones too) */
	unsigned per_disk[GABI_BLK_MAX_DISKS]; /* blk_submit's: queued, running or held */
	struct blk_job held[BLK_QUEUE_MAX];
	unsigned nr_held;
	bool stopping;
	bool aborted;            /* blk_abort: the VM stops for good, nothing reconnects */
	unsigned nr_workers;
	pthread_t workers[BLK_WORKERS_MAX];

	struct blk_ring rings[GABI_BLK_MAX_DISKS];
	bool poller_started;
	pthread_t poller;
	pthread_cond_t kick;     /* wakes the poller */
	bool kicked;
	unsigned draining;       /* threads in blk_drain: the poller reports idle passes */
};

/* Complete a request in guest RAM: result, then done (dirty-tracked). */
void blk_complete(struct blk_dev *dev, const struct blk_job *j, int64_t res);
/* Run one job; false when the storage is gone and the job must be held. */
bool blk_run(struct blk_dev *dev, const struct blk_job *j, char *reason, size_t len);
/*
 * After blk_run, under dev->lock: count it done or hold it; with a reason
 * (the storage went away), pause the VM (the lock is dropped meanwhile).
 */
void blk_job_finish(struct blk_dev *dev, const struct blk_job *j, bool done,
		    const char *reason);
/* Queue a validated job for the I/O threads, under dev->lock. */
void blk_enqueue(struct blk_dev *dev, const struct blk_job *j);

/* blk_ring.c */
int64_t blk_ring_setup(struct blk_dev *dev, unsigned disk, uint64_t gpa);
/* Arm a ring that came in a stream (after the RAM); -errno + err. */
int blk_ring_load(struct blk_dev *dev, unsigned disk, uint64_t gpa, uint32_t head,
		  char *err, size_t err_len);
void blk_ring_kick(struct blk_dev *dev);
/* True when every ring the poller may serve has nothing left to take. */
bool blk_rings_drained(struct blk_dev *dev);
/* After dev->stopping is set and the poller kicked: wait for it to end. */
void blk_ring_stop(struct blk_dev *dev);

#endif
