#include "core/x86_boot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/util.h"
#include "core/x86_exc.h"

#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_PS  (1ull << 7)

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_AM (1ull << 18)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define CR4_OSXSAVE (1ull << 18)
#define EFER_SCE (1ull << 0)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

#define RFLAGS_FIXED 0x2ull
#define RFLAGS_IOPL3 0x3000ull

/* Page-table area layout inside [GABI_PT_GPA, GABI_PT_END). */
#define PT_PML4 (GABI_PT_GPA + 0x0000)
#define PT_PDPT (GABI_PT_GPA + 0x1000)
#define PT_LOW  (GABI_PT_GPA + 0x2000) /* 4 KiB pages for the first 2 MiB */
#define PT_PD0  (GABI_PT_GPA + 0x3000) /* one PD per GiB */

/* Permissions of the 4 KiB pages below 2 MiB; anything else is unmapped. */
static uint64_t low_page_flags(uint64_t gpa, unsigned nr_vcpus)
{
	if (gpa == GABI_GDT_GPA || gpa == GABI_BOOT_GPA)
		return PTE_P | PTE_U;
	if (gpa == GABI_SHARED_GPA)
		return PTE_P | PTE_W | PTE_U;
	/* Exception landings (x86_exc.h): the CPU's, not the guest's. */
	if (gpa == GABI_EXC_TSS_GPA)
		return PTE_P;
	if (gpa == GABI_EXC_STACK_GPA)
		return PTE_P | PTE_W;
	if (gpa >= GABI_HCALL_GPA && gpa < GABI_HCALL_GPA + nr_vcpus * GABI_PAGE_SIZE)
		return PTE_P | PTE_W | PTE_U;
	if (gpa >= GABI_PT_GPA && gpa < GABI_PT_END)
		return PTE_P | PTE_U;
	return 0; /* page 0 and the gaps fault: a null pointer ends the guest */
}

static void gdt_setup(uint8_t *ram)
{
	uint64_t *gdt = (uint64_t *)(ram + GABI_GDT_GPA);
	uint64_t tss = x86_exc_tss_base(0);

	memset(gdt, 0, GABI_PAGE_SIZE);
	gdt[1] = 0x00af9b000000ffffull; /* 0x08: kernel code, unused by guests */
	gdt[2] = 0x00cf93000000ffffull; /* 0x10: kernel data */
	gdt[5] = 0x00cff3000000ffffull; /* 0x2b: user data */
	gdt[6] = 0x00affb000000ffffull; /* 0x33: user code, 64-bit */
	/*
	 * 0x38: an available 64-bit TSS (VMX wants a usable TR at entry); it
	 * names vCPU 0's, the others' TR bases point at their own.
	 */
	gdt[7] = 0x67 | ((tss & 0xffffff) << 16) | (0x89ull << 40) |
		 ((tss >> 24) & 0xff) << 56;
	gdt[8] = tss >> 32;
}

int x86_boot_setup(struct guest_mem *m, const struct x86_boot_params *p)
{
	uint8_t *ram = m->base;
	uint64_t *pml4 = (uint64_t *)(ram + PT_PML4);
	uint64_t *pdpt = (uint64_t *)(ram + PT_PDPT);
	uint64_t *low = (uint64_t *)(ram + PT_LOW);
	uint64_t gib = (m->size + (1ull << 30) - 1) >> 30;
	struct gabi_boot *boot = (struct gabi_boot *)(ram + GABI_BOOT_GPA);
	size_t args_len = p->args ? strlen(p->args) : 0;

	if (PT_PD0 + gib * GABI_PAGE_SIZE > GABI_PT_END || m->size < GABI_MIN_MEM)
		return -ERANGE;
	if (args_len >= GABI_ARGS_MAX)
		return -E2BIG;

	memset(ram + GABI_PT_GPA, 0, GABI_PT_END - GABI_PT_GPA);
	pml4[0] = PT_PDPT | PTE_P | PTE_W | PTE_U;
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t *pd = (uint64_t *)(ram + PT_PD0 + g * GABI_PAGE_SIZE);

		pdpt[g] = (PT_PD0 + g * GABI_PAGE_SIZE) | PTE_P | PTE_W | PTE_U;
		for (uint64_t i = 0; i < 512; i++) {
			uint64_t gpa = (g << 30) + (i << 21);

			if (gpa >= m->size)
				break;
			pd[i] = gpa | PTE_P | PTE_W | PTE_U | PTE_PS;
		}
	}
	/* The first 2 MiB get 4 KiB pages so each page has its own rights. */
	((uint64_t *)(ram + PT_PD0))[0] = PT_LOW | PTE_P | PTE_W | PTE_U;
	for (uint64_t i = 0; i < 512; i++) {
		uint64_t gpa = i * GABI_PAGE_SIZE;
		uint64_t fl = low_page_flags(gpa, p->nr_vcpus);

		low[i] = fl ? gpa | fl : 0;
	}

	gdt_setup(ram);
	x86_exc_setup(ram, p->nr_vcpus);

	memset(boot, 0, GABI_PAGE_SIZE);
	boot->magic = GABI_BOOT_MAGIC;
	boot->version = GABI_VERSION;
	boot->nr_vcpus = p->nr_vcpus;
	boot->mem_size = m->size;
	boot->tsc_khz = p->tsc_khz;
	boot->heap_start = p->heap_start;
	boot->heap_end = m->size;
	boot->shared_gpa = GABI_SHARED_GPA;
	boot->hcall_gpa = GABI_HCALL_GPA;
	boot->args_len = (uint32_t)args_len;
	if (args_len)
		memcpy(boot->args, p->args, args_len);
	memset(ram + GABI_SHARED_GPA, 0, GABI_PAGE_SIZE);
	memset(ram + GABI_HCALL_GPA, 0, p->nr_vcpus * GABI_PAGE_SIZE);
	return 0;
}

