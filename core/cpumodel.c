/*
 * CPU models: the feature table, the names Ferry accepts for features, the
 * models, and the code that turns the host's KVM_GET_SUPPORTED_CPUID into
 * the CPUID a guest of a model sees. Everything Ferry knows about CPUID
 * feature bits lives in this file.
 *
 * Bit positions are from the Intel SDM vol. 2A, "CPUID" (leaf 01H ECX/EDX
 * feature tables, leaf 07H, leaf 0DH, leaf 80000001H) and, for the AMD-only
 * bits of leaf 80000001H, from the AMD APM vol. 3, appendix E. Every one was
 * cross-checked against Linux's cpufeatures.h; the names are the Linux
 * /proc/cpuinfo spellings, with one exception: SSE3 is "sse3" ("pni" is an
 * alias).
 *
 * A psABI model is a whitelist. Applying it to a host table:
 *   - every known feature (feature_table) outside the model is cleared,
 *     wherever it lives;
 *   - in the registers that hold CPU capability flags (whitelist_regs), every
 *     bit, known or not, that is neither in the model nor a base bit is
 *     cleared, so a new CPU generation cannot leak into an old model;
 *   - base bits (base_features) are kept exactly as the host has them;
 *   - leaf 0DH is clipped to the model's XSAVE components;
 *   - every other leaf (vendor, cache and topology, address sizes, PMU,
 *     power, KVM's paravirtual leaves) is the host's, for the vCPU and
 *     topology code to adjust.
 */
#include "core/cpumodel.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/cpumodel_int.h"
#include "core/util.h"

/* ---- The feature table ---- */

/*
 * Ordered by leaf, subleaf, register, bit. The order matters to users: a
 * list of missing features is reported in this order.
 */
