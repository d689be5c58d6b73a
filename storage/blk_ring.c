/*
 * Submission rings (docs/guest-abi.md, "The submission ring"). blk_submit
 * costs the guest a VM exit per request: about 60 µs on a PVM host, as much
 * as the storage itself. With a ring the guest only writes memory; one
 * monitor thread, the poller, watches every ring's tail, takes what was
 * published and runs it: itself for a file (a pwrite into the page cache is
 * a few µs, less than a hand-off to an I/O thread), through the I/O threads
 * for NBD. Completion is the slot's done word, as for blk_submit.
 *
 * The poller spins for blk_defaults.ring_poll_us after its last work, then
 * sleeps. The window must outlast a guest's own wait between polls (a
 * sleep hypercall, about 100 µs on a PVM host): shorter, and a guest that
 * slept once finds the poller asleep, kicks, waits for the wake-up, sleeps
 * again, and every request pays both. Before sleeping it sets need_kick in every ring and looks once
 * more; a guest that raised tail fences and reads need_kick, so one of the
 * two sees the other and no entry waits for a kick that never comes.
 *
 * It serves a ring only while this host owns the disk: on a migration's
 * destination the ring arrives with the RAM and waits for the lease, and a
 * source that released its disks takes nothing more.
 */
#include "storage/blk_dev.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/hcall.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

#define RING_SZ GABI_BLK_RING_SIZE

static uint32_t ring_tail(const struct blk_ring *r)
{
	return __atomic_load_n(&r->hva->tail, __ATOMIC_ACQUIRE);
}

static bool disk_owned(struct blk_dev *dev, unsigned i)
{
	return __atomic_load_n(&dev->disks[i].owned, __ATOMIC_ACQUIRE);
}

static bool ring_armed(const struct blk_ring *r)
{
	return __atomic_load_n(&r->armed, __ATOMIC_ACQUIRE);
}

/* Under dev->lock: may the poller take an entry of ring i now? */
static bool ring_ready(struct blk_dev *dev, unsigned i)
{
	const struct blk_ring *r = &dev->rings[i];

	return r->armed && disk_owned(dev, i) && ring_tail(r) != r->head &&
	       r->inflight < RING_SZ;
}

static bool rings_ready(struct blk_dev *dev)
{
	for (unsigned i = 0; i < dev->nr_disks; i++)
		if (ring_ready(dev, i))
			return true;
	return false;
}

/* Without the lock, for the spin: has any ring an entry not taken? */
static bool rings_peek(struct blk_dev *dev)
{
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		const struct blk_ring *r = &dev->rings[i];

		/* head is the poller's own: no lock needed to read it here. */
		if (ring_armed(r) && ring_tail(r) != r->head)
			return true;
	}
	return false;
}

bool blk_rings_drained(struct blk_dev *dev)
{
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		const struct blk_ring *r = &dev->rings[i];

		/* A gone disk's entries would only be held: they do not count. */
		if (r->armed && disk_owned(dev, i) && !dev->disks[i].gone &&
		    ring_tail(r) != r->head)
			return false;
	}
	return true;
}

/* Under dev->lock: the need_kick word of every ring the poller serves. */
static void rings_need_kick(struct blk_dev *dev, uint32_t v)
{
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		const struct blk_ring *r = &dev->rings[i];

		/* Never write a ring that is not ours yet: its RAM may still be arriving. */
		if (r->armed && disk_owned(dev, i) && r->hva->need_kick != v)
			vm_write_guest(dev->vm, r->gpa + offsetof(struct gabi_blk_ring, need_kick),
				       &v, sizeof(v));
	}
}

/* Under dev->lock, dropped around the I/O: take and start one entry of ring i. */
static void ring_take(struct blk_dev *dev, unsigned i)
{
	struct blk_ring *r = &dev->rings[i];
	struct blk_disk *d = &dev->disks[i];
	struct blk_job j = { .disk = i, .ring = true };
	char reason[BLK_ERR_LEN] = "";
	uint16_t slot = __atomic_load_n(&r->hva->sq[r->head % RING_SZ], __ATOMIC_RELAXED);
	int ret;
	bool done;

	r->head++;
	/* Before the I/O: a guest that sees its slot done sees it taken too. */
	vm_write_guest(dev->vm, r->gpa + offsetof(struct gabi_blk_ring, head), &r->head,
		       sizeof(r->head));
	if (slot >= RING_SZ) {
		__atomic_add_fetch(&d->stats.ring_errors, 1, __ATOMIC_RELAXED);
		if (!r->fault_logged)
			log_err("%s: disk %u: ring entry %u names slot %u (of %u): skipped; "
				"further faults are only counted", dev->vm->cfg.name, i,
				r->head - 1, slot, RING_SZ);
		r->fault_logged = true;
		return;
	}
	j.gpa = r->gpa + offsetof(struct gabi_blk_ring, slot) + slot * sizeof(j.q);
	/* One copy, checked: the guest may rewrite the slot while we look. */
	memcpy(&j.q, &r->hva->slot[slot], sizeof(j.q));
	__atomic_add_fetch(&d->stats.ring_taken, 1, __ATOMIC_RELAXED);
	r->inflight++;
	ret = hcall_blk_req_check(&j.q, d->size, dev->vm->mem.size);
	if (!ret && (!d->ops->poll_inline || dev->nr_held)) {
		blk_enqueue(dev, &j);
		return;
	}
	dev->inflight++;
	pthread_mutex_unlock(&dev->lock);
	if (ret) {
		/* A refused entry was taken: its slot says why, unlike blk_submit's. */
		blk_complete(dev, &j, ret);
		done = true;
	} else {
		done = blk_run(dev, &j, reason, sizeof(reason));
	}
	pthread_mutex_lock(&dev->lock);
	blk_job_finish(dev, &j, done, reason);
}

