/*
 * blk_path_bench [--n N] [--dir DIR]: the monitor's disk request path
 * alone, without KVM, against the raw file in the same run.
 *
 * A thread of this process plays the guest over real guest RAM (a memfd)
 * and a 64 MiB file disk: 4 KiB writes at queue depth 1, sequential and
 * random, then each followed by a flush. Four ways:
 *   direct  O_DIRECT pwrite (+ fdatasync), fio --direct=1: the baseline
 *   raw     plain pwrite (+ fdatasync) through the page cache
 *   submit  the blk_submit path (validation, inline try, I/O thread
 *           hand-off, completion in RAM), called directly: a real guest
 *           adds one VM exit per request on top
 *   ring    the submission ring and its poller: what a real guest pays,
 *           since the ring needs no exit while the poller is awake
 * The "guest" waits for a completion as blkwriter does: it polls for 20 µs
 * (submit) or 200 µs (ring), or --spin-us, then sleeps 10 µs at a time.
 * Each line: IOPS, latency avg/p50/p99 and the ratio to direct. What a
 * guest gets end to end is storage_bench's (needs /dev/kvm).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/hcall.h"
#include "core/util.h"
#include "storage/blk.h"
#include "tests/fake_vm.h"

#define MEM      (32ull << 20)
#define DISK     (64ull << 20)
#define BLOCK    4096u
#define RING_GPA 0x800000ull
#define REQ_GPA  0x802000ull
#define BUF_GPA  0x900000ull
#define LAT_MAX  20000u   /* 1 µs buckets */

enum way { DIRECT, RAW, SUBMIT, RING, NR_WAYS };
static const char *const way_name[NR_WAYS] = { "direct", "raw", "submit", "ring" };

struct result {
	double iops;
	uint64_t avg_us, p50_us, p99_us, errors;
};

struct bench {
	const char *img;
	struct vm *vm;
	struct gabi_blk_ring *ring;
	struct gabi_blk_req *req;
	int fd[2];           /* RAW, DIRECT */
	uint32_t hist[LAT_MAX];
};

static uint64_t pct(const uint32_t *h, uint64_t n, unsigned p)
{
	uint64_t want = (n * p + 99) / 100, seen = 0;

	for (unsigned i = 0; i < LAT_MAX; i++)
		if ((seen += h[i]) >= want)
			return i + 1;
	return LAT_MAX;
}

static uint64_t spin_ns;   /* 0: blkwriter's own, 20 µs for submit, 200 µs for the ring */

/* As blkwriter waits: polling, then 10 µs sleeps (a guest's sleep hypercall). */
static int64_t wait_req(struct gabi_blk_req *q, bool ring)
{
	uint64_t spin_until = now_ns() + (spin_ns ? spin_ns : ring ? 200000 : 20000);
	const struct timespec nap = { .tv_nsec = 10000 };

	while (!__atomic_load_n(&q->done, __ATOMIC_ACQUIRE))
		if (now_ns() > spin_until)
			nanosleep(&nap, NULL);
	return q->result;
}

/* One request the way the guest makes it; its result. */
static int64_t guest_req(struct bench *b, enum way w, uint32_t op, uint64_t off)
{
	struct gabi_blk_req *q = w == RING ? &b->ring->slot[0] : b->req;
	uint64_t len = op == GABI_BLK_FLUSH ? 0 : BLOCK;
	int64_t ret;

	*q = (struct gabi_blk_req){ .op = op, .offset = len ? off : 0, .len = len,
				    .buf_gpa = len ? BUF_GPA : 0 };
	if (w == SUBMIT) {
		ret = fake_vm_hcall(b->vm, GABI_HC_BLK_SUBMIT, 0, REQ_GPA);
		return ret ? ret : wait_req(q, false);
	}
	uint32_t tail = b->ring->tail;

	b->ring->sq[tail % GABI_BLK_RING_SIZE] = 0;
	__atomic_store_n(&b->ring->tail, tail + 1, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&b->ring->need_kick, __ATOMIC_ACQUIRE))
		fake_vm_hcall(b->vm, GABI_HC_BLK_KICK, 0, 0);
	return wait_req(q, true);
}

static int one_write(struct bench *b, enum way w, uint64_t off, bool sync)
{
	if (w == RAW || w == DIRECT) {
		int fd = b->fd[w == RAW ? 0 : 1];
		void *buf = mem_ptr(&b->vm->mem, BUF_GPA, BLOCK);

		if (pwrite(fd, buf, BLOCK, (off_t)off) != BLOCK)
			return -EIO;
		return sync && fdatasync(fd) ? -EIO : 0;
	}
	if (guest_req(b, w, GABI_BLK_WRITE, off) != BLOCK)
		return -EIO;
	return sync && guest_req(b, w, GABI_BLK_FLUSH, 0) ? -EIO : 0;
}

static struct result run(struct bench *b, enum way w, bool rnd, bool sync, uint64_t n)
{
	uint64_t slots = DISK / BLOCK, x = 42, sum = 0, t0;
	struct result r = { 0 };

	memset(b->hist, 0, sizeof(b->hist));
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t s = now_ns(), ns, slot;

