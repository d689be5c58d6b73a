/*
 * Unit tests for core/cpumodel.c: the feature table, the models, applying a
 * model to synthetic host tables (a "rich" host that has every bit, a host
 * without AVX-512, masked hosts, the table KVM under PVM reported on a CI
 * machine), leaf 0DH clipping and XCR0, and, when /dev/kvm opens, the real
 * host's KVM_GET_SUPPORTED_CPUID fed back into KVM_SET_CPUID2.
 *
 * The expected feature lists below are written from the x86-64 psABI and
 * the Intel SDM, not read from the library: they are the oracle.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/cpumodel.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

/* psABI spellings on purpose: the aliases must resolve. */
static const char *const v1_list[] = {
	"CMOV", "CX8", "FPU", "FXSR", "MMX", "SCE", "SSE", "SSE2", "lm", NULL };
static const char *const v2_list[] = {
	"CMPXCHG16B", "LAHF-SAHF", "POPCNT", "SSE3", "SSE4_1", "SSE4_2",
	"SSSE3", NULL };
static const char *const v3_list[] = {
	"AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA", "LZCNT", "MOVBE",
	"XSAVE", NULL };
static const char *const v4_list[] = {
	"AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL", NULL };
static const char *const *const level_lists[] = {
	v1_list, v2_list, v3_list, v4_list };
static const char *const level_names[] = {
	"x86-64-v1", "x86-64-v2", "x86-64-v3", "x86-64-v4" };

/* Bits every model keeps as the host has them (osxsave/ospke: see below). */
static const char *const base_list[] = {
	"vme", "de", "pse", "tsc", "msr", "pae", "mce", "apic", "sep", "mtrr",
	"pge", "mca", "pat", "pse36", "clflush", "ht", "x2apic",
	"tsc_deadline_timer", "hypervisor", "tsc_adjust", "cmp_legacy",
	"topoext", "nx", NULL };

/* Leaf 1 EDX bits AMD repeats in 0x80000001 EDX. */
#define AMD_ALIAS_BITS 0x0183f3ffu

static int levels[] = { 1, 2, 3, 4 };

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static void ent(struct cpuid_table *t, uint32_t fn, uint32_t idx,
		uint32_t flags, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	struct kvm_cpuid_entry2 *e;

	assert_true(t->hdr.nent < CPUID_MAX_ENTRIES);
	e = &t->entries[t->hdr.nent++];
	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = idx;
	e->flags = flags;
	e->eax = a;
	e->ebx = b;
	e->ecx = c;
	e->edx = d;
}

static struct kvm_cpuid_entry2 *find(struct cpuid_table *t, uint32_t fn,
				     uint32_t idx)
{
	for (uint32_t i = 0; i < t->hdr.nent; i++)
		if (t->entries[i].function == fn && t->entries[i].index == idx)
			return &t->entries[i];
	return NULL;
}

static void remove_leaf(struct cpuid_table *t, uint32_t fn)
{
	uint32_t i, n = 0;

	for (i = 0; i < t->hdr.nent; i++)
		if (t->entries[i].function != fn)
			t->entries[n++] = t->entries[i];
	t->hdr.nent = n;
}

/*
 * A host that has everything: every bit of the feature registers set,
 * unknown ones included, and an XSAVE leaf with x87, SSE, AVX, MPX,
 * AVX-512, PKRU and three supervisor components.
 */
