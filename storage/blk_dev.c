/*
 * The guest's block device (docs/guest-abi.md, "Block devices"): blk_submit
 * validates a copy of the request and queues it; a small pool of I/O
 * threads runs it against the backend, straight between guest RAM and the
 * storage, and completes it in guest RAM (data, result, done), every write
 * marked dirty for migration. The vCPU never waits for the storage.
 *
 * A request that fails because the storage went away, or had no room, is
 * held, not failed, and the VM pauses with the reason; resume reconnects
 * (where it went away) and runs the held requests again. A request the
 * storage refused otherwise ends with its error.
 */
#include "storage/blk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/hcall.h"
#include "core/log.h"
#include "core/vm.h"
#include "storage/blk_dev.h"
#include "storage/blk_state.h"

#define BLK_DEV_NAME "blk"

void blk_complete(struct blk_dev *dev, const struct blk_job *j, int64_t res)
{
	uint32_t one = 1;

	vm_write_guest(dev->vm, j->gpa + offsetof(struct gabi_blk_req, result), &res,
		       sizeof(res));
	/* The guest reads done first: result (and the data) must be there by then. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	vm_write_guest(dev->vm, j->gpa + offsetof(struct gabi_blk_req, done), &one,
		       sizeof(one));
}

/*
 * A flush covers the writes done before it began. Without any since the
 * last one it is skipped unless the guest asked: fdatasync of a clean file
 * still costs milliseconds here, and a switchover must not pay them.
 */
static int blk_flush(struct blk_disk *d, bool always)
{
	uint64_t n = __atomic_exchange_n(&d->unflushed, 0, __ATOMIC_ACQ_REL);
	int ret;

	if (!n && !always)
		return 0;
	ret = d->ops->flush(d);
	if (ret)
		__atomic_add_fetch(&d->unflushed, n ? n : 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&d->stats.flushes, 1, __ATOMIC_RELAXED);
	return ret;
}

static int blk_io(struct blk_dev *dev, struct blk_disk *d, const struct gabi_blk_req *q)
{
	struct vm *vm = dev->vm;
	void *buf = q->len ? mem_ptr(&vm->mem, q->buf_gpa, q->len) : NULL;
	int ret;

	switch (q->op) {
	case GABI_BLK_READ:
		ret = d->ops->pread(d, buf, q->len, q->offset);
		/* Even a failed read may have landed bytes in guest RAM. */
		dirty_mark(vm->dirty, q->buf_gpa, q->len);
		if (!ret) {
			__atomic_add_fetch(&d->stats.reads, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&d->stats.bytes_read, q->len, __ATOMIC_RELAXED);
		}
		return ret;
	case GABI_BLK_WRITE:
		ret = d->ops->pwrite(d, buf, q->len, q->offset);
		if (!ret) {
			__atomic_add_fetch(&d->unflushed, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&d->stats.writes, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&d->stats.bytes_written, q->len, __ATOMIC_RELAXED);
		}
		return ret;
	default:
		return blk_flush(d, true);
	}
}

/*
 * No room on the storage (a thin image on a full file system, a quota) is
 * no fault of the request, and a guest told "I/O error" may take its file
 * system read-only: hold it as for storage gone, and pause until someone
 * makes room (QEMU's werror=enospc does the same).
 */
static bool blk_no_room(int err)
{
	return err == -ENOSPC || err == -EDQUOT;
}

bool blk_run(struct blk_dev *dev, const struct blk_job *j, char *reason, size_t len)
{
	struct blk_disk *d = &dev->disks[j->disk];
	bool gone, full;
	int ret;

	pthread_mutex_lock(&dev->lock);
	gone = d->gone;
	pthread_mutex_unlock(&dev->lock);
	if (gone)
		return false;
	ret = blk_io(dev, d, &j->q);
	full = blk_no_room(ret);
	if (ret && (full || d->ops->gone(d, ret))) {
		pthread_mutex_lock(&dev->lock);
		if (!d->gone) {
			d->full = full;
			snprintf(reason, len, full ?
				 "disk %u (%.200s): the storage is full (%s); its requests are "
				 "held: make room, then vmon ctl resume retries them" :
				 "disk %u (%.200s): the storage is unreachable (%s); its requests "
				 "are held: vmon ctl resume retries",
				 d->index, d->spec.target, strerror(-ret));
		}
		d->gone = true;
		pthread_mutex_unlock(&dev->lock);
		return false;
	}
	if (ret) {
		__atomic_add_fetch(&d->stats.errors, 1, __ATOMIC_RELAXED);
		/* Logged once per disk: a failing disk must not flood the log. */
		if (!__atomic_exchange_n(&d->error_logged, true, __ATOMIC_RELAXED))
			log_err("%s: disk %u (%s): I/O error (%s at offset %llu); the guest gets "
				"it as the request's status; further errors are only counted",
				dev->vm->cfg.name, d->index, d->spec.target, strerror(-ret),
				(unsigned long long)j->q.offset);
	}
	blk_complete(dev, j, ret ? ret : (int64_t)j->q.len);
	return true;
}

void blk_job_finish(struct blk_dev *dev, const struct blk_job *j, bool done,
		    const char *reason)
{
	if (!done)
		dev->held[dev->nr_held++] = *j;
	else if (j->ring)
		dev->rings[j->disk].inflight--;
	else
		dev->per_disk[j->disk]--;
	/* A ring at its limit waits for this completion (the poller's own need not). */
	if (done && j->ring && dev->poller_started &&
	    !pthread_equal(pthread_self(), dev->poller)) {
		dev->kicked = true;
		pthread_cond_signal(&dev->kick);
	}
	if (!--dev->inflight)
		pthread_cond_broadcast(&dev->idle);
	if (reason[0]) {
		pthread_mutex_unlock(&dev->lock);
		vm_pause_for(dev->vm, reason);
		pthread_mutex_lock(&dev->lock);
	}
}

void blk_enqueue(struct blk_dev *dev, const struct blk_job *j)
{
	dev->queue[(dev->head + dev->count) % BLK_QUEUE_MAX] = *j;
	dev->count++;
	dev->inflight++;
	pthread_cond_signal(&dev->work);
}

static void *blk_worker(void *arg)
{
	struct blk_dev *dev = arg;

	pthread_mutex_lock(&dev->lock);
	while (!dev->stopping) {
		char reason[BLK_ERR_LEN] = "";
		struct blk_job j;
		bool done;

		if (!dev->count) {
			pthread_cond_wait(&dev->work, &dev->lock);
			continue;
		}
		j = dev->queue[dev->head];
		dev->head = (dev->head + 1) % BLK_QUEUE_MAX;
		dev->count--;
		pthread_mutex_unlock(&dev->lock);
		done = blk_run(dev, &j, reason, sizeof(reason));
		pthread_mutex_lock(&dev->lock);
		blk_job_finish(dev, &j, done, reason);
	}
	pthread_mutex_unlock(&dev->lock);
	return NULL;
}

/*
 * The fast path, on the vCPU thread: a request the backend can do without
 * blocking (a page-cache hit) completes before the hypercall returns,
 * sparing the hand-off to an I/O thread. Anything that would block, fails
 * or comes while requests are held goes to the queue as before.
 */
static bool blk_try_inline(struct blk_dev *dev, struct blk_job *j)
{
	struct blk_disk *d = &dev->disks[j->disk];
	struct vm *vm = dev->vm;
	void *buf;
	bool ok;

	if (!d->ops->try_nowait || j->q.op == GABI_BLK_FLUSH)
		return false;
	pthread_mutex_lock(&dev->lock);
	ok = !d->gone && !dev->nr_held && !dev->stopping;
	pthread_mutex_unlock(&dev->lock);
	if (!ok)
		return false;
	buf = mem_ptr(&vm->mem, j->q.buf_gpa, j->q.len);
	if (d->ops->try_nowait(d, &j->q, buf)) {
		if (j->q.op == GABI_BLK_READ)
			dirty_mark(vm->dirty, j->q.buf_gpa, j->q.len);
		return false;
	}
	if (j->q.op == GABI_BLK_READ) {
		dirty_mark(vm->dirty, j->q.buf_gpa, j->q.len);
		__atomic_add_fetch(&d->stats.reads, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&d->stats.bytes_read, j->q.len, __ATOMIC_RELAXED);
	} else {
		__atomic_add_fetch(&d->unflushed, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&d->stats.writes, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&d->stats.bytes_written, j->q.len, __ATOMIC_RELAXED);
	}
	__atomic_add_fetch(&d->stats.inline_done, 1, __ATOMIC_RELAXED);
	blk_complete(dev, j, (int64_t)j->q.len);
	return true;
}

static int64_t blk_submit(struct blk_dev *dev, unsigned disk, uint64_t gpa)
{
	struct vm *vm = dev->vm;
	struct blk_job j = { .disk = disk, .gpa = gpa };
	int ret;

	/* One copy: the guest may rewrite the request while we look at it. */
	memcpy(&j.q, mem_ptr(&vm->mem, gpa, sizeof(j.q)), sizeof(j.q));
	ret = hcall_blk_req_check(&j.q, dev->disks[disk].size, vm->mem.size);
	if (ret)
		return ret;
	if (blk_try_inline(dev, &j))
		return 0;
	pthread_mutex_lock(&dev->lock);
	if (dev->stopping)
		ret = -ESHUTDOWN;
	else if (dev->per_disk[disk] >= GABI_BLK_QUEUE_DEPTH)
		ret = -EAGAIN;
	if (!ret) {
		dev->per_disk[disk]++;
		blk_enqueue(dev, &j);
	}
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

static int64_t blk_hcall(void *ctx, struct vcpu *v, uint64_t nr, const uint64_t *a)
{
	struct blk_dev *dev = ctx;
	struct gabi_blk_info info;

	if (a[0] >= dev->nr_disks)
		return -ENODEV;
	if (nr == GABI_HC_BLK_SUBMIT)
		return blk_submit(dev, (unsigned)a[0], a[1]);
	if (nr == GABI_HC_BLK_RING)
		return blk_ring_setup(dev, (unsigned)a[0], a[1]);
	if (nr == GABI_HC_BLK_KICK) {
		__atomic_add_fetch(&dev->disks[a[0]].stats.ring_kicks, 1, __ATOMIC_RELAXED);
		blk_ring_kick(dev);
		return 0;
	}
	info = (struct gabi_blk_info){
		.size = dev->disks[a[0]].size,
		.block_size = GABI_BLK_SECTOR,
		.max_io = GABI_BLK_MAX_IO,
		.queue_depth = GABI_BLK_QUEUE_DEPTH,
		.nr_disks = dev->nr_disks,
	};
	return vm_write_guest(dev->vm, a[1], &info, sizeof(info));
}

/*
 * The vCPUs are parked: take what the rings still hold (a guest may have
 * raised tail just before the pause, without its kick), then wait for
 * everything in flight.
 */
static void blk_drain(void *ctx)
{
	struct blk_dev *dev = ctx;

	pthread_mutex_lock(&dev->lock);
	__atomic_add_fetch(&dev->draining, 1, __ATOMIC_RELEASE);
	while (dev->inflight || !blk_rings_drained(dev)) {
		dev->kicked = true;
		pthread_cond_signal(&dev->kick);
		pthread_cond_wait(&dev->idle, &dev->lock);
	}
	__atomic_sub_fetch(&dev->draining, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&dev->lock);
}

static int blk_quiesce(void *ctx, char *err, size_t len)
{
	struct blk_dev *dev = ctx;

	/*
	 * Requests held for a disk that stalled travel in the state (version
	 * 3) and run again where the VM is resumed; the VM is held paused
	 * (vm_held), so it lands paused. A stalled disk cannot flush.
	 */
	blk_drain(dev);
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		bool stalled;
		int ret;

		pthread_mutex_lock(&dev->lock);
		stalled = d->gone;
		pthread_mutex_unlock(&dev->lock);
		if (stalled)
			continue;
		ret = blk_flush(d, false);

		if (ret) {
			snprintf(err, len, "disk %u (%.200s): flush: %s", i, d->spec.target,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int blk_acquire(void *ctx, char *err, size_t len)
{
	struct blk_dev *dev = ctx;

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		int ret = blk_lease_acquire(&dev->disks[i], err, len);

		if (ret) {
			while (i--)
				blk_lease_release(&dev->disks[i]);
			return ret;
		}
	}
	/* The poller serves owned disks only: it may have work now. */
	blk_ring_kick(dev);
	return 0;
}

static void blk_release(void *ctx)
{
	struct blk_dev *dev = ctx;

	for (unsigned i = 0; i < dev->nr_disks; i++)
		blk_lease_release(&dev->disks[i]);
}

/*
 * A fence: the VM stops for good, and another host may start it once this
 * process, and the OFD lease with it, is gone. A request stuck on storage
 * this host lost with the cluster (a write to an NBD server, waiting out
 * TCP's retries for minutes) would hold the stop, and so the lease, and
 * the restart elsewhere would find the disk in use. Each backend ends it
 * at once, discarding what the kernel still holds to send: it must never
 * reach the storage after the lease is gone and a new owner writes.
 */
static void blk_abort(void *ctx)
{
	struct blk_dev *dev = ctx;

	pthread_mutex_lock(&dev->lock);
	dev->aborted = true;
	for (unsigned i = 0; i < dev->nr_disks; i++)
		if (dev->disks[i].ops && dev->disks[i].ops->abort)
			dev->disks[i].ops->abort(&dev->disks[i]);
	pthread_mutex_unlock(&dev->lock);
}

/* The VM is paused and nothing is in flight: reconnect, then rerun the held requests. */
static int blk_resume(void *ctx, char *err, size_t len)
{
	struct blk_dev *dev = ctx;

	if (__atomic_load_n(&dev->aborted, __ATOMIC_ACQUIRE)) {
		snprintf(err, len, "the VM was stopped for good (fenced): its disks stay cut off");
		return -ESHUTDOWN;
	}

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		int ret = 0;

		if (!d->gone)
			continue;
		/* Full, not gone: the held requests themselves tell whether there is room now. */
		for (unsigned t = 0; !d->full && t < blk_defaults.reconnect_tries; t++) {
			ret = d->ops->reconnect(d, err, len);
			/* A try that waited out connect_wait_ms has waited enough. */
			if (!ret || ret == -ETIMEDOUT)
				break;
			usleep(blk_defaults.reconnect_wait_ms * 1000);
		}
		if (ret)
			return ret;
		if (d->full) {
			log_info("disk %u (%s): retrying its held requests (it was full)", i,
				 d->spec.target);
		} else {
			log_info("disk %u (%s): reconnected", i, d->spec.target);
			d->stats.reconnects++;
		}
		pthread_mutex_lock(&dev->lock);
		d->gone = false;
		d->full = false;
		pthread_mutex_unlock(&dev->lock);
	}
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < dev->nr_held; i++)
		blk_enqueue(dev, &dev->held[i]);
	dev->nr_held = 0;
	pthread_cond_broadcast(&dev->work);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

/* Under dev->lock: the requests held for disk, and the bytes its held writes carry. */
static unsigned held_of(const struct blk_dev *dev, unsigned disk, uint64_t *write_bytes)
{
	unsigned n = 0;

	*write_bytes = 0;
	for (unsigned k = 0; k < dev->nr_held; k++) {
		if (dev->held[k].disk != disk)
			continue;
		n++;
		if (dev->held[k].q.op == GABI_BLK_WRITE)
			*write_bytes += dev->held[k].q.len;
	}
	return n;
}

/*
 * --auto-resume-s: a file disk that ran out of room is retried once its
 * file system has room for the held writes and 1 MiB to spare (a write
 * into a thin image may need new metadata blocks too). Storage that went
 * away, and an NBD export that is full, tell only by a try: the caller
 * backs off between them.
 */
static int blk_retry_ready(void *ctx, char *why, size_t len)
{
	struct blk_dev *dev = ctx;

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		uint64_t need, room;
		char dir[BLK_SPEC_MAX], *slash;
		struct statvfs fs;
		bool full;

		pthread_mutex_lock(&dev->lock);
		full = d->gone && d->full;
		held_of(dev, i, &need);
		pthread_mutex_unlock(&dev->lock);
		need += 1ull << 20;
		if (!full || d->spec.kind != BLK_FILE)
			continue;
		snprintf(dir, sizeof(dir), "%s", d->spec.target);
		slash = strrchr(dir, '/');
		if (slash)
			*(slash == dir ? slash + 1 : slash) = 0;
		if (statvfs(slash ? dir : ".", &fs))
			continue;   /* cannot tell: a try will */
		room = (uint64_t)fs.f_bavail * fs.f_frsize;
		if (room < need) {
			snprintf(why, len, "disk %u (%.200s): %llu KiB free, %llu KiB wanted", i,
				 d->spec.target, (unsigned long long)(room >> 10),
				 (unsigned long long)(need >> 10));
			return 0;
		}
	}
	return 1;
}

/* DEVICE_STATE (storage/blk_state.h): the disks, their sizes and rings. */
static int blk_save(void *ctx, uint32_t *version, uint8_t **buf, size_t *len)
{
	struct blk_dev *dev = ctx;
	struct blk_state *st = calloc(1, sizeof(*st));
	int ret;

	if (!st)
		return -ENOMEM;
	st->n = dev->nr_disks;
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		st->specs[i] = dev->disks[i].spec;
		st->sizes[i] = dev->disks[i].size;
	}
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		const struct blk_ring *r = &dev->rings[i];

		if (!r->armed)
			continue;
		st->rings[st->nr_rings].disk = i;
		st->rings[st->nr_rings].gpa = r->gpa;
		st->rings[st->nr_rings].head = r->head;
		st->nr_rings++;
	}
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		const struct blk_disk *d = &dev->disks[i];
		uint64_t bytes;

		if (!d->gone && !held_of(dev, i, &bytes))
			continue;
		/* Held but no longer gone (a resume that failed halfway): run them, no reconnect. */
		st->stalled[st->nr_stalled].disk = i;
		st->stalled[st->nr_stalled].full = d->full || !d->gone;
		st->nr_stalled++;
	}
	for (unsigned k = 0; k < dev->nr_held; k++) {
		const struct blk_job *j = &dev->held[k];
		struct blk_state_held *h = &st->held[st->nr_held++];

		h->disk = j->disk;
		h->ring = j->ring;
		h->gpa = j->gpa;
		h->q = (struct gabi_blk_req){ .op = j->q.op, .flags = j->q.flags,
					      .offset = j->q.offset, .len = j->q.len,
					      .buf_gpa = j->q.buf_gpa, .tag = j->q.tag };
	}
	pthread_mutex_unlock(&dev->lock);
	ret = blk_state_format(st, version, buf, len);
	free(st);
	return ret;
}