		x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
		slot = rnd ? (x * 0x2545f4914f6cdd1dull) % slots : i % slots;
		if (one_write(b, w, slot * BLOCK, sync))
			r.errors++;
		ns = now_ns() - s;
		sum += ns;
		b->hist[ns / 1000 < LAT_MAX ? ns / 1000 : LAT_MAX - 1]++;
	}
	t0 = now_ns() - t0;
	r.iops = (double)n * 1e9 / (double)(t0 ? t0 : 1);
	r.avg_us = sum / n / 1000;
	r.p50_us = pct(b->hist, n, 50);
	r.p99_us = pct(b->hist, n, 99);
	return r;
}

static int bench_open(struct bench *b, const char *dir, char *err, size_t len)
{
	static char img[4096];
	char *abs = realpath(dir, NULL);  /* a disk's path is absolute */
	struct blk_spec spec;
	int fd;

	if (!abs)
		return snprintf(err, len, "%s: %s", dir, strerror(errno)), -errno;
	snprintf(img, sizeof(img), "%s/blk_path_bench.img", abs);
	free(abs);
	b->img = img;
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, DISK)) {
		snprintf(err, len, "%s: %s", img, strerror(errno));
		return -errno;
	}
	close(fd);
	b->vm = fake_vm_make(MEM);
	if (!b->vm)
		return snprintf(err, len, "guest RAM: out of memory"), -ENOMEM;
	if (blk_spec_parse(img, &spec, err, len) || blk_dev_create(b->vm, &spec, 1, err, len) ||
	    b->vm->devs[0].ops->acquire(b->vm->devs[0].ctx, err, len))
		return -EIO;
	b->ring = mem_ptr(&b->vm->mem, RING_GPA, sizeof(*b->ring));
	b->req = mem_ptr(&b->vm->mem, REQ_GPA, sizeof(*b->req));
	memset(mem_ptr(&b->vm->mem, BUF_GPA, BLOCK), 0x5a, BLOCK);
	if (fake_vm_hcall(b->vm, GABI_HC_BLK_RING, 0, RING_GPA))
		return snprintf(err, len, "blk_ring refused"), -EIO;
	b->fd[0] = open(img, O_RDWR);
	b->fd[1] = open(img, O_RDWR | O_DIRECT);
	if (b->fd[0] < 0 || b->fd[1] < 0)
		return snprintf(err, len, "%s: %s", img, strerror(errno)), -errno;
	return 0;
}

int main(int argc, char **argv)
{
	static struct bench b;
	const char *dir = "/tmp";
	uint64_t n = 20000;
	char err[BLK_ERR_LEN];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--spin-us") && i + 1 < argc)
			spin_ns = strtoull(argv[++i], NULL, 0) * 1000;
		else {
			fprintf(stderr, "usage: blk_path_bench [--n N] [--dir DIR] [--spin-us US]\n"
				"The monitor's disk request path without KVM (see the source's "
				"head comment).\n");
			return !strcmp(argv[i], "--help") ? 0 : 2;
		}
	}
	if (!n || bench_open(&b, dir, err, sizeof(err))) {
		fprintf(stderr, "blk_path_bench: %s\n", n ? err : "--n must be > 0");
		return 1;
	}
	printf("blk_path_bench: 4 KiB writes, queue depth 1, 64 MiB file disk in %s, %llu writes "
	       "(a tenth with a flush after each); no KVM: submit lacks the VM exit a guest "
	       "pays\n", dir, (unsigned long long)n);
	printf("%-11s %-7s %10s %8s %16s %7s\n", "workload", "way", "IOPS", "of dir",
	       "avg/p50/p99 us", "errors");
	for (unsigned k = 0; k < 4; k++) {
		bool rnd = k & 1, sync = k & 2;
		uint64_t nn = sync ? (n / 10 ? n / 10 : 1) : n;
		struct result r[NR_WAYS];
		char name[16];

		snprintf(name, sizeof(name), "%s%s", rnd ? "rand" : "seq", sync ? "+flush" : "");
		for (unsigned w = 0; w < NR_WAYS; w++)
			r[w] = run(&b, (enum way)w, rnd, sync, nn);
		for (unsigned w = 0; w < NR_WAYS; w++) {
			char lat[48];

			snprintf(lat, sizeof(lat), "%llu/%llu/%llu", (unsigned long long)r[w].avg_us,
				 (unsigned long long)r[w].p50_us, (unsigned long long)r[w].p99_us);
			printf("%-11s %-7s %10.0f %8.2f %16s %7llu\n", w ? "" : name, way_name[w],
			       r[w].iops, r[w].iops / r[DIRECT].iops, lat,
			       (unsigned long long)r[w].errors);
		}
	}
	if (getenv("BLK_PATH_STATS")) {
		struct vm_dev_stat st[VM_DEV_STATS_MAX];
		unsigned ns = b.vm->devs[0].ops->stats(b.vm->devs[0].ctx, st, VM_DEV_STATS_MAX);

		for (unsigned i = 0; i < ns; i++)
			printf("%s = %llu\n", st[i].name, (unsigned long long)st[i].value);
	}
	close(b.fd[0]);
	close(b.fd[1]);
	fake_vm_free(b.vm);
	unlink(b.img);
	return 0;
}
