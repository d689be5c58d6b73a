/*
 * Guest exceptions, reported instead of lost. A microguest has no handler
 * of its own, and without an IDT every exception was a triple fault: the
 * monitor learnt that the guest died but not why, and on AMD not even
 * where (KVM resets the vCPU before it exits). The monitor now gives each
 * vCPU a tiny supervisor-mode landing: an IDT whose 32 exception vectors
 * each lead to an "out" to their own port, and a private stack that the
 * CPU pushes the exception frame onto. The exit then carries the vector
 * (the port), and the frame and CR2 say the rest. docs/guest-abi.md.
 */
#ifndef FERRY_X86_EXC_H
#define FERRY_X86_EXC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_abi.h"

#define X86_EXC_VECTORS 32u

/* Lay the IDT, the stubs and each vCPU's TSS and stack out in guest RAM. */
void x86_exc_setup(uint8_t *ram, unsigned nr_vcpus);
/* The IDT register's base and limit, and vCPU index's TSS address. */
uint64_t x86_exc_idt_base(void);
uint16_t x86_exc_idt_limit(void);
uint64_t x86_exc_tss_base(unsigned index);

/* True if an "out" to port is an exception landing; *vector says which. */
bool x86_exc_port(uint16_t port, unsigned *vector);
/* Words the CPU pushed for vector: 6 with an error code, else 5. */
unsigned x86_exc_frame_words(unsigned vector);

struct x86_exc {
	unsigned vector;
	bool has_error;
	uint64_t error;
	uint64_t rip, cs, rflags, rsp, ss;
	uint64_t cr2;
};

/* Decode a frame of x86_exc_frame_words(vector) words read at the RSP. */
void x86_exc_decode(struct x86_exc *e, unsigned vector, const uint64_t *frame,
		    uint64_t cr2);
/*
 * After a triple fault, what the CPU left on vCPU index's exception stack:
 * true and the first frame's RIP, CS, RFLAGS, RSP and SS in *e (vector
 * unknown) if a delivery got as far as pushing one.
 */
bool x86_exc_stack_frame(const uint8_t *ram, unsigned index, struct x86_exc *e);
/* One line: "#PF (page fault, error 0x6: ...) at RIP 0x..., address 0x...". */
int x86_exc_describe(const struct x86_exc *e, char *buf, size_t len);

#endif
