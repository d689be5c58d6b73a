/*
 * vmon cpu: what this host's KVM offers a guest's CPUID, by Ferry's feature
 * names, and which named CPU models run here. KVM's offer is not the host
 * CPU's /proc/cpuinfo: KVM on PVM, for one, offers little past x86-64-v1,
 * so tests and operators that must pick a feature to hide, or a model to
 * run, ask here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpumodel.h"
#include "core/kvm.h"
#include "core/vm.h"
#include "core/vmon.h"

static void print_features(const struct cpuid_table *t)
{
	const struct cpu_feature *f;
	size_t n;
	bool first = true;

	f = cpu_features(&n);
	fputs("features: ", stdout);
	for (size_t i = 0; i < n; i++) {
		/* The table names a few bits twice (pni, sse3): print the first. */
		if (!cpuid_has(t, &f[i]) || cpu_feature_find(f[i].name) != &f[i])
			continue;
		printf("%s%s", first ? "" : ",", f[i].name);
		first = false;
	}
	putchar('\n');
}

/* "model NAME: runs" or "model NAME: lacks a,b,c", for each named model. */
static int print_models(const struct cpuid_table *t)
{
	char *list = strdup(cpumodel_list()), *save = NULL, missing[CPUMODEL_MISSING_LEN];
	struct cpuid_table *out = malloc(sizeof(*out));
	int ret = 0;

	if (!list || !out) {
		ret = -ENOMEM;
		goto out;
	}
	for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		const struct cpumodel *m;

		while (*name == ' ')
			name++;
		m = cpumodel_find(name);
		if (!m)
			continue;
		missing[0] = 0;
		ret = cpumodel_apply(m, t, out, missing);
		if (ret && ret != -ENOTSUP)
			goto out;
		printf("model %s: %s%s\n", name, ret ? "lacks " : "runs", ret ? missing : "");
		ret = 0;
	}
out:
	free(list);
	free(out);
	return ret;
}

int vmon_cpu_main(int argc, char **argv)
{
	const char *hide = NULL;
	struct cpuid_table *t;
	char why[128];
	int kvm_fd, ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cpuid-hide") && i + 1 < argc)
			hide = argv[++i];
		else
			vmon_usage_error("cpu: unknown argument '%s'", argv[i]);
	}
	if (hide && cpuid_features_valid(hide, why, sizeof(why)))
		vmon_usage_error("--cpuid-hide: %s", why);
	kvm_fd = kvm_open();
	if (kvm_fd < 0) {
		fprintf(stderr, "vmon: error: %s: %s\n", KVM_DEV_PATH, strerror(-kvm_fd));
		return VM_EXIT_INTERNAL;
	}
	t = malloc(sizeof(*t));
	ret = t ? kvm_supported_cpuid(kvm_fd, t) : -ENOMEM;
	close(kvm_fd);
	if (!ret && hide)
		ret = cpuid_mask_features(t, hide, why, sizeof(why));
	if (!ret) {
		print_features(t);
		ret = print_models(t);
	}
	free(t);
	if (ret) {
		fprintf(stderr, "vmon: error: KVM_GET_SUPPORTED_CPUID: %s\n", strerror(-ret));
		return VM_EXIT_INTERNAL;
	}
	return 0;
}
