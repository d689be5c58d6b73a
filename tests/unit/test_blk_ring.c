/*
 * The disks' submission rings (storage/blk_ring.c) without KVM: a struct vm
 * with real guest RAM (a memfd) and a file disk, this test playing the
 * guest. It publishes entries the way docs/guest-abi.md says and checks
 * what the monitor's poller makes of them: the data on the image, done
 * and result in the slots, the need_kick handshake, pause (drain),
 * ownership, refused entries, and the ring's journey in DEVICE_STATE.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/hcall.h"
#include "core/util.h"
#include "core/vm.h"
#include "storage/blk.h"
#include "tests/fake_vm.h"

#define MEM       (16ull << 20)
#define DISK      (1ull << 20)
#define RING_GPA  0x800000ull
#define BUF_GPA   0x900000ull   /* 64 buffers of 4 KiB */

struct t {
	char dir[64], img[96];
	struct vm *vm;
	struct gabi_blk_ring *ring;
	uint8_t *bufs;
};

static struct vm *vm_make(void)
{
	struct vm *vm = fake_vm_make(MEM);

	assert_non_null(vm);
	return vm;
}

static int64_t hcall(struct vm *vm, uint64_t nr, uint64_t a0, uint64_t a1)
{
	return fake_vm_hcall(vm, nr, a0, a1);
}

static void attach_disk(struct t *t, struct vm *vm)
{
	struct blk_spec spec;
	char err[BLK_ERR_LEN];

	assert_int_equal(blk_spec_parse(t->img, &spec, err, sizeof(err)), 0);
	assert_int_equal(blk_dev_create(vm, &spec, 1, err, sizeof(err)), 0);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	char err[BLK_ERR_LEN];
	int fd;

	snprintf(t->dir, sizeof(t->dir), "/tmp/ferry-ring-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->img, sizeof(t->img), "%s/disk.img", t->dir);
	fd = open(t->img, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK), 0);
	close(fd);
	t->vm = vm_make();
	attach_disk(t, t->vm);
	assert_int_equal(t->vm->devs[0].ops->acquire(t->vm->devs[0].ctx, err, sizeof(err)), 0);
	t->ring = mem_ptr(&t->vm->mem, RING_GPA, sizeof(*t->ring));
	t->bufs = mem_ptr(&t->vm->mem, BUF_GPA, 64 * 4096);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	fake_vm_free(t->vm);
	unlink(t->img);
	rmdir(t->dir);
	free(t);
	return 0;
}

/* The guest's side of the ABI: fill slot, name it, raise tail, fence, kick if asked. */
static void publish(struct vm *vm, struct gabi_blk_ring *r, unsigned slot, uint32_t op,
		    uint64_t off, uint64_t buf_gpa, uint64_t len, bool kick)
{
	struct gabi_blk_req *q = &r->slot[slot];
	uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);

	*q = (struct gabi_blk_req){ .op = op, .offset = off, .len = len, .buf_gpa = buf_gpa };
	r->sq[tail % GABI_BLK_RING_SIZE] = (uint16_t)slot;
	__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (kick && __atomic_load_n(&r->need_kick, __ATOMIC_ACQUIRE))
		assert_int_equal(hcall(vm, GABI_HC_BLK_KICK, 0, 0), 0);
}

static bool wait_done(struct gabi_blk_req *q, unsigned ms)
{
	uint64_t until = now_ns() + ms * 1000000ull;

	while (!__atomic_load_n(&q->done, __ATOMIC_ACQUIRE))
		if (now_ns() > until)
			return false;
	return true;
}

static uint64_t stat_of(struct vm *vm, const char *name)
{
	uint64_t v = fake_vm_stat(vm, name);

	if (v == UINT64_MAX)
		fail_msg("no stat %s", name);
	return v;
}

static void read_img(struct t *t, void *buf, uint64_t len, uint64_t off)
{
	int fd = open(t->img, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void test_setup_checks(void **state)
{
	struct t *t = *state;

	t->ring->tail = 7;   /* left over: entries from before the ring are not taken */
	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	assert_int_equal(t->ring->head, 7);
	assert_int_equal(t->ring->size, GABI_BLK_RING_SIZE);
	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), -EBUSY);
	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 1, RING_GPA), -ENODEV);
	assert_string_equal(hcall_name(GABI_HC_BLK_RING), "blk_ring");
	assert_string_equal(hcall_name(GABI_HC_BLK_KICK), "blk_kick");
	usleep(20000);
	assert_int_equal(stat_of(t->vm, "disk0.ring_taken"), 0);
}

