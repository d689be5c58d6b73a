#include "core/x86_exc.h"

#include <stdio.h>
#include <string.h>

/* Inside the GDT page (read-only, executable): the IDT, then the stubs. */
#define IDT_OFF   0x200u
#define STUB_OFF  0x400u
#define STUB_SIZE 8u
#define TSS_SIZE  0x68u
#define TSS_RSP0  4u
#define STACK_PER_VCPU 128u /* a frame is 48 bytes; 16-byte aligned tops */
#define KERNEL_CS 0x08u     /* GDT entry 1, 64-bit code, DPL 0 */

_Static_assert(IDT_OFF + X86_EXC_VECTORS * 16 <= STUB_OFF, "IDT overlaps stubs");
_Static_assert(STUB_OFF + X86_EXC_VECTORS * STUB_SIZE <= 0x800, "stubs overlap TSS");
_Static_assert(GABI_MAX_VCPUS * TSS_SIZE <= GABI_PAGE_SIZE, "TSSs overflow their page");
_Static_assert(GABI_MAX_VCPUS * STACK_PER_VCPU <= GABI_PAGE_SIZE, "stacks overflow their page");
_Static_assert(GABI_EXC_PORT_BASE + X86_EXC_VECTORS <= GABI_DOORBELL_PORT ||
	       GABI_EXC_PORT_BASE > GABI_DOORBELL_PORT, "landing ports hit the doorbell");

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

void x86_exc_setup(uint8_t *ram, unsigned nr_vcpus)
{
	uint8_t *page = ram + GABI_GDT_GPA;

	for (unsigned v = 0; v < X86_EXC_VECTORS; v++) {
		uint64_t stub = GABI_GDT_GPA + STUB_OFF + v * STUB_SIZE;
		uint8_t *code = page + STUB_OFF + v * STUB_SIZE;
		uint8_t *gate = page + IDT_OFF + v * 16;
		/*
		 * out %al, $port; then hlt forever: the monitor never resumes a
		 * vCPU that landed here, the loop only keeps it from running on.
		 */
		const uint8_t body[STUB_SIZE] = {
			0xe6, (uint8_t)(GABI_EXC_PORT_BASE + v), 0xf4, 0xeb, 0xfd,
			0x90, 0x90, 0x90,
		};

		memcpy(code, body, sizeof(body));
		/* A 64-bit interrupt gate, DPL 0, present, no IST. */
		memset(gate, 0, 16);
		gate[0] = (uint8_t)stub;
		gate[1] = (uint8_t)(stub >> 8);
		gate[2] = KERNEL_CS;
		gate[5] = 0x8e;
		gate[6] = (uint8_t)(stub >> 16);
		gate[7] = (uint8_t)(stub >> 24);
		put64(gate + 8, stub >> 32);
	}
	memset(ram + GABI_EXC_TSS_GPA, 0, GABI_PAGE_SIZE);
	memset(ram + GABI_EXC_STACK_GPA, 0, GABI_PAGE_SIZE);
	/* One TSS per vCPU: they share a selector, the base is per vCPU (TR). */
	for (unsigned i = 0; i < nr_vcpus && i < GABI_MAX_VCPUS; i++)
		put64(ram + x86_exc_tss_base(i) + TSS_RSP0,
		      GABI_EXC_STACK_GPA + (uint64_t)(i + 1) * STACK_PER_VCPU);
}

uint64_t x86_exc_idt_base(void)
{
	return GABI_GDT_GPA + IDT_OFF;
}

uint16_t x86_exc_idt_limit(void)
{
	return X86_EXC_VECTORS * 16 - 1;
}

uint64_t x86_exc_tss_base(unsigned index)
{
	return GABI_EXC_TSS_GPA + (uint64_t)index * TSS_SIZE;
}

bool x86_exc_port(uint16_t port, unsigned *vector)
{
	if (port < GABI_EXC_PORT_BASE || port >= GABI_EXC_PORT_BASE + X86_EXC_VECTORS)
		return false;
	*vector = port - GABI_EXC_PORT_BASE;
	return true;
}

