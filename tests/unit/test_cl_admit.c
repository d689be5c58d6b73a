/*
 * HA admission control (cluster/cl_admit.c) on hand-made states: which
 * changes leave room to restart the HA VMs of any k lost hosts, and what
 * a refusal says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_admit.h"
#include "cl_plan.h"

#define GIB (1ull << 30)

#define MAX_HOSTS 9    /* host1..host9: up() reads the digit */
#define MAX_VMS 32

static Ferry__Cluster__Inventory inv[MAX_HOSTS];
static Ferry__Cluster__Host hosts[MAX_HOSTS], *host_ptrs[MAX_HOSTS];
static Ferry__Cluster__Vm vms[MAX_VMS], *vm_ptrs[MAX_VMS];
static Ferry__Cluster__State st;
static bool down[MAX_HOSTS];
static char why[512];

static bool up(const void *opaque, const char *host)
{
	(void)opaque;
	return !down[host[4] - '1'];
}

/* n hosts host1.. of mem_gib each, all up, no VMs. */
static void cluster(unsigned n, uint64_t mem_gib)
{
	static char names[MAX_HOSTS][8];

	memset(&st, 0, sizeof(st));
	ferry__cluster__state__init(&st);
	for (unsigned i = 0; i < n; i++) {
		ferry__cluster__inventory__init(&inv[i]);
		inv[i].mem_bytes = mem_gib * GIB;
		ferry__cluster__host__init(&hosts[i]);
		snprintf(names[i], sizeof(names[i]), "host%u", i + 1);
		hosts[i].name = names[i];
		hosts[i].inventory = &inv[i];
		host_ptrs[i] = &hosts[i];
		down[i] = false;
	}
	st.hosts = host_ptrs;
	st.n_hosts = n;
	st.vms = vm_ptrs;
}

/* A VM running on host (NULL: stopped). */
static void vm(const char *name, uint64_t mem_gib, const char *host, bool ha)
{
	Ferry__Cluster__Vm *v = &vms[st.n_vms];

	ferry__cluster__vm__init(v);
	v->name = (char *)name;
	v->mem_bytes = mem_gib * GIB;
	v->host = (char *)(host ? host : "");
	v->desired = host ? FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING :
			    FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED;
	v->ha = ha;
	vm_ptrs[st.n_vms++] = v;
}

static int admit(unsigned k, const char *name, const char *host, bool ha)
{
	struct cl_admit_change c = { .vm = name, .host = host, .ha = ha };

	return cl_admit_ha(&st, k, up, NULL, name ? &c : NULL, name ? 1 : 0, why, sizeof(why));
}

/* Three hosts of 24 GiB: two 14 GiB HA VMs fit one loss, a third does not. */
static void test_one_failure(void **unused)
{
	(void)unused;
	cluster(3, 24);
	vm("h1", 14, "host1", true);
	vm("h2", 14, "host2", true);
	vm("h3", 14, NULL, true);
	assert_int_equal(admit(1, NULL, NULL, false), 0);
	assert_int_equal(admit(1, "h3", "host3", true), -ENOSPC);
	assert_string_equal(why, "were host1 lost, HA VM h1 (14336 MiB) could not restart: "
			    "the most memory left on a host would be 10240 MiB (host2)");
	/* Not checked: the setting is off. */
	assert_int_equal(admit(0, "h3", "host3", true), 0);
	/* Two losses: not even the first two. */
	assert_int_equal(admit(2, NULL, NULL, false), -ENOSPC);
	assert_non_null(strstr(why, "were host1 and host2 lost"));
}

/* A plain VM takes memory that a restart needs; a small one leaves enough. */
static void test_plain_vm_counts(void **unused)
{
	(void)unused;
	cluster(3, 24);
	vm("h1", 14, "host1", true);
	vm("p1", 12, NULL, false);
	vm("p2", 12, NULL, false);
	assert_int_equal(admit(1, "p1", "host2", false), 0);   /* host3 takes h1 */
	vm_ptrs[1]->host = "host2";
	vm_ptrs[1]->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
	assert_int_equal(admit(1, "p2", "host3", false), -ENOSPC);
	assert_non_null(strstr(why, "HA VM h1 (14336 MiB) could not restart"));
	/* HA off for h1: nothing to restart, anything goes. */
	assert_int_equal(admit(1, "h1", "host1", false), 0);
}

