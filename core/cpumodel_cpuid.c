/* CPUID tables as KVM hands them over: finding an entry and a bit, and sizing leaf 0DH. */
#include "core/cpumodel_int.h"

#include <errno.h>
#include <stdio.h>

#include "core/util.h"

#define LEAF_XSAVE 0xdu

/* The legacy FXSAVE region plus the XSAVE header, SDM vol. 1, 13.4 */
#define XSAVE_LEGACY_SIZE 576u

size_t cpuid_table_nent(const struct cpuid_table *t)
{
	return MIN((size_t)t->hdr.nent, (size_t)CPUID_MAX_ENTRIES);
}

/*
 * The entry KVM would use for CPUID(function, index): the index must match
 * only when the entry says it is significant (leaves with subleaves).
 */
static int entry_index(const struct cpuid_table *t, uint32_t function,
		       uint32_t index)
{
	size_t i, n = cpuid_table_nent(t);

	for (i = 0; i < n; i++) {
		const struct kvm_cpuid_entry2 *e = &t->entries[i];

		if (e->function != function)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
		    e->index != index)
			continue;
		return (int)i;
	}
	return -1;
}

const struct kvm_cpuid_entry2 *
cpuid_entry_get(const struct cpuid_table *t, uint32_t function, uint32_t index)
{
	int i = entry_index(t, function, index);

	return i < 0 ? NULL : &t->entries[i];
}

struct kvm_cpuid_entry2 *cpuid_entry_mut(struct cpuid_table *t,
					 uint32_t function, uint32_t index)
{
	return (struct kvm_cpuid_entry2 *)cpuid_entry_get(t, function, index);
}

uint32_t *cpuid_reg_of(struct kvm_cpuid_entry2 *e, unsigned int reg)
{
	switch (reg) {
	case CPU_EAX: return &e->eax;
	case CPU_EBX: return &e->ebx;
	case CPU_ECX: return &e->ecx;
	default:      return &e->edx;
	}
}

static uint32_t reg_val(const struct kvm_cpuid_entry2 *e, unsigned int reg)
{
	return *cpuid_reg_of((struct kvm_cpuid_entry2 *)e, reg);
}

bool cpuid_has(const struct cpuid_table *t, const struct cpu_feature *f)
{
	const struct kvm_cpuid_entry2 *e;

	if (!t || !f || f->bit > 31)
		return false;
	e = cpuid_entry_get(t, f->leaf, f->subleaf);
	return e && (reg_val(e, f->reg) >> f->bit & 1);
}

void cpuid_feature_clear(struct cpuid_table *t, const struct cpu_feature *f)
{
	struct kvm_cpuid_entry2 *e = cpuid_entry_mut(t, f->leaf, f->subleaf);

	if (e)
		*cpuid_reg_of(e, f->reg) &= ~(1u << f->bit);
}

/* ---- XSAVE (leaf 0DH) ---- */

/* Host XCR0-capable components from CPUID.(0DH,0):EDX:EAX. */
bool cpuid_host_xcr0(const struct cpuid_table *host, uint64_t *out)
{
	const struct kvm_cpuid_entry2 *e = cpuid_entry_get(host, LEAF_XSAVE, 0);

	if (!e)
		return false;
	*out = (uint64_t)e->edx << 32 | e->eax;
	return true;
}

/*
 * Make a component set one XSETBV would accept and a guest can use: x87
 * always; AVX needs SSE; the three AVX-512 components and AMX's two come
 * together or not at all (SDM vol. 1, 13.3); a component above SSE needs
 * its size and offset in the host's leaf 0DH.
 */
uint64_t cpuid_xcr0_sanitize(const struct cpuid_table *host, uint64_t x)
{
	unsigned int i;

	for (i = 2; i < 64; i++) {
		const struct kvm_cpuid_entry2 *e;

		if (!(x >> i & 1))
			continue;
		e = cpuid_entry_get(host, LEAF_XSAVE, i);
		if (!e || !e->eax || e->index != i)
			x &= ~(1ull << i);
	}
	x |= XFEAT_X87;
	if (!(x & XFEAT_SSE))
		x &= ~XFEAT_AVX;
	if (!(x & XFEAT_AVX) || (x & XFEAT_AVX512) != XFEAT_AVX512)
		x &= ~XFEAT_AVX512;
	if ((x & XFEAT_AMX) != XFEAT_AMX)
		x &= ~XFEAT_AMX;
	if ((x & (XFEAT_BNDREGS | XFEAT_BNDCSR)) !=
	    (XFEAT_BNDREGS | XFEAT_BNDCSR))
		x &= ~(XFEAT_BNDREGS | XFEAT_BNDCSR);
	return x;
}

/*
 * XSAVE area size (standard format) for the user components in x: the end of
 * the furthest component, at least the legacy region and header.
 */
static uint32_t xsave_size(const struct cpuid_table *host, uint64_t x)
{
	uint32_t size = XSAVE_LEGACY_SIZE;
	unsigned int i;

	for (i = 2; i < 64; i++) {
		const struct kvm_cpuid_entry2 *e;

		if (!(x >> i & 1))
			continue;
		e = cpuid_entry_get(host, LEAF_XSAVE, i);
		if (e && e->ebx + e->eax > size)
			size = e->ebx + e->eax;
	}
	return size;
}

/*
 * Clip leaf 0DH of out to the user components x (already sanitized against
 * host). No model exposes XSAVES, so no supervisor (IA32_XSS) component is
 * kept. The size is computed from host before out, which may be host, is
 * rewritten.
 */
void cpuid_xsave_clip(const struct cpuid_table *host, struct cpuid_table *out,
		      uint64_t x)
{
	uint32_t size = xsave_size(host, x);
	size_t i, n = cpuid_table_nent(out);

	for (i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *e = &out->entries[i];

		if (e->function != LEAF_XSAVE)
			continue;
		if (e->index == 0) {
			e->eax = (uint32_t)x;
			e->edx = (uint32_t)(x >> 32);
			e->ecx = size;
			/* KVM recomputes EBX from the guest's XCR0. */
			e->ebx = MIN(e->ebx, size);
		} else if (e->index == 1) {
			/* EAX: features, already filtered. ECX/EDX: IA32_XSS. */
			e->ecx = 0;
			e->edx = 0;
			/* EBX: XSAVES/XSAVEC area size, meaningless without. */
			if (!(e->eax & 0xau))
				e->ebx = 0;
		} else if (e->index >= 64 || !(x >> e->index & 1)) {
			e->eax = e->ebx = e->ecx = e->edx = 0;
		}
	}
}

int cpuid_check_supported(const struct cpuid_table *guest,
			  const struct cpuid_table *host, char *missing)
{
	size_t n, used = 0;
	const struct cpu_feature *f = cpu_features(&n);
	int ret = 0;

	missing[0] = 0;
	for (size_t i = 0; i < n; i++) {
		if (!cpuid_has(guest, &f[i]) || cpuid_has(host, &f[i]))
			continue;
		ret = -ENOTSUP;
		used += (size_t)snprintf(missing + used, CPUMODEL_MISSING_LEN - used, "%s%s",
					 used ? "," : "", f[i].name);
		if (used >= CPUMODEL_MISSING_LEN - 1)
			break;
	}
	return ret;
}
