/*
 * Unit tests for cluster/cl_cpu.c on hand-built, heap-owned cluster states:
 * the baseline of hosts with different feature sets (a host without an
 * inventory does not count), every model checked against every host, the
 * missing-feature text in feature-table order, unknown models, and the
 * vmon options of each model.
 *
 * The expected lists are written out from the psABI levels and the SDM bit
 * positions (the table order), not computed by the library.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_cpu.h"
#include "cl_msg.h"

#define V1 "fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "syscall", "lm"
#define V2 V1, "cx16", "lahf_lm", "popcnt", "sse3", "sse4_1", "sse4_2", "ssse3"
#define V3 V2, "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"
#define V4 V3, "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"

/* v3's additions over v2, in table order: leaf 1 ECX, leaf 7 EBX, 80000001H ECX. */
#define V3_MISSING "fma, movbe, xsave, avx, f16c, bmi1, avx2, bmi2, abm"
#define V4_MISSING "avx512f, avx512dq, avx512cd, avx512bw, avx512vl"

static const char *const feat_a[] = { V4, "aes", "sha_ni", NULL };  /* v4 and more */
static const char *const feat_b[] = { V3, "aes", NULL };            /* no AVX-512 */
static const char *const feat_c[] = { V2, "aes", NULL };            /* v2 only */

static Ferry__Cluster__Host *host_new(const char *name, const char *const *features)
{
	Ferry__Cluster__Host *h = CL_NEW(Ferry__Cluster__Host, ferry__cluster__host__init);

	assert_non_null(h);
	h->name = cl_strdup(name);
	if (features) {
		h->inventory = CL_NEW(Ferry__Cluster__Inventory, ferry__cluster__inventory__init);
		assert_non_null(h->inventory);
		for (; *features; features++)
			assert_int_equal(cl_strv_add(&h->inventory->cpu_features,
						     &h->inventory->n_cpu_features, *features), 0);
	}
	return h;
}

static void state_add(Ferry__Cluster__State *st, Ferry__Cluster__Host *h)
{
	Ferry__Cluster__Host **v = realloc(st->hosts, (st->n_hosts + 1) * sizeof(*v));

	assert_non_null(v);
	st->hosts = v;
	st->hosts[st->n_hosts++] = h;
}

/* hA, hB and hN (no inventory); hC is a candidate outside the state. */
struct fixture {
	Ferry__Cluster__State *st;
	Ferry__Cluster__Host *a, *b, *n, *c;
	Ferry__Cluster__Vm *vm;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->st = CL_NEW(Ferry__Cluster__State, ferry__cluster__state__init);
	assert_non_null(f->st);
	f->a = host_new("hA", feat_a);
	f->b = host_new("hB", feat_b);
	f->n = host_new("hN", NULL);
	state_add(f->st, f->a);
	state_add(f->st, f->b);
	state_add(f->st, f->n);
	f->c = host_new("hC", feat_c);
	f->vm = CL_NEW(Ferry__Cluster__Vm, ferry__cluster__vm__init);
	assert_non_null(f->vm);
	f->vm->name = cl_strdup("vm1");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	CL_FREE(f->st);
	CL_FREE(f->c);
	CL_FREE(f->vm);
	free(f);
	return 0;
}

static void vm_set(struct fixture *f, const char *model, const char *host)
{
	cl_str_set(&f->vm->cpu_model, model);
	cl_str_set(&f->vm->host, host);
}

/* names[0..n) is exactly want (NULL-terminated), in the same order. */
static void assert_names(const char **names, size_t n, const char *const *want)
{
	size_t i;

	for (i = 0; want[i]; i++) {
		assert_true(i < n);
		assert_string_equal(names[i], want[i]);
	}
	assert_int_equal(n, i);
}

static void check_ok(struct fixture *f, const Ferry__Cluster__Host *h)
{
	char missing[256] = "x";

	assert_int_equal(cl_cpu_check(f->st, f->vm, h, missing, sizeof(missing)), 0);
	assert_string_equal(missing, "");
}

