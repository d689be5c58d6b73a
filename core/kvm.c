#include "core/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/cpumodel.h"
#include "core/log.h"
#include "core/util.h"

int kvm_open(void)
{
	int fd, ver;

	fd = open(KVM_DEV_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		log_err("%s: KVM API version %d, expected %d", KVM_DEV_PATH,
			ver, KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int kvm_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

int kvm_enable_cap(int vm_fd, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap ec = { .cap = cap, .args = { arg0 } };

	return ioctl(vm_fd, KVM_ENABLE_CAP, &ec) ? -errno : 0;
}

int kvm_xsave_size(int vm_fd)
{
	int n = kvm_cap(vm_fd, KVM_CAP_XSAVE2);

	return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

int kvm_supported_cpuid(int kvm_fd, struct cpuid_table *t)
{
	memset(t, 0, sizeof(*t));
	t->hdr.nent = CPUID_MAX_ENTRIES;
	return ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, t) ? -errno : 0;
}

int kvm_tsc_khz(int kvm_fd, uint64_t *khz)
{
	int vm_fd, vcpu_fd = -1, ret;

	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0)
		return -errno;
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0UL);
	if (vcpu_fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (ret < 0) {
		ret = -errno;
		goto out;
	}
	*khz = (uint64_t)ret;
	ret = 0;
out:
	if (vcpu_fd >= 0)
		close(vcpu_fd);
	close(vm_fd);
	return ret;
}

const char *kvm_exit_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN",
		[KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
		[KVM_EXIT_IO] = "KVM_EXIT_IO",
		[KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
		[KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG",
		[KVM_EXIT_HLT] = "KVM_EXIT_HLT",
		[KVM_EXIT_MMIO] = "KVM_EXIT_MMIO",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "KVM_EXIT_IRQ_WINDOW_OPEN",
		[KVM_EXIT_SHUTDOWN] = "KVM_EXIT_SHUTDOWN",
		[KVM_EXIT_FAIL_ENTRY] = "KVM_EXIT_FAIL_ENTRY",
		[KVM_EXIT_INTR] = "KVM_EXIT_INTR",
		[KVM_EXIT_SET_TPR] = "KVM_EXIT_SET_TPR",
		[KVM_EXIT_TPR_ACCESS] = "KVM_EXIT_TPR_ACCESS",
		[KVM_EXIT_NMI] = "KVM_EXIT_NMI",
		[KVM_EXIT_INTERNAL_ERROR] = "KVM_EXIT_INTERNAL_ERROR",
		[KVM_EXIT_SYSTEM_EVENT] = "KVM_EXIT_SYSTEM_EVENT",
		[KVM_EXIT_DIRTY_RING_FULL] = "KVM_EXIT_DIRTY_RING_FULL",
	};

	if (reason < ARRAY_SIZE(names) && names[reason])
		return names[reason];
	return "KVM_EXIT_(unknown)";
}