static const struct cpu_feature feature_table[] = {
	/* CPUID.01H:EDX */
	{ "fpu",                0x1, 0, CPU_EDX,  0 },
	{ "vme",                0x1, 0, CPU_EDX,  1 },
	{ "de",                 0x1, 0, CPU_EDX,  2 },
	{ "pse",                0x1, 0, CPU_EDX,  3 },
	{ "tsc",                0x1, 0, CPU_EDX,  4 },
	{ "msr",                0x1, 0, CPU_EDX,  5 },
	{ "pae",                0x1, 0, CPU_EDX,  6 },
	{ "mce",                0x1, 0, CPU_EDX,  7 },
	{ "cx8",                0x1, 0, CPU_EDX,  8 },
	{ "apic",               0x1, 0, CPU_EDX,  9 },
	{ "sep",                0x1, 0, CPU_EDX, 11 },
	{ "mtrr",               0x1, 0, CPU_EDX, 12 },
	{ "pge",                0x1, 0, CPU_EDX, 13 },
	{ "mca",                0x1, 0, CPU_EDX, 14 },
	{ "cmov",               0x1, 0, CPU_EDX, 15 },
	{ "pat",                0x1, 0, CPU_EDX, 16 },
	{ "pse36",              0x1, 0, CPU_EDX, 17 },
	{ "pn",                 0x1, 0, CPU_EDX, 18 },
	{ "clflush",            0x1, 0, CPU_EDX, 19 },
	{ "dts",                0x1, 0, CPU_EDX, 21 },
	{ "acpi",               0x1, 0, CPU_EDX, 22 },
	{ "mmx",                0x1, 0, CPU_EDX, 23 },
	{ "fxsr",               0x1, 0, CPU_EDX, 24 },
	{ "sse",                0x1, 0, CPU_EDX, 25 },
	{ "sse2",               0x1, 0, CPU_EDX, 26 },
	{ "ss",                 0x1, 0, CPU_EDX, 27 },
	{ "ht",                 0x1, 0, CPU_EDX, 28 },
	{ "tm",                 0x1, 0, CPU_EDX, 29 },
	{ "pbe",                0x1, 0, CPU_EDX, 31 },
	/* CPUID.01H:ECX */
	{ "sse3",               0x1, 0, CPU_ECX,  0 },
	{ "pclmulqdq",          0x1, 0, CPU_ECX,  1 },
	{ "dtes64",             0x1, 0, CPU_ECX,  2 },
	{ "monitor",            0x1, 0, CPU_ECX,  3 },
	{ "ds_cpl",             0x1, 0, CPU_ECX,  4 },
	{ "vmx",                0x1, 0, CPU_ECX,  5 },
	{ "smx",                0x1, 0, CPU_ECX,  6 },
	{ "est",                0x1, 0, CPU_ECX,  7 },
	{ "tm2",                0x1, 0, CPU_ECX,  8 },
	{ "ssse3",              0x1, 0, CPU_ECX,  9 },
	{ "cid",                0x1, 0, CPU_ECX, 10 },
	{ "sdbg",               0x1, 0, CPU_ECX, 11 },
	{ "fma",                0x1, 0, CPU_ECX, 12 },
	{ "cx16",               0x1, 0, CPU_ECX, 13 },
	{ "xtpr",               0x1, 0, CPU_ECX, 14 },
	{ "pdcm",               0x1, 0, CPU_ECX, 15 },
	{ "pcid",               0x1, 0, CPU_ECX, 17 },
	{ "dca",                0x1, 0, CPU_ECX, 18 },
	{ "sse4_1",             0x1, 0, CPU_ECX, 19 },
	{ "sse4_2",             0x1, 0, CPU_ECX, 20 },
	{ "x2apic",             0x1, 0, CPU_ECX, 21 },
	{ "movbe",              0x1, 0, CPU_ECX, 22 },
	{ "popcnt",             0x1, 0, CPU_ECX, 23 },
	{ "tsc_deadline_timer", 0x1, 0, CPU_ECX, 24 },
	{ "aes",                0x1, 0, CPU_ECX, 25 },
	{ "xsave",              0x1, 0, CPU_ECX, 26 },
	{ "osxsave",            0x1, 0, CPU_ECX, 27 },
	{ "avx",                0x1, 0, CPU_ECX, 28 },
	{ "f16c",               0x1, 0, CPU_ECX, 29 },
	{ "rdrand",             0x1, 0, CPU_ECX, 30 },
	{ "hypervisor",         0x1, 0, CPU_ECX, 31 },
	/* CPUID.(EAX=07H,ECX=0):EBX */
	{ "fsgsbase",           0x7, 0, CPU_EBX,  0 },
	{ "tsc_adjust",         0x7, 0, CPU_EBX,  1 },
	{ "sgx",                0x7, 0, CPU_EBX,  2 },
	{ "bmi1",               0x7, 0, CPU_EBX,  3 },
	{ "hle",                0x7, 0, CPU_EBX,  4 },
	{ "avx2",               0x7, 0, CPU_EBX,  5 },
	{ "smep",               0x7, 0, CPU_EBX,  7 },
	{ "bmi2",               0x7, 0, CPU_EBX,  8 },
	{ "erms",               0x7, 0, CPU_EBX,  9 },
	{ "invpcid",            0x7, 0, CPU_EBX, 10 },
	{ "rtm",                0x7, 0, CPU_EBX, 11 },
	{ "cqm",                0x7, 0, CPU_EBX, 12 },
	{ "mpx",                0x7, 0, CPU_EBX, 14 },
	{ "rdt_a",              0x7, 0, CPU_EBX, 15 },
	{ "avx512f",            0x7, 0, CPU_EBX, 16 },
	{ "avx512dq",           0x7, 0, CPU_EBX, 17 },
	{ "rdseed",             0x7, 0, CPU_EBX, 18 },
	{ "adx",                0x7, 0, CPU_EBX, 19 },
	{ "smap",               0x7, 0, CPU_EBX, 20 },
	{ "avx512ifma",         0x7, 0, CPU_EBX, 21 },
	{ "clflushopt",         0x7, 0, CPU_EBX, 23 },
	{ "clwb",               0x7, 0, CPU_EBX, 24 },
	{ "intel_pt",           0x7, 0, CPU_EBX, 25 },
	{ "avx512pf",           0x7, 0, CPU_EBX, 26 },
	{ "avx512er",           0x7, 0, CPU_EBX, 27 },
	{ "avx512cd",           0x7, 0, CPU_EBX, 28 },
	{ "sha_ni",             0x7, 0, CPU_EBX, 29 },
	{ "avx512bw",           0x7, 0, CPU_EBX, 30 },
	{ "avx512vl",           0x7, 0, CPU_EBX, 31 },
	/* CPUID.(EAX=07H,ECX=0):ECX */
	{ "prefetchwt1",        0x7, 0, CPU_ECX,  0 },
	{ "avx512vbmi",         0x7, 0, CPU_ECX,  1 },
	{ "umip",               0x7, 0, CPU_ECX,  2 },
	{ "pku",                0x7, 0, CPU_ECX,  3 },
	{ "ospke",              0x7, 0, CPU_ECX,  4 },
	{ "waitpkg",            0x7, 0, CPU_ECX,  5 },
	{ "avx512_vbmi2",       0x7, 0, CPU_ECX,  6 },
	{ "shstk",              0x7, 0, CPU_ECX,  7 },
	{ "gfni",               0x7, 0, CPU_ECX,  8 },
	{ "vaes",               0x7, 0, CPU_ECX,  9 },
	{ "vpclmulqdq",         0x7, 0, CPU_ECX, 10 },
	{ "avx512_vnni",        0x7, 0, CPU_ECX, 11 },
	{ "avx512_bitalg",      0x7, 0, CPU_ECX, 12 },
	{ "tme",                0x7, 0, CPU_ECX, 13 },
	{ "avx512_vpopcntdq",   0x7, 0, CPU_ECX, 14 },
	{ "la57",               0x7, 0, CPU_ECX, 16 },
	{ "rdpid",              0x7, 0, CPU_ECX, 22 },
	{ "bus_lock_detect",    0x7, 0, CPU_ECX, 24 },
	{ "cldemote",           0x7, 0, CPU_ECX, 25 },
	{ "movdiri",            0x7, 0, CPU_ECX, 27 },
	{ "movdir64b",          0x7, 0, CPU_ECX, 28 },
	{ "enqcmd",             0x7, 0, CPU_ECX, 29 },
	{ "sgx_lc",             0x7, 0, CPU_ECX, 30 },
	{ "pks",                0x7, 0, CPU_ECX, 31 },
	/* CPUID.(EAX=07H,ECX=0):EDX */
	{ "avx512_4vnniw",      0x7, 0, CPU_EDX,  2 },
	{ "avx512_4fmaps",      0x7, 0, CPU_EDX,  3 },
	{ "fsrm",               0x7, 0, CPU_EDX,  4 },
	{ "avx512_vp2intersect", 0x7, 0, CPU_EDX, 8 },
	{ "srbds_ctrl",         0x7, 0, CPU_EDX,  9 },
	{ "md_clear",           0x7, 0, CPU_EDX, 10 },
	{ "rtm_always_abort",   0x7, 0, CPU_EDX, 11 },
	{ "tsx_force_abort",    0x7, 0, CPU_EDX, 13 },
	{ "serialize",          0x7, 0, CPU_EDX, 14 },
	{ "hybrid_cpu",         0x7, 0, CPU_EDX, 15 },
	{ "tsxldtrk",           0x7, 0, CPU_EDX, 16 },
	{ "pconfig",            0x7, 0, CPU_EDX, 18 },
	{ "arch_lbr",           0x7, 0, CPU_EDX, 19 },
	{ "ibt",                0x7, 0, CPU_EDX, 20 },
	{ "amx_bf16",           0x7, 0, CPU_EDX, 22 },
	{ "avx512_fp16",        0x7, 0, CPU_EDX, 23 },
	{ "amx_tile",           0x7, 0, CPU_EDX, 24 },
	{ "amx_int8",           0x7, 0, CPU_EDX, 25 },
	{ "spec_ctrl",          0x7, 0, CPU_EDX, 26 },
	{ "stibp",              0x7, 0, CPU_EDX, 27 },
	{ "flush_l1d",          0x7, 0, CPU_EDX, 28 },
	{ "arch_capabilities",  0x7, 0, CPU_EDX, 29 },
	{ "core_capabilities",  0x7, 0, CPU_EDX, 30 },
	{ "ssbd",               0x7, 0, CPU_EDX, 31 },
	/* CPUID.(EAX=07H,ECX=1):EAX */
	{ "avx_vnni",           0x7, 1, CPU_EAX,  4 },
	{ "avx512_bf16",        0x7, 1, CPU_EAX,  5 },
	{ "cmpccxadd",          0x7, 1, CPU_EAX,  7 },
	{ "fzrm",               0x7, 1, CPU_EAX, 10 },
	{ "fsrs",               0x7, 1, CPU_EAX, 11 },
	{ "fsrc",               0x7, 1, CPU_EAX, 12 },
	{ "fred",               0x7, 1, CPU_EAX, 17 },
	{ "lkgs",               0x7, 1, CPU_EAX, 18 },
	{ "wrmsrns",            0x7, 1, CPU_EAX, 19 },
	{ "amx_fp16",           0x7, 1, CPU_EAX, 21 },
	{ "avx_ifma",           0x7, 1, CPU_EAX, 23 },
	{ "lam",                0x7, 1, CPU_EAX, 26 },
	/* CPUID.(EAX=0DH,ECX=1):EAX */
	{ "xsaveopt",           0xd, 1, CPU_EAX,  0 },
	{ "xsavec",             0xd, 1, CPU_EAX,  1 },
	{ "xgetbv1",            0xd, 1, CPU_EAX,  2 },
	{ "xsaves",             0xd, 1, CPU_EAX,  3 },
	{ "xfd",                0xd, 1, CPU_EAX,  4 },
	/* CPUID.80000001H:EDX (bits 0-9, 12-17, 23, 24: see amd_alias_bits) */
	{ "syscall",            0x80000001, 0, CPU_EDX, 11 },
	{ "nx",                 0x80000001, 0, CPU_EDX, 20 },
	{ "mmxext",             0x80000001, 0, CPU_EDX, 22 },
	{ "fxsr_opt",           0x80000001, 0, CPU_EDX, 25 },
	{ "pdpe1gb",            0x80000001, 0, CPU_EDX, 26 },
	{ "rdtscp",             0x80000001, 0, CPU_EDX, 27 },
	{ "lm",                 0x80000001, 0, CPU_EDX, 29 },
	{ "3dnowext",           0x80000001, 0, CPU_EDX, 30 },
	{ "3dnow",              0x80000001, 0, CPU_EDX, 31 },
	/* CPUID.80000001H:ECX */
	{ "lahf_lm",            0x80000001, 0, CPU_ECX,  0 },
	{ "cmp_legacy",         0x80000001, 0, CPU_ECX,  1 },
	{ "svm",                0x80000001, 0, CPU_ECX,  2 },
	{ "extapic",            0x80000001, 0, CPU_ECX,  3 },
	{ "cr8_legacy",         0x80000001, 0, CPU_ECX,  4 },
	{ "abm",                0x80000001, 0, CPU_ECX,  5 },
	{ "sse4a",              0x80000001, 0, CPU_ECX,  6 },
	{ "misalignsse",        0x80000001, 0, CPU_ECX,  7 },
	{ "3dnowprefetch",      0x80000001, 0, CPU_ECX,  8 },
	{ "osvw",               0x80000001, 0, CPU_ECX,  9 },
	{ "ibs",                0x80000001, 0, CPU_ECX, 10 },
	{ "xop",                0x80000001, 0, CPU_ECX, 11 },
	{ "skinit",             0x80000001, 0, CPU_ECX, 12 },
	{ "wdt",                0x80000001, 0, CPU_ECX, 13 },
	{ "lwp",                0x80000001, 0, CPU_ECX, 15 },
	{ "fma4",               0x80000001, 0, CPU_ECX, 16 },
	{ "tce",                0x80000001, 0, CPU_ECX, 17 },
	{ "nodeid_msr",         0x80000001, 0, CPU_ECX, 19 },
	{ "tbm",                0x80000001, 0, CPU_ECX, 21 },
	{ "topoext",            0x80000001, 0, CPU_ECX, 22 },
	{ "perfctr_core",       0x80000001, 0, CPU_ECX, 23 },
	{ "perfctr_nb",         0x80000001, 0, CPU_ECX, 24 },
	{ "bpext",              0x80000001, 0, CPU_ECX, 26 },
	{ "ptsc",               0x80000001, 0, CPU_ECX, 27 },
	{ "perfctr_llc",        0x80000001, 0, CPU_ECX, 28 },
	{ "mwaitx",             0x80000001, 0, CPU_ECX, 29 },
};

