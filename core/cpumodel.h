/*
 * CPU models: what CPUID a guest sees. A model is a named feature set;
 * applying it to the host's KVM_GET_SUPPORTED_CPUID result hides everything
 * the model does not include, and fails, naming the features, when the host
 * lacks something the model needs. The feature tables live in cpumodel.c and
 * nowhere else.
 *
 * Models: "host" (everything KVM offers), and the x86-64 psABI levels
 * "x86-64-v1" .. "x86-64-v4".
 */
#ifndef FERRY_CPUMODEL_H
#define FERRY_CPUMODEL_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CPUID_MAX_ENTRIES 256
#define CPUMODEL_MISSING_LEN 512

enum cpu_reg { CPU_EAX = 0, CPU_EBX, CPU_ECX, CPU_EDX };

struct cpu_feature {
	const char *name;   /* lower case, as /proc/cpuinfo or the psABI */
	uint32_t leaf;
	uint32_t subleaf;   /* only meaningful for leaves with subleaves */
	uint8_t reg;        /* enum cpu_reg */
	uint8_t bit;
};

/*
 * A CPUID table of fixed capacity with the layout of struct kvm_cpuid2 (so
 * it can be handed to KVM_GET_SUPPORTED_CPUID and KVM_SET_CPUID2 as is),
 * spelled out because a struct with a flexible array may not be embedded.
 */
struct cpuid_table {
	struct {
		uint32_t nent;
		uint32_t padding;
	} hdr;
	struct kvm_cpuid_entry2 entries[CPUID_MAX_ENTRIES];
};

_Static_assert(offsetof(struct cpuid_table, entries) ==
	       offsetof(struct kvm_cpuid2, entries),
	       "struct cpuid_table must match struct kvm_cpuid2");

struct cpumodel;

/* Lookup by name; NULL when unknown. */
const struct cpumodel *cpumodel_find(const char *name);
const char *cpumodel_name(const struct cpumodel *m);
/* The names of all models, comma-separated, for --help and errors. */
const char *cpumodel_list(void);

/* The feature table (every feature Ferry knows by name). */
const struct cpu_feature *cpu_feature_find(const char *name);
const struct cpu_feature *cpu_features(size_t *count);

/*
 * Whether a guest of model m needs feature f from its host. "host" needs
 * nothing: it takes whatever the host has.
 */
bool cpumodel_requires(const struct cpumodel *m, const struct cpu_feature *f);

/* Whether a CPUID table has a feature bit set. */
bool cpuid_has(const struct cpuid_table *t, const struct cpu_feature *f);

/*
 * Build the guest CPUID for model m from the host's supported CPUID.
 * On success returns 0 with *out ready for KVM_SET_CPUID2. When the host
 * lacks features that m requires, returns -ENOTSUP and writes their names,
 * comma-separated in table order, into missing[CPUMODEL_MISSING_LEN].
 */
int cpumodel_apply(const struct cpumodel *m, const struct cpuid_table *host,
		   struct cpuid_table *out, char *missing);

/*
 * The XSAVE state components (XCR0 bits) a guest of model m may enable,
 * given what the host table offers (leaf 0xd).
 */
uint64_t cpumodel_xcr0(const struct cpumodel *m, const struct cpuid_table *host);

/* Whether every name in a --cpuid-hide list is a known feature (no KVM needed). */
int cpuid_features_valid(const char *list, char *why, size_t why_len);
/*
 * Hide features from a host CPUID table, to pretend a host is older than it
 * is (tests, heterogeneous clusters on one machine). list is comma-separated
 * feature names. Returns 0, or -EINVAL with the unknown name in why.
 */
int cpuid_mask_features(struct cpuid_table *t, const char *list, char *why,
			size_t why_len);

/*
 * Whether a host can run a guest that sees the CPUID table guest: every
 * known feature set in guest must be set in host. 0, or -ENOTSUP with the
 * missing names, comma-separated in table order, in missing.
 */
int cpuid_check_supported(const struct cpuid_table *guest,
			  const struct cpuid_table *host, char *missing);

#endif