static unsigned blk_stats(void *ctx, struct vm_dev_stat *out, unsigned max)
{
	struct blk_dev *dev = ctx;
	unsigned n = 0;

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		uint64_t bytes, held;

		pthread_mutex_lock(&dev->lock);
		held = held_of(dev, i, &bytes);
		pthread_mutex_unlock(&dev->lock);
		const struct { const char *k; uint64_t v; } s[] = {
			{ "reads", __atomic_load_n(&d->stats.reads, __ATOMIC_RELAXED) },
			{ "writes", __atomic_load_n(&d->stats.writes, __ATOMIC_RELAXED) },
			{ "flushes", __atomic_load_n(&d->stats.flushes, __ATOMIC_RELAXED) },
			{ "bytes_read", __atomic_load_n(&d->stats.bytes_read, __ATOMIC_RELAXED) },
			{ "bytes_written", __atomic_load_n(&d->stats.bytes_written, __ATOMIC_RELAXED) },
			{ "io_errors", __atomic_load_n(&d->stats.errors, __ATOMIC_RELAXED) },
			{ "reconnects", d->stats.reconnects },
			{ "inline_done", __atomic_load_n(&d->stats.inline_done, __ATOMIC_RELAXED) },
			{ "ring_taken", __atomic_load_n(&d->stats.ring_taken, __ATOMIC_RELAXED) },
			{ "ring_kicks", __atomic_load_n(&d->stats.ring_kicks, __ATOMIC_RELAXED) },
			{ "ring_errors", __atomic_load_n(&d->stats.ring_errors, __ATOMIC_RELAXED) },
			{ "owned", d->owned },
			{ "unreachable", d->gone && !d->full },
			{ "full", d->full },
			{ "held", held },   /* requests waiting for the storage */
		};

		for (unsigned k = 0; k < sizeof(s) / sizeof(s[0]) && n < max; k++, n++) {
			snprintf(out[n].name, sizeof(out[n].name), "disk%u.%s", i, s[k].k);
			out[n].value = s[k].v;
		}
	}
	return n;
}