static bool has_error_code(unsigned vector)
{
	/* #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX */
	return vector < 32 && ((0x60227d00u >> vector) & 1);
}

unsigned x86_exc_frame_words(unsigned vector)
{
	return has_error_code(vector) ? 6 : 5;
}

void x86_exc_decode(struct x86_exc *e, unsigned vector, const uint64_t *frame,
		    uint64_t cr2)
{
	unsigned i = 0;

	memset(e, 0, sizeof(*e));
	e->vector = vector;
	e->has_error = has_error_code(vector);
	if (e->has_error)
		e->error = frame[i++];
	e->rip = frame[i++];
	e->cs = frame[i++];
	e->rflags = frame[i++];
	e->rsp = frame[i++];
	e->ss = frame[i];
	e->cr2 = vector == 14 ? cr2 : 0;
}

static const char *const exc_names[X86_EXC_VECTORS][2] = {
	[0] = { "#DE", "divide error" },        [1] = { "#DB", "debug" },
	[2] = { "NMI", "non-maskable interrupt" }, [3] = { "#BP", "breakpoint" },
	[4] = { "#OF", "overflow" },            [5] = { "#BR", "bound range" },
	[6] = { "#UD", "invalid opcode" },      [7] = { "#NM", "device not available" },
	[8] = { "#DF", "double fault" },
	[10] = { "#TS", "invalid TSS" },        [11] = { "#NP", "segment not present" },
	[12] = { "#SS", "stack fault" },        [13] = { "#GP", "general protection" },
	[14] = { "#PF", "page fault" },         [16] = { "#MF", "x87 error" },
	[17] = { "#AC", "alignment check" },    [18] = { "#MC", "machine check" },
	[19] = { "#XM", "SIMD error" },         [20] = { "#VE", "virtualization" },
	[21] = { "#CP", "control protection" },
};

int x86_exc_describe(const struct x86_exc *e, char *buf, size_t len)
{
	const char *mn = e->vector < X86_EXC_VECTORS ? exc_names[e->vector][0] : NULL;
	const char *name = mn ? exc_names[e->vector][1] : "reserved";
	char err[96] = "", vec[16];
	int n;

	snprintf(vec, sizeof(vec), "vector %u", e->vector);

	if (e->vector == 14)
		snprintf(err, sizeof(err), ", error 0x%llx: %s %s, %s mode%s",
			 (unsigned long long)e->error,
			 (e->error & 2) ? "write to" : ((e->error & 16) ? "fetch from" : "read of"),
			 (e->error & 1) ? "a protected page" : "an unmapped page",
			 (e->error & 4) ? "user" : "supervisor",
			 (e->error & 8) ? ", reserved bit set" : "");
	else if (e->has_error)
		snprintf(err, sizeof(err), ", error 0x%llx", (unsigned long long)e->error);
	n = snprintf(buf, len, "guest exception %s (%s%s) at RIP 0x%llx, CPL %u, RSP 0x%llx",
		     mn ? mn : vec, name, err,
		     (unsigned long long)e->rip, (unsigned)(e->cs & 3),
		     (unsigned long long)e->rsp);
	if (e->vector == 14 && n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, ", address 0x%llx",
			      (unsigned long long)e->cr2);
	return n;
}

bool x86_exc_stack_frame(const uint8_t *ram, unsigned index, struct x86_exc *e)
{
	uint64_t top = GABI_EXC_STACK_GPA + (uint64_t)(index + 1) * STACK_PER_VCPU;
	uint64_t w[5];
	bool any = false;

	memset(e, 0, sizeof(*e));
	if (index >= GABI_MAX_VCPUS)
		return false;
	memcpy(w, ram + top - sizeof(w), sizeof(w));
	for (unsigned i = 0; i < 5; i++)
		any |= w[i] != 0;
	if (!any)
		return false;
	e->vector = ~0u;
	e->rip = w[0];
	e->cs = w[1];
	e->rflags = w[2];
	e->rsp = w[3];
	e->ss = w[4];
	return true;
}