#define NFEATURES ARRAY_SIZE(feature_table)

/*
 * Other spellings: the x86-64 psABI's, QEMU's, the SDM's. Names are compared
 * ignoring case and treating '-', '_' and '.' alike, so "lahf-sahf",
 * "LAHF_SAHF" and "sse4.1" need no entry of their own.
 */
static const struct {
	const char *alias;
	const char *name;
} feature_aliases[] = {
	{ "pni",              "sse3" },
	{ "cmpxchg8b",        "cx8" },
	{ "cmpxchg16b",       "cx16" },
	{ "sce",              "syscall" },
	{ "lahf_sahf",        "lahf_lm" },
	{ "lzcnt",            "abm" },
	{ "prefetchw",        "3dnowprefetch" },
	{ "pclmul",           "pclmulqdq" },
	{ "tsc_deadline",     "tsc_deadline_timer" },
	{ "sha",              "sha_ni" },
	{ "xd",               "nx" },
	{ "page1gb",          "pdpe1gb" },
	{ "pdpe1g",           "pdpe1gb" },
	{ "psn",              "pn" },
	{ "ds",               "dts" },
	{ "selfsnoop",        "ss" },
	{ "avx512vbmi2",      "avx512_vbmi2" },
	{ "avx512vnni",       "avx512_vnni" },
	{ "avx512bitalg",     "avx512_bitalg" },
	{ "avx512vpopcntdq",  "avx512_vpopcntdq" },
	{ "avx512_vbmi",      "avx512vbmi" },
	{ "avx512_ifma",      "avx512ifma" },
	{ "avx512bf16",       "avx512_bf16" },
	{ "avx512fp16",       "avx512_fp16" },
	{ "avxvnni",          "avx_vnni" },
	{ "intel_stibp",      "stibp" },
	{ "spec_ctrl_ssbd",   "ssbd" },
};

