/*
 * The exception landings, read back as the CPU would: every IDT gate must
 * lead to a stub whose "out" names its own vector, every vCPU's TSS must
 * give it a stack of its own, and a frame must decode into the message an
 * operator reads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/x86_boot.h"
#include "core/x86_exc.h"

#define RAM (64u << 10)

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void test_gates_lead_to_their_stub(void **state)
{
	uint8_t *ram = calloc(1, RAM);
	uint64_t idt = x86_exc_idt_base();

	(void)state;
	assert_non_null(ram);
	x86_exc_setup(ram, GABI_MAX_VCPUS);
	assert_int_equal(x86_exc_idt_limit(), X86_EXC_VECTORS * 16 - 1);
	assert_true(idt >= GABI_GDT_GPA && idt + X86_EXC_VECTORS * 16 <= GABI_GDT_GPA + GABI_PAGE_SIZE);
	for (unsigned v = 0; v < X86_EXC_VECTORS; v++) {
		const uint8_t *g = ram + idt + v * 16;
		uint64_t off = g[0] | (uint64_t)g[1] << 8 | (uint64_t)g[6] << 16 |
			       (uint64_t)g[7] << 24 | get64(g + 8) << 32;
		const uint8_t *stub = ram + off;
		unsigned got;

		assert_int_equal(g[2] | g[3] << 8, 0x08);  /* kernel code */
		assert_int_equal(g[4] & 7, 0);              /* no IST */
		assert_int_equal(g[5], 0x8e);               /* present interrupt gate, DPL 0 */
		/* In the GDT page, clear of the GDT itself and of the IDT. */
		assert_true(off >= idt + X86_EXC_VECTORS * 16);
		assert_true(off + 5 <= GABI_GDT_GPA + GABI_PAGE_SIZE);
		assert_int_equal(stub[0], 0xe6);            /* out imm8, al */
		assert_true(x86_exc_port(stub[1], &got));
		assert_int_equal(got, v);
		assert_int_equal(stub[2], 0xf4);            /* hlt */
		assert_int_equal(stub[3], 0xeb);            /* jmp back to the hlt */
		assert_int_equal((int8_t)stub[4], -3);
	}
	free(ram);
}

static void test_each_vcpu_has_its_stack(void **state)
{
	uint8_t *ram = calloc(1, RAM);
	uint64_t prev = 0;

	(void)state;
	assert_non_null(ram);
	x86_exc_setup(ram, GABI_MAX_VCPUS);
	for (unsigned i = 0; i < GABI_MAX_VCPUS; i++) {
		uint64_t tss = x86_exc_tss_base(i), rsp0 = get64(ram + tss + 4);

		assert_true(tss >= GABI_EXC_TSS_GPA && tss + 0x68 <= GABI_EXC_TSS_GPA + GABI_PAGE_SIZE);
		if (i)
			assert_true(tss >= x86_exc_tss_base(i - 1) + 0x68);
		assert_int_equal(rsp0 % 16, 0);
		/* Room below it for the largest frame, above the previous vCPU's top. */
		assert_true(rsp0 - 6 * 8 >= (i ? prev : GABI_EXC_STACK_GPA));
		assert_true(rsp0 <= GABI_EXC_STACK_GPA + GABI_PAGE_SIZE);
		prev = rsp0;
	}
	free(ram);
}

static void test_ports(void **state)
{
	unsigned v = 99;

	(void)state;
	assert_false(x86_exc_port(GABI_EXC_PORT_BASE - 1, &v));
	assert_false(x86_exc_port(GABI_EXC_PORT_BASE + X86_EXC_VECTORS, &v));
	assert_false(x86_exc_port(GABI_DOORBELL_PORT, &v));
	assert_int_equal(v, 99);
	assert_true(x86_exc_port(GABI_EXC_PORT_BASE + 14, &v));
	assert_int_equal(v, 14);
}

