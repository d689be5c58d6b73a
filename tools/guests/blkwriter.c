/*
 * blkwriter: the disk workload (issue 5). vCPU 0 does the work; other vCPUs
 * park.
 *
 * mode=write: writes the block log of storage/blklog.h to disk `disk`,
 * block after block, each one waited for (queue depth 1), for ever or for
 * n blocks. A request that comes back with an error is counted and written
 * again, so an error never leaves a gap. Live values: "acked" (the last
 * block whose write the device reported done), "io_errors", "max_stall_ns".
 * With flush_every=K a flush follows every K blocks. With resume=1 the
 * log already on the disk is checked first and continued after its last
 * block, chained to it, so that one log spans every run of the guest (a
 * restart after a crash, a node lost); a log that does not check ends the
 * guest with "CHECK FAILED" (exit 9). "run_id" (the TSC at boot) tells
 * runs apart: it moves with a migrated guest.
 *
 * mode=bench: timed 4 KiB writes for tests/bench/storage_bench (pattern=seq
 * or rand, sync=1 adds a flush after each, n writes, qd writes in flight).
 *
 * mode=verify: reads the whole log back, checks it (no gap, no duplicate,
 * no torn block) and prints "blkwriter: verify: ok: last seq M, V blocks"
 * (exit 0) or the first fault (exit 1). Live value "last_seq".
 *
 * Args: mode (write), disk (0), slots (0 = the whole disk), n (0 = for
 * ever), rate (blocks per second, 0 = flat out), flush_every (0), ring (0):
 * with ring=1 every request goes through the disk's submission ring (no
 * exit per request) instead of the blk_submit hypercall.
 */
#include "rt.h"
#include "storage/blklog.h"

/*
 * Poll without an exit this long, then sleep. Through the ring a request
 * costs the vCPU no exit, and one poller thread does the I/O: polling
 * across a whole fdatasync (~140 µs here) then costs nothing the I/O
 * needs, while a sleep hypercall overshoots by ~50 µs (blk_path_bench:
 * write+flush p50 139 µs with 200 µs of polling, 192 µs with 20). With
 * blk_submit the I/O threads need the CPU the vCPU would poll on.
 */
#define SPIN_NS      20000ull
#define RING_SPIN_NS 200000ull
#define SLEEP_NS   10000ull
#define READ_CHUNK (64u * 1024)

static uint64_t block[BLKLOG_WORDS] RT_ALIGNED(4096);
static uint8_t chunk[READ_CHUNK] RT_ALIGNED(4096);
static struct gabi_blk_req req RT_ALIGNED(64);
static struct gabi_blk_info info RT_ALIGNED(64);
static volatile uint64_t acked, io_errors, last_seq, run_id;
static struct rt_stall stall;

static const char *const known_args[] = {
	"mode", "disk", "slots", "n", "rate", "flush_every", "pattern", "sync", "qd", "ring",
	"resume", NULL
};

#define LAT_BUCKETS 20000u   /* 1 us each; the last one holds everything slower */
#define QD_MAX 32u
static uint32_t lat_hist[LAT_BUCKETS];
static struct gabi_blk_req qreq[QD_MAX] RT_ALIGNED(64);
static uint64_t qstart[QD_MAX];
static struct gabi_blk_ring ring RT_ALIGNED(64);
static int use_ring;

/* Request k of those in flight: a ring slot, or a request of our own. */
static struct gabi_blk_req *req_at(unsigned k)
{
	return use_ring ? &ring.slot[k] : k ? &qreq[k] : &req;
}

/* docs/guest-abi.md, "The submission ring": name the slot, raise tail, kick if asked. */
static void ring_publish(unsigned disk, struct gabi_blk_req *q)
{
	uint32_t tail = RT_READ_ONCE(ring.tail);

	RT_WRITE_ONCE(ring.sq[tail % GABI_BLK_RING_SIZE], (uint16_t)(q - ring.slot));
	rt_compiler_barrier();
	RT_WRITE_ONCE(ring.tail, tail + 1);
	__asm__ volatile("mfence" ::: "memory");
	if (RT_READ_ONCE(ring.need_kick))
		rt_hcall(GABI_HC_BLK_KICK, disk, 0, 0);
}

