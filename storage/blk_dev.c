/*
 * The guest's block device (docs/guest-abi.md, "Block devices"): blk_submit
 * validates a copy of the request and queues it; a small pool of I/O
 * threads runs it against the backend, straight between guest RAM and the
 * storage, and completes it in guest RAM (data, result, done), every write
 * marked dirty for migration. The vCPU never waits for the storage.
 *
 * A request that fails because the storage went away is held, not failed,
 * and the VM pauses with the reason; resume reconnects and runs the held
 * requests again. A request the storage refused ends with its error.
 */
#include "storage/blk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hcall.h"
#include "core/log.h"
#include "core/vm.h"

#define BLK_QUEUE_MAX (GABI_BLK_MAX_DISKS * GABI_BLK_QUEUE_DEPTH)
#define BLK_WORKERS_MAX 16
#define BLK_STATE_VERSION 1
#define BLK_DEV_NAME "blk"

struct blk_job {
	unsigned disk;
	uint64_t gpa;            /* the request in guest RAM */
	struct gabi_blk_req q;   /* the validated copy */
};

struct blk_dev {
	struct vm *vm;
	unsigned nr_disks;
	struct blk_disk disks[GABI_BLK_MAX_DISKS];
	pthread_mutex_t lock;
	pthread_cond_t work;     /* a job was queued, or stopping */
	pthread_cond_t idle;     /* nothing in flight any more */
	struct blk_job queue[BLK_QUEUE_MAX];
	unsigned head, count;
	unsigned inflight;       /* queued or running */
	unsigned per_disk[GABI_BLK_MAX_DISKS]; /* queued, running or held */
	struct blk_job held[BLK_QUEUE_MAX];
	unsigned nr_held;
	bool stopping;
	unsigned nr_workers;
	pthread_t workers[BLK_WORKERS_MAX];
};

static void blk_complete(struct blk_dev *dev, const struct blk_job *j, int64_t res)
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

/* Run one job; false when the storage is gone and the job must be held. */
static bool blk_run(struct blk_dev *dev, const struct blk_job *j, char *reason, size_t len)
{
	struct blk_disk *d = &dev->disks[j->disk];
	bool gone;
	int ret;

	pthread_mutex_lock(&dev->lock);
	gone = d->gone;
	pthread_mutex_unlock(&dev->lock);
	if (gone)
		return false;
	ret = blk_io(dev, d, &j->q);
	if (ret && d->ops->gone(d, ret)) {
		pthread_mutex_lock(&dev->lock);
		if (!d->gone)
			snprintf(reason, len, "disk %u (%.200s): the storage is unreachable (%s); "
				 "its requests are held: vmon ctl resume retries", d->index,
				 d->spec.target, strerror(-ret));
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
		if (done)
			dev->per_disk[j.disk]--;
		else
			dev->held[dev->nr_held++] = j;
		if (!--dev->inflight)
			pthread_cond_broadcast(&dev->idle);
		if (reason[0]) {
			pthread_mutex_unlock(&dev->lock);
			vm_pause_for(dev->vm, reason);
			pthread_mutex_lock(&dev->lock);
		}
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
		dev->queue[(dev->head + dev->count) % BLK_QUEUE_MAX] = j;
		dev->count++;
		dev->inflight++;
		dev->per_disk[disk]++;
		pthread_cond_signal(&dev->work);
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
	info = (struct gabi_blk_info){
		.size = dev->disks[a[0]].size,
		.block_size = GABI_BLK_SECTOR,
		.max_io = GABI_BLK_MAX_IO,
		.queue_depth = GABI_BLK_QUEUE_DEPTH,
		.nr_disks = dev->nr_disks,
	};
	return vm_write_guest(dev->vm, a[1], &info, sizeof(info));
}

static void blk_drain(void *ctx)
{
	struct blk_dev *dev = ctx;

	pthread_mutex_lock(&dev->lock);
	while (dev->inflight)
		pthread_cond_wait(&dev->idle, &dev->lock);
	pthread_mutex_unlock(&dev->lock);
}

static int blk_quiesce(void *ctx, char *err, size_t len)
{
	struct blk_dev *dev = ctx;
	unsigned held;

	blk_drain(dev);
	pthread_mutex_lock(&dev->lock);
	held = dev->nr_held;
	pthread_mutex_unlock(&dev->lock);
	if (held) {
		snprintf(err, len, "%u disk requests are held because their storage is "
			 "unreachable; resume the VM first", held);
		return -EIO;
	}
	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		int ret = blk_flush(d, false);

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
	return 0;
}

static void blk_release(void *ctx)
{
	struct blk_dev *dev = ctx;

	for (unsigned i = 0; i < dev->nr_disks; i++)
		blk_lease_release(&dev->disks[i]);
}

/* The VM is paused and nothing is in flight: reconnect, then rerun the held requests. */
static int blk_resume(void *ctx, char *err, size_t len)
{
	struct blk_dev *dev = ctx;

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		int ret = 0;

		if (!d->gone)
			continue;
		for (unsigned t = 0; t < blk_defaults.reconnect_tries; t++) {
			ret = d->ops->reconnect(d, err, len);
			if (!ret)
				break;
			usleep(blk_defaults.reconnect_wait_ms * 1000);
		}
		if (ret)
			return ret;
		log_info("disk %u (%s): reconnected", i, d->spec.target);
		d->stats.reconnects++;
		pthread_mutex_lock(&dev->lock);
		d->gone = false;
		pthread_mutex_unlock(&dev->lock);
	}
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < dev->nr_held; i++) {
		dev->queue[(dev->head + dev->count) % BLK_QUEUE_MAX] = dev->held[i];
		dev->count++;
		dev->inflight++;
	}
	dev->nr_held = 0;
	pthread_cond_broadcast(&dev->work);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

