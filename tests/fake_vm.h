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

#include "core/vm.h"

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

/* A hypercall to the VM's first device, as the decoder would route it. */
static inline int64_t fake_vm_hcall(struct vm *vm, uint64_t nr, uint64_t a0, uint64_t a1)
{
	uint64_t a[GABI_HC_NARGS] = { a0, a1 };

	return vm->devs[0].ops->hcall(vm->devs[0].ctx, NULL, nr, a);
}

#endif