static void blk_destroy(void *ctx)
{
	struct blk_dev *dev = ctx;

	/* One flag stops all: the poller reads it without the lock. */
	pthread_mutex_lock(&dev->lock);
	__atomic_store_n(&dev->stopping, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&dev->work);
	pthread_cond_signal(&dev->kick);
	pthread_mutex_unlock(&dev->lock);
	blk_ring_stop(dev);
	for (unsigned i = 0; i < dev->nr_workers; i++)
		pthread_join(dev->workers[i], NULL);
	for (unsigned i = 0; i < dev->nr_disks; i++)
		blk_disk_close(&dev->disks[i]);
	pthread_cond_destroy(&dev->work);
	pthread_cond_destroy(&dev->idle);
	pthread_cond_destroy(&dev->kick);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

static const struct vm_dev_ops blk_dev_ops = {
	.name = BLK_DEV_NAME,
	.hc_first = GABI_HC_BLK_INFO,
	.hc_last = GABI_HC_BLK_KICK,
	.hcall = blk_hcall,
	.drain = blk_drain,
	.quiesce = blk_quiesce,
	.acquire = blk_acquire,
	.release = blk_release,
	.resume = blk_resume,
	.retry_ready = blk_retry_ready,
	.abort = blk_abort,
	.save = blk_save,
	.stats = blk_stats,
	.destroy = blk_destroy,
};

static void disk_init(struct blk_disk *d, const struct blk_spec *spec)
{
	unsigned index = d->index;

	memset(d, 0, sizeof(*d));
	d->index = index;
	d->spec = *spec;
	d->fd = d->lock_fd = d->nbd_fd = -1;
	d->ops = spec->kind == BLK_NBD ? &blk_nbd_ops : &blk_file_ops;
}

int blk_disk_open(struct blk_disk *d, const struct blk_spec *spec, char *err, size_t len)
{
	disk_init(d, spec);
	return d->ops->open(d, err, len);
}

bool blk_unreachable(int err)
{
	switch (-err) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ENETUNREACH:
	case ENETDOWN:
	case ENOTCONN:
	case EPIPE:
	case ESHUTDOWN:
		return true;
	default:
		return false;
	}
}