/* Queue one request (retrying while the queue is full). */
static void blk_submit(struct gabi_blk_req *q, unsigned disk, uint32_t op, uint64_t off,
		       void *buf, uint64_t len)
{
	int64_t ret;

	q->op = op;
	q->flags = 0;
	q->offset = off;
	q->len = len;
	q->buf_gpa = (uint64_t)buf;
	q->result = 0;
	RT_WRITE_ONCE(q->done, 0);
	rt_compiler_barrier();
	if (use_ring) {
		ring_publish(disk, q);
		return;
	}
	for (;;) {
		ret = rt_hcall(GABI_HC_BLK_SUBMIT, disk, (uint64_t)q, 0);
		if (ret != -11) /* -EAGAIN: the queue is full */
			break;
		rt_yield();
	}
	if (ret)
		rt_die(1, "blkwriter: submit at %lu refused: %ld\n", (unsigned long)off, (long)ret);
}

/* Submit and wait; the request's result (bytes or -errno). */
static int64_t blk_do(unsigned disk, uint32_t op, uint64_t off, void *buf, uint64_t len)
{
	struct gabi_blk_req *q = req_at(0);
	uint64_t spin_until;

	blk_submit(q, disk, op, off, buf, len);
	spin_until = rt_rdtsc() + rt_ns_to_tsc(use_ring ? RING_SPIN_NS : SPIN_NS);
	while (!RT_READ_ONCE(q->done)) {
		rt_stall_tick(&stall);
		if (rt_rdtsc() < spin_until)
			rt_cpu_relax();
		else	/* a short sleep, not a yield: a yield on a busy host can
			 * hand the CPU to another process for a whole tick */
			rt_sleep_ns(SLEEP_NS);
	}
	rt_compiler_barrier();
	return RT_READ_ONCE(q->result);
}

/* Read the whole log back and check it: the slots (in guest RAM) and r. */
static struct blklog_slot *log_scan(unsigned disk, uint64_t slots, const struct gabi_boot *boot,
				    struct blklog_result *r)
{
	struct blklog_slot *s = (struct blklog_slot *)RT_ALIGN_UP(boot->heap_start, 64);

	if ((uint64_t)(s + slots) > boot->heap_end)
		rt_die(2, "blkwriter: %lu slots do not fit in guest RAM\n", (unsigned long)slots);
	for (uint64_t i = 0; i < slots; i += READ_CHUNK / BLKLOG_BLOCK) {
		uint64_t nb = slots - i < READ_CHUNK / BLKLOG_BLOCK ? slots - i :
			      READ_CHUNK / BLKLOG_BLOCK;
		int64_t ret = blk_do(disk, GABI_BLK_READ, i * BLKLOG_BLOCK, chunk,
				     nb * BLKLOG_BLOCK);

		if (ret != (int64_t)(nb * BLKLOG_BLOCK))
			rt_die(1, "blkwriter: verify: read at block %lu failed: %ld\n",
			       (unsigned long)i, (long)ret);
		for (uint64_t k = 0; k < nb; k++)
			blklog_parse((const uint64_t *)(chunk + k * BLKLOG_BLOCK), i + k, slots,
				     &s[i + k]);
	}
	blklog_verify(s, slots, r);
	return s;
}

static int do_verify(unsigned disk, uint64_t slots, const struct gabi_boot *boot)
{
	struct blklog_result r;

	rt_publish("last_seq", &last_seq);
	log_scan(disk, slots, boot, &r);
	last_seq = r.last_seq;
	if (r.err) {
		rt_printf("blkwriter: verify: FAIL: %s at slot %lu (expected block %lu); "
			  "last seq %lu\n", blklog_err_name(r.err), (unsigned long)r.slot,
			  (unsigned long)r.want_seq, (unsigned long)r.last_seq);
		return 1;
	}
	rt_printf("blkwriter: verify: ok: last seq %lu, %lu blocks%s\n",
		  (unsigned long)r.last_seq, (unsigned long)r.valid,
		  r.torn_tail ? ", torn unacknowledged tail" : "");
	return 0;
}