static void make_rich(struct cpuid_table *t)
{
	memset(t, 0, sizeof(*t));
	ent(t, 0x0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69);
	ent(t, 0x1, 0, 0, 0x000806f8, 0x00100800, 0xffffffff, 0xffffffff);
	ent(t, 0x4, 0, SIG, 0x04000121, 0x02c0003f, 0x3f, 0);
	ent(t, 0x4, 1, SIG, 0x04000122, 0x01c0003f, 0x3f, 0);
	ent(t, 0x7, 0, SIG, 1, 0xffffffff, 0xffffffff, 0xffffffff);
	ent(t, 0x7, 1, SIG, 0xffffffff, 0x1, 0, 0xffffffff);
	ent(t, 0xb, 0, SIG, 1, 2, 0x100, 7);
	ent(t, 0xb, 1, SIG, 4, 8, 0x201, 7);
	ent(t, 0xd, 0, SIG, 0x2ff, 2696, 2696, 0);
	ent(t, 0xd, 1, SIG, 0x1f, 0x988, 0x1900, 0x2);
	ent(t, 0xd, 2, SIG, 256, 576, 0, 0);
	ent(t, 0xd, 3, SIG, 64, 960, 0, 0);
	ent(t, 0xd, 4, SIG, 64, 1024, 0, 0);
	ent(t, 0xd, 5, SIG, 64, 1088, 0, 0);
	ent(t, 0xd, 6, SIG, 512, 1152, 0, 0);
	ent(t, 0xd, 7, SIG, 1024, 1664, 0, 0);
	ent(t, 0xd, 8, SIG, 128, 0, 1, 0);
	ent(t, 0xd, 9, SIG, 8, 2688, 0, 0);
	ent(t, 0xd, 11, SIG, 16, 0, 1, 0);
	ent(t, 0xd, 12, SIG, 24, 0, 1, 0);
	ent(t, 0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	ent(t, 0x80000000, 0, 0, 0x80000008, 0, 0, 0);
	ent(t, 0x80000001, 0, 0, 0, 0, 0xffffffff, 0xffffffff);
	ent(t, 0x80000008, 0, 0, 0x3030, 0x12345678, 0, 0);
}

/*
 * What KVM_GET_SUPPORTED_CPUID returned on a CI machine (Linux 6.18, KVM
 * backed by PVM, no VMX), trimmed to the leaves that matter here.
 */
static void make_pvm(struct cpuid_table *t)
{
	memset(t, 0, sizeof(*t));
	ent(t, 0x0, 0, 0, 0x1c, 0x756e6547, 0x6c65746e, 0x49656e69);
	ent(t, 0x1, 0, 0, 0x000c06f2, 0x00020800, 0x81202000, 0x0f8bfbff);
	ent(t, 0x7, 0, SIG, 0, 0x01802852, 0x00010104, 0x20000000);
	ent(t, 0xd, 0, SIG, 0xe7, 0xa80, 0xa80, 0);
	ent(t, 0xd, 1, SIG, 0, 0, 0, 0);
	ent(t, 0xd, 2, SIG, 0x100, 0x240, 0, 0);
	ent(t, 0xd, 5, SIG, 0x40, 0x440, 0, 0);
	ent(t, 0xd, 6, SIG, 0x200, 0x480, 0, 0);
	ent(t, 0xd, 7, SIG, 0x400, 0x680, 0, 0);
	ent(t, 0x80000000, 0, 0, 0x80000021, 0, 0, 0);
	ent(t, 0x80000001, 0, 0, 0, 0, 0x101, 0x20100800);
	ent(t, 0x80000008, 0, 0, 0x3930, 0, 0, 0);
}

static bool in_list(const char *const *list, const struct cpu_feature *f)
{
	for (; *list; list++) {
		const struct cpu_feature *g = cpu_feature_find(*list);

		assert_non_null(g);
		if (g == f)
			return true;
	}
	return false;
}

/* Whether level (1..4) requires f. */
static bool level_has(int level, const struct cpu_feature *f)
{
	for (int i = 0; i < level; i++)
		if (in_list(level_lists[i], f))
			return true;
	return false;
}

/* What a psABI level must show on a host that has everything. */
static bool expect_on_rich(int level, const struct cpu_feature *f)
{
	if (!strcmp(f->name, "osxsave"))
		return level >= 3;      /* follows xsave */
	if (!strcmp(f->name, "ospke"))
		return false;           /* follows pku, in no level */
	return level_has(level, f) || in_list(base_list, f);
}

static uint32_t reg(const struct kvm_cpuid_entry2 *e, unsigned int r)
{
	return r == CPU_EAX ? e->eax : r == CPU_EBX ? e->ebx :
	       r == CPU_ECX ? e->ecx : e->edx;
}

static const struct cpumodel *model(const char *name)
{
	const struct cpumodel *m = cpumodel_find(name);

	assert_non_null(m);
	return m;
}

/* Features of level (1..4) the host lacks, in table order, comma-separated. */
static void expected_missing(int level, const struct cpuid_table *host,
			     char *buf, size_t len)
{
	size_t n, i;
	const struct cpu_feature *ft = cpu_features(&n);

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (!level_has(level, &ft[i]) || cpuid_has(host, &ft[i]))
			continue;
		if (buf[0])
			strncat(buf, ",", len - strlen(buf) - 1);
		strncat(buf, ft[i].name, len - strlen(buf) - 1);
	}
}

/* ------------------------------------------------------------------ */
/* Names and tables                                                   */
/* ------------------------------------------------------------------ */

static void test_model_names(void **state)
{
	(void)state;
	assert_string_equal(cpumodel_list(),
			    "host, x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4");
	assert_string_equal(cpumodel_name(model("host")), "host");
	for (int i = 0; i < 4; i++)
		assert_string_equal(cpumodel_name(model(level_names[i])),
				    level_names[i]);
	assert_ptr_equal(cpumodel_find("X86-64-V3"), model("x86-64-v3"));
	assert_null(cpumodel_find("x86-64-v5"));
	assert_null(cpumodel_find("x86-64"));
	assert_null(cpumodel_find("Skylake-Server"));
	assert_null(cpumodel_find(""));
	assert_null(cpumodel_find(NULL));
	assert_null(cpumodel_name(NULL));
}

static void test_feature_table_sane(void **state)
{
	size_t n, i, j;
	const struct cpu_feature *ft = cpu_features(&n);

	(void)state;
	assert_true(n >= 100);
	for (i = 0; i < n; i++) {
		const struct cpu_feature *f = &ft[i];

		assert_true(f->reg <= CPU_EDX);
		assert_true(f->bit < 32);
		for (const char *c = f->name; *c; c++)
			assert_true((*c >= 'a' && *c <= 'z') ||
				    (*c >= '0' && *c <= '9') || *c == '_');
		assert_ptr_equal(cpu_feature_find(f->name), f);
		for (j = i + 1; j < n; j++) {
			assert_string_not_equal(f->name, ft[j].name);
			assert_false(f->leaf == ft[j].leaf &&
				     f->subleaf == ft[j].subleaf &&
				     f->reg == ft[j].reg &&
				     f->bit == ft[j].bit);
		}
	}
	/* Every name the models and the base list use is known. */
	for (i = 0; i < 4; i++)
		for (const char *const *p = level_lists[i]; *p; p++)
			assert_non_null(cpu_feature_find(*p));
	for (const char *const *p = base_list; *p; p++)
		assert_non_null(cpu_feature_find(*p));
}