/* Queue depth 1 then 16: every write on the image, every slot done with len. */
static void test_writes(void **state)
{
	struct t *t = *state;
	uint8_t got[4096];

	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	for (unsigned i = 0; i < 200; i++) {
		memset(t->bufs, (int)(i & 0xff), 4096);
		publish(t->vm, t->ring, 0, GABI_BLK_WRITE, (i % 128) * 4096ull, BUF_GPA, 4096, true);
		assert_true(wait_done(&t->ring->slot[0], 2000));
		assert_int_equal(t->ring->slot[0].result, 4096);
	}
	for (unsigned i = 0; i < 16; i++) {
		memset(t->bufs + i * 4096, 0xa0 + (int)i, 4096);
		publish(t->vm, t->ring, i, GABI_BLK_WRITE, (128 + i) * 4096ull,
			BUF_GPA + i * 4096ull, 4096, true);
	}
	for (unsigned i = 0; i < 16; i++) {
		assert_true(wait_done(&t->ring->slot[i], 2000));
		assert_int_equal(t->ring->slot[i].result, 4096);
		read_img(t, got, sizeof(got), (128 + i) * 4096ull);
		assert_int_equal(got[0], 0xa0 + i);
		assert_int_equal(got[4095], 0xa0 + i);
	}
	read_img(t, got, sizeof(got), 71 * 4096);   /* i = 199 went to block 71 */
	assert_int_equal(got[100], 199);
	assert_int_equal(stat_of(t->vm, "disk0.ring_taken"), 216);
	assert_int_equal(stat_of(t->vm, "disk0.writes"), 216);
	assert_int_equal(t->ring->head, t->ring->tail);
	/* A flush and a read through the ring too. */
	publish(t->vm, t->ring, 3, GABI_BLK_FLUSH, 0, 0, 0, true);
	assert_true(wait_done(&t->ring->slot[3], 2000));
	assert_int_equal(t->ring->slot[3].result, 0);
	memset(t->bufs, 0, 4096);
	publish(t->vm, t->ring, 4, GABI_BLK_READ, 130 * 4096ull, BUF_GPA, 4096, true);
	assert_true(wait_done(&t->ring->slot[4], 2000));
	assert_int_equal(t->ring->slot[4].result, 4096);
	assert_int_equal(t->bufs[17], 0xa2);
}

/*
 * Once idle the poller sleeps with need_kick set; an entry published
 * without the kick waits (so the kick is what woke it, not a poll), and
 * the kick gets it done.
 */
static void test_need_kick(void **state)
{
	struct t *t = *state;

	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	usleep(blk_defaults.ring_poll_us + 20000);
	assert_int_equal(__atomic_load_n(&t->ring->need_kick, __ATOMIC_ACQUIRE), 1);
	publish(t->vm, t->ring, 5, GABI_BLK_WRITE, 0, BUF_GPA, 4096, false);
	assert_false(wait_done(&t->ring->slot[5], 30));
	assert_int_equal(hcall(t->vm, GABI_HC_BLK_KICK, 0, 0), 0);
	assert_true(wait_done(&t->ring->slot[5], 2000));
	assert_int_equal(t->ring->slot[5].result, 4096);
	assert_int_equal(stat_of(t->vm, "disk0.ring_kicks"), 1);
}

/* A pause (drain) takes what was published without a kick, as a vCPU stopped before it. */
static void test_drain_takes_unkicked(void **state)
{
	struct t *t = *state;

	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	usleep(blk_defaults.ring_poll_us + 20000);
	for (unsigned i = 0; i < 8; i++)
		publish(t->vm, t->ring, i, GABI_BLK_WRITE, i * 4096ull, BUF_GPA, 4096, false);
	t->vm->devs[0].ops->drain(t->vm->devs[0].ctx);
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(__atomic_load_n(&t->ring->slot[i].done, __ATOMIC_ACQUIRE), 1);
		assert_int_equal(t->ring->slot[i].result, 4096);
	}
	assert_int_equal(t->ring->head, t->ring->tail);
}