int blk_disk_probe(struct blk_disk *d, const struct blk_spec *spec, char *err, size_t len)
{
	disk_init(d, spec);
	return d->ops->probe(d, err, len);
}

void blk_disk_close(struct blk_disk *d)
{
	if (d->ops)
		d->ops->close(d);   /* closing the lock fd drops the OFD lock */
	d->owned = false;
	d->ops = NULL;
}

int blk_dev_create(struct vm *vm, const struct blk_spec *specs, unsigned n,
		   char *err, size_t err_len)
{
	struct blk_dev *dev;
	int ret = 0;

	if (!n)
		return 0;
	if (n > GABI_BLK_MAX_DISKS) {
		snprintf(err, err_len, "%u disks: at most %u", n, GABI_BLK_MAX_DISKS);
		return -E2BIG;
	}
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->vm = vm;
	pthread_mutex_init(&dev->lock, NULL);
	pthread_cond_init(&dev->work, NULL);
	pthread_cond_init(&dev->idle, NULL);
	pthread_cond_init(&dev->kick, NULL);
	for (unsigned i = 0; i < n && !ret; i++) {
		dev->disks[i].index = i;
		ret = blk_disk_open(&dev->disks[i], &specs[i], err, err_len);
		dev->nr_disks = i + 1;
	}
	for (unsigned i = 0; !ret && i < blk_defaults.workers && i < BLK_WORKERS_MAX; i++) {
		ret = -pthread_create(&dev->workers[i], NULL, blk_worker, dev);
		if (ret)
			snprintf(err, err_len, "disk I/O thread: %s", strerror(-ret));
		else
			dev->nr_workers++;
	}
	if (!ret)
		ret = vm_dev_attach(vm, &blk_dev_ops, dev);
	if (ret)
		blk_destroy(dev);
	return ret;
}

