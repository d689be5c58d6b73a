#include "core/vcpu_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/kvm.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

#define MSR_IA32_TSC 0x10

int vcpu_complete_exit(struct vcpu *v)
{
	int ret;

	v->run->immediate_exit = 1;
	ret = ioctl(v->fd, KVM_RUN, 0);
	v->run->immediate_exit = 0;
	/* With immediate_exit KVM finishes the exit and returns EINTR. */
	if (ret < 0 && errno != EINTR)
		return -errno;
	return 0;
}

int vcpu_msr_list(int kvm_fd, uint32_t *out, uint32_t max)
{
	struct {
		struct kvm_msr_list hdr;
		uint32_t idx[1024];
	} list = { .hdr.nmsrs = 1024 };

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list))
		return -errno;
	if (list.hdr.nmsrs > max)
		list.hdr.nmsrs = max;
	memcpy(out, list.idx, list.hdr.nmsrs * sizeof(uint32_t));
	return (int)list.hdr.nmsrs;
}

/* Read every MSR of the list that reads back; KVM stops at the first miss. */
static int vcpu_read_msrs(struct vcpu *v, struct vcpu_state *s)
{
	uint32_t idx[VCPU_STATE_MAX_MSRS];
	int n = vcpu_msr_list(v->vm->kvm_fd, idx, VCPU_STATE_MAX_MSRS);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VCPU_STATE_MAX_MSRS];
	} m;
	int done = 0;

	if (n < 0)
		return n;
	s->nr_msrs = 0;
	while (done < n) {
		int r;

		memset(&m, 0, sizeof(m));
		m.hdr.nmsrs = (uint32_t)(n - done);
		for (int i = 0; i < n - done; i++)
			m.e[i].index = idx[done + i];
		r = ioctl(v->fd, KVM_GET_MSRS, &m);
		if (r < 0)
			return -errno;
		for (int i = 0; i < r; i++) {
			if (m.e[i].index == MSR_IA32_TSC)
				s->tsc = m.e[i].data;
			else
				s->msrs[s->nr_msrs++] = m.e[i];
		}
		done += r + 1; /* skip the one KVM could not read */
	}
	return 0;
}

int vcpu_state_save(struct vcpu *v, struct vcpu_state *s)
{
	int size, ret;

	memset(s, 0, sizeof(*s));
	ret = vcpu_complete_exit(v);
	if (ret)
		return ret;
	s->exits_completed = true;
	if (ioctl(v->fd, KVM_GET_REGS, &s->regs) || ioctl(v->fd, KVM_GET_SREGS, &s->sregs) ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events) ||
	    ioctl(v->fd, KVM_GET_DEBUGREGS, &s->debugregs))
		return -errno;
	if (ioctl(v->fd, KVM_GET_XCRS, &s->xcrs))
		return -errno;

	/* KVM_CAP_XSAVE2 gives the size of the area with dynamic features. */
	size = kvm_xsave_size(v->vm->vm_fd);
	s->xsave_len = (uint32_t)size;
	s->xsave = calloc(1, (size_t)size);
	if (!s->xsave)
		return -ENOMEM;
	if (ioctl(v->fd, size > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
		  s->xsave)) {
		ret = -errno;
		goto fail;
	}
	ret = vcpu_read_msrs(v, s);
	if (ret)
		goto fail;
	return 0;
fail:
	vcpu_state_free(s);
	return ret;
}

/*
 * Write MSRs. KVM may refuse some that it listed (paravirtual MSRs of
 * features the guest's CPUID does not announce): one that already holds
 * the saved value on this vCPU is skipped, any other refusal is an error.
 */
static int vcpu_write_msrs(struct vcpu *v, const struct kvm_msr_entry *e, uint32_t n)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VCPU_STATE_MAX_MSRS + 1];
	} m;
	uint32_t done = 0;

	while (done < n) {
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e[1];
		} cur = { .hdr.nmsrs = 1 };
		int r;

		m.hdr.nmsrs = n - done;
		memcpy(m.e, e + done, (n - done) * sizeof(*e));
		r = ioctl(v->fd, KVM_SET_MSRS, &m);
		if (r < 0)
			return -errno;
		done += (uint32_t)r;
		if (done == n)
			break;
		cur.e[0].index = e[done].index;
		if (ioctl(v->fd, KVM_GET_MSRS, &cur) != 1 || cur.e[0].data != e[done].data) {
			log_err("vCPU %u: KVM refused MSR 0x%x = 0x%llx", v->index,
				e[done].index, (unsigned long long)e[done].data);
			return -EINVAL;
		}
		done++;
	}
	return 0;
}

int vcpu_state_load(struct vcpu *v, const struct vcpu_state *s, uint64_t tsc_delta)
{
	struct kvm_msr_entry tsc = { .index = MSR_IA32_TSC, .data = s->tsc + tsc_delta };
	int ret;

	if (!s->exits_completed)
		return -EINVAL;
	if (ioctl(v->fd, KVM_SET_SREGS, &s->sregs) || ioctl(v->fd, KVM_SET_REGS, &s->regs))
		return -errno;
	if (s->xsave && ioctl(v->fd, KVM_SET_XSAVE, s->xsave))
		return -errno;
	if (s->xcrs.nr_xcrs && ioctl(v->fd, KVM_SET_XCRS, &s->xcrs))
		return -errno;
	ret = vcpu_write_msrs(v, s->msrs, s->nr_msrs);
	if (ret)
		return ret;
	/* The TSC last: other MSRs (TSC_ADJUST) must not shift it again. */
	ret = vcpu_write_msrs(v, &tsc, 1);
	if (ret)
		return ret;
	if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &s->events) ||
	    ioctl(v->fd, KVM_SET_DEBUGREGS, &s->debugregs))
		return -errno;
	return 0;
}

void vcpu_state_free(struct vcpu_state *s)
{
	free(s->xsave);
	s->xsave = NULL;
	s->xsave_len = 0;
}
