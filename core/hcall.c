/* Hypercall handlers: one function per call, chosen from an ops table. */
#include "core/hcall.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

typedef int64_t (*hcall_fn)(struct vcpu *v, const struct hcall_req *r);

static int64_t hc_console_write(struct vcpu *v, const struct hcall_req *r)
{
	struct vm *vm = v->vm;
	char buf[GABI_CONSOLE_MAX];
	const void *src = mem_ptr(&vm->mem, r->args[0], r->args[1]);
	int ret;

	/* Copy first: other vCPUs may rewrite the buffer while we write. */
	memcpy(buf, src, r->args[1]);
	v->stats.hcalls_console++;
	pthread_mutex_lock(&vm->console_lock);
	ret = write_full(vm->cfg.console_fd, buf, r->args[1]);
	pthread_mutex_unlock(&vm->console_lock);
	return ret ? ret : (int64_t)r->args[1];
}

static int64_t hc_exit(struct vcpu *v, const struct hcall_req *r)
{
	vm_finish(v->vm, VM_STOPPED, (int)r->args[0],
		  "guest exited with code %d (vCPU %u)", (int)r->args[0], v->index);
	return 0;
}

static int64_t hc_sleep(struct vcpu *v, const struct hcall_req *r)
{
	struct vm *vm = v->vm;
	uint64_t deadline = now_ns() + r->args[0];

	v->stats.hcalls_sleep++;
	if (!r->args[0]) {
		sched_yield();
		return 0;
	}
	/* A pause parks the vCPU inside its sleep; a stop ends it. */
	while (vm_vcpu_checkpoint(v)) {
		uint64_t now = now_ns();
		struct timespec ts;

		if (now >= deadline)
			break;
		ts.tv_sec = (time_t)(deadline / 1000000000ull);
		ts.tv_nsec = (long)(deadline % 1000000000ull);
		pthread_mutex_lock(&vm->lock);
		if (!vm->pause_req && !vm->stop_req)
			pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
		pthread_mutex_unlock(&vm->lock);
	}
	return 0;
}

static int64_t hc_set_value(struct vcpu *v, const struct hcall_req *r, bool live)
{
	struct vm *vm = v->vm;
	char name[GABI_NAME_MAX + 1];
	struct vm_value *val = NULL;

	memcpy(name, mem_ptr(&vm->mem, r->args[0], r->args[1]), r->args[1]);
	name[r->args[1]] = 0;
	if (!hcall_name_valid(name, r->args[1]))
		return -EINVAL;

	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_values && !val; i++)
		if (!strcmp(vm->values[i].name, name))
			val = &vm->values[i];
	if (!val && vm->nr_values < GABI_REPORTS_MAX) {
		val = &vm->values[vm->nr_values++];
		strcpy(val->name, name);
	}
	if (val) {
		val->value = live ? 0 : r->args[2];
		val->live_gpa = live ? r->args[2] : 0;
	}
	pthread_mutex_unlock(&vm->lock);
	return val ? 0 : -ENOSPC;
}

static int64_t hc_report(struct vcpu *v, const struct hcall_req *r)
{
	return hc_set_value(v, r, false);
}

static int64_t hc_publish(struct vcpu *v, const struct hcall_req *r)
{
	return hc_set_value(v, r, true);
}

/* Disks live in storage/, NICs in net/: the VM's devices take these. */
static int64_t hc_dev(struct vcpu *v, const struct hcall_req *r)
{
	return vm_devs_hcall(v->vm, v, r->nr, r->args);
}

static const hcall_fn hcall_ops[GABI_HC_NR_MAX] = {
	[GABI_HC_CONSOLE_WRITE] = hc_console_write,
	[GABI_HC_EXIT]          = hc_exit,
	[GABI_HC_SLEEP]         = hc_sleep,
	[GABI_HC_REPORT]        = hc_report,
	[GABI_HC_PUBLISH]       = hc_publish,
	[GABI_HC_BLK_INFO]      = hc_dev,
	[GABI_HC_BLK_SUBMIT]    = hc_dev,
	[GABI_HC_BLK_RING]      = hc_dev,
	[GABI_HC_BLK_KICK]      = hc_dev,
	[GABI_HC_NET_INFO]      = hc_dev,
	[GABI_HC_NET_SEND]      = hc_dev,
	[GABI_HC_NET_RECV]      = hc_dev,
};

void hcall_handle(struct vcpu *v)
{
	struct vm *vm = v->vm;
	uint64_t page_gpa = GABI_HCALL_GPA + v->index * GABI_PAGE_SIZE;
	struct gabi_hcall *page = mem_ptr(&vm->mem, page_gpa, GABI_PAGE_SIZE);
	struct hcall_req r;
	int64_t ret;

	ret = hcall_decode(page, vm->mem.size, &r);
	if (!ret)
		ret = hcall_ops[r.nr](v, &r);
	else
		log_debug("vCPU %u: hypercall %llu (%s) rejected: %s", v->index,
			  (unsigned long long)r.nr, hcall_name(r.nr), strerror((int)-ret));
	vm_write_guest(vm, page_gpa + offsetof(struct gabi_hcall, ret), &ret,
		       sizeof(ret));
}