/* Moving an HA VM next to another can break what two hosts kept apart. */
static void test_migration(void **unused)
{
	(void)unused;
	cluster(3, 16);
	vm("a", 6, "host1", true);
	vm("b", 6, "host2", true);
	vm("c", 6, "host3", true);
	assert_int_equal(admit(1, NULL, NULL, false), 0);
	/* b onto host1: losing host1 must place a and b (6 each) on host2 (16) and host3 (10). */
	assert_int_equal(admit(1, "b", "host1", true), 0);
	/* 10 GiB HA VMs: one a host is fine, two on one host need 20 GiB elsewhere. */
	cluster(3, 16);
	vm("a", 10, "host1", true);
	vm("b", 10, "host2", true);
	assert_int_equal(admit(1, NULL, NULL, false), 0);
	assert_int_equal(admit(1, "b", "host1", true), 0);   /* host2, host3: 16 free each */
	vm("c", 10, "host3", true);
	assert_int_equal(admit(1, NULL, NULL, false), -ENOSPC);
}

/* A host down now is lost already; a host in maintenance takes no restarts. */
static void test_down_and_maintenance(void **unused)
{
	(void)unused;
	cluster(3, 24);
	vm("h1", 14, "host1", true);
	vm("h2", 14, NULL, true);
	down[2] = true;   /* host3 */
	assert_int_equal(admit(1, NULL, NULL, false), 0);     /* h1 -> host2 */
	assert_int_equal(admit(1, "h2", "host2", true), -ENOSPC);
	assert_non_null(strstr(why, "(with host3, down)"));
	down[2] = false;
	hosts[1].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	hosts[2].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	assert_int_equal(admit(1, NULL, NULL, false), -ENOSPC);
	assert_non_null(strstr(why, "no host would be left to take it"));
	hosts[1].mode = hosts[2].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE;
}

/* Fewer hosts up than losses to survive: refused, saying so. */
static void test_too_few_hosts(void **unused)
{
	(void)unused;
	cluster(2, 24);
	down[1] = true;
	vm("h1", 1, NULL, true);
	assert_int_equal(admit(1, "h1", "host1", true), -ENOSPC);
	assert_string_equal(why, "ha-host-failures 1 needs at least 2 hosts online to take "
			    "the restarts (online now: 1)");
}

/* The balancer's plan: a move that breaks the room is left out, and the ones before stay. */
static void test_plan_filter(void **unused)
{
	struct cl_plan_move moves[2] = {
		{ .vm_name = "p", .from = "host1", .to = "host3", .imbalance_after = 0.3 },
		{ .vm_name = "q", .from = "host2", .to = "host3", .imbalance_after = 0.1 },
	};
	struct cl_plan plan = { .moves = moves, .n_moves = 2, .imbalance_before = 0.5,
				.imbalance_after = 0.1 };

	(void)unused;
	cluster(3, 16);
	vm("a", 10, "host1", true);
	vm("b", 10, "host2", true);
	vm("p", 4, "host1", false);
	vm("q", 4, "host2", false);
	assert_int_equal(admit(1, NULL, NULL, false), 0);
	/* Off: nothing is judged. */
	assert_int_equal(cl_admit_plan(&st, 0, up, NULL, &plan, why, sizeof(why)), 0);
	assert_int_equal(plan.n_moves, 2);
	/* p to host3 leaves 12 GiB there for a or b; q after it leaves 8 and 6. */
	assert_int_equal(cl_admit_plan(&st, 1, up, NULL, &plan, why, sizeof(why)), 1);
	assert_int_equal(plan.n_moves, 1);
	assert_string_equal(plan.moves[0].vm_name, "p");
	assert_true(plan.imbalance_after == 0.3);
	assert_string_equal(why, "q -> host3: were host1 lost, HA VM a (10240 MiB) could not "
			    "restart: the most memory left on a host would be 8192 MiB (host3)");
	/* A cluster that already would not survive (host3 down): moves go on. */
	plan.n_moves = 2;
	moves[0] = (struct cl_plan_move){ .vm_name = "p", .to = "host2" };
	moves[1] = (struct cl_plan_move){ .vm_name = "q", .to = "host1" };
	down[2] = true;
	assert_int_equal(admit(1, NULL, NULL, false), -ENOSPC);
	assert_int_equal(cl_admit_plan(&st, 1, up, NULL, &plan, why, sizeof(why)), 0);
	assert_int_equal(plan.n_moves, 2);
	down[2] = false;
}