static int do_write(unsigned disk, uint64_t slots, const struct gabi_boot *boot)
{
	uint64_t n = rt_arg_u64("n", 0), rate = rt_arg_u64("rate", 0);
	uint64_t flush_every = rt_arg_u64("flush_every", 0);
	uint64_t prev = 0, next = rt_rdtsc(), step = rate ? rt_ns_to_tsc(RT_NS_PER_SEC / rate) : 0;
	uint64_t first = 1;

	run_id = rt_rdtsc();
	rt_publish("run_id", &run_id);
	rt_publish("acked", &acked);
	rt_publish("io_errors", &io_errors);
	if (rt_arg_u64("resume", 0)) {
		struct blklog_result r;
		struct blklog_slot *s = log_scan(disk, slots, boot, &r);

		if (r.err)
			rt_die(9, "blkwriter: CHECK FAILED: the log to resume: %s at slot %lu "
			       "(expected block %lu); last seq %lu\n", blklog_err_name(r.err),
			       (unsigned long)r.slot, (unsigned long)r.want_seq,
			       (unsigned long)r.last_seq);
		if (r.last_seq) {
			first = r.last_seq + 1;
			prev = s[(r.last_seq - 1) % slots].sum;
		}
		acked = r.last_seq;
	}
	rt_printf("blkwriter: writing a log of %lu blocks on disk %u from block %lu\n",
		  (unsigned long)slots, disk, (unsigned long)first);
	for (uint64_t seq = first; !n || seq < first + n; seq++) {
		uint64_t sum = blklog_fill(block, seq, prev, slots);
		int64_t ret;

		/* A failed write is written again: the log may not have a hole. */
		while ((ret = blk_do(disk, GABI_BLK_WRITE, ((seq - 1) % slots) * BLKLOG_BLOCK,
				     block, BLKLOG_BLOCK)) != BLKLOG_BLOCK) {
			io_errors++;
			if (ret > 0)
				rt_die(1, "blkwriter: write of block %lu returned %ld\n",
				       (unsigned long)seq, (long)ret);
		}
		acked = seq;
		prev = sum;
		if (flush_every && seq % flush_every == 0)
			while (blk_do(disk, GABI_BLK_FLUSH, 0, block, 0) != 0)
				io_errors++;
		if (step) {
			next += step;
			if ((int64_t)(rt_rdtsc() - next) > (int64_t)rt_ns_to_tsc(10 * RT_NS_PER_MS))
				next = rt_rdtsc();
			rt_stall_wait_until(&stall, next);
		}
	}
	rt_printf("blkwriter: wrote %lu blocks, %lu I/O errors retried\n",
		  (unsigned long)(acked - first + 1), (unsigned long)io_errors);
	return 0;
}

static uint64_t lat_pct(uint64_t total, unsigned pct)
{
	uint64_t want = (total * pct + 99) / 100, seen = 0;

	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		seen += lat_hist[i];
		if (seen >= want)
			return i + 1;
	}
	return LAT_BUCKETS;
}

/*
 * mode=bench: n 4 KiB writes, sequential or random (pattern=seq|rand), each
 * waited for; with sync=1 each is followed by a flush. One line of results.
 */