/* One pass over the rings; how many entries were taken. */
static unsigned rings_pass(struct blk_dev *dev)
{
	unsigned taken = 0;

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		pthread_mutex_lock(&dev->lock);
		while (!dev->stopping && ring_ready(dev, i)) {
			ring_take(dev, i);
			taken++;
		}
		pthread_mutex_unlock(&dev->lock);
	}
	return taken;
}

static void rings_sleep(struct blk_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	rings_need_kick(dev, 1);
	/* Pairs with the guest's mfence between raising tail and reading need_kick. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	while (!dev->kicked && !dev->stopping && !rings_ready(dev))
		pthread_cond_wait(&dev->kick, &dev->lock);
	dev->kicked = false;
	rings_need_kick(dev, 0);
	pthread_mutex_unlock(&dev->lock);
}

static void *blk_poller(void *arg)
{
	struct blk_dev *dev = arg;
	uint64_t poll_ns = blk_defaults.ring_poll_us * 1000ull, idle_since = now_ns();

	while (!__atomic_load_n(&dev->stopping, __ATOMIC_ACQUIRE)) {
		if (rings_peek(dev) && rings_pass(dev)) {
			idle_since = now_ns();
			continue;
		}
		if (__atomic_load_n(&dev->draining, __ATOMIC_ACQUIRE)) {
			pthread_mutex_lock(&dev->lock);
			pthread_cond_broadcast(&dev->idle);
			pthread_mutex_unlock(&dev->lock);
		}
		/*
		 * No PAUSE in this spin: where the host is itself a VM with
		 * pause-loop exiting (this project's PVM machines), a PAUSE loop
		 * gives the CPU away for tens of µs, and nearly every request
		 * then found the poller asleep (blk_path_bench: 63 against 4 µs).
		 */
		if (now_ns() - idle_since < poll_ns)
			continue;
		rings_sleep(dev);
		idle_since = now_ns();
	}
	return NULL;
}

/* Under dev->lock. */
static int poller_start(struct blk_dev *dev)
{
	int ret;

	if (dev->poller_started)
		return 0;
	ret = -pthread_create(&dev->poller, NULL, blk_poller, dev);
	if (!ret)
		dev->poller_started = true;
	return ret;
}

/* Under dev->lock: the ring goes live from head, its poller running. */
static int ring_arm(struct blk_dev *dev, struct blk_ring *r, uint64_t gpa,
		    struct gabi_blk_ring *hva, uint32_t head)
{
	int ret;

	*r = (struct blk_ring){ .gpa = gpa, .hva = hva, .head = head };
	ret = poller_start(dev);
	if (!ret)
		__atomic_store_n(&r->armed, true, __ATOMIC_RELEASE);
	return ret;
}

int64_t blk_ring_setup(struct blk_dev *dev, unsigned disk, uint64_t gpa)
{
	struct blk_ring *r = &dev->rings[disk];
	struct gabi_blk_ring *hva = mem_ptr(&dev->vm->mem, gpa, sizeof(*hva));
	uint32_t size = RING_SZ, zero = 0, tail;
	int ret;

	if (!hva)
		return -EFAULT;
	pthread_mutex_lock(&dev->lock);
	if (r->armed) {
		ret = -EBUSY;
		goto out;
	}
	/* Entries published before the ring existed are not ours. */
	tail = __atomic_load_n(&hva->tail, __ATOMIC_ACQUIRE);
	vm_write_guest(dev->vm, gpa + offsetof(struct gabi_blk_ring, head), &tail, sizeof(tail));
	vm_write_guest(dev->vm, gpa + offsetof(struct gabi_blk_ring, need_kick), &zero,
		       sizeof(zero));
	vm_write_guest(dev->vm, gpa + offsetof(struct gabi_blk_ring, size), &size, sizeof(size));
	ret = ring_arm(dev, r, gpa, hva, tail);
out:
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

int blk_ring_load(struct blk_dev *dev, unsigned disk, uint64_t gpa, uint32_t head,
		  char *err, size_t err_len)
{
	struct blk_ring *r = &dev->rings[disk];
	struct gabi_blk_ring *hva = gpa % 64 ? NULL :
				    mem_ptr(&dev->vm->mem, gpa, sizeof(*hva));
	int ret;

	if (disk >= dev->nr_disks || !hva) {
		snprintf(err, err_len, "disk state: ring of disk %u at %#llx: outside the guest",
			 disk, (unsigned long long)gpa);
		return -EBADMSG;
	}
	pthread_mutex_lock(&dev->lock);
	ret = ring_arm(dev, r, gpa, hva, head);
	if (ret)
		snprintf(err, err_len, "disk ring poller: %s", strerror(-ret));
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

void blk_ring_kick(struct blk_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	dev->kicked = true;
	pthread_cond_signal(&dev->kick);
	pthread_mutex_unlock(&dev->lock);
}

void blk_ring_stop(struct blk_dev *dev)
{
	bool started;

	pthread_mutex_lock(&dev->lock);
	started = dev->poller_started;
	dev->poller_started = false;
	pthread_mutex_unlock(&dev->lock);
	if (started)
		pthread_join(dev->poller, NULL);
}