/* Bad entries: a slot out of range is skipped and counted; a bad request completes with its error. */
static void test_bad_entries(void **state)
{
	struct t *t = *state;
	uint32_t tail;

	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	tail = t->ring->tail;
	t->ring->sq[tail % GABI_BLK_RING_SIZE] = 999;
	__atomic_store_n(&t->ring->tail, tail + 1, __ATOMIC_RELEASE);
	publish(t->vm, t->ring, 1, GABI_BLK_WRITE, DISK, BUF_GPA, 4096, true);      /* past the end */
	publish(t->vm, t->ring, 2, GABI_BLK_WRITE, 100, BUF_GPA, 4096, true);       /* unaligned */
	publish(t->vm, t->ring, 3, GABI_BLK_WRITE, 0, MEM - 2048, 4096, true);      /* buffer outside */
	publish(t->vm, t->ring, 4, 77, 0, BUF_GPA, 4096, true);                     /* no such op */
	for (unsigned i = 1; i <= 4; i++)
		assert_true(wait_done(&t->ring->slot[i], 2000));
	assert_int_equal(t->ring->slot[1].result, -ERANGE);
	assert_int_equal(t->ring->slot[2].result, -EINVAL);
	assert_int_equal(t->ring->slot[3].result, -EFAULT);
	assert_int_equal(t->ring->slot[4].result, -EINVAL);
	assert_int_equal(stat_of(t->vm, "disk0.ring_errors"), 1);
	assert_int_equal(stat_of(t->vm, "disk0.writes"), 0);
	/* The ring still works afterwards. */
	publish(t->vm, t->ring, 0, GABI_BLK_WRITE, 0, BUF_GPA, 4096, true);
	assert_true(wait_done(&t->ring->slot[0], 2000));
	assert_int_equal(t->ring->slot[0].result, 4096);
}

/* A disk this host does not own is not served: entries wait for the lease. */
static void test_unowned_waits(void **state)
{
	struct t *t = *state;
	const struct vm_dev_ops *ops = t->vm->devs[0].ops;
	char err[BLK_ERR_LEN];

	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	ops->release(t->vm->devs[0].ctx);
	publish(t->vm, t->ring, 0, GABI_BLK_WRITE, 0, BUF_GPA, 4096, true);
	ops->drain(t->vm->devs[0].ctx);   /* returns: nothing it may take */
	assert_false(wait_done(&t->ring->slot[0], 50));
	assert_int_equal(t->ring->head + 1, t->ring->tail);
	assert_int_equal(ops->acquire(t->vm->devs[0].ctx, err, sizeof(err)), 0);
	assert_true(wait_done(&t->ring->slot[0], 2000));
}

/*
 * Save with a ring: version 2 and a ring line. Loaded into a second VM
 * (the destination, its RAM a copy), the ring goes on from the same head
 * once the disk is owned there, and not before.
 */
static void test_save_load(void **state)
{
	struct t *t = *state;
	const struct vm_dev_ops *ops = t->vm->devs[0].ops;
	struct vm *dst;
	struct gabi_blk_ring *dring;
	char err[BLK_ERR_LEN], want[128];
	uint32_t version;
	uint8_t *buf;
	size_t len;

	assert_int_equal(hcall(t->vm, GABI_HC_BLK_RING, 0, RING_GPA), 0);
	publish(t->vm, t->ring, 0, GABI_BLK_WRITE, 0, BUF_GPA, 4096, true);
	assert_true(wait_done(&t->ring->slot[0], 2000));
	assert_int_equal(ops->quiesce(t->vm->devs[0].ctx, err, sizeof(err)), 0);
	assert_int_equal(ops->save(t->vm->devs[0].ctx, &version, &buf, &len), 0);
	assert_int_equal(version, 2);
	snprintf(want, sizeof(want), "ring 0 %llu %u\n", RING_GPA, t->ring->head);
	assert_non_null(memmem(buf, len, want, strlen(want)));
	ops->release(t->vm->devs[0].ctx);

	dst = vm_make();
	memcpy(mem_ptr(&dst->mem, 0, MEM), mem_ptr(&t->vm->mem, 0, MEM), MEM);
	assert_int_equal(blk_dev_type.load(dst, version, buf, len, err, sizeof(err)), 0);
	assert_int_equal(blk_dev_type.precheck(version, buf, len, err, sizeof(err)), 0);
	free(buf);
	dring = mem_ptr(&dst->mem, RING_GPA, sizeof(*dring));
	publish(dst, dring, 1, GABI_BLK_WRITE, 4096, BUF_GPA, 4096, true);
	assert_false(wait_done(&dring->slot[1], 30));     /* not owned yet */
	assert_int_equal(dst->devs[0].ops->acquire(dst->devs[0].ctx, err, sizeof(err)), 0);
	assert_true(wait_done(&dring->slot[1], 2000));
	assert_int_equal(dring->slot[1].result, 4096);
	assert_int_equal(dring->head, dring->tail);
	/* The source, which released, took nothing of it. */
	assert_int_equal(stat_of(t->vm, "disk0.ring_taken"), 1);
	assert_int_equal(stat_of(dst, "disk0.ring_taken"), 1);
	fake_vm_free(dst);
}

