/* Thin wrappers over /dev/kvm: system and VM file descriptors, capabilities. */
#ifndef FERRY_KVM_H
#define FERRY_KVM_H

#include <linux/kvm.h>
#include <stdint.h>

#define KVM_DEV_PATH "/dev/kvm"

/* Open /dev/kvm and check the API version; returns an fd or -errno. */
int kvm_open(void);
/* KVM_CHECK_EXTENSION on a system or VM fd; <= 0 means absent. */
int kvm_cap(int fd, long cap);
/* KVM_ENABLE_CAP on a VM fd; 0 or -errno. */
int kvm_enable_cap(int vm_fd, uint32_t cap, uint64_t arg0);
/* Bytes of a vCPU's XSAVE area (KVM_CAP_XSAVE2 where offered). */
int kvm_xsave_size(int vm_fd);
struct cpuid_table;
/* KVM_GET_SUPPORTED_CPUID on a system fd into t; 0 or -errno. */
int kvm_supported_cpuid(int kvm_fd, struct cpuid_table *t);
/*
 * The TSC frequency KVM gives a new vCPU, in kHz: there is no system-wide
 * ioctl for it, so a scratch VM with one vCPU is created and dropped.
 * 0 or -errno.
 */
int kvm_tsc_khz(int kvm_fd, uint64_t *khz);
/* Name of a KVM_EXIT_* reason for messages. */
const char *kvm_exit_name(uint32_t reason);

#endif