static int size_differs(unsigned i, const struct blk_spec *spec, uint64_t here,
			uint64_t there, char *err, size_t err_len)
{
	if (here == there)
		return 0;
	snprintf(err, err_len, "disk %u (%.200s) is %llu bytes here, %llu on the source", i,
		 spec->spec, (unsigned long long)here, (unsigned long long)there);
	return -EBADMSG;
}

/*
 * The disks that stalled at the source and the requests they held: held
 * here, as there, until vmon ctl resume runs them (a gone disk is
 * reconnected first). Each is checked as blk_submit checks a request.
 */
static int blk_held_load(struct blk_dev *dev, const struct blk_state *st, char *err,
			 size_t err_len)
{
	for (unsigned i = 0; i < st->nr_held; i++) {
		const struct blk_state_held *h = &st->held[i];
		int ret = hcall_blk_req_check(&h->q, dev->disks[h->disk].size, dev->vm->mem.size);

		if (!ret && !mem_ptr(&dev->vm->mem, h->gpa, sizeof(h->q)))
			ret = -EFAULT;
		if (ret) {
			snprintf(err, err_len, "disk state: held request %u (disk %u, at %#llx): %s", i,
				 h->disk, (unsigned long long)h->gpa, strerror(-ret));
			return -EBADMSG;
		}
	}
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < st->nr_stalled; i++) {
		dev->disks[st->stalled[i].disk].gone = true;
		dev->disks[st->stalled[i].disk].full = st->stalled[i].full;
	}
	for (unsigned i = 0; i < st->nr_held; i++) {
		const struct blk_state_held *h = &st->held[i];
		struct blk_job *j = &dev->held[dev->nr_held++];

		*j = (struct blk_job){ .disk = h->disk, .ring = h->ring, .gpa = h->gpa, .q = h->q };
		/* Counted as the source counted them: taken, not completed. */
		if (j->ring)
			dev->rings[j->disk].inflight++;
		else
			dev->per_disk[j->disk]++;
	}
	pthread_mutex_unlock(&dev->lock);
	/* The source's END names why (a full disk); this stands in should it not. */
	pthread_mutex_lock(&dev->vm->lock);
	if (st->nr_stalled && !dev->vm->pause_reason[0])
		snprintf(dev->vm->pause_reason, sizeof(dev->vm->pause_reason), "disk %u (%s) "
			 "stalled at the source with %u requests held: vmon ctl resume retries "
			 "them", st->stalled[0].disk, dev->disks[st->stalled[0].disk].spec.target,
			 st->nr_held);
	pthread_mutex_unlock(&dev->vm->lock);
	return 0;
}

