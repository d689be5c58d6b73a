/*
 * A struct vm without KVM, for tests and benchmarks of the devices: real
 * guest RAM (a memfd), the locks, a name, no vCPUs and no dirty tracking.
 * The caller plays the guest by writing that RAM.
 */
#ifndef FERRY_TESTS_FAKE_VM_H
#define FERRY_TESTS_FAKE_VM_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "core/vm_dev.h"

static inline struct vm *fake_vm_make(uint64_t mem_size)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	snprintf(vm->cfg.name, sizeof(vm->cfg.name), "fake");
	if (mem_create(&vm->mem, mem_size, 0)) {
		free(vm);
		return NULL;
	}
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->state = VM_RUNNING;
	return vm;
}

static inline void fake_vm_free(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		vm->devs[i].ops->destroy(vm->devs[i].ctx);
	mem_destroy(&vm->mem);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}

/* A hypercall to the VM's devices, as the decoder would route it. */
static inline int64_t fake_vm_hcall3(struct vm *vm, uint64_t nr, uint64_t a0, uint64_t a1,
				     uint64_t a2)
{
	uint64_t a[GABI_HC_NARGS] = { a0, a1, a2 };

	return vm_devs_hcall(vm, NULL, nr, a);
}

/* A device counter by its vmon ctl stats name, or UINT64_MAX if none. */
static inline uint64_t fake_vm_stat(struct vm *vm, const char *name)
{
	struct vm_dev_stat s[VM_DEV_STATS_MAX];
	unsigned n = vm_devs_stats(vm, s, VM_DEV_STATS_MAX);

	for (unsigned i = 0; i < n; i++)
		if (!strcmp(s[i].name, name))
			return s[i].value;
	return UINT64_MAX;
}

static inline int64_t fake_vm_hcall(struct vm *vm, uint64_t nr, uint64_t a0, uint64_t a1)
{
	return fake_vm_hcall3(vm, nr, a0, a1, 0);
}

#endif