/* A VM without a ring keeps version 1; bad ring lines are refused with a reason. */
static void test_state_lines(void **state)
{
	struct t *t = *state;
	const struct vm_dev_ops *ops = t->vm->devs[0].ops;
	char err[BLK_ERR_LEN], text[1024];
	uint32_t version;
	uint8_t *buf;
	size_t len;
	const char *bad[] = {
		"ring 1 8388608 0\n",          /* no disk 1 */
		"ring 0 8388608 0\nring 0 8388608 0\n",
		"ring 0 8388609 0\n",          /* misaligned */
		"ring 0 16777216 0\n",         /* outside the RAM */
		"ring 0 8388608 4294967296\n", /* head too large */
		"ring 0 8388608\n",
		"ring 0 8388608 0 9\n",
		"ring 0 -1 0\n",
		"ring  0 8388608 0\n",
	};

	assert_int_equal(ops->save(t->vm->devs[0].ctx, &version, &buf, &len), 0);
	assert_int_equal(version, 1);
	assert_null(memmem(buf, len, "\nring ", 6));
	free(buf);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vm *dst = vm_make();
		int n = snprintf(text, sizeof(text), "%llu %s\n%s", DISK, t->img, bad[i]);

		err[0] = 0;
		assert_int_not_equal(blk_dev_type.load(dst, 2, (uint8_t *)text, (size_t)n, err,
						       sizeof(err)), 0);
		assert_true(err[0]);
		fake_vm_free(dst);
	}
	/* A ring line before its disk, and a ring line in a version 1 state. */
	snprintf(text, sizeof(text), "ring 0 8388608 0\n%llu %s\n", DISK, t->img);
	assert_int_not_equal(blk_dev_type.precheck(2, (uint8_t *)text, strlen(text), err,
						   sizeof(err)), 0);
	snprintf(text, sizeof(text), "%llu %s\nring 0 8388608 0\n", DISK, t->img);
	assert_int_not_equal(blk_dev_type.precheck(1, (uint8_t *)text, strlen(text), err,
						   sizeof(err)), 0);
	assert_int_equal(blk_dev_type.precheck(2, (uint8_t *)text, strlen(text), err,
					       sizeof(err)), 0);
}

/*
 * A state with a disk that stalled (full) and three requests held there,
 * two from the ring and one from blk_submit, as a paused VM migrates: they
 * stay held (no I/O, the device says full and 3 held), the state saves back
 * byte for byte, and a resume runs them all against the disk. A held
 * request the source would not have taken (outside the disk) is refused.
 */
