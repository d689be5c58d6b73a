/* The VM's device table: lifecycle calls fanned out to every device. */
#include "core/vm_dev.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/vm.h"

int vm_dev_attach(struct vm *vm, const struct vm_dev_ops *ops, void *ctx)
{
	if (vm->nr_devs >= VM_DEVS_MAX)
		return -ENOSPC;
	vm->devs[vm->nr_devs].ops = ops;
	vm->devs[vm->nr_devs].ctx = ctx;
	vm->nr_devs++;
	return 0;
}

void vm_devs_drain(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		if (vm->devs[i].ops->drain)
			vm->devs[i].ops->drain(vm->devs[i].ctx);
}

void vm_devs_abort(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		if (vm->devs[i].ops->abort)
			vm->devs[i].ops->abort(vm->devs[i].ctx);
}

void vm_devs_round_end(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		if (vm->devs[i].ops->round_end)
			vm->devs[i].ops->round_end(vm->devs[i].ctx);
}

int vm_devs_quiesce(struct vm *vm, char *err, size_t len)
{
	for (unsigned i = 0; i < vm->nr_devs; i++) {
		const struct vm_dev *d = &vm->devs[i];
		int ret = d->ops->quiesce ? d->ops->quiesce(d->ctx, err, len) : 0;

		if (ret)
			return ret;
	}
	return 0;
}

int vm_devs_acquire(struct vm *vm, char *err, size_t len)
{
	for (unsigned i = 0; i < vm->nr_devs; i++) {
		const struct vm_dev *d = &vm->devs[i];
		int ret = d->ops->acquire ? d->ops->acquire(d->ctx, err, len) : 0;

		if (ret) {
			/* All or nothing: a VM never runs with half its disks. */
			while (i--)
				if (vm->devs[i].ops->release)
					vm->devs[i].ops->release(vm->devs[i].ctx);
			return ret;
		}
	}
	return 0;
}

void vm_devs_release(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		if (vm->devs[i].ops->release)
			vm->devs[i].ops->release(vm->devs[i].ctx);
}

int vm_devs_resume(struct vm *vm, char *err, size_t len)
{
	for (unsigned i = 0; i < vm->nr_devs; i++) {
		const struct vm_dev *d = &vm->devs[i];
		int ret = d->ops->resume ? d->ops->resume(d->ctx, err, len) : 0;

		if (ret)
			return ret;
	}
	return 0;
}

bool vm_devs_retry_ready(struct vm *vm, char *why, size_t len)
{
	for (unsigned i = 0; i < vm->nr_devs; i++) {
		const struct vm_dev *d = &vm->devs[i];

		if (d->ops->retry_ready && !d->ops->retry_ready(d->ctx, why, len))
			return false;
	}
	return true;
}

void vm_devs_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		if (vm->devs[i].ops->destroy)
			vm->devs[i].ops->destroy(vm->devs[i].ctx);
	vm->nr_devs = 0;
}

int64_t vm_devs_hcall(struct vm *vm, struct vcpu *v, uint64_t nr, const uint64_t *args)
{
	for (unsigned i = 0; i < vm->nr_devs; i++) {
		const struct vm_dev_ops *ops = vm->devs[i].ops;

		if (ops->hcall && nr >= ops->hc_first && nr <= ops->hc_last)
			return ops->hcall(vm->devs[i].ctx, v, nr, args);
	}
	return -ENODEV;
}

unsigned vm_devs_stats(struct vm *vm, struct vm_dev_stat *out, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nr_devs && n < max; i++)
		if (vm->devs[i].ops->stats)
			n += vm->devs[i].ops->stats(vm->devs[i].ctx, out + n, max - n);
	return n;
}

static const struct vm_dev_type *vm_dev_types[VM_DEVS_MAX];

int vm_dev_type_register(const struct vm_dev_type *t)
{
	for (unsigned i = 0; i < VM_DEVS_MAX; i++) {
		if (vm_dev_types[i] == t)
			return 0;
		if (!vm_dev_types[i]) {
			vm_dev_types[i] = t;
			return 0;
		}
	}
	return -ENOSPC;
}

const struct vm_dev_type *vm_dev_type_find(const char *name)
{
	for (unsigned i = 0; i < VM_DEVS_MAX && vm_dev_types[i]; i++)
		if (!strcmp(vm_dev_types[i]->name, name))
			return vm_dev_types[i];
	return NULL;
}

static void *vm_pause_thread(void *arg)
{
	struct vm *vm = arg;

	/* Asked during a resume: pause what that resume starts (vm_resume). */
	pthread_mutex_lock(&vm->lock);
	while (vm->resuming)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	vm_pause_held(vm);
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED && !vm->pause_reason[0])
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", vm->pending_reason);
	vm->pause_pending = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

void vm_pause_for(struct vm *vm, const char *reason)
{
	bool spawn;
	pthread_t t;

	pthread_mutex_lock(&vm->lock);
	/* The first reason stays: later ones are the same outage seen again. */
	if (!vm->pause_reason[0])
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", reason);
	spawn = !vm->pause_pending && !vm->stop_req;
	vm->pause_pending |= spawn;
	if (spawn)
		snprintf(vm->pending_reason, sizeof(vm->pending_reason), "%s", reason);
	pthread_mutex_unlock(&vm->lock);
	if (!spawn)
		return;
	log_err("%s: pausing: %s", vm->cfg.name, reason);
	/*
	 * vm_pause waits for the devices to drain: not on the device's own
	 * thread. vm_destroy waits for this thread (pause_pending).
	 */
	if (!pthread_create(&t, NULL, vm_pause_thread, vm)) {
		pthread_detach(t);
		return;
	}
	pthread_mutex_lock(&vm->lock);
	vm->pause_pending = false;
	pthread_mutex_unlock(&vm->lock);
}

void vm_devs_wait_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->pause_pending)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}