/* A VM arriving in a stream: open the disks it had, the same sizes; its rings. */
static int blk_load(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
		    char *err, size_t err_len)
{
	struct blk_state *st = malloc(sizeof(*st));
	struct blk_dev *dev = NULL;
	int ret;

	if (!st)
		return -ENOMEM;
	ret = blk_state_parse(version, data, len, st, err, err_len);
	if (!ret)
		ret = blk_dev_create(vm, st->specs, st->n, err, err_len);
	if (!ret && st->n)
		dev = vm->devs[vm->nr_devs - 1].ctx;
	for (unsigned i = 0; !ret && i < st->n; i++)
		ret = size_differs(i, &st->specs[i], dev->disks[i].size, st->sizes[i], err,
				   err_len);
	for (unsigned i = 0; !ret && dev && i < st->nr_rings; i++)
		ret = blk_ring_load(dev, st->rings[i].disk, st->rings[i].gpa, st->rings[i].head,
				    err, err_len);
	if (!ret && dev)
		ret = blk_held_load(dev, st, err, err_len);
	free(st);
	return ret;
}

struct probe_job {
	struct blk_disk d;
	const struct blk_spec *spec;
	pthread_t thread;
	bool threaded;
	int ret;
	char err[BLK_ERR_LEN];
};

static void *probe_run(void *arg)
{
	struct probe_job *j = arg;

	j->ret = blk_disk_probe(&j->d, j->spec, j->err, sizeof(j->err));
	return NULL;
}