/* DEVICE_STATE: one line per disk, "SIZE SPEC\n". */
static int blk_save(void *ctx, uint32_t *version, uint8_t **buf, size_t *len)
{
	struct blk_dev *dev = ctx;
	size_t cap = dev->nr_disks * (BLK_SPEC_MAX + 32) + 1, off = 0;
	char *out = malloc(cap);

	if (!out)
		return -ENOMEM;
	for (unsigned i = 0; i < dev->nr_disks; i++)
		off += (size_t)snprintf(out + off, cap - off, "%llu %s\n",
					(unsigned long long)dev->disks[i].size,
					dev->disks[i].spec.spec);
	*version = BLK_STATE_VERSION;
	*buf = (uint8_t *)out;
	*len = off;
	return 0;
}

static unsigned blk_stats(void *ctx, struct vm_dev_stat *out, unsigned max)
{
	struct blk_dev *dev = ctx;
	unsigned n = 0;

	for (unsigned i = 0; i < dev->nr_disks; i++) {
		struct blk_disk *d = &dev->disks[i];
		const struct { const char *k; uint64_t v; } s[] = {
			{ "reads", __atomic_load_n(&d->stats.reads, __ATOMIC_RELAXED) },
			{ "writes", __atomic_load_n(&d->stats.writes, __ATOMIC_RELAXED) },
			{ "flushes", __atomic_load_n(&d->stats.flushes, __ATOMIC_RELAXED) },
			{ "bytes_read", __atomic_load_n(&d->stats.bytes_read, __ATOMIC_RELAXED) },
			{ "bytes_written", __atomic_load_n(&d->stats.bytes_written, __ATOMIC_RELAXED) },
			{ "io_errors", __atomic_load_n(&d->stats.errors, __ATOMIC_RELAXED) },
			{ "reconnects", d->stats.reconnects },
			{ "inline_done", __atomic_load_n(&d->stats.inline_done, __ATOMIC_RELAXED) },
			{ "owned", d->owned },
			{ "unreachable", d->gone },
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

	pthread_mutex_lock(&dev->lock);
	dev->stopping = true;
	pthread_cond_broadcast(&dev->work);
	pthread_mutex_unlock(&dev->lock);
	for (unsigned i = 0; i < dev->nr_workers; i++)
		pthread_join(dev->workers[i], NULL);
	for (unsigned i = 0; i < dev->nr_disks; i++)
		blk_disk_close(&dev->disks[i]);
	pthread_cond_destroy(&dev->work);
	pthread_cond_destroy(&dev->idle);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

static const struct vm_dev_ops blk_dev_ops = {
	.name = BLK_DEV_NAME,
	.hcall = blk_hcall,
	.drain = blk_drain,
	.quiesce = blk_quiesce,
	.acquire = blk_acquire,
	.release = blk_release,
	.resume = blk_resume,
	.save = blk_save,
	.stats = blk_stats,
	.destroy = blk_destroy,
};

int blk_disk_open(struct blk_disk *d, const struct blk_spec *spec, char *err, size_t len)
{
	unsigned index = d->index;

	memset(d, 0, sizeof(*d));
	d->index = index;
	d->spec = *spec;
	d->fd = d->lock_fd = -1;
	d->ops = spec->kind == BLK_NBD ? &blk_nbd_ops : &blk_file_ops;
	return d->ops->open(d, err, len);
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

/* DEVICE_STATE's lines, "SIZE SPEC": the disks a VM had, and their sizes. */
static int blk_state_parse(uint32_t version, const uint8_t *data, size_t len,
			   struct blk_spec *specs, uint64_t *sizes, unsigned *n,
			   char *err, size_t err_len)
{
	char text[GABI_BLK_MAX_DISKS * (BLK_SPEC_MAX + 32)], *line, *save = NULL;

	*n = 0;
	if (version != BLK_STATE_VERSION || len >= sizeof(text) ||
	    (len && memchr(data, 0, len))) {
		snprintf(err, err_len, "disk state: version %u, %zu bytes: not understood",
			 version, len);
		return -EBADMSG;
	}
	if (len)
		memcpy(text, data, len);
	text[len] = 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' '), why[BLK_ERR_LEN];
		unsigned long long size;

		if (*n >= GABI_BLK_MAX_DISKS || !sp || sscanf(line, "%llu ", &size) != 1 ||
		    blk_spec_parse(sp + 1, &specs[*n], why, sizeof(why))) {
			snprintf(err, err_len, "disk state: disk %u is not valid", *n);
			return -EBADMSG;
		}
		sizes[(*n)++] = size;
	}
	return 0;
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

/* A VM arriving in a stream: open the disks it had, the same sizes. */
static int blk_load(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
		    char *err, size_t err_len)
{
	struct blk_spec specs[GABI_BLK_MAX_DISKS];
	uint64_t sizes[GABI_BLK_MAX_DISKS];
	unsigned n;
	int ret = blk_state_parse(version, data, len, specs, sizes, &n, err, err_len);

	if (!ret)
		ret = blk_dev_create(vm, specs, n, err, err_len);
	for (unsigned i = 0; !ret && i < n; i++) {
		struct blk_dev *dev = vm->devs[vm->nr_devs - 1].ctx;

		ret = size_differs(i, &specs[i], dev->disks[i].size, sizes[i], err, err_len);
	}
	return ret;
}

int blk_state_precheck(uint32_t version, const uint8_t *data, size_t len, char *err,
		       size_t err_len)
{
	struct blk_spec specs[GABI_BLK_MAX_DISKS];
	uint64_t sizes[GABI_BLK_MAX_DISKS];
	unsigned n;
	int ret = blk_state_parse(version, data, len, specs, sizes, &n, err, err_len);

	/*
	 * An image file must open here, with the same size: the common mistake
	 * is storage that is not shared. Opening takes no lock (the source
	 * holds it). An NBD export is not connected to now: a server that
	 * takes one client at a time (qemu-nbd's default) is the source's
	 * until switchover.
	 */
	for (unsigned i = 0; !ret && i < n; i++) {
		struct blk_disk d = { .index = i };

		if (specs[i].kind != BLK_FILE)
			continue;
		ret = blk_disk_open(&d, &specs[i], err, err_len);
		if (!ret)
			ret = size_differs(i, &specs[i], d.size, sizes[i], err, err_len);
		blk_disk_close(&d);
	}
	return ret;
}

const struct vm_dev_type blk_dev_type = {
	.name = BLK_DEV_NAME,
	.load = blk_load,
	.precheck = blk_state_precheck,
};
