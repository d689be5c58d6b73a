/*
 * The host inventory (cl_inventory.h). CPUID comes from KVM, not from the
 * CPU: what matters is what KVM can give a guest. The TSC frequency is the
 * one KVM gives a new vCPU (KVM_GET_TSC_KHZ on a scratch VM, core/kvm.c),
 * which is what a guest's rt_now_ns runs on, rather than /proc/cpuinfo's
 * nominal figure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cl_inventory.h"
#include "cl_msg.h"
#include "cl_nic.h"
#include "core/cpumodel.h"
#include "core/kvm.h"

/* MemTotal from /proc/meminfo, in bytes; 0 when unreadable. */
static uint64_t mem_total_bytes(void)
{
	unsigned long long kib = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	}
	fclose(f);
	return (uint64_t)kib * 1024;
}

static uint32_t cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (uint32_t)n : 1;
}

/* The features of the host's KVM CPUID, after hiding hide, into inv. */
static int probe_cpuid(int kvm_fd, const char *hide, Ferry__Cluster__Inventory *inv,
		       char *err, size_t err_len)
{
	struct cpuid_table *t = malloc(sizeof(*t));
	const struct cpu_feature *table;
	char why[128];
	size_t n;
	int rc;

	if (!t)
		return -ENOMEM;
	rc = kvm_supported_cpuid(kvm_fd, t);
	if (rc) {
		snprintf(err, err_len, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-rc));
		goto out;
	}
	if (hide && *hide) {
		rc = cpuid_mask_features(t, hide, why, sizeof(why));
		if (rc) {
			snprintf(err, err_len, "--cpuid-hide: %s", why);
			goto out;
		}
	}
	table = cpu_features(&n);
	for (size_t i = 0; i < n && !rc; i++) {
		if (cpuid_has(t, &table[i]))
			rc = cl_strv_add(&inv->cpu_features, &inv->n_cpu_features, table[i].name);
	}
	if (rc)
		snprintf(err, err_len, "out of memory");
out:
	free(t);
	return rc;
}

/* The KVM part: CPUID features and the TSC frequency. */
static int probe_kvm(const char *hide, Ferry__Cluster__Inventory *inv, char *err, size_t err_len)
{
	int kvm_fd = kvm_open(), rc;

	if (kvm_fd < 0) {
		rc = kvm_fd == -ENOENT || kvm_fd == -ENXIO || kvm_fd == -ENODEV ? -ENODEV : kvm_fd;
		snprintf(err, err_len, "%s: %s%s", KVM_DEV_PATH, strerror(-kvm_fd),
			 rc == -ENODEV ? " (no KVM on this host: is the kvm module loaded?"
			 " A node without KVM can only be a witness: clusterd --witness)" : "");
		return rc;
	}
	rc = probe_cpuid(kvm_fd, hide, inv, err, err_len);
	if (!rc) {
		rc = kvm_tsc_khz(kvm_fd, &inv->tsc_khz);
		if (rc)
			snprintf(err, err_len, "KVM_GET_TSC_KHZ on a scratch VM: %s", strerror(-rc));
	}
	close(kvm_fd);
	return rc;
}

int cl_inventory_probe(const char *hide, bool witness, Ferry__Cluster__Inventory **out,
		       char *err, size_t err_len)
{
	Ferry__Cluster__Inventory *inv = CL_NEW(Ferry__Cluster__Inventory,
						ferry__cluster__inventory__init);
	struct utsname u;
	int rc = 0;

	if (!inv) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	/* A witness has no features and offers no memory: nothing is placed there. */
	if (!witness) {
		rc = probe_kvm(hide, inv, err, err_len);
		if (rc)
			goto out;
		inv->mem_bytes = mem_total_bytes();
		/* The bridges VMs' NICs may join; re-read while the agent runs. */
		cl_nic_bridges_refresh(inv);
	}
	inv->cpus = cpu_count();
	inv->kernel = cl_strdup(uname(&u) ? "" : u.release);
	if (!inv->kernel) {
		rc = -ENOMEM;
		snprintf(err, err_len, "out of memory");
		goto out;
	}
	*out = inv;
	inv = NULL;
out:
	CL_FREE(inv);
	return rc;
}

/* 0 when /proc/loadavg cannot be read: an unknown load is not a reason to
 * keep VMs off a host. */
double cl_host_load(void)
{
	double load = 0;
	FILE *f = fopen("/proc/loadavg", "re");

	if (!f)
		return 0;
	if (fscanf(f, "%lf", &load) != 1)
		load = 0;
	fclose(f);
	return load / cpu_count();
}
