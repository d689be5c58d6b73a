/*
 * Guest RAM without KVM (core/mem.c): a memfd of the asked size, one region
 * per GiB, faulted in with MEM_PREALLOC and also warmed with MEM_WARM, and
 * zero whichever way it was made: a guest, or an incoming migration's ZERO
 * entries, rely on fresh RAM being zero.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"

#define SIZE (8ull << 20)

static void expect_zero(const uint8_t *p, uint64_t size)
{
	static const uint8_t zero[4096];

	for (uint64_t off = 0; off < size; off += sizeof(zero))
		assert_memory_equal(p + off, zero, sizeof(zero));
}

static void make(unsigned flags)
{
	struct guest_mem m;
	struct stat st;
	uint8_t b = 0;

	assert_int_equal(mem_create(&m, SIZE, flags), 0);
	assert_int_equal(m.size, SIZE);
	assert_int_equal(m.nr_regions, 1);
	assert_ptr_equal(m.regions[0].hva, m.base);
	assert_int_equal(fstat(m.memfd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, SIZE);
	expect_zero(m.base, SIZE);
	/* writable, and the memfd is the same memory */
	m.base[SIZE - 1] = 0x5a;
	assert_int_equal(pread(m.memfd, &b, 1, (off_t)SIZE - 1), 1);
	assert_int_equal(b, 0x5a);
	mem_destroy(&m);
	assert_null(m.base);
	assert_int_equal(m.memfd, -1);
}

static void test_create(void **state)
{
	(void)state;
	make(0);
	make(MEM_PREALLOC);
	make(MEM_PREALLOC | MEM_WARM);
	make(MEM_WARM);                 /* without prealloc: nothing to warm */
}

/* Warming writes zeros through the kernel: only fresh RAM may be warmed. */
static void test_warm_zeroes(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(mem_create(&m, SIZE, MEM_PREALLOC), 0);
	memset(m.base, 0xa5, SIZE);
	assert_int_equal(mem_warm(m.base, SIZE), 0);
	expect_zero(m.base, SIZE);
	/* a size that is not a whole number of its 1 MiB reads */
	memset(m.base, 0xa5, SIZE);
	assert_int_equal(mem_warm(m.base, (3ull << 20) + 4096), 0);
	expect_zero(m.base, (3ull << 20) + 4096);
	assert_int_equal(m.base[(3ull << 20) + 4096], 0xa5);
	mem_destroy(&m);
}

/*
 * The cold-write probe: it runs at every preallocation, writes zeros into
 * the top 512 KiB only (so only fresh RAM), and refuses RAM too small to
 * sample. Its figure depends on the host; it is never negative.
 */
static void test_cold_write_probe(void **state)
{
	struct guest_mem m;
	int64_t c;

	(void)state;
	assert_int_equal(mem_create(&m, SIZE, MEM_PREALLOC), 0);
	assert_true(m.cold_write_ns >= 0);
	memset(m.base, 0xa5, SIZE);
	c = mem_cold_write_ns(m.base, SIZE);
	assert_true(c >= 0);
	expect_zero(m.base + SIZE - (512u << 10), 512u << 10);
	assert_int_equal(m.base[SIZE - (512u << 10) - 1], 0xa5);
	assert_int_equal(mem_cold_write_ns(m.base, (512u << 10) - 4096), -EINVAL);
	mem_destroy(&m);
	/* without prealloc there is nothing to probe yet */
	assert_int_equal(mem_create(&m, SIZE, 0), 0);
	assert_int_equal(m.cold_write_ns, 0);
	mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_warm_zeroes),
		cmocka_unit_test(test_cold_write_probe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