static int do_bench(unsigned disk, uint64_t slots)
{
	uint64_t n = rt_arg_u64("n", 10000), sync = rt_arg_u64("sync", 0);
	uint64_t qd = rt_arg_u64("qd", 1);
	char pattern[8];
	struct rt_rand rnd;
	uint64_t t0, sum_ns = 0;

	rt_arg_str("pattern", pattern, sizeof(pattern), "seq");
	rt_rand_seed(&rnd, 42);
	blklog_fill(block, 1, 0, slots);
	if (qd < 1 || qd > QD_MAX || (qd > 1 && sync))
		rt_die(2, "blkwriter: qd must be 1..%u (1 with sync=1)\n", QD_MAX);
	if (n < 1)
		rt_die(2, "blkwriter: bench needs n >= 1 writes\n");
	t0 = rt_rdtsc();
	/* qd > 1: keep qd writes in flight, each slot resubmitted when done. */
	for (uint64_t i = 0, done = 0; qd > 1 && done < n;) {
		for (unsigned k = 0; k < qd; k++) {
			struct gabi_blk_req *q = req_at(k);

			if (qstart[k] && !RT_READ_ONCE(q->done))
				continue;
			if (qstart[k]) {
				uint64_t ns = rt_tsc_to_ns(rt_rdtsc() - qstart[k]);

				if (RT_READ_ONCE(q->result) != BLKLOG_BLOCK)
					io_errors++;
				sum_ns += ns;
				lat_hist[ns / 1000 < LAT_BUCKETS ? ns / 1000 : LAT_BUCKETS - 1]++;
				qstart[k] = 0;
				done++;
			}
			if (i < n) {
				uint64_t slot = strcmp(pattern, "rand") ? i % slots :
						rt_rand_below(&rnd, slots);

				qstart[k] = rt_rdtsc();
				blk_submit(q, disk, GABI_BLK_WRITE, slot * BLKLOG_BLOCK, block,
					   BLKLOG_BLOCK);
				i++;
			}
		}
		rt_cpu_relax();
	}
	for (uint64_t i = 0; qd == 1 && i < n; i++) {
		uint64_t slot = strcmp(pattern, "rand") ? i % slots : rt_rand_below(&rnd, slots);
		uint64_t s = rt_rdtsc(), ns;

		if (blk_do(disk, GABI_BLK_WRITE, slot * BLKLOG_BLOCK, block, BLKLOG_BLOCK) !=
		    BLKLOG_BLOCK)
			io_errors++;
		if (sync && blk_do(disk, GABI_BLK_FLUSH, 0, block, 0))
			io_errors++;
		ns = rt_tsc_to_ns(rt_rdtsc() - s);
		sum_ns += ns;
		lat_hist[ns / 1000 < LAT_BUCKETS ? ns / 1000 : LAT_BUCKETS - 1]++;
	}
	t0 = rt_tsc_to_ns(rt_rdtsc() - t0);
	rt_printf("blkwriter: bench %s%s qd%lu%s: %lu writes in %lu us: %lu IOPS, %lu MiB/s, "
		  "latency avg %lu us p50 %lu us p99 %lu us, errors %lu\n", pattern,
		  sync ? "+flush" : "", (unsigned long)qd, use_ring ? " ring" : "", (unsigned long)n, (unsigned long)(t0 / 1000),
		  (unsigned long)(n * RT_NS_PER_SEC / (t0 ? t0 : 1)),
		  (unsigned long)(n * BLKLOG_BLOCK * RT_NS_PER_SEC / (t0 ? t0 : 1) >> 20),
		  (unsigned long)(sum_ns / n / 1000), (unsigned long)lat_pct(n, 50),
		  (unsigned long)lat_pct(n, 99), (unsigned long)io_errors);
	return 0;
}

int guest_main(unsigned cpu, const struct gabi_boot *boot)
{
	char mode[16];
	unsigned disk;
	uint64_t slots;
	int64_t ret;

	if (cpu)
		rt_park();
	rt_args_check("blkwriter", known_args);
	rt_arg_str("mode", mode, sizeof(mode), "write");
	disk = (unsigned)rt_arg_u64("disk", 0);
	rt_stall_init(&stall);
	ret = rt_hcall(GABI_HC_BLK_INFO, disk, (uint64_t)&info, 0);
	if (ret)
		rt_die(2, "blkwriter: disk %u: blk_info: %ld\n", disk, (long)ret);
	slots = rt_arg_u64("slots", 0);
	if (!slots || slots > info.size / BLKLOG_BLOCK)
		slots = info.size / BLKLOG_BLOCK;
	if (!slots)
		rt_die(2, "blkwriter: disk %u is smaller than one block\n", disk);
	use_ring = (int)rt_arg_u64("ring", 0);
	if (use_ring && (ret = rt_hcall(GABI_HC_BLK_RING, disk, (uint64_t)&ring, 0)))
		rt_die(2, "blkwriter: disk %u: blk_ring: %ld\n", disk, (long)ret);
	if (!strcmp(mode, "write"))
		return do_write(disk, slots, boot);
	if (!strcmp(mode, "verify"))
		return do_verify(disk, slots, boot);
	if (!strcmp(mode, "bench"))
		return do_bench(disk, slots);
	rt_die(2, "blkwriter: mode '%s' is not write or verify\n", mode);
}
