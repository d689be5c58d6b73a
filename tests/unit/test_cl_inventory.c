/*
 * Unit tests for cluster/cl_inventory.c. The load needs nothing; the probe
 * needs /dev/kvm: without it the probe must say -ENODEV and why, and the
 * rest is skipped; with it the figures must be the host's real ones.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cl_inventory.h"
#include "cl_msg.h"

static bool have(const Ferry__Cluster__Inventory *inv, const char *name)
{
	for (size_t i = 0; i < inv->n_cpu_features; i++) {
		if (!strcmp(inv->cpu_features[i], name))
			return true;
	}
	return false;
}

static bool kvm_present(void)
{
	return access("/dev/kvm", F_OK) == 0;
}

static void test_load(void **state)
{
	double load = cl_host_load();

	(void)state;
	assert_true(load >= 0);
	assert_true(load < 10000);
}

static void test_probe(void **state)
{
	Ferry__Cluster__Inventory *inv = NULL;
	struct utsname u;
	char err[256] = "";
	int rc;

	(void)state;
	rc = cl_inventory_probe(NULL, false, &inv, err, sizeof(err));
	if (!kvm_present()) {
		assert_int_equal(rc, -ENODEV);
		assert_non_null(strstr(err, "/dev/kvm"));
		assert_non_null(strstr(err, "clusterd --witness"));
		skip();
	}
	if (rc)
		print_error("probe: %s\n", err);
	assert_int_equal(rc, 0);
	assert_true(inv->mem_bytes > 0);
	assert_true(inv->cpus > 0);
	assert_int_equal(inv->cpus, (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
	assert_true(inv->tsc_khz > 100000);   /* any x86-64 TSC runs above 100 MHz */
	assert_int_equal(uname(&u), 0);
	assert_string_equal(inv->kernel, u.release);
	assert_true(have(inv, "sse2"));
	assert_true(have(inv, "lm"));
	CL_FREE(inv);
}

/* A witness needs no KVM: CPUs and kernel only, no memory for guests. */
static void test_probe_witness(void **state)
{
	Ferry__Cluster__Inventory *inv = NULL;
	struct utsname u;
	char err[256] = "";

	(void)state;
	assert_int_equal(cl_inventory_probe(NULL, true, &inv, err, sizeof(err)), 0);
	assert_int_equal(inv->mem_bytes, 0);
	assert_int_equal(inv->n_cpu_features, 0);
	assert_int_equal(inv->cpus, (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
	assert_int_equal(uname(&u), 0);
	assert_string_equal(inv->kernel, u.release);
	CL_FREE(inv);
}

static void test_probe_hide(void **state)
{
	Ferry__Cluster__Inventory *all = NULL, *hid = NULL;
	char err[256] = "";

	(void)state;
	if (!kvm_present())
		skip();
	assert_int_equal(cl_inventory_probe(NULL, false, &all, err, sizeof(err)), 0);
	assert_int_equal(cl_inventory_probe("avx2, sse4_2", false, &hid, err, sizeof(err)), 0);
	assert_false(have(hid, "avx2"));
	assert_false(have(hid, "sse4_2"));
	assert_true(have(hid, "sse2"));
	assert_int_equal(hid->n_cpu_features + have(all, "avx2") + have(all, "sse4_2"),
			 all->n_cpu_features);
	CL_FREE(all);
	CL_FREE(hid);
}

static void test_probe_bad_hide(void **state)
{
	Ferry__Cluster__Inventory *inv = NULL;
	char err[256] = "";

	(void)state;
	if (!kvm_present())
		skip();
	assert_int_equal(cl_inventory_probe("sse2,warp_drive", false, &inv, err, sizeof(err)), -EINVAL);
	assert_null(inv);
	assert_non_null(strstr(err, "warp_drive"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_probe_witness),
		cmocka_unit_test(test_probe_hide),
		cmocka_unit_test(test_probe_bad_hide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