static void check_missing(struct fixture *f, const Ferry__Cluster__Host *h, const char *want)
{
	char missing[512];

	assert_int_equal(cl_cpu_check(f->st, f->vm, h, missing, sizeof(missing)), -ENOTSUP);
	assert_string_equal(missing, want);
}

static void test_baseline(void **state)
{
	/* v3 and aes in table order; hN (no inventory) does not empty it. */
	static const char *const want[] = {
		"fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2",
		"sse3", "ssse3", "fma", "cx16", "sse4_1", "sse4_2", "movbe", "popcnt",
		"aes", "xsave", "avx", "f16c",
		"bmi1", "avx2", "bmi2",
		"syscall", "lm",
		"lahf_lm", "abm", NULL };
	struct fixture *f = *state;
	const char **names = NULL;
	size_t n = 0;

	assert_int_equal(cl_cpu_baseline(f->st, &names, &n), 0);
	assert_names(names, n, want);
	free(names);
}

static void test_baseline_empty(void **state)
{
	Ferry__Cluster__State *st = CL_NEW(Ferry__Cluster__State, ferry__cluster__state__init);
	const char **names = NULL;
	size_t n = 99;

	(void)state;
	assert_non_null(st);
	assert_int_equal(cl_cpu_baseline(st, &names, &n), 0);
	assert_int_equal(n, 0);
	free(names);
	state_add(st, host_new("hN", NULL));
	assert_int_equal(cl_cpu_baseline(st, &names, &n), 0);
	assert_int_equal(n, 0);
	free(names);
	CL_FREE(st);
}

static void test_psabi_levels(void **state)
{
	struct fixture *f = *state;

	vm_set(f, "x86-64-v1", "hA");
	check_ok(f, f->a);
	check_ok(f, f->b);
	check_ok(f, f->c);
	vm_set(f, "x86-64-v2", "hA");
	check_ok(f, f->c);
	vm_set(f, "x86-64-v3", "hA");
	check_ok(f, f->b);
	check_missing(f, f->c, V3_MISSING);
	vm_set(f, "x86-64-v4", "hA");
	check_ok(f, f->a);
	check_missing(f, f->b, V4_MISSING);
	/* One table order across both levels: abm (80000001H) comes last. */
	check_missing(f, f->c, "fma, movbe, xsave, avx, f16c, bmi1, avx2, bmi2, "
		      V4_MISSING ", abm");
}

