/*
 * Entry point of every microguest. Each vCPU arrives here with
 *   rdi = vCPU index, rsi = GABI_BOOT_GPA (struct gabi_boot *),
 *   rsp = top of its own stack, rflags = 0x3002, other GPRs zero.
 * It calls rt_entry(cpu, boot), which runs guest_main() and returns the
 * exit code, then rings the exit hypercall with it on its own hypercall
 * page (boot->hcall_gpa + cpu * 4096). Exit never returns; should it ever,
 * we ring it again.
 */
#define GABI_HC_EXIT        2
#define GABI_DOORBELL_PORT  0xf5
#define BOOT_HCALL_GPA      56      /* offsetof(struct gabi_boot, hcall_gpa) */
#define HCALL_NR            0
#define HCALL_ARG0          8
#define HCALL_RET           56

	.section .text.start, "ax", @progbits
	.globl _start
	.type _start, @function
_start:
	xorl	%ebp, %ebp
	andq	$-16, %rsp
	subq	$16, %rsp               /* keep rsp inside this vCPU's stack */
	movq	%rdi, %rbx              /* cpu: callee-saved */
	movq	%rsi, %r12              /* boot: callee-saved */
	call	rt_entry                /* eax = exit code, 0..255 */
	movzbl	%al, %r13d
	movq	BOOT_HCALL_GPA(%r12), %rdx
	movq	%rbx, %rcx
	shlq	$12, %rcx
	addq	%rcx, %rdx              /* rdx = this vCPU's hypercall page */
1:
	movq	$GABI_HC_EXIT, HCALL_NR(%rdx)
	movq	%r13, HCALL_ARG0(%rdx)
	outb	%al, $GABI_DOORBELL_PORT
	pause
	jmp	1b
	.size _start, . - _start

	.section .note.GNU-stack, "", @progbits
