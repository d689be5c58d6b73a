/*
 * The x86-64 state a microguest boots into: identity page tables with user
 * pages, a GDT whose user selectors match Linux's (PVM runs guest user code
 * on the host's own user segments), boot information, and the initial
 * registers of each vCPU: 64-bit long mode, CPL 3, IOPL 3.
 */
#ifndef FERRY_X86_BOOT_H
#define FERRY_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_abi.h"
#include "core/mem.h"

#define X86_USER_DS 0x2b  /* GDT entry 5, RPL 3 */
#define X86_USER_CS 0x33  /* GDT entry 6, RPL 3 */
#define X86_TSS_SEL 0x38  /* GDT entries 7-8 */

struct x86_boot_params {
	unsigned nr_vcpus;
	uint64_t tsc_khz;
	uint64_t heap_start;
	const char *args;
};

/* Lay out page tables, GDT and boot page in guest RAM. */
int x86_boot_setup(struct guest_mem *m, const struct x86_boot_params *p);
/*
 * Compare what the CPU needs to deliver an exception (page tables, GDT
 * with IDT and stubs, TSSs) with what x86_boot_setup wrote; accessed and
 * dirty bits aside. 0 if intact, else -EFAULT with the first difference
 * in buf. For a post-mortem: a guest cannot write these pages, so a
 * difference is a write by the monitor or the host.
 */
int x86_boot_check(const struct guest_mem *m, unsigned nr_vcpus, char *buf, size_t len);
/* Set sregs, regs and XCR0 of one vCPU for entry at rip. */
int x86_vcpu_setup(int vcpu_fd, unsigned index, uint64_t rip, uint64_t xcr0,
		   bool osxsave, bool nx);

#endif
