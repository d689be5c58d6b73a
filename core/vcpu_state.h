/*
 * Saving and loading a vCPU's architectural state: what a migration or a
 * snapshot carries so the guest resumes on another KVM exactly where it
 * stopped. The VM must be paused (vCPU threads parked) around both.
 */
#ifndef FERRY_VCPU_STATE_H
#define FERRY_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#define VCPU_STATE_LAYOUT 1     /* version of the raw KVM structs below */
#define VCPU_STATE_MAX_MSRS 128

struct vcpu;

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	uint8_t *xsave;             /* malloc'ed, xsave_len bytes */
	uint32_t xsave_len;
	uint32_t nr_msrs;
	struct kvm_msr_entry msrs[VCPU_STATE_MAX_MSRS];
	uint64_t tsc;               /* guest TSC when saved */
	bool exits_completed;
};

/*
 * Finish whatever KVM left half done at the last exit (an `out` whose RIP
 * advances on the next KVM_RUN) without entering the guest. Call on a
 * paused vCPU before saving it; idempotent.
 */
int vcpu_complete_exit(struct vcpu *v);

int vcpu_state_save(struct vcpu *v, struct vcpu_state *s);
/*
 * Load state saved elsewhere. tsc_delta is added to the saved TSC: the
 * real time that passed between save and load, in TSC ticks, so the
 * guest's clock keeps running and it can see its own downtime.
 */
int vcpu_state_load(struct vcpu *v, const struct vcpu_state *s, uint64_t tsc_delta);
void vcpu_state_free(struct vcpu_state *s);

/* The MSRs worth carrying: KVM's list filtered to the ones that read back. */
int vcpu_msr_list(int kvm_fd, uint32_t *out, uint32_t max);

#endif