/*
 * Base bits: kept in every model exactly as the host table has them,
 * neither required nor hidden. They are not ISA extensions a program picks
 * at run time but platform and paging facilities of every x86-64 CPU, which
 * KVM virtualizes or emulates itself (in-kernel local APIC, MTRR/PAT and
 * machine-check MSRs, its MMU), or topology the vCPU code owns. Hiding them
 * would only break guests (Linux needs PAE, PGE, PAT, APIC, TSC, MSR...),
 * and they cannot differ between two hosts that run x86-64 guests.
 *
 *   leaf 1 EDX: vme de pse tsc msr pae mce apic sep mtrr pge mca pat pse36
 *               clflush (architectural on every x86-64 CPU); ht (topology,
 *               goes with EBX[23:16] and leaves 4/0BH, kept as host)
 *   leaf 1 ECX: x2apic, tsc_deadline_timer (KVM's in-kernel APIC emulates
 *               both on any host); hypervisor (KVM sets it for guests);
 *               osxsave (see os_bits)
 *   leaf 7 ECX: ospke (see os_bits)
 *   leaf 7 EBX: tsc_adjust (an MSR KVM emulates on every host)
 *   0x80000001 ECX: cmp_legacy, topoext (AMD topology: they go with leaves
 *               0x8000001D/E, kept as host for the topology code)
 *   0x80000001 EDX: nx (every x86-64 host has it; guests rely on it)
 *
 * Deliberately NOT base, hence hidden by the psABI models because they can
 * differ between hosts of one cluster and a guest that saw them would fault
 * or misbehave after a migration: pdpe1gb (1 GiB pages in guest page
 * tables), rdtscp, pcid/invpcid, la57, smep/smap/umip/pku, vmx/svm (nested
 * virtualization), ss, and the speculation-control bits of leaf 7 EDX
 * (spec_ctrl, stibp, ssbd, md_clear, flush_l1d, arch_capabilities,
 * core_capabilities): a guest of a psABI model sees no IBRS/IBPB/ARCH_CAP
 * MSRs and assumes the worst about the CPU's vulnerabilities. The x86-64
 * levels of the psABI are user-space ISA baselines; a model that also pins
 * mitigation MSRs needs the cluster to agree on their values.
 */
