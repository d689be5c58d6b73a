/*
 * crash: faults on purpose, to test how the monitor reports a guest that
 * dies: through the exception landings (core/x86_exc.h) on VMX and SVM, or
 * as a triple fault (KVM_EXIT_SHUTDOWN) where the host does not deliver
 * exceptions through the guest's IDT.
 *
 * Arg mode: pf (default: write to 0x10, page 0 is unmapped), ud (ud2),
 * gp (hlt at CPL 3; note cli would not fault: IOPL is 3), de (divide by 0),
 * port (an out to the #PF landing's port from CPL 3: not an exception).
 * Prints "crash: faulting on purpose (mode=<m>)" and "crash: fault at <p>":
 * the faulting instruction is the first one of its function, so <p> is
 * exactly the RIP the monitor should report. Arg cpu (default 0) names
 * the one vCPU that crashes; the others park. Arg after_ms (default 0)
 * waits that long first, printing "crash: faulting in <n> ms", so that a
 * guest can die during something else (a migration). Exit code 1 if the
 * instruction did not fault, 2 on a bad mode.
 */
#include "rt.h"

/* Each stub's first instruction faults; the ret is reached only if not. */
void crash_pf(void);
void crash_ud(void);
void crash_gp(void);
void crash_de(uint32_t zero);
void crash_port(void);

__asm__(
	".pushsection .text.crash, \"ax\", @progbits\n"
	".globl crash_pf\n"
	".type crash_pf, @function\n"
	"crash_pf:\n"
	"	movl $1, 0x10\n"
	"	ret\n"
	".size crash_pf, . - crash_pf\n"
	".globl crash_ud\n"
	".type crash_ud, @function\n"
	"crash_ud:\n"
	"	ud2\n"
	"	ret\n"
	".size crash_ud, . - crash_ud\n"
	".globl crash_gp\n"
	".type crash_gp, @function\n"
	"crash_gp:\n"
	"	hlt\n"
	"	ret\n"
	".size crash_gp, . - crash_gp\n"
	".globl crash_de\n"
	".type crash_de, @function\n"
	"crash_de:\n"
	"	divl %edi\n"
	"	ret\n"
	".size crash_de, . - crash_de\n"
	".globl crash_port\n"
	".type crash_port, @function\n"
	"crash_port:\n"
	"	outb %al, $0xce\n"
	"	ret\n"
	".size crash_port, . - crash_port\n"
	".popsection\n");

static const char *const known_args[] = { "mode", "cpu", "after_ms", NULL };

int guest_main(unsigned cpu, const struct gabi_boot *boot)
{
	char mode[8];
	void *at;

	rt_args_check("crash", known_args);
	rt_arg_str("mode", mode, sizeof(mode), "pf");
	if (rt_arg_u64("cpu", 0) >= boot->nr_vcpus)
		rt_die(2, "crash: cpu=%llu but only %u vCPUs\n",
		       (unsigned long long)rt_arg_u64("cpu", 0), boot->nr_vcpus);
	if (cpu != rt_arg_u64("cpu", 0))
		rt_park();

	if (!strcmp(mode, "pf"))
		at = (void *)crash_pf;
	else if (!strcmp(mode, "ud"))
		at = (void *)crash_ud;
	else if (!strcmp(mode, "gp"))
		at = (void *)crash_gp;
	else if (!strcmp(mode, "de"))
		at = (void *)crash_de;
	else if (!strcmp(mode, "port"))
		at = (void *)crash_port;
	else
		rt_die(2, "crash: unknown mode \"%s\" (pf, ud, gp, de, port)\n", mode);

	if (rt_arg_u64("after_ms", 0)) {
		uint64_t ms = rt_arg_u64("after_ms", 0);

		if (ms > 60000)
			rt_die(2, "crash: after_ms %llu > 60000\n", (unsigned long long)ms);
		rt_printf("crash: faulting in %llu ms\n", (unsigned long long)ms);
		rt_sleep_ns(ms * 1000000ull);
	}
	rt_printf("crash: faulting on purpose (mode=%s)\n", mode);
	rt_printf("crash: fault at %p\n", at);
	if (at == (void *)crash_de)
		crash_de(0);
	else
		((void (*)(void))at)();
	rt_printf("crash: mode %s did not fault\n", mode);
	return 1;
}
