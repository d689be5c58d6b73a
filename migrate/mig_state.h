/*
 * Between a VM and the stream's structured records: what the source packs
 * and what the destination checks and applies. Every unpack validates
 * sizes and ranges before it trusts a field: the bytes came off a network.
 */
#ifndef FERRY_MIG_STATE_H
#define FERRY_MIG_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/vcpu_state.h"
#include "core/vm.h"
#include "stream.pb-c.h"

#define MIG_ERR_LEN 512
#define MIG_DEVICE_HCALL "hcall"
#define MIG_DEVICE_HCALL_VERSION 1

/* A packed message plus the storage its pointers refer to. */
struct mig_cpu_pack {
	Ferry__Mig__CpuModel msg;
	Ferry__Mig__CpuidEntry entries[CPUID_MAX_ENTRIES];
	Ferry__Mig__CpuidEntry *ptrs[CPUID_MAX_ENTRIES];
	const char *features[256];
};

struct mig_vcpu_pack {
	Ferry__Mig__VcpuState msg;
	Ferry__Mig__Msr msrs[VCPU_STATE_MAX_MSRS];
	Ferry__Mig__Msr *ptrs[VCPU_STATE_MAX_MSRS];
};

struct mig_config_pack {
	Ferry__Mig__VmConfig msg;
	Ferry__Mig__Region regions[MEM_MAX_REGIONS];
	Ferry__Mig__Region *ptrs[MEM_MAX_REGIONS];
};

void mig_pack_config(const struct vm *vm, struct mig_config_pack *p);
void mig_pack_cpu(const struct vm *vm, struct mig_cpu_pack *p);
void mig_pack_vcpu(const struct vcpu_state *s, unsigned index, struct mig_vcpu_pack *p);
/* The hcall device: the guest's reported and published values. */
int mig_pack_hcall(const struct vm *vm, Ferry__Mig__DeviceState *d, uint8_t **buf);

/* Turn records into a VM config and CPUID; -EBADMSG with the reason. */
int mig_unpack_config(const Ferry__Mig__VmConfig *m, struct vm_config *cfg,
		      char *err);
int mig_unpack_cpu(const Ferry__Mig__CpuModel *m, struct cpuid_table *cpuid,
		   uint64_t *xcr0, char *model, size_t model_len, char *err);
int mig_unpack_vcpu(const Ferry__Mig__VcpuState *m, unsigned nr_vcpus,
		    struct vcpu_state *s, unsigned *index, char *err);
int mig_unpack_hcall(struct vm *vm, const Ferry__Mig__DeviceState *d, char *err);

/* The VM's devices with a state (disks), packed as DEVICE_STATE carries them. */
struct mig_dev_states {
	Ferry__Mig__DeviceState ds[VM_DEVS_MAX];
	Ferry__Mig__DeviceState *ptrs[VM_DEVS_MAX];
	unsigned n;
};
int mig_dev_states_pack(const struct vm *vm, struct mig_dev_states *s);
void mig_dev_states_free(struct mig_dev_states *s);

/* XXH3-128 of all guest RAM, for verify mode. */
void mig_ram_digest(const struct vm *vm, uint8_t out[16]);

#endif