static const char *const base_features[] = {
	"vme", "de", "pse", "tsc", "msr", "pae", "mce", "apic", "sep", "mtrr",
	"pge", "mca", "pat", "pse36", "clflush", "ht",
	"x2apic", "tsc_deadline_timer", "hypervisor", "osxsave",
	"tsc_adjust", "ospke",
	"cmp_legacy", "topoext",
	"nx",
	NULL,
};

/*
 * OS bits: CPUID flags that KVM computes at run time from the guest's CR4
 * (OSXSAVE from CR4.OSXSAVE, OSPKE from CR4.PKE). KVM_GET_SUPPORTED_CPUID
 * reports them clear, so no model can require them: the psABI's "OSXSAVE"
 * requirement of x86-64-v3 is met by requiring xsave, and the guest kernel
 * (or the monitor, for microguests) sets CR4.OSXSAVE. They are base bits,
 * except that an OS bit is cleared when its CPU feature is hidden.
 */
static const struct {
	const char *os;
	const char *cpu;
} os_bits[] = {
	{ "osxsave", "xsave" },
	{ "ospke",   "pku" },
};

/*
 * The registers that hold only CPU capability flags. A model is a whitelist
 * there: unknown bits are cleared too.
 */
static const struct {
	uint32_t leaf, subleaf;
	uint8_t reg;
} whitelist_regs[] = {
	{ 0x1,        0, CPU_ECX },
	{ 0x1,        0, CPU_EDX },
	{ 0x7,        0, CPU_EBX },
	{ 0x7,        0, CPU_ECX },
	{ 0x7,        0, CPU_EDX },
	{ 0x80000001, 0, CPU_ECX },
	{ 0x80000001, 0, CPU_EDX },
};