/* A host into maintenance takes no restarts, and its VMs go where the plan says. */
static Ferry__Cluster__Settings settings = FERRY__CLUSTER__SETTINGS__INIT;

/* host into maintenance with its moves (vm, to pairs), ha-host-failures k. */
static int maintenance(unsigned k, const char *host, const char *const *mv, size_t n)
{
	Ferry__Cluster__AdmitMove m[4], *pm[4];

	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		ferry__cluster__admit_move__init(&m[i]);
		m[i].vm = (char *)mv[2 * i];
		m[i].to = (char *)mv[2 * i + 1];
		pm[i] = &m[i];
	}
	settings.ha_host_failures = k;
	st.settings = &settings;
	return cl_admit_maintenance(&st, up, NULL, "host maintenance", host, pm, n, why,
				    sizeof(why));
}

static void test_maintenance(void **unused)
{
	const char *const p_host4[] = { "p", "host4" };

	(void)unused;
	cluster(3, 16);
	vm("a", 10, "host1", true);
	vm("b", 10, "host2", true);
	assert_int_equal(admit(1, NULL, NULL, false), 0);   /* host3 takes a or b */
	assert_int_equal(maintenance(1, "host3", NULL, 0), -ENOSPC);
	assert_string_equal(why, "host maintenance: host3: refused by HA admission control "
			    "(ha-host-failures 1): with host3 in maintenance and its VMs moved "
			    "(none to move), were host1 lost, HA VM a (10240 MiB) could not "
			    "restart: the most memory left on a host would be 6144 MiB (host2); "
			    "make room first, or lower ha-host-failures while host3 is in "
			    "maintenance");
	assert_int_equal(maintenance(0, "host3", NULL, 0), 0);
	assert_string_equal(why, "");
	/* Four hosts: p leaves host3 for host4, which keeps 12 GiB for a or b. */
	cluster(4, 16);
	vm("a", 10, "host1", true);
	vm("b", 10, "host2", true);
	vm("p", 4, "host3", false);
	assert_int_equal(maintenance(1, "host3", p_host4, 1), 0);
	/* Two losses: host3 and host4 take a and b now; host4 alone would not. */
	assert_int_equal(admit(2, NULL, NULL, false), 0);
	assert_int_equal(maintenance(2, "host3", p_host4, 1), -ENOSPC);
	assert_non_null(strstr(why, "moved (p -> host4), were host1 and host2 lost"));
	/* p left host3 since: the state counts it where it is, and the plan's move is moot. */
	vms[2].host = "host1";
	assert_int_equal(maintenance(2, "host3", p_host4, 1), -ENOSPC);
	assert_non_null(strstr(why, "moved (none to move), were host2 and host1 lost, HA VM b "
				    "(10240 MiB) could not restart: the most memory left on a host "
				    "would be 6144 MiB (host4)"));
	vms[2].host = "host3";
	/* host4 went into maintenance since the plan was made: it says nothing now. */
	hosts[3].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	assert_int_equal(maintenance(1, "host3", p_host4, 1), -ESTALE);
	assert_string_equal(why, "host maintenance: host3: HA admission control judged it with "
			    "p moved to host4, which went into maintenance since; ask again");
	hosts[3].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE;
	assert_int_equal(maintenance(1, "host3", (const char *const[]){ "p", "host9" }, 1),
			 -ESTALE);
	assert_non_null(strstr(why, "p moved to host9, which left the cluster since"));
	/* A cluster that would not survive already: maintenance is not what breaks it. */
	down[3] = true;
	assert_int_equal(admit(1, NULL, NULL, false), 0);   /* host3 takes a or b */
	vm("q", 8, "host3", false);
	assert_int_equal(admit(1, NULL, NULL, false), -ENOSPC);
	assert_int_equal(maintenance(1, "host3", p_host4, 1), 0);
	down[3] = false;
	st.settings = NULL;
}