static void test_describe(void **state)
{
	/* error, RIP, CS, RFLAGS, RSP, SS: a user write to page 0. */
	const uint64_t pf[6] = { 0x6, 0x401234, 0x33, 0x3002, 0x20fff8, 0x2b };
	const uint64_t ud[5] = { 0x401300, 0x33, 0x3002, 0x20fff0, 0x2b };
	const uint64_t gp[6] = { 0x0, 0x401400, 0x33, 0x3002, 0x20ffe0, 0x2b };
	struct x86_exc e;
	char buf[256];

	(void)state;
	assert_int_equal(x86_exc_frame_words(14), 6);
	assert_int_equal(x86_exc_frame_words(6), 5);
	assert_int_equal(x86_exc_frame_words(8), 6);
	assert_int_equal(x86_exc_frame_words(0), 5);

	x86_exc_decode(&e, 14, pf, 0x10);
	assert_true(e.has_error);
	assert_int_equal(e.rip, 0x401234);
	assert_int_equal(e.rsp, 0x20fff8);
	x86_exc_describe(&e, buf, sizeof(buf));
	assert_string_equal(buf, "guest exception #PF (page fault, error 0x6: write to an "
			    "unmapped page, user mode) at RIP 0x401234, CPL 3, RSP 0x20fff8, "
			    "address 0x10");

	x86_exc_decode(&e, 6, ud, 0x10);
	assert_false(e.has_error);
	assert_int_equal(e.cr2, 0);       /* CR2 means nothing outside #PF */
	x86_exc_describe(&e, buf, sizeof(buf));
	assert_string_equal(buf, "guest exception #UD (invalid opcode) at RIP 0x401300, "
			    "CPL 3, RSP 0x20fff0");

	x86_exc_decode(&e, 13, gp, 0);
	x86_exc_describe(&e, buf, sizeof(buf));
	assert_string_equal(buf, "guest exception #GP (general protection, error 0x0) at "
			    "RIP 0x401400, CPL 3, RSP 0x20ffe0");

	x86_exc_decode(&e, 31, ud, 0);
	x86_exc_describe(&e, buf, sizeof(buf));
	assert_non_null(strstr(buf, "guest exception vector 31 (reserved)"));

	/* A short buffer is cut, never overrun. */
	memset(buf, 'x', sizeof(buf));
	x86_exc_decode(&e, 14, pf, 0x10);
	x86_exc_describe(&e, buf, 20);
	assert_int_equal(strlen(buf), 19);
	assert_int_equal(buf[20], 'x');
}

/* The post-mortem after a triple fault: intact, corrupted, a frame left. */
static void test_postmortem(void **state)
{
	struct guest_mem m = { .size = GABI_MIN_MEM };
	struct x86_boot_params p = { .nr_vcpus = 2 };
	struct x86_exc e;
	char buf[256];
	uint64_t *pte, save, *slot;

	(void)state;
	m.base = calloc(1, m.size);
	assert_non_null(m.base);
	assert_int_equal(x86_boot_setup(&m, &p), 0);
	assert_int_equal(x86_boot_check(&m, 2, buf, sizeof(buf)), 0);

	/* The CPU's accessed and dirty bits are not damage. */
	pte = (uint64_t *)(m.base + GABI_PT_GPA + 0x2000) + 1;  /* the GDT page's PTE */
	save = *pte;
	*pte |= 0x60;
	assert_int_equal(x86_boot_check(&m, 2, buf, sizeof(buf)), 0);
	*pte = save & ~1ull;                                     /* not present */
	assert_int_equal(x86_boot_check(&m, 2, buf, sizeof(buf)), -EFAULT);
	assert_non_null(strstr(buf, "page tables: 1 words differ"));
	assert_non_null(strstr(buf, "the first at 0x102008"));
	*pte = save;
	m.base[GABI_EXC_TSS_GPA + 0x68 + 4] ^= 0x10;            /* vCPU 1's rsp0 */
	assert_int_equal(x86_boot_check(&m, 2, buf, sizeof(buf)), -EFAULT);
	assert_non_null(strstr(buf, "TSS page"));
	m.base[GABI_EXC_TSS_GPA + 0x68 + 4] ^= 0x10;
	memset(m.base + GABI_GDT_GPA + 0x200, 0, 16);            /* gate 0 gone */
	assert_int_equal(x86_boot_check(&m, 2, buf, sizeof(buf)), -EFAULT);
	assert_non_null(strstr(buf, "GDT/IDT page"));

	/* A delivery that pushed a frame and then failed. */
	assert_false(x86_exc_stack_frame(m.base, 1, &e));
	slot = (uint64_t *)(m.base + GABI_EXC_STACK_GPA + 2 * 128) - 5;
	slot[0] = 0x401234, slot[1] = 0x33, slot[2] = 0x3202, slot[3] = 0x20fff8, slot[4] = 0x2b;
	assert_false(x86_exc_stack_frame(m.base, 0, &e));
	assert_true(x86_exc_stack_frame(m.base, 1, &e));
	assert_int_equal(e.rip, 0x401234);
	assert_int_equal(e.rsp, 0x20fff8);
	assert_false(x86_exc_stack_frame(m.base, GABI_MAX_VCPUS, &e));
	free(m.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gates_lead_to_their_stub),
		cmocka_unit_test(test_each_vcpu_has_its_stack),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_postmortem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