/*
 * AMD CPUs repeat leaf 1 EDX bits 0-9, 12-17, 23 and 24 (fpu ... pse36, mmx,
 * fxsr) in leaf 80000001H EDX; Intel CPUs report zeros there. A model keeps
 * the host's convention but never shows more than the model's leaf 1 EDX.
 */
static const uint32_t amd_alias_bits = 0x0183f3ffu;

/* ---- The models ---- */

struct cpumodel {
	const char *name;
	bool host;                      /* everything KVM offers, untouched */
	const struct cpumodel *parent;  /* this level = parent + features */
	const char *const *features;    /* NULL-terminated; what this adds */
	uint64_t xcr0;                  /* XSAVE components this level adds */
};

enum { M_HOST, M_V1, M_V2, M_V3, M_V4, M_COUNT };

/* x86-64 psABI, "3.1.1 Processor Architecture", micro-architecture levels */
static const struct cpumodel models[M_COUNT] = {
	[M_HOST] = { .name = "host", .host = true },
	/* The baseline; LM is implied by "x86-64"; OSFXSR is a CR4 bit. */
	[M_V1] = {
		.name = "x86-64-v1",
		.features = (const char *const[]){
			"fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2",
			"syscall", "lm", NULL },
		.xcr0 = XFEAT_X87 | XFEAT_SSE,
	},
	[M_V2] = {
		.name = "x86-64-v2",
		.parent = &models[M_V1],
		.features = (const char *const[]){
			"cx16", "lahf_lm", "popcnt", "sse3", "sse4_1",
			"sse4_2", "ssse3", NULL },
	},
	/* The psABI's OSXSAVE: see os_bits. */
	[M_V3] = {
		.name = "x86-64-v3",
		.parent = &models[M_V2],
		.features = (const char *const[]){
			"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm",
			"movbe", "xsave", NULL },
		.xcr0 = XFEAT_AVX,
	},
	[M_V4] = {
		.name = "x86-64-v4",
		.parent = &models[M_V3],
		.features = (const char *const[]){
			"avx512f", "avx512bw", "avx512cd", "avx512dq",
			"avx512vl", NULL },
		.xcr0 = XFEAT_AVX512,
	},
};

/* ---- Names ---- */

static int name_char(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 'a';
	if (c == '-' || c == '.')
		return '_';
	return (unsigned char)c;
}

/* Whether a[0..alen) names b: case-insensitive, '-' '_' '.' alike. */
static bool name_eq(const char *a, size_t alen, const char *b)
{
	size_t i;

	for (i = 0; i < alen; i++) {
		if (!b[i] || name_char(a[i]) != name_char(b[i]))
			return false;
	}
	return b[i] == '\0';
}

static int feature_index_n(const char *name, size_t len)
{
	size_t i;

	if (!name || !len)
		return -1;
	for (i = 0; i < NFEATURES; i++) {
		if (name_eq(name, len, feature_table[i].name))
			return (int)i;
	}
	for (i = 0; i < ARRAY_SIZE(feature_aliases); i++) {
		if (name_eq(name, len, feature_aliases[i].alias))
			return feature_index_n(feature_aliases[i].name,
					       strlen(feature_aliases[i].name));
	}
	return -1;
}

static int feature_index(const char *name)
{
	return name ? feature_index_n(name, strlen(name)) : -1;
}

const struct cpu_feature *cpu_feature_find(const char *name)
{
	int i = feature_index(name);

	return i < 0 ? NULL : &feature_table[i];
}

const struct cpu_feature *cpu_features(size_t *count)
{
	if (count)
		*count = NFEATURES;
	return feature_table;
}

const struct cpumodel *cpumodel_find(const char *name)
{
	size_t i;

	if (!name)
		return NULL;
	for (i = 0; i < M_COUNT; i++) {
		if (name_eq(name, strlen(name), models[i].name))
			return &models[i];
	}
	return NULL;
}

const char *cpumodel_name(const struct cpumodel *m)
{
	return m ? m->name : NULL;
}

static char model_list[128];
static pthread_once_t model_list_once = PTHREAD_ONCE_INIT;