/* What clusterctl status shows: the losses survived now, the room per host. */
static void test_room(void **unused)
{
	(void)unused;
	cluster(3, 16);
	vm("a", 10, "host1", true);
	vm("b", 10, "host2", true);
	assert_int_equal(cl_admit_tolerates(&st, up, NULL), 1);
	/* host3 keeps 10 of its 16 GiB for a or b; host1 and host2 may fill up. */
	assert_int_equal(cl_admit_room(&st, 1, up, NULL, "host1"), 6 * GIB);
	assert_int_equal(cl_admit_room(&st, 1, up, NULL, "host2"), 6 * GIB);
	assert_int_equal(cl_admit_room(&st, 1, up, NULL, "host3"), 6 * GIB);
	assert_int_equal(cl_admit_room(&st, 0, up, NULL, "host3"), 16 * GIB);
	/* A new VM of that size is admitted there, and one MiB more is not. */
	{
		struct cl_admit_change c = { .vm = "n", .host = "host3", .mem = 6 * GIB };

		assert_int_equal(cl_admit_ha(&st, 1, up, NULL, &c, 1, why, sizeof(why)), 0);
		c.mem += 1 << 20;
		assert_int_equal(cl_admit_ha(&st, 1, up, NULL, &c, 1, why, sizeof(why)), -ENOSPC);
		assert_non_null(strstr(why, "HA VM a (10240 MiB) could not restart"));
	}
	/* Small HA VMs: two losses survived; a host down or in maintenance has no room. */
	cluster(4, 16);
	vm("a", 2, "host1", true);
	vm("b", 2, "host2", true);
	assert_int_equal(cl_admit_tolerates(&st, up, NULL), 3);
	down[3] = true;
	assert_int_equal(cl_admit_tolerates(&st, up, NULL), 2);
	assert_int_equal(cl_admit_room(&st, 1, up, NULL, "host4"), 0);
	down[3] = false;
	hosts[2].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	assert_int_equal(cl_admit_room(&st, 1, up, NULL, "host3"), 0);
	hosts[2].mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE;
}

/*
 * The rule as written down, tried on every choice of k hosts without any
 * shortcut: the reference that cl_admit_ha's pruning must agree with.
 */
static const Ferry__Cluster__Vm *ref_ha[MAX_VMS];
static size_t ref_n_ha;
static int ref_lost[CL_ADMIT_MAX_FAILURES];

static int ref_host(const char *name)
{
	for (size_t h = 0; h < st.n_hosts; h++)
		if (!strcmp(hosts[h].name, name))
			return (int)h;
	return -1;
}

static bool ref_is_lost(unsigned k, int h)
{
	for (unsigned i = 0; i < k; i++)
		if (ref_lost[i] == h)
			return true;
	return down[h];
}

static bool ref_fits(unsigned k)
{
	uint64_t free_mem[MAX_HOSTS];

	for (size_t h = 0; h < st.n_hosts; h++) {
		uint64_t used = 0;

		for (size_t v = 0; v < st.n_vms; v++)
			if (vms[v].desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
			    ref_host(vms[v].host) == (int)h)
				used += vms[v].mem_bytes;
		free_mem[h] = !inv[h].mem_bytes ? UINT64_MAX :
			      inv[h].mem_bytes > used ? inv[h].mem_bytes - used : 0;
	}
	for (size_t i = 0; i < ref_n_ha; i++) {
		int best = -1;

		if (!ref_is_lost(k, ref_host(ref_ha[i]->host)))
			continue;
		for (size_t h = 0; h < st.n_hosts; h++)
			if (!ref_is_lost(k, (int)h) &&
			    hosts[h].mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE &&
			    (best < 0 || free_mem[h] > free_mem[best]))
				best = (int)h;
		if (best < 0 || free_mem[best] < ref_ha[i]->mem_bytes)
			return false;
		if (free_mem[best] != UINT64_MAX)
			free_mem[best] -= ref_ha[i]->mem_bytes;
	}
	return true;
}