int blk_state_precheck(uint32_t version, const uint8_t *data, size_t len, char *err,
		       size_t err_len)
{
	struct blk_state *st = malloc(sizeof(*st));
	struct probe_job *jobs = NULL;
	int ret;

	if (!st)
		return -ENOMEM;
	ret = blk_state_parse(version, data, len, st, err, err_len);
	if (!ret && st->n && !(jobs = calloc(st->n, sizeof(*jobs))))
		ret = -ENOMEM;
	/*
	 * Every disk must open here, with the same size: the common mistakes
	 * are storage that is not shared and a server this host cannot reach.
	 * No lock is taken (the source holds it). All at once, so that a VM
	 * with several unreachable servers waits one probe_wait_ms, not one
	 * each; inline where no thread can be had.
	 */
	for (unsigned i = 0; !ret && i < st->n; i++) {
		jobs[i].d.index = i;
		jobs[i].spec = &st->specs[i];
		jobs[i].threaded = !pthread_create(&jobs[i].thread, NULL, probe_run, &jobs[i]);
		if (!jobs[i].threaded)
			probe_run(&jobs[i]);
	}
	for (unsigned i = 0; !ret && i < st->n; i++)
		if (jobs[i].threaded)
			pthread_join(jobs[i].thread, NULL);
	/* The first disk that fails, in order, is the one named. */
	for (unsigned i = 0; !ret && i < st->n; i++) {
		struct probe_job *j = &jobs[i];

		if (j->ret == -EINPROGRESS) {
			log_info("precheck: disk %u (%s): the NBD server took the connection "
				 "but gave no size in %u ms (one client at a time?); size not "
				 "checked", i, st->specs[i].target, blk_defaults.probe_wait_ms);
		} else if (j->ret) {
			ret = j->ret;
			snprintf(err, err_len, "%s", j->err);
		} else {
			ret = size_differs(i, &st->specs[i], j->d.size, st->sizes[i], err, err_len);
		}
	}
	for (unsigned i = 0; jobs && i < st->n; i++)
		blk_disk_close(&jobs[i].d);
	free(jobs);
	free(st);
	return ret;
}

const struct vm_dev_type blk_dev_type = {
	.name = BLK_DEV_NAME,
	.what = "disk",
	.load = blk_load,
	.precheck = blk_state_precheck,
};
