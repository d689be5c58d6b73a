/* The vCPU thread: KVM_RUN and the exits a microguest can cause. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/hcall.h"
#include "core/kvm.h"
#include "core/log.h"
#include "core/vm.h"
#include "core/x86_boot.h"
#include "core/x86_exc.h"

bool vm_vcpu_checkpoint(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool go;

	pthread_mutex_lock(&vm->lock);
	while (vm->pause_req && !vm->stop_req) {
		vm->nr_parked++;
		pthread_cond_broadcast(&vm->cond);
		pthread_cond_wait(&vm->cond, &vm->lock);
		vm->nr_parked--;
	}
	go = !vm->stop_req;
	/*
	 * Cleared under the lock: a pauser sets pause_req and immediate_exit
	 * together under it, so either we saw the request or KVM_RUN will.
	 */
	if (go)
		v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return go;
}

static uint64_t vcpu_rip(struct vcpu *v)
{
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs))
		return ~0ull;
	return regs.rip;
}

/*
 * KVM on AMD (SVM) resets a vCPU on a shutdown before it exits to us, so
 * its registers hold the reset state, not the guest's: real mode, where a
 * microguest never is. Intel and PVM keep the state.
 */
static bool vcpu_was_reset(struct vcpu *v)
{
	struct kvm_sregs sregs;

	return !ioctl(v->fd, KVM_GET_SREGS, &sregs) && !(sregs.cr0 & 1);
}

/*
 * A triple fault with the landings in place means the delivery itself
 * failed: say whether what the CPU needed for it is intact, and what it
 * pushed before it gave up, since AMD leaves no registers to read.
 */
static void vcpu_shutdown_postmortem(struct vcpu *v, char *buf, size_t len)
{
	char why[200];
	struct x86_exc e;
	int n;

	if (x86_boot_check(&v->vm->mem, v->vm->nr_vcpus, why, sizeof(why)))
		n = snprintf(buf, len, "; %s", why);
	else
		n = snprintf(buf, len, "; page tables, GDT, IDT and TSSs intact");
	if (n < 0 || (size_t)n >= len)
		return;
	if (x86_exc_stack_frame(v->vm->mem.base, v->index, &e))
		snprintf(buf + n, len - (size_t)n, "; its exception stack holds a frame: RIP 0x%llx, "
			 "CS 0x%llx, RFLAGS 0x%llx, RSP 0x%llx", (unsigned long long)e.rip,
			 (unsigned long long)e.cs, (unsigned long long)e.rflags,
			 (unsigned long long)e.rsp);
	else
		snprintf(buf + n, len - (size_t)n, "; nothing was pushed on its exception stack");
}

/* Stop the VM because of what this vCPU did; the message names it all. */
static void vcpu_crash(struct vcpu *v, const char *what)
{
	uint32_t reason = v->run->exit_reason;
	char pm[512] = "";

	if (reason == KVM_EXIT_SHUTDOWN)
		vcpu_shutdown_postmortem(v, pm, sizeof(pm));
	if (reason == KVM_EXIT_SHUTDOWN && vcpu_was_reset(v)) {
		vm_finish(v->vm, VM_CRASHED, VM_EXIT_CRASH,
			  "vCPU %u: %s (%s); RIP not known: this host's KVM (AMD SVM) "
			  "resets the vCPU on a shutdown%s", v->index, what, kvm_exit_name(reason), pm);
		return;
	}
	vm_finish(v->vm, VM_CRASHED, VM_EXIT_CRASH,
		  "vCPU %u: %s (%s) at RIP 0x%" PRIx64 "%s", v->index, what,
		  kvm_exit_name(reason), vcpu_rip(v), pm);
}

/*
 * A guest exception landed on its stub (x86_exc.h). False if the "out"
 * came from guest code instead (CPL 3): that is just an unknown port.
 */
static bool vcpu_exception(struct vcpu *v, unsigned vector)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t frame[6];
	struct x86_exc e;
	unsigned words = x86_exc_frame_words(vector);
	const void *p;
	char what[256];

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) || ioctl(v->fd, KVM_GET_REGS, &regs)) {
		vm_finish(v->vm, VM_CRASHED, VM_EXIT_CRASH,
			  "vCPU %u: guest exception, vector %u (its state is unreadable: %s)",
			  v->index, vector, strerror(errno));
		return true;
	}
	if (sregs.cs.selector & 3)
		return false;
	p = mem_ptr(&v->vm->mem, regs.rsp, words * sizeof(uint64_t));
	if (!p) {
		vm_finish(v->vm, VM_CRASHED, VM_EXIT_CRASH,
			  "vCPU %u: guest exception, vector %u (no frame at RSP 0x%llx)",
			  v->index, vector, (unsigned long long)regs.rsp);
		return true;
	}
	memcpy(frame, p, words * sizeof(uint64_t));
	x86_exc_decode(&e, vector, frame, sregs.cr2);
	x86_exc_describe(&e, what, sizeof(what));
	vm_finish(v->vm, VM_CRASHED, VM_EXIT_CRASH, "vCPU %u: %s", v->index, what);
	return true;
}

static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned vector;
	char what[160];

	v->stats.exits++;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		v->stats.exits_io++;
		if (run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == GABI_DOORBELL_PORT) {
			v->stats.exits_hcall++;
			hcall_handle(v);
			return true;
		}
		if (run->io.direction == KVM_EXIT_IO_OUT &&
		    x86_exc_port(run->io.port, &vector) && vcpu_exception(v, vector))
			return false;
		snprintf(what, sizeof(what), "unhandled port I/O: %s port 0x%x, %u bytes",
			 run->io.direction == KVM_EXIT_IO_OUT ? "out to" : "in from",
			 run->io.port, run->io.size);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_DIRTY_RING_FULL:
		v->stats.exits_ring_full++;
		if (dirty_ring_full(v->vm->dirty, v->index) < 0) {
			vcpu_crash(v, "dirty ring reset failed");
			return false;
		}
		return true;
	case KVM_EXIT_INTR:
		v->stats.exits_intr++;
		return true;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v, "triple fault");
		return false;
	case KVM_EXIT_MMIO:
		snprintf(what, sizeof(what), "unhandled MMIO %s at 0x%llx, %u bytes",
			 run->mmio.is_write ? "write" : "read",
			 (unsigned long long)run->mmio.phys_addr, run->mmio.len);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed, hardware reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error, suberror %u",
			 run->internal.suberror);
		vcpu_crash(v, what);
		return false;
	default:
		v->stats.exits_other++;
		vcpu_crash(v, "unhandled exit");
		return false;
	}
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;

	while (vm_vcpu_checkpoint(v)) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->stats.exits_intr++;
				continue;
			}
			vm_finish(vm, VM_CRASHED, VM_EXIT_INTERNAL,
				  "vCPU %u: KVM_RUN failed: %s", v->index, strerror(errno));
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}

	pthread_mutex_lock(&vm->lock);
	vm->nr_running--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}
