/*
 * What the CPU model's files share (cpumodel.c, cpumodel_cpuid.c): the
 * XSAVE components, and the table code that applying a model uses.
 */
#ifndef FERRY_CPUMODEL_INT_H
#define FERRY_CPUMODEL_INT_H

#include "core/cpumodel.h"

/* XSAVE state components (XCR0 bits), SDM vol. 1, 13.1 */
#define XFEAT_X87       (1ull << 0)
#define XFEAT_SSE       (1ull << 1)
#define XFEAT_AVX       (1ull << 2)
#define XFEAT_BNDREGS   (1ull << 3)
#define XFEAT_BNDCSR    (1ull << 4)
#define XFEAT_OPMASK    (1ull << 5)
#define XFEAT_ZMM_HI256 (1ull << 6)
#define XFEAT_HI16_ZMM  (1ull << 7)
#define XFEAT_AVX512    (XFEAT_OPMASK | XFEAT_ZMM_HI256 | XFEAT_HI16_ZMM)
#define XFEAT_TILECFG   (1ull << 17)
#define XFEAT_TILEDATA  (1ull << 18)
#define XFEAT_AMX       (XFEAT_TILECFG | XFEAT_TILEDATA)

size_t cpuid_table_nent(const struct cpuid_table *t);
const struct kvm_cpuid_entry2 *cpuid_entry_get(const struct cpuid_table *t, uint32_t function,
					       uint32_t index);
struct kvm_cpuid_entry2 *cpuid_entry_mut(struct cpuid_table *t, uint32_t function,
					 uint32_t index);
uint32_t *cpuid_reg_of(struct kvm_cpuid_entry2 *e, unsigned int reg);
void cpuid_feature_clear(struct cpuid_table *t, const struct cpu_feature *f);
bool cpuid_host_xcr0(const struct cpuid_table *host, uint64_t *out);
uint64_t cpuid_xcr0_sanitize(const struct cpuid_table *host, uint64_t x);
void cpuid_xsave_clip(const struct cpuid_table *host, struct cpuid_table *out, uint64_t x);

#endif
