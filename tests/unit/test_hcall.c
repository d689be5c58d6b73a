/* The hypercall decoder: every request is validated before a handler runs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/hcall.h"

#define MEM (64ull << 20)

static struct gabi_hcall page;

static int decode(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2,
		  struct hcall_req *r)
{
	memset(&page, 0, sizeof(page));
	page.nr = nr;
	page.args[0] = a0;
	page.args[1] = a1;
	page.args[2] = a2;
	return hcall_decode(&page, MEM, r);
}

static void test_page_layout(void **state)
{
	(void)state;
	assert_int_equal(sizeof(struct gabi_hcall), 4096);
	assert_int_equal(offsetof(struct gabi_hcall, ret), 56);
}

static void test_unknown_numbers(void **state)
{
	struct hcall_req r;

	(void)state;
	assert_int_equal(decode(0, 0, 0, 0, &r), -ENOSYS);
	assert_int_equal(decode(GABI_HC_NR_MAX, 0, 0, 0, &r), -ENOSYS);
	assert_int_equal(decode(~0ull, 0, 0, 0, &r), -ENOSYS);
	assert_string_equal(hcall_name(12345), "unknown");
}

static void test_console(void **state)
{
	struct hcall_req r;

	(void)state;
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, 0x400000, 12, 0, &r), 0);
	assert_int_equal(r.nr, GABI_HC_CONSOLE_WRITE);
	assert_int_equal(r.args[0], 0x400000);
	assert_int_equal(r.args[1], 12);
	/* Zero length is a valid no-op. */
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, 0x400000, 0, 0, &r), 0);
	/* Too long, outside RAM, ending outside RAM, wrapping around. */
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, 0x400000, GABI_CONSOLE_MAX + 1, 0, &r), -E2BIG);
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, MEM, 1, 0, &r), -EFAULT);
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, MEM - 4, 8, 0, &r), -EFAULT);
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, ~0ull - 2, 8, 0, &r), -EFAULT);
	assert_int_equal(decode(GABI_HC_CONSOLE_WRITE, MEM - 8, 8, 0, &r), 0);
}

static void test_exit_and_sleep(void **state)
{
	struct hcall_req r;

	(void)state;
	assert_int_equal(decode(GABI_HC_EXIT, 0, 0, 0, &r), 0);
	assert_int_equal(decode(GABI_HC_EXIT, 255, 0, 0, &r), 0);
	assert_int_equal(decode(GABI_HC_EXIT, 256, 0, 0, &r), -EINVAL);
	assert_int_equal(decode(GABI_HC_SLEEP, 0, 0, 0, &r), 0);
	assert_int_equal(decode(GABI_HC_SLEEP, HCALL_SLEEP_MAX_NS, 0, 0, &r), 0);
	assert_int_equal(decode(GABI_HC_SLEEP, HCALL_SLEEP_MAX_NS + 1, 0, 0, &r), -EINVAL);
}

static void test_report_publish(void **state)
{
	struct hcall_req r;

	(void)state;
	assert_int_equal(decode(GABI_HC_REPORT, 0x400000, 5, 42, &r), 0);
	assert_int_equal(r.args[2], 42);
	assert_int_equal(decode(GABI_HC_REPORT, 0x400000, 0, 42, &r), -EINVAL);
	assert_int_equal(decode(GABI_HC_REPORT, 0x400000, GABI_NAME_MAX + 1, 0, &r), -EINVAL);
	assert_int_equal(decode(GABI_HC_REPORT, MEM - 2, 5, 0, &r), -EFAULT);
	assert_int_equal(decode(GABI_HC_PUBLISH, 0x400000, 5, 0x500000, &r), 0);
	/* The live value must be an aligned word inside RAM. */
	assert_int_equal(decode(GABI_HC_PUBLISH, 0x400000, 5, 0x500004, &r), -EINVAL);
	assert_int_equal(decode(GABI_HC_PUBLISH, 0x400000, 5, MEM, &r), -EFAULT);
	assert_int_equal(decode(GABI_HC_PUBLISH, 0x400000, 5, MEM - 8, &r), 0);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(hcall_name_valid("count", 5));
	assert_true(hcall_name_valid("pages_written.vcpu1", 19));
	assert_true(hcall_name_valid("max-stall_ns", 12));
	assert_false(hcall_name_valid("", 0));
	assert_false(hcall_name_valid("a b", 3));
	assert_false(hcall_name_valid("a\"b", 3));
	assert_false(hcall_name_valid("x\n", 2));
	assert_false(hcall_name_valid("nul\0x", 5));
	assert_false(hcall_name_valid("0123456789012345678901234567890123", 34));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page_layout),
		cmocka_unit_test(test_unknown_numbers),
		cmocka_unit_test(test_console),
		cmocka_unit_test(test_exit_and_sleep),
		cmocka_unit_test(test_report_publish),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