int x86_boot_check(const struct guest_mem *m, unsigned nr_vcpus, char *buf, size_t len)
{
	static const struct { uint64_t from, to; uint64_t mask; const char *what; } areas[] = {
		{ GABI_PT_GPA, GABI_PT_END, ~0x60ull, "page tables" }, /* A and D bits */
		{ GABI_GDT_GPA, GABI_GDT_GPA + GABI_PAGE_SIZE, ~0ull, "GDT/IDT page" },
		{ GABI_EXC_TSS_GPA, GABI_EXC_TSS_GPA + GABI_PAGE_SIZE, ~0ull, "TSS page" },
	};
	struct x86_boot_params p = { .nr_vcpus = nr_vcpus };
	struct guest_mem want = { .size = m->size };
	int ret = 0;

	want.base = calloc(1, GABI_PT_END);
	if (!want.base)
		return -ENOMEM;
	ret = x86_boot_setup(&want, &p);
	for (unsigned a = 0; !ret && a < ARRAY_SIZE(areas); a++) {
		unsigned bad = 0;
		uint64_t first = 0, got = 0, exp = 0;

		for (uint64_t off = areas[a].from; off < areas[a].to; off += 8) {
			uint64_t g, w;

			memcpy(&g, m->base + off, 8);
			memcpy(&w, want.base + off, 8);
			if ((g ^ w) & areas[a].mask) {
				if (!bad++)
					first = off, got = g, exp = w;
			}
		}
		if (bad) {
			snprintf(buf, len, "%s: %u words differ from what vmon wrote, the first at "
				 "0x%llx (0x%llx, wrote 0x%llx)", areas[a].what, bad,
				 (unsigned long long)first, (unsigned long long)got,
				 (unsigned long long)exp);
			ret = -EFAULT;
		}
	}
	free(want.base);
	return ret;
}

static struct kvm_segment user_seg(uint16_t sel, bool code)
{
	struct kvm_segment s = {
		.base = 0, .limit = 0xffffffff, .selector = sel,
		.type = code ? 0xb : 0x3, .present = 1, .dpl = 3,
		.db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
	return s;
}

int x86_vcpu_setup(int fd, unsigned index, uint64_t rip, uint64_t xcr0,
		   bool osxsave, bool nx)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs))
		return -errno;
	sregs.cs = user_seg(X86_USER_CS, true);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
		user_seg(X86_USER_DS, false);
	sregs.tr = (struct kvm_segment){
		.base = x86_exc_tss_base(index), .limit = 0x67,
		.selector = X86_TSS_SEL, .type = 11, .present = 1,
	};
	sregs.ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
	sregs.gdt.base = GABI_GDT_GPA;
	sregs.gdt.limit = 9 * 8 - 1;
	sregs.idt.base = x86_exc_idt_base();
	sregs.idt.limit = x86_exc_idt_limit();
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	sregs.cr3 = PT_PML4;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | (osxsave ? CR4_OSXSAVE : 0);
	sregs.efer = EFER_SCE | EFER_LME | EFER_LMA | (nx ? EFER_NXE : 0);
	if (ioctl(fd, KVM_SET_SREGS, &sregs))
		return -errno;

	if (osxsave) {
		struct kvm_xcrs xcrs = { .nr_xcrs = 1 };

		xcrs.xcrs[0].xcr = 0;
		xcrs.xcrs[0].value = xcr0;
		if (ioctl(fd, KVM_SET_XCRS, &xcrs))
			return -errno;
	}

	memset(&regs, 0, sizeof(regs));
	regs.rip = rip;
	regs.rflags = RFLAGS_FIXED | RFLAGS_IOPL3;
	regs.rdi = index;
	regs.rsi = GABI_BOOT_GPA;
	regs.rsp = GABI_STACK_GPA + (index + 1) * GABI_STACK_SIZE;
	if (ioctl(fd, KVM_SET_REGS, &regs))
		return -errno;
	return 0;
}