static void model_list_build(void)
{
	size_t i, off = 0;

	for (i = 0; i < M_COUNT && off < sizeof(model_list); i++)
		off += (size_t)snprintf(model_list + off,
					sizeof(model_list) - off, "%s%s",
					i ? ", " : "", models[i].name);
}

const char *cpumodel_list(void)
{
	pthread_once(&model_list_once, model_list_build);
	return model_list;
}

/* ---- Feature sets ---- */

struct featset {
	uint64_t w[(NFEATURES + 63) / 64];
};

static void fs_set(struct featset *s, size_t i)
{
	s->w[i / 64] |= 1ull << (i % 64);
}

static bool fs_has(const struct featset *s, size_t i)
{
	return s->w[i / 64] >> (i % 64) & 1;
}

static int fs_add_names(struct featset *s, const char *const *names)
{
	for (; names && *names; names++) {
		int i = feature_index(*names);

		if (i < 0)
			return -EINVAL;
		fs_set(s, (size_t)i);
	}
	return 0;
}

/* The features model m requires: its own list and its ancestors'. */
static int model_features(const struct cpumodel *m, struct featset *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	for (; m; m = m->parent) {
		rc = fs_add_names(s, m->features);
		if (rc)
			return rc;
	}
	return 0;
}

bool cpumodel_requires(const struct cpumodel *m, const struct cpu_feature *f)
{
	struct featset s;

	if (!m || !f || f < feature_table || f >= feature_table + NFEATURES)
		return false;
	if (model_features(m, &s))
		return false;
	return fs_has(&s, (size_t)(f - feature_table));
}

static uint64_t model_xcr0_bits(const struct cpumodel *m)
{
	uint64_t x = 0;

	for (; m; m = m->parent)
		x |= m->xcr0;
	return x;
}

/* The bits of one register that the features of s occupy. */
static uint32_t fs_reg_mask(const struct featset *s, uint32_t leaf,
			    uint32_t subleaf, unsigned int reg)
{
	uint32_t mask = 0;
	size_t i;

	for (i = 0; i < NFEATURES; i++) {
		const struct cpu_feature *f = &feature_table[i];

		if (fs_has(s, i) && f->leaf == leaf && f->subleaf == subleaf &&
		    f->reg == reg)
			mask |= 1u << f->bit;
	}
	return mask;
}

/* ---- XSAVE (leaf 0DH) ---- */

uint64_t cpumodel_xcr0(const struct cpumodel *m, const struct cpuid_table *host)
{
	uint64_t hx;

	/* Without leaf 0DH there is no XSETBV: XCR0 stays at its reset value. */
	if (!m || !host || !cpuid_host_xcr0(host, &hx))
		return XFEAT_X87;
	if (m->host)
		return cpuid_xcr0_sanitize(host, hx);
	return cpuid_xcr0_sanitize(host, hx & model_xcr0_bits(m));
}

/* ---- Applying a model ---- */

static void missing_add(char *missing, const char *name)
{
	size_t len, nlen;

	if (!missing)
		return;
	len = strnlen(missing, CPUMODEL_MISSING_LEN - 1);
	nlen = strlen(name);
	if (len + (len ? 1 : 0) + nlen >= CPUMODEL_MISSING_LEN)
		return;                 /* keep whole names only */
	if (len)
		missing[len++] = ',';
	memcpy(missing + len, name, nlen + 1);
}

static void table_copy(struct cpuid_table *out, const struct cpuid_table *host)
{
	size_t n = cpuid_table_nent(host);

	if (out == host)
		return;
	out->hdr.nent = (uint32_t)n;
	out->hdr.padding = 0;
	memmove(out->entries, host->entries, n * sizeof(out->entries[0]));
	memset(&out->entries[n], 0, (CPUID_MAX_ENTRIES - n) *
	       sizeof(out->entries[0]));
}

int cpumodel_apply(const struct cpumodel *m, const struct cpuid_table *host,
		   struct cpuid_table *out, char *missing)
{
	struct featset want, base;
	struct kvm_cpuid_entry2 *e;
	const struct kvm_cpuid_entry2 *he;
	uint32_t host_ext_edx = 0;
	uint64_t x = XFEAT_X87;
	bool clip_xsave;
	size_t i;
	int rc;

	if (missing)
		missing[0] = '\0';
	if (!m || !host || !out)
		return -EINVAL;
	if (host->hdr.nent > CPUID_MAX_ENTRIES)
		return -E2BIG;
	if (m->host) {
		table_copy(out, host);
		return 0;
	}