static void test_held_load_resume(void **state)
{
	struct t *t = *state;
	const unsigned long long slot0 = RING_GPA + offsetof(struct gabi_blk_ring, slot);
	const unsigned long long subq = BUF_GPA + 63 * 4096;   /* a request of its own, in RAM */
	struct vm *dst = vm_make();
	const struct vm_dev_ops *ops;
	struct gabi_blk_ring *dring;
	struct gabi_blk_req *sq;
	char err[BLK_ERR_LEN], text[2048];
	uint8_t *buf, data[4096];
	uint32_t version;
	size_t len;
	int n;

	n = snprintf(text, sizeof(text),
		     "%llu %s\nring 0 %llu 2\nstalled 0 full\n"
		     "held 0 1 %llu %u 0 0 4096 %llu 7\n"
		     "held 0 1 %llu %u 0 4096 4096 %llu 8\n"
		     "held 0 0 %llu %u 0 8192 4096 %llu 9\n",
		     DISK, t->img, RING_GPA,
		     slot0, GABI_BLK_WRITE, BUF_GPA,
		     slot0 + (unsigned long long)sizeof(struct gabi_blk_req), GABI_BLK_WRITE, BUF_GPA + 4096,
		     subq, GABI_BLK_WRITE, BUF_GPA + 8192);
	/*
	 * The guest's RAM as the source left it: the requests and their data,
	 * and the ring with its two entries published and taken (tail = head
	 * = 2). A ring of zeros beside "ring 0 ... 2" would read as entries
	 * the guest never published, which the poller then completes as
	 * invalid, racing the held requests for their slots.
	 */
	memset(mem_ptr(&dst->mem, BUF_GPA, 3 * 4096), 0xab, 3 * 4096);
	dring = mem_ptr(&dst->mem, RING_GPA, sizeof(*dring));
	dring->slot[0] = (struct gabi_blk_req){ .op = GABI_BLK_WRITE, .offset = 0, .len = 4096,
						.buf_gpa = BUF_GPA };
	dring->slot[1] = (struct gabi_blk_req){ .op = GABI_BLK_WRITE, .offset = 4096,
						.len = 4096, .buf_gpa = BUF_GPA + 4096 };
	dring->sq[0] = 0;
	dring->sq[1] = 1;
	dring->tail = dring->head = 2;
	assert_int_equal(blk_dev_type.load(dst, 3, (uint8_t *)text, (size_t)n, err, sizeof(err)),
			 0);
	ops = dst->devs[0].ops;
	assert_int_equal(stat_of(dst, "disk0.full"), 1);
	assert_int_equal(stat_of(dst, "disk0.held"), 3);
	assert_int_equal(ops->save(dst->devs[0].ctx, &version, &buf, &len), 0);
	assert_int_equal(version, 3);
	assert_int_equal(len, (size_t)n);
	assert_memory_equal(buf, text, len);
	free(buf);
	ops->release(t->vm->devs[0].ctx);   /* the source let go */
	assert_int_equal(ops->acquire(dst->devs[0].ctx, err, sizeof(err)), 0);
	usleep(20 * 1000);
	assert_int_equal(stat_of(dst, "disk0.writes"), 0);   /* held, not run */
	assert_int_equal(ops->resume(dst->devs[0].ctx, err, sizeof(err)), 0);
	sq = mem_ptr(&dst->mem, subq, sizeof(*sq));
	assert_true(wait_done(&dring->slot[0], 2000));
	assert_true(wait_done(&dring->slot[1], 2000));
	assert_true(wait_done(sq, 2000));
	/* Each says how it ended: a count short of 3 below names the request that failed. */
	assert_int_equal(dring->slot[0].result, 4096);
	assert_int_equal(dring->slot[1].result, 4096);
	assert_int_equal(sq->result, 4096);
	assert_int_equal(stat_of(dst, "disk0.writes"), 3);
	assert_int_equal(stat_of(dst, "disk0.held"), 0);
	assert_int_equal(stat_of(dst, "disk0.full"), 0);
	read_img(t, data, sizeof(data), 8192);
	assert_int_equal(data[0], 0xab);
	assert_int_equal(data[4095], 0xab);
	/* Nothing held is left: the state saves as version 2 again. */
	assert_int_equal(ops->save(dst->devs[0].ctx, &version, &buf, &len), 0);
	assert_int_equal(version, 2);
	free(buf);
	fake_vm_free(dst);

	/* Past the disk's end: blk_submit would have refused it, so does the load. */
	dst = vm_make();
	n = snprintf(text, sizeof(text), "%llu %s\nstalled 0 gone\nheld 0 0 %llu %u 0 %llu 4096 %llu 1\n",
		     DISK, t->img, subq, GABI_BLK_WRITE, DISK, BUF_GPA);
	err[0] = 0;
	assert_int_equal(blk_dev_type.load(dst, 3, (uint8_t *)text, (size_t)n, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "held request 0 (disk 0"));
	fake_vm_free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_setup_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_need_kick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_takes_unkicked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unowned_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_load_resume, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