static bool ref_each(unsigned k, unsigned i, size_t from)
{
	if (i == k)
		return ref_fits(k);
	for (size_t h = from; h < st.n_hosts; h++) {
		if (down[h])
			continue;
		ref_lost[i] = (int)h;
		if (!ref_each(k, i + 1, h + 1))
			return false;
	}
	return true;
}

static int ref_by_mem(const void *x, const void *y)
{
	const Ferry__Cluster__Vm *a = *(const Ferry__Cluster__Vm *const *)x;
	const Ferry__Cluster__Vm *b = *(const Ferry__Cluster__Vm *const *)y;

	return a->mem_bytes < b->mem_bytes ? 1 : a->mem_bytes > b->mem_bytes ? -1 :
	       strcmp(a->name, b->name);
}

static unsigned next_rand(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(*x >> 33);
}

/* Random clusters, many near their limit: the same verdict, and a loss that strands a VM named. */
static void test_pruning_agrees(void **unused)
{
	static char names[MAX_VMS][8];
	uint64_t x = 12345;
	unsigned refused = 0, held = 0;

	(void)unused;
	for (int round = 0; round < 4000; round++) {
		unsigned n = 2 + next_rand(&x) % (MAX_HOSTS - 1), online = 0;
		unsigned k = 1 + next_rand(&x) % CL_ADMIT_MAX_FAILURES;
		unsigned nv = next_rand(&x) % MAX_VMS;
		int ret;
		bool ok;

		cluster(n, 0);
		for (unsigned h = 0; h < n; h++) {
			unsigned r = next_rand(&x) % 20;

			inv[h].mem_bytes = r == 0 ? 0 : (uint64_t)(4 + next_rand(&x) % 13) << 28;
			down[h] = next_rand(&x) % 7 == 0;
			hosts[h].mode = next_rand(&x) % 9 == 0 ?
					FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE :
					FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE;
			online += !down[h];
		}
		ref_n_ha = 0;
		for (unsigned v = 0; v < nv; v++) {
			unsigned h = next_rand(&x) % (n + 1);

			snprintf(names[v], sizeof(names[v]), "v%02u", v);
			vm(names[v], 0, h < n ? hosts[h].name : NULL, next_rand(&x) % 2);
			vms[v].mem_bytes = (uint64_t)(1 + next_rand(&x) % 12) << 28;
			if (vms[v].ha && h < n)
				ref_ha[ref_n_ha++] = &vms[v];
		}
		qsort(ref_ha, ref_n_ha, sizeof(*ref_ha), ref_by_mem);
		ret = cl_admit_ha(&st, k, up, NULL, NULL, 0, why, sizeof(why));
		ok = online > k && ref_each(k, 0, 0);
		assert_int_equal(ret, ok ? 0 : -ENOSPC);
		held += ok;
		refused += !ok;
		if (ok || online <= k)
			continue;
		/* The hosts the refusal names are a choice that strands a VM. */
		{
			const char *end = strstr(why, " lost, HA VM ");
			unsigned named = 0;

			assert_non_null(end);
			assert_memory_equal(why, "were host", 9);
			for (const char *c = why; c < end && (c = strstr(c, "host")) && c < end; c += 5) {
				if (c - why >= 6 && !strncmp(c - 6, "(with ", 6))
					continue;   /* down already: not among the k */
				assert_true(named < k);
				ref_lost[named++] = c[4] - '1';
			}
			assert_int_equal(named, k);
			assert_false(ref_fits(k));
		}
	}
	/* Both verdicts came up often enough to mean something. */
	assert_true(held > 500);
	assert_true(refused > 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_failure),
		cmocka_unit_test(test_plain_vm_counts),
		cmocka_unit_test(test_migration),
		cmocka_unit_test(test_down_and_maintenance),
		cmocka_unit_test(test_too_few_hosts),
		cmocka_unit_test(test_plan_filter),
		cmocka_unit_test(test_maintenance),
		cmocka_unit_test(test_room),
		cmocka_unit_test(test_pruning_agrees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