	rc = model_features(m, &want);
	if (rc)
		return rc;
	memset(&base, 0, sizeof(base));
	rc = fs_add_names(&base, base_features);
	if (rc)
		return rc;

	rc = 0;
	for (i = 0; i < NFEATURES; i++) {
		if (fs_has(&want, i) && !cpuid_has(host, &feature_table[i])) {
			missing_add(missing, feature_table[i].name);
			rc = -ENOTSUP;
		}
	}
	if (rc)
		return rc;

	/* Everything read from host, read before out (maybe host) changes. */
	he = cpuid_entry_get(host, 0x80000001, 0);
	if (he)
		host_ext_edx = he->edx;
	clip_xsave = cpuid_host_xcr0(host, &x);
	if (clip_xsave)
		x = cpuid_xcr0_sanitize(host, x & model_xcr0_bits(m));

	table_copy(out, host);

	/* Whitelisted registers: the model's and the base bits only. */
	for (i = 0; i < ARRAY_SIZE(whitelist_regs); i++) {
		uint32_t leaf = whitelist_regs[i].leaf;
		uint32_t sub = whitelist_regs[i].subleaf;
		unsigned int reg = whitelist_regs[i].reg;

		e = cpuid_entry_mut(out, leaf, sub);
		if (e)
			*cpuid_reg_of(e, reg) &= fs_reg_mask(&want, leaf, sub, reg) |
						 fs_reg_mask(&base, leaf, sub, reg);
	}
	/* Known features anywhere else: hidden unless in the model. */
	for (i = 0; i < NFEATURES; i++) {
		if (!fs_has(&want, i) && !fs_has(&base, i))
			cpuid_feature_clear(out, &feature_table[i]);
	}
	for (i = 0; i < ARRAY_SIZE(os_bits); i++) {
		const struct cpu_feature *os = cpu_feature_find(os_bits[i].os);

		if (os && !cpuid_has(out, cpu_feature_find(os_bits[i].cpu)))
			cpuid_feature_clear(out, os);
	}
	/* AMD's copies of leaf 1 EDX: as the host, within the model's. */
	e = cpuid_entry_mut(out, 0x80000001, 0);
	he = cpuid_entry_get(out, 0x1, 0);
	if (e)
		e->edx |= host_ext_edx & amd_alias_bits & (he ? he->edx : 0);

	if (clip_xsave)
		cpuid_xsave_clip(host, out, x);
	return 0;
}

/* ---- Masking a host table ---- */

/* Calls fn for each non-empty, space-trimmed item of a comma list. */
static int list_each(const char *list,
		     int (*fn)(const char *item, size_t len, void *arg),
		     void *arg)
{
	const char *p = list;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		int rc;

		while (len && (*s == ' ' || *s == '\t')) {
			s++;
			len--;
		}
		while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (len) {
			rc = fn(s, len, arg);
			if (rc)
				return rc;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

struct mask_ctx {
	struct cpuid_table *t;  /* NULL: only check the names */
	char *why;
	size_t why_len;
};

static int mask_one(const char *item, size_t len, void *arg)
{
	struct mask_ctx *c = arg;
	int i = feature_index_n(item, len);

	if (i < 0) {
		if (c->why && c->why_len)
			snprintf(c->why, c->why_len,
				 "unknown CPU feature '%.*s'",
				 (int)MIN(len, (size_t)64), item);
		return -EINVAL;
	}
	if (c->t)
		cpuid_feature_clear(c->t, &feature_table[i]);
	return 0;
}

int cpuid_features_valid(const char *list, char *why, size_t why_len)
{
	struct mask_ctx c = { .t = NULL, .why = why, .why_len = why_len };

	if (why && why_len)
		why[0] = '\0';
	return list ? list_each(list, mask_one, &c) : -EINVAL;
}

int cpuid_mask_features(struct cpuid_table *t, const char *list, char *why,
			size_t why_len)
{
	struct mask_ctx c = { .t = NULL, .why = why, .why_len = why_len };
	int rc;

	if (why && why_len)
		why[0] = '\0';
	if (!t || !list) {
		if (why && why_len)
			snprintf(why, why_len, "no CPUID table or list");
		return -EINVAL;
	}
	/* All names first, so that a bad list leaves the table alone. */
	rc = list_each(list, mask_one, &c);
	if (rc)
		return rc;
	c.t = t;
	return list_each(list, mask_one, &c);
}