static void test_model_features(void **state)
{
	static const char *const v2_order[] = {
		"fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "sse3", "ssse3",
		"cx16", "sse4_1", "sse4_2", "popcnt", "syscall", "lm", "lahf_lm", NULL };
	struct fixture *f = *state;
	const char **names = NULL;
	char err[256] = "";
	size_t n = 0;

	vm_set(f, "x86-64-v2", "");
	assert_int_equal(cl_cpu_model_features(f->st, f->vm, &names, &n, err, sizeof(err)), 0);
	assert_names(names, n, v2_order);
	free(names);
	/* "host" on hB needs what hB has. */
	vm_set(f, "host", "hB");
	assert_int_equal(cl_cpu_model_features(f->st, f->vm, &names, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 26);
	free(names);
}

static void test_host_model(void **state)
{
	struct fixture *f = *state;
	const char **names = NULL;
	char err[256];
	size_t n = 99;

	/* Running on hA: a host without hA's extras cannot take it. */
	vm_set(f, "host", "hA");
	check_ok(f, f->a);
	check_missing(f, f->b, "avx512f, avx512dq, avx512cd, sha_ni, avx512bw, avx512vl");
	/* Not placed yet, or placed on a host that never reported: nothing needed. */
	vm_set(f, "host", "");
	check_ok(f, f->c);
	assert_int_equal(cl_cpu_model_features(f->st, f->vm, &names, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	free(names);
	vm_set(f, "host", "hN");
	check_ok(f, f->c);
	/* An empty model is vmon's default, host. */
	vm_set(f, "", "hA");
	check_missing(f, f->b, "avx512f, avx512dq, avx512cd, sha_ni, avx512bw, avx512vl");
}

static void test_cluster_model(void **state)
{
	struct fixture *f = *state;

	vm_set(f, CL_CPU_MODEL_CLUSTER, "hA");
	check_ok(f, f->a);
	check_ok(f, f->b);
	check_missing(f, f->c, V3_MISSING);
	/* hC joining lowers the baseline to v2 + aes: everyone fits. */
	state_add(f->st, f->c);
	check_ok(f, f->c);
	f->st->n_hosts--;
}

static void test_no_inventory_target(void **state)
{
	struct fixture *f = *state;

	vm_set(f, "x86-64-v1", "");
	check_missing(f, f->n, "fpu, cx8, cmov, mmx, fxsr, sse, sse2, syscall, lm");
}

static void test_unknown_model(void **state)
{
	struct fixture *f = *state;
	const char **names = NULL;
	char err[256] = "", model[32], hide[64];
	size_t n;

	vm_set(f, "x86-64-v9", "hA");
	assert_int_equal(cl_cpu_model_features(f->st, f->vm, &names, &n, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "unknown CPU model 'x86-64-v9'"));
	assert_non_null(strstr(err, "cluster"));
	assert_int_equal(cl_cpu_check(f->st, f->vm, f->a, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "x86-64-v9"));
	assert_int_equal(cl_cpu_vmon_args(f->st, f->vm, f->a, model, sizeof(model),
					  hide, sizeof(hide)), -ENOENT);
}

static void test_missing_too_long(void **state)
{
	struct fixture *f = *state;
	char missing[24];

	/* Whole names only, and a sign that the list goes on. */
	vm_set(f, "x86-64-v4", "");
	assert_int_equal(cl_cpu_check(f->st, f->vm, f->c, missing, sizeof(missing)), -ENOTSUP);
	assert_string_equal(missing, "fma, movbe, xsave, ...");
}

static void test_vmon_args(void **state)
{
	struct fixture *f = *state;
	char model[32], hide[256], tiny[8];

	vm_set(f, "x86-64-v3", "hA");
	assert_int_equal(cl_cpu_vmon_args(f->st, f->vm, f->a, model, sizeof(model),
					  hide, sizeof(hide)), 0);
	assert_string_equal(model, "x86-64-v3");
	assert_string_equal(hide, "");
	vm_set(f, "host", "hA");
	assert_int_equal(cl_cpu_vmon_args(f->st, f->vm, f->a, model, sizeof(model),
					  hide, sizeof(hide)), 0);
	assert_string_equal(model, "host");
	assert_string_equal(hide, "");
	/* cluster: the host model minus what not every host has. */
	vm_set(f, CL_CPU_MODEL_CLUSTER, "hA");
	assert_int_equal(cl_cpu_vmon_args(f->st, f->vm, f->a, model, sizeof(model),
					  hide, sizeof(hide)), 0);
	assert_string_equal(model, "host");
	assert_string_equal(hide, "avx512f,avx512dq,avx512cd,sha_ni,avx512bw,avx512vl");
	assert_int_equal(cl_cpu_vmon_args(f->st, f->vm, f->b, model, sizeof(model),
					  hide, sizeof(hide)), 0);
	assert_string_equal(hide, "");
	/* A cut hide list would show the guest too much: refused. */
	assert_int_equal(cl_cpu_vmon_args(f->st, f->vm, f->a, model, sizeof(model),
					  tiny, sizeof(tiny)), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_baseline, setup, teardown),
		cmocka_unit_test(test_baseline_empty),
		cmocka_unit_test_setup_teardown(test_psabi_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_model_features, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_inventory_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmon_args, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