/* Bit positions, from the SDM tables, checked one by one. */
static void test_feature_bits(void **state)
{
	static const struct cpu_feature want[] = {
		{ "fpu", 0x1, 0, CPU_EDX, 0 },
		{ "cx8", 0x1, 0, CPU_EDX, 8 },
		{ "cmov", 0x1, 0, CPU_EDX, 15 },
		{ "mmx", 0x1, 0, CPU_EDX, 23 },
		{ "sse2", 0x1, 0, CPU_EDX, 26 },
		{ "sse3", 0x1, 0, CPU_ECX, 0 },
		{ "ssse3", 0x1, 0, CPU_ECX, 9 },
		{ "fma", 0x1, 0, CPU_ECX, 12 },
		{ "cx16", 0x1, 0, CPU_ECX, 13 },
		{ "sse4_1", 0x1, 0, CPU_ECX, 19 },
		{ "sse4_2", 0x1, 0, CPU_ECX, 20 },
		{ "movbe", 0x1, 0, CPU_ECX, 22 },
		{ "popcnt", 0x1, 0, CPU_ECX, 23 },
		{ "xsave", 0x1, 0, CPU_ECX, 26 },
		{ "osxsave", 0x1, 0, CPU_ECX, 27 },
		{ "avx", 0x1, 0, CPU_ECX, 28 },
		{ "f16c", 0x1, 0, CPU_ECX, 29 },
		{ "hypervisor", 0x1, 0, CPU_ECX, 31 },
		{ "bmi1", 0x7, 0, CPU_EBX, 3 },
		{ "avx2", 0x7, 0, CPU_EBX, 5 },
		{ "bmi2", 0x7, 0, CPU_EBX, 8 },
		{ "avx512f", 0x7, 0, CPU_EBX, 16 },
		{ "avx512dq", 0x7, 0, CPU_EBX, 17 },
		{ "avx512cd", 0x7, 0, CPU_EBX, 28 },
		{ "avx512bw", 0x7, 0, CPU_EBX, 30 },
		{ "avx512vl", 0x7, 0, CPU_EBX, 31 },
		{ "avx512vbmi", 0x7, 0, CPU_ECX, 1 },
		{ "gfni", 0x7, 0, CPU_ECX, 8 },
		{ "rdpid", 0x7, 0, CPU_ECX, 22 },
		{ "fsrm", 0x7, 0, CPU_EDX, 4 },
		{ "amx_tile", 0x7, 0, CPU_EDX, 24 },
		{ "avx512_bf16", 0x7, 1, CPU_EAX, 5 },
		{ "xsaveopt", 0xd, 1, CPU_EAX, 0 },
		{ "xsaves", 0xd, 1, CPU_EAX, 3 },
		{ "lahf_lm", 0x80000001, 0, CPU_ECX, 0 },
		{ "abm", 0x80000001, 0, CPU_ECX, 5 },
		{ "3dnowprefetch", 0x80000001, 0, CPU_ECX, 8 },
		{ "syscall", 0x80000001, 0, CPU_EDX, 11 },
		{ "nx", 0x80000001, 0, CPU_EDX, 20 },
		{ "pdpe1gb", 0x80000001, 0, CPU_EDX, 26 },
		{ "rdtscp", 0x80000001, 0, CPU_EDX, 27 },
		{ "lm", 0x80000001, 0, CPU_EDX, 29 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct cpu_feature *f = cpu_feature_find(want[i].name);

		assert_non_null(f);
		assert_int_equal(f->leaf, want[i].leaf);
		assert_int_equal(f->subleaf, want[i].subleaf);
		assert_int_equal(f->reg, want[i].reg);
		assert_int_equal(f->bit, want[i].bit);
	}
}

static void test_feature_aliases(void **state)
{
	static const char *const pairs[][2] = {
		{ "lzcnt", "abm" },           { "LZCNT", "abm" },
		{ "lahf-sahf", "lahf_lm" },   { "lahf_sahf", "lahf_lm" },
		{ "cmpxchg16b", "cx16" },     { "CMPXCHG16B", "cx16" },
		{ "pni", "sse3" },            { "SSE3", "sse3" },
		{ "sce", "syscall" },         { "osxsave", "osxsave" },
		{ "prefetchw", "3dnowprefetch" },
		{ "sse4.1", "sse4_1" },       { "SSE4-2", "sse4_2" },
		{ "AVX512F", "avx512f" },     { "avx512vbmi2", "avx512_vbmi2" },
		{ "sha", "sha_ni" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		const struct cpu_feature *f = cpu_feature_find(pairs[i][0]);

		assert_non_null(f);
		assert_string_equal(f->name, pairs[i][1]);
	}
	assert_null(cpu_feature_find("nosuchfeature"));
	assert_null(cpu_feature_find("avx5"));
	assert_null(cpu_feature_find("avx22"));
	assert_null(cpu_feature_find(""));
	assert_null(cpu_feature_find(NULL));
}

/* (function, index) lookup honours KVM_CPUID_FLAG_SIGNIFCANT_INDEX. */
static void test_entry_lookup_index(void **state)
{
	struct cpuid_table *t = calloc(1, sizeof(*t));

	(void)state;
	assert_non_null(t);
	/* Subleaf 1 listed before subleaf 0. */
	ent(t, 0x7, 1, SIG, 1u << 5, 0, 0, 0);               /* avx512_bf16 */
	ent(t, 0x7, 0, SIG, 1, 1u << 5, 0, 0);               /* avx2 */
	/* Leaf 1 without the flag: its index is not looked at. */
	ent(t, 0x1, 5, 0, 0, 0, 0, 1u << 26);                 /* sse2 */
	assert_true(cpuid_has(t, cpu_feature_find("avx512_bf16")));
	assert_true(cpuid_has(t, cpu_feature_find("avx2")));
	assert_false(cpuid_has(t, cpu_feature_find("avx_vnni")));
	assert_true(cpuid_has(t, cpu_feature_find("sse2")));
	assert_false(cpuid_has(t, cpu_feature_find("sse")));

	/* Significant index and no subleaf 1: 7.1 features are absent,
	 * even though bit 5 of subleaf 0's EAX is set. */
	memset(t, 0, sizeof(*t));
	ent(t, 0x7, 0, SIG, 0xffffffff, 0, 0, 0);
	assert_false(cpuid_has(t, cpu_feature_find("avx512_bf16")));
	/* Absent leaf, NULL arguments. */
	assert_false(cpuid_has(t, cpu_feature_find("lm")));
	assert_false(cpuid_has(NULL, cpu_feature_find("lm")));
	assert_false(cpuid_has(t, NULL));
	free(t);
}

/* ------------------------------------------------------------------ */
/* Applying models                                                    */
/* ------------------------------------------------------------------ */

static void test_models_nest(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(4 * sizeof(*out));
	size_t n, i;
	const struct cpu_feature *ft = cpu_features(&n);
	char missing[CPUMODEL_MISSING_LEN];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	for (int l = 0; l < 4; l++)
		assert_int_equal(cpumodel_apply(model(level_names[l]), host,
						&out[l], missing), 0);
	for (int l = 0; l < 3; l++) {
		size_t added = 0;

		for (i = 0; i < n; i++) {
			bool lo = cpuid_has(&out[l], &ft[i]);
			bool hi = cpuid_has(&out[l + 1], &ft[i]);

			assert_true(!lo || hi);         /* v(l) within v(l+1) */
			if (hi && !lo) {
				added++;
				/* osxsave comes with xsave, in v3 */
				assert_true(in_list(level_lists[l + 1],
						    &ft[i]) ||
					    !strcmp(ft[i].name, "osxsave"));
			}
		}
		assert_true(added > 0);
	}
	/* And everything is within the host. */
	for (i = 0; i < n; i++)
		assert_true(!cpuid_has(&out[3], &ft[i]) ||
			    cpuid_has(host, &ft[i]));
	free(host);
	free(out);
}

/*
 * A level applied to the rich host keeps exactly its features and the base
 * bits, clears unknown bits in the feature registers, and leaves the other
 * leaves alone.
 */
static void test_apply_level_exact(void **state)
{
	int level = **(int **)state;
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	size_t n, i;
	const struct cpu_feature *ft = cpu_features(&n);
	static const struct { uint32_t leaf; uint8_t reg; } wl[] = {
		{ 0x1, CPU_ECX }, { 0x1, CPU_EDX }, { 0x7, CPU_EBX },
		{ 0x7, CPU_ECX }, { 0x7, CPU_EDX }, { 0x80000001, CPU_ECX },
		{ 0x80000001, CPU_EDX },
	};
	char missing[CPUMODEL_MISSING_LEN];
	uint32_t known71 = 0;

	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	assert_int_equal(cpumodel_apply(model(level_names[level - 1]), host,
					out, missing), 0);
	assert_string_equal(missing, "");
	assert_int_equal(out->hdr.nent, host->hdr.nent);

	for (i = 0; i < n; i++) {
		bool want = expect_on_rich(level, &ft[i]);

		if (cpuid_has(out, &ft[i]) != want)
			fail_msg("x86-64-v%d: %s should be %s", level,
				 ft[i].name, want ? "set" : "clear");
		if (ft[i].leaf == 0x7 && ft[i].subleaf == 1 &&
		    ft[i].reg == CPU_EAX)
			known71 |= 1u << ft[i].bit;
	}
	/* Whitelisted registers, bit-exact (unknown bits cleared). */
	for (i = 0; i < sizeof(wl) / sizeof(wl[0]); i++) {
		uint32_t want = 0;

		for (size_t j = 0; j < n; j++)
			if (ft[j].leaf == wl[i].leaf && ft[j].subleaf == 0 &&
			    ft[j].reg == wl[i].reg &&
			    expect_on_rich(level, &ft[j]))
				want |= 1u << ft[j].bit;
		if (wl[i].leaf == 0x80000001 && wl[i].reg == CPU_EDX)
			want |= AMD_ALIAS_BITS & find(out, 1, 0)->edx;
		assert_int_equal(reg(find(out, wl[i].leaf, 0), wl[i].reg), want);
	}
	/* Leaf 7: max subleaf as host; 7.1 unknown bits as host. */
	assert_int_equal(find(out, 7, 0)->eax, 1);
	assert_int_equal(find(out, 7, 1)->eax, 0xffffffffu & ~known71);
	assert_int_equal(find(out, 7, 1)->edx, 0xffffffffu);
	/* Non-feature leaves untouched. */
	static const uint32_t same[][2] = {
		{ 0, 0 }, { 4, 0 }, { 4, 1 }, { 0xb, 0 }, { 0xb, 1 },
		{ 0x40000000, 0 }, { 0x80000000, 0 }, { 0x80000008, 0 },
	};
	for (i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		assert_memory_equal(find(out, same[i][0], same[i][1]),
				    find(host, same[i][0], same[i][1]),
				    sizeof(struct kvm_cpuid_entry2));
	assert_int_equal(find(out, 1, 0)->eax, find(host, 1, 0)->eax);
	assert_int_equal(find(out, 1, 0)->ebx, find(host, 1, 0)->ebx);
	free(host);
	free(out);
}

static void test_apply_host_identity(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	char missing[CPUMODEL_MISSING_LEN] = "junk";
	char why[128];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	assert_int_equal(cpumodel_apply(model("host"), host, out, missing), 0);
	assert_string_equal(missing, "");
	assert_int_equal(out->hdr.nent, host->hdr.nent);
	assert_memory_equal(out->entries, host->entries,
			    host->hdr.nent * sizeof(host->entries[0]));

	/* "host" never fails, whatever the host lacks. */
	make_pvm(host);
	assert_int_equal(cpuid_mask_features(host, "fpu,lm,sse2", why,
					     sizeof(why)), 0);
	assert_int_equal(cpumodel_apply(model("host"), host, out, NULL), 0);
	assert_memory_equal(out->entries, host->entries,
			    host->hdr.nent * sizeof(host->entries[0]));
	free(host);
	free(out);
}

static void test_apply_v4_without_avx512(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	struct cpuid_table *before = malloc(sizeof(*before));
	char missing[CPUMODEL_MISSING_LEN];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	assert_non_null(before);
	make_rich(host);
	find(host, 7, 0)->ebx &= ~(1u << 16 | 1u << 17 | 1u << 28 |
				   1u << 30 | 1u << 31);
	memset(out, 0xa5, sizeof(*out));
	memcpy(before, out, sizeof(*out));
	assert_int_equal(cpumodel_apply(model("x86-64-v4"), host, out, missing),
			 -ENOTSUP);
	/* Table order: leaf 7 EBX bits 16, 17, 28, 30, 31. */
	assert_string_equal(missing,
			    "avx512f,avx512dq,avx512cd,avx512bw,avx512vl");
	assert_memory_equal(out, before, sizeof(*out));     /* untouched */
	/* v3 still fits. */
	assert_int_equal(cpumodel_apply(model("x86-64-v3"), host, out, missing),
			 0);
	assert_string_equal(missing, "");
	free(host);
	free(out);
	free(before);
}

/* Masking a host names exactly the masked features on apply. */
static void test_mask_then_apply(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	char missing[CPUMODEL_MISSING_LEN];
	char why[128];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	/* Each v4 feature alone. */
	for (int l = 0; l < 4; l++) {
		for (const char *const *p = level_lists[l]; *p; p++) {
			make_rich(host);
			assert_int_equal(cpuid_mask_features(host, *p, why,
							     sizeof(why)), 0);
			assert_false(cpuid_has(host, cpu_feature_find(*p)));
			assert_int_equal(cpumodel_apply(model("x86-64-v4"),
							host, out, missing),
					 -ENOTSUP);
			assert_string_equal(missing, cpu_feature_find(*p)->name);
			/* Lower levels do not care about higher features. */
			for (int k = 0; k < l; k++)
				assert_int_equal(cpumodel_apply(
						model(level_names[k]), host,
						out, missing), 0);
		}
	}
	/* Several, with aliases and spaces; reported in table order. */
	make_rich(host);
	assert_int_equal(cpuid_mask_features(host, " lzcnt, popcnt ,avx2,,",
					     why, sizeof(why)), 0);
	assert_int_equal(cpumodel_apply(model("x86-64-v3"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "popcnt,avx2,abm");
	assert_int_equal(cpumodel_apply(model("x86-64-v2"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "popcnt");
	assert_int_equal(cpumodel_apply(model("x86-64-v1"), host, out, missing),
			 0);
	free(host);
	free(out);
}

static void test_mask_errors(void **state)
{
	struct cpuid_table *t = malloc(sizeof(*t));
	struct cpuid_table *before = malloc(sizeof(*before));
	char why[128];

	(void)state;
	assert_non_null(t);
	assert_non_null(before);
	make_rich(t);
	memcpy(before, t, sizeof(*t));
	assert_int_equal(cpuid_mask_features(t, "avx2,nosuchfeature,bmi1",
					     why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "nosuchfeature"));
	/* The same answer without a table: vmon checks --cpuid-hide first. */
	assert_int_equal(cpuid_features_valid("avx2,nosuchfeature,bmi1", why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "unknown CPU feature 'nosuchfeature'"));
	assert_int_equal(cpuid_features_valid(" lzcnt, popcnt ,avx2,,", why, sizeof(why)), 0);
	assert_int_equal(cpuid_features_valid(NULL, why, sizeof(why)), -EINVAL);
	assert_memory_equal(t, before, sizeof(*t));         /* all or nothing */
	assert_int_equal(cpuid_mask_features(t, "", why, sizeof(why)), 0);
	assert_int_equal(cpuid_mask_features(t, " , ", why, sizeof(why)), 0);
	assert_memory_equal(t, before, sizeof(*t));
	assert_int_equal(cpuid_mask_features(t, NULL, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(cpuid_mask_features(NULL, "avx", why, sizeof(why)),
			 -EINVAL);
	/* A tiny why buffer is not overrun, a NULL one is fine. */
	assert_int_equal(cpuid_mask_features(t, "bogus", why, 4), -EINVAL);
	assert_int_equal(strlen(why), 3);
	assert_int_equal(cpuid_mask_features(t, "bogus", NULL, 0), -EINVAL);
	/* Masking a feature of an absent leaf is not an error. */
	remove_leaf(t, 0x7);
	assert_int_equal(cpuid_mask_features(t, "avx2", why, sizeof(why)), 0);
	free(t);
	free(before);
}

/* A host without leaf 7 lacks everything that lives there. */
static void test_apply_host_without_leaf7(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	char missing[CPUMODEL_MISSING_LEN];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	remove_leaf(host, 0x7);
	assert_int_equal(cpumodel_apply(model("x86-64-v2"), host, out, missing),
			 0);
	assert_null(find(out, 7, 0));
	assert_int_equal(cpumodel_apply(model("x86-64-v3"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "bmi1,avx2,bmi2");
	assert_int_equal(cpumodel_apply(model("x86-64-v4"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "bmi1,avx2,bmi2,avx512f,avx512dq,"
			    "avx512cd,avx512bw,avx512vl");
	free(host);
	free(out);
}

/* osxsave/ospke are OS bits: kept as the host, cleared with their feature. */
static void test_os_bits(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	const struct cpu_feature *osxsave = cpu_feature_find("osxsave");
	const struct cpu_feature *ospke = cpu_feature_find("ospke");

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	assert_int_equal(cpumodel_apply(model("x86-64-v2"), host, out, NULL), 0);
	assert_false(cpuid_has(out, osxsave));
	assert_int_equal(cpumodel_apply(model("x86-64-v3"), host, out, NULL), 0);
	assert_true(cpuid_has(out, osxsave));
	assert_false(cpuid_has(out, ospke));
	assert_int_equal(cpumodel_apply(model("host"), host, out, NULL), 0);
	assert_true(cpuid_has(out, ospke));
	/* KVM reports OSXSAVE clear; v3 must not require it. */
	find(host, 1, 0)->ecx &= ~(1u << 27);
	assert_int_equal(cpumodel_apply(model("x86-64-v4"), host, out, NULL), 0);
	assert_false(cpuid_has(out, osxsave));
	free(host);
	free(out);
}

/* AMD's copies of leaf 1 EDX in 0x80000001 EDX follow the model's leaf 1. */
static void test_amd_alias_bits(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	find(host, 1, 0)->edx &= ~(1u << 16);                /* no pat */
	assert_int_equal(cpumodel_apply(model("x86-64-v1"), host, out, NULL), 0);
	assert_int_equal(find(out, 0x80000001, 0)->edx & AMD_ALIAS_BITS,
			 AMD_ALIAS_BITS & ~(1u << 16));
	/* Intel convention (zeros) stays zeros. */
	find(host, 0x80000001, 0)->edx &= ~AMD_ALIAS_BITS;
	assert_int_equal(cpumodel_apply(model("x86-64-v4"), host, out, NULL), 0);
	assert_int_equal(find(out, 0x80000001, 0)->edx & AMD_ALIAS_BITS, 0);
	free(host);
	free(out);
}

/* out may be the host table itself. */
static void test_apply_in_place(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	for (int l = 0; l < 4; l++) {
		make_rich(host);
		assert_int_equal(cpumodel_apply(model(level_names[l]), host,
						out, NULL), 0);
		assert_int_equal(cpumodel_apply(model(level_names[l]), host,
						host, NULL), 0);
		assert_int_equal(host->hdr.nent, out->hdr.nent);
		assert_memory_equal(host->entries, out->entries,
				    out->hdr.nent * sizeof(out->entries[0]));
	}
	free(host);
	free(out);
}

static void test_apply_bad_args(void **state)
{
	struct cpuid_table *host = calloc(1, sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	char missing[CPUMODEL_MISSING_LEN];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	assert_int_equal(cpumodel_apply(NULL, host, out, missing), -EINVAL);
	assert_int_equal(cpumodel_apply(model("host"), NULL, out, missing),
			 -EINVAL);
	assert_int_equal(cpumodel_apply(model("host"), host, NULL, missing),
			 -EINVAL);
	host->hdr.nent = CPUID_MAX_ENTRIES + 1;
	assert_int_equal(cpumodel_apply(model("host"), host, out, missing),
			 -E2BIG);
	/* An empty host lacks everything v1 needs. */
	host->hdr.nent = 0;
	assert_int_equal(cpumodel_apply(model("x86-64-v1"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "fpu,cx8,cmov,mmx,fxsr,sse,sse2,"
			    "syscall,lm");
	free(host);
	free(out);
}

/* ------------------------------------------------------------------ */
/* XSAVE                                                              */
/* ------------------------------------------------------------------ */

static void check_xsave_leaf(const struct cpuid_table *out, uint64_t xcr0,
			     uint32_t size, const struct cpuid_table *host)
{
	const uint32_t subs[] = { 2, 3, 4, 5, 6, 7, 8, 9, 11, 12 };
	struct cpuid_table *o = (struct cpuid_table *)out;
	struct cpuid_table *h = (struct cpuid_table *)host;

	assert_int_equal(find(o, 0xd, 0)->eax, (uint32_t)xcr0);
	assert_int_equal(find(o, 0xd, 0)->edx, (uint32_t)(xcr0 >> 32));
	assert_int_equal(find(o, 0xd, 0)->ecx, size);
	assert_int_equal(find(o, 0xd, 0)->ebx, size);
	/* No XSAVES in any psABI level: no supervisor components. */
	assert_int_equal(find(o, 0xd, 1)->eax, 0);
	assert_int_equal(find(o, 0xd, 1)->ebx, 0);
	assert_int_equal(find(o, 0xd, 1)->ecx, 0);
	assert_int_equal(find(o, 0xd, 1)->edx, 0);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		const struct kvm_cpuid_entry2 *e = find(o, 0xd, subs[i]);

		assert_non_null(e);
		assert_int_equal(e->flags, SIG);
		if (xcr0 >> subs[i] & 1) {
			assert_memory_equal(e, find(h, 0xd, subs[i]),
					    sizeof(*e));
		} else {
			assert_int_equal(e->eax, 0);
			assert_int_equal(e->ebx, 0);
			assert_int_equal(e->ecx, 0);
			assert_int_equal(e->edx, 0);
		}
	}
}

static void test_xsave_clip(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_rich(host);
	assert_int_equal(cpumodel_apply(model("x86-64-v1"), host, out, NULL), 0);
	check_xsave_leaf(out, 0x3, 576, host);
	assert_int_equal(cpumodel_apply(model("x86-64-v2"), host, out, NULL), 0);
	check_xsave_leaf(out, 0x3, 576, host);
	/* AVX at 576, 256 bytes. */
	assert_int_equal(cpumodel_apply(model("x86-64-v3"), host, out, NULL), 0);
	check_xsave_leaf(out, 0x7, 832, host);
	/* Hi16_ZMM at 1664, 1024 bytes; PKRU (2688..2696) is gone. */
	assert_int_equal(cpumodel_apply(model("x86-64-v4"), host, out, NULL), 0);
	check_xsave_leaf(out, 0xe7, 2688, host);

	/* KVM's EBX (size for the current XCR0) is never raised. */
	find(host, 0xd, 0)->ebx = 576;
	assert_int_equal(cpumodel_apply(model("x86-64-v4"), host, out, NULL), 0);
	assert_int_equal(find(out, 0xd, 0)->ebx, 576);
	assert_int_equal(find(out, 0xd, 0)->ecx, 2688);

	/* No leaf 0DH at all: nothing to clip, nothing invented. */
	make_rich(host);
	remove_leaf(host, 0xd);
	find(host, 1, 0)->ecx &= ~(1u << 26 | 1u << 27 | 1u << 28);
	assert_int_equal(cpumodel_apply(model("x86-64-v2"), host, out, NULL), 0);
	assert_null(find(out, 0xd, 0));
	free(host);
	free(out);
}

static void test_xcr0(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));

	(void)state;
	assert_non_null(host);
	make_rich(host);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v1"), host), 0x3);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v2"), host), 0x3);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v3"), host), 0x7);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v4"), host), 0xe7);
	assert_int_equal(cpumodel_xcr0(model("host"), host), 0x2ff);

	/* A host without AVX-512 state. */
	find(host, 0xd, 0)->eax = 0x7;
	assert_int_equal(cpumodel_xcr0(model("x86-64-v4"), host), 0x7);
	assert_int_equal(cpumodel_xcr0(model("host"), host), 0x7);

	/* Partial AVX-512 state is no AVX-512 state. */
	find(host, 0xd, 0)->eax = 0x67;
	assert_int_equal(cpumodel_xcr0(model("x86-64-v4"), host), 0x7);
	/* A component without its subleaf is dropped. */
	find(host, 0xd, 0)->eax = 0xe7;
	remove_leaf(host, 0xd);
	ent(host, 0xd, 0, SIG, 0xe7, 2688, 2688, 0);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v4"), host), 0x3);
	/* AMX: TILECFG and TILEDATA together or not at all. */
	remove_leaf(host, 0xd);
	ent(host, 0xd, 0, SIG, 0x20007, 11008, 11008, 0);
	ent(host, 0xd, 2, SIG, 256, 576, 0, 0);
	ent(host, 0xd, 17, SIG, 64, 2752, 0, 0);
	ent(host, 0xd, 18, SIG, 8192, 2816, 0, 0);
	assert_int_equal(cpumodel_xcr0(model("host"), host), 0x7);
	find(host, 0xd, 0)->eax = 0x60007;
	assert_int_equal(cpumodel_xcr0(model("host"), host), 0x60007);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v4"), host), 0x7);
	/* No leaf 0DH: XCR0 keeps its reset value. */
	remove_leaf(host, 0xd);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v3"), host), 0x1);
	assert_int_equal(cpumodel_xcr0(model("host"), host), 0x1);
	assert_int_equal(cpumodel_xcr0(NULL, host), 0x1);
	free(host);
}

/* The table KVM under PVM returned on a CI machine. */
static void test_pvm_fixture(void **state)
{
	struct cpuid_table *host = malloc(sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	char missing[CPUMODEL_MISSING_LEN];

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	make_pvm(host);
	assert_int_equal(cpumodel_apply(model("x86-64-v1"), host, out, missing),
			 0);
	/* fpu..mmx,fxsr,sse,sse2 (ss cleared) */
	assert_int_equal(find(out, 1, 0)->edx, 0x078bfbff);
	/* x2apic, tsc_deadline_timer, hypervisor (cx16 cleared) */
	assert_int_equal(find(out, 1, 0)->ecx, 0x81200000);
	/* tsc_adjust only; no umip/gfni/la57, no arch_capabilities */
	assert_int_equal(find(out, 7, 0)->ebx, 0x2);
	assert_int_equal(find(out, 7, 0)->ecx, 0);
	assert_int_equal(find(out, 7, 0)->edx, 0);
	assert_int_equal(find(out, 0x80000001, 0)->ecx, 0);
	assert_int_equal(find(out, 0x80000001, 0)->edx, 0x20100800);
	assert_int_equal(find(out, 0xd, 0)->eax, 0x3);
	assert_int_equal(find(out, 0xd, 0)->ecx, 576);
	assert_int_equal(find(out, 0xd, 2)->eax, 0);
	assert_int_equal(cpumodel_xcr0(model("x86-64-v1"), host), 0x3);
	assert_int_equal(cpumodel_xcr0(model("host"), host), 0xe7);

	assert_int_equal(cpumodel_apply(model("x86-64-v2"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "sse3,ssse3,sse4_1,sse4_2,popcnt");
	assert_int_equal(cpumodel_apply(model("x86-64-v3"), host, out, missing),
			 -ENOTSUP);
	assert_string_equal(missing, "sse3,ssse3,fma,sse4_1,sse4_2,movbe,"
			    "popcnt,xsave,avx,f16c,bmi1,avx2,bmi2,abm");
	free(host);
	free(out);
}

/* ------------------------------------------------------------------ */
/* The real host                                                      */
/* ------------------------------------------------------------------ */

/* Feeds a model's table to a fresh vCPU, with the model's XCR0. */
static void kvm_check_vcpu(int vm, int id, const struct cpumodel *m,
			   struct cpuid_table *cpuid, uint64_t xcr0, bool xcrs)
{
	struct kvm_xcrs x;
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, id);

	assert_true(vcpu >= 0);
	if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid->hdr) < 0)
		fail_msg("%s: KVM_SET_CPUID2: %s", cpumodel_name(m),
			 strerror(errno));
	if (xcrs) {
		memset(&x, 0, sizeof(x));
		x.nr_xcrs = 1;
		x.xcrs[0].xcr = 0;
		x.xcrs[0].value = xcr0;
		if (ioctl(vcpu, KVM_SET_XCRS, &x) < 0)
			fail_msg("%s: KVM_SET_XCRS 0x%llx: %s",
				 cpumodel_name(m), (unsigned long long)xcr0,
				 strerror(errno));
		memset(&x, 0, sizeof(x));
		assert_int_equal(ioctl(vcpu, KVM_GET_XCRS, &x), 0);
		assert_int_equal(x.nr_xcrs, 1);
		assert_int_equal(x.xcrs[0].value, xcr0);
	}
	close(vcpu);
}

static void test_real_kvm(void **state)
{
	struct cpuid_table *host = calloc(1, sizeof(*host));
	struct cpuid_table *out = malloc(sizeof(*out));
	char missing[CPUMODEL_MISSING_LEN], want[CPUMODEL_MISSING_LEN];
	int kvm, vm, rc;
	bool xcrs;

	(void)state;
	assert_non_null(host);
	assert_non_null(out);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		free(host);
		free(out);
		print_message("/dev/kvm: %s\n", strerror(errno));
		skip();
	}
	host->hdr.nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &host->hdr) < 0)
		fail_msg("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	xcrs = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);

	assert_int_equal(cpumodel_apply(model("host"), host, out, missing), 0);
	assert_memory_equal(out->entries, host->entries,
			    host->hdr.nent * sizeof(host->entries[0]));
	kvm_check_vcpu(vm, 0, model("host"), out,
		       cpumodel_xcr0(model("host"), host), xcrs);
	print_message("host: %u entries, xcr0 0x%llx\n", host->hdr.nent,
		      (unsigned long long)cpumodel_xcr0(model("host"), host));

	/*
	 * v1 must fit any x86-64 KVM. v2..v4 must fit when KVM offers their
	 * features; when it does not (KVM under PVM offers no SSE3 and no
	 * AVX in KVM_GET_SUPPORTED_CPUID), the refusal must name exactly the
	 * features KVM lacks.
	 */
	for (int l = 0; l < 4; l++) {
		const struct cpumodel *m = model(level_names[l]);

		expected_missing(l + 1, host, want, sizeof(want));
		rc = cpumodel_apply(m, host, out, missing);
		if (l == 0)
			assert_int_equal(rc, 0);
		if (want[0]) {
			assert_int_equal(rc, -ENOTSUP);
			assert_string_equal(missing, want);
			print_message("%s: refused, KVM lacks %s\n",
				      level_names[l], missing);
			continue;
		}
		assert_int_equal(rc, 0);
		kvm_check_vcpu(vm, l + 1, m, out, cpumodel_xcr0(m, host), xcrs);
		print_message("%s: applies, xcr0 0x%llx\n", level_names[l],
			      (unsigned long long)cpumodel_xcr0(m, host));
	}
	close(vm);
	close(kvm);
	free(host);
	free(out);
}

/* cpumodel_requires: exactly each level's list and its ancestors'. */
static void test_model_requires(void **state)
{
	size_t n;
	const struct cpu_feature *t = cpu_features(&n);

	(void)state;
	for (size_t i = 0; i < n; i++)
		assert_false(cpumodel_requires(cpumodel_find("host"), &t[i]));
	for (int l = 0; l < 4; l++) {
		const struct cpumodel *m = cpumodel_find(level_names[l]);
		size_t want = 0, got = 0;

		for (int k = 0; k <= l; k++) {
			for (const char *const *f = level_lists[k]; *f; f++, want++)
				assert_true(cpumodel_requires(m, cpu_feature_find(*f)));
		}
		for (size_t i = 0; i < n; i++)
			got += cpumodel_requires(m, &t[i]);
		assert_int_equal(got, want);
	}
	assert_false(cpumodel_requires(NULL, cpu_feature_find("sse2")));
	assert_false(cpumodel_requires(cpumodel_find("x86-64-v1"), NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_names),
		cmocka_unit_test(test_model_requires),
		cmocka_unit_test(test_feature_table_sane),
		cmocka_unit_test(test_feature_bits),
		cmocka_unit_test(test_feature_aliases),
		cmocka_unit_test(test_entry_lookup_index),
		cmocka_unit_test(test_models_nest),
		cmocka_unit_test_prestate(test_apply_level_exact, &levels[0]),
		cmocka_unit_test_prestate(test_apply_level_exact, &levels[1]),
		cmocka_unit_test_prestate(test_apply_level_exact, &levels[2]),
		cmocka_unit_test_prestate(test_apply_level_exact, &levels[3]),
		cmocka_unit_test(test_apply_host_identity),
		cmocka_unit_test(test_apply_v4_without_avx512),
		cmocka_unit_test(test_mask_then_apply),
		cmocka_unit_test(test_mask_errors),
		cmocka_unit_test(test_apply_host_without_leaf7),
		cmocka_unit_test(test_os_bits),
		cmocka_unit_test(test_amd_alias_bits),
		cmocka_unit_test(test_apply_in_place),
		cmocka_unit_test(test_apply_bad_args),
		cmocka_unit_test(test_xsave_clip),
		cmocka_unit_test(test_xcr0),
		cmocka_unit_test(test_pvm_fixture),
		cmocka_unit_test(test_real_kvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
