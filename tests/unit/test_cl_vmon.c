/*
 * The hard limit the cluster gives a migration (cl_vmon_mig_timeout_s):
 * vmon's default for a small VM, and room for four passes over a big one
 * under its cap, so that a big VM on a capped link is not aborted at
 * every attempt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cl_vmon.h"
#include "migrate/policy.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void test_mig_timeout(void **state)
{
	(void)state;
	/* 64 MiB uncapped: 0.54 s a pass at the 1 Gbit/s floor, rounded up to 1 */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * MiB, 0), MIG_DEFAULT_TIMEOUT_S + 4);
	/* 64 GiB under a 1 Gbit/s cap: 550 s a pass; vmon's 300 s would abort it */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * GiB, 1000), 300 + 4 * 550);
	/* the same uncapped: the floor is 1 Gbit/s */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * GiB, 0), 300 + 4 * 550);
	/* 128 MiB at 10 Mbit/s (cluster_faults' mid): 108 s a pass */
	assert_int_equal(cl_vmon_mig_timeout_s(128 * MiB, 10), 300 + 4 * 108);
	/* a faster cap than the floor: shorter passes */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * GiB, 10000), 300 + 4 * 55);
	/* 128 GiB at 1 Mbit/s: no overflow, about 12 days */
	assert_int_equal(cl_vmon_mig_timeout_s(128 * GiB, 1), 300 + 4 * 1099512ull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mig_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
