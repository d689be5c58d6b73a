/* vmon --fence-s: the timer thread, renewed by keepalives (core/fence.h). */
#include "core/fence.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/ticker.h"
#include "core/util.h"
#include "core/vm.h"
#include "core/vm_dev.h"

struct fence {
	struct vm *vm;
	struct ticker tk;       /* its lock guards the fields below */
	uint64_t period_ns;
	uint64_t deadline_ns;   /* now_ns() clock */
	bool fired;
};

static void *fence_main(void *arg)
{
	struct fence *f = arg;

	pthread_mutex_lock(&f->tk.lock);
	while (!f->tk.quit) {
		if (now_ns() >= f->deadline_ns) {
			f->fired = true;
			break;
		}
		ticker_wait(&f->tk, f->deadline_ns);
	}
	pthread_mutex_unlock(&f->tk.lock);
	if (f->fired) {
		unsigned s = (unsigned)(f->period_ns / 1000000000ull);

		log_err("fenced: no keepalive from the node agent for %u s (its host may be cut "
			  "off from the cluster, which then restarts HA VMs elsewhere): stopping "
			  "the VM for good", s);
		vm_finish(f->vm, VM_STOPPED, VM_EXIT_FENCED, "fenced: no keepalive from the node "
			  "agent for %u s", s);
		/*
		 * A disk on network storage that this host lost with the
		 * cluster would hold the stop (and the disk's lease) until the
		 * connection gave up, minutes on: the restart elsewhere would
		 * then find the disk in use. Cut it off now.
		 */
		vm_devs_abort(f->vm);
	}
	return NULL;
}

int fence_start(struct vm *vm, unsigned period_s, struct fence **out)
{
	struct fence *f = calloc(1, sizeof(*f));
	int ret;

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->vm = vm;
	f->period_ns = period_s * 1000000000ull;
	f->deadline_ns = now_ns() + f->period_ns;
	ret = ticker_start(&f->tk, fence_main, f);
	if (ret) {
		free(f);
		return ret;
	}
	*out = f;
	return 0;
}

void fence_renew(struct fence *f)
{
	pthread_mutex_lock(&f->tk.lock);
	/* Once fired the guest is stopping: a late keepalive cannot bring it back. */
	if (!f->fired)
		f->deadline_ns = now_ns() + f->period_ns;
	pthread_mutex_unlock(&f->tk.lock);
}

void fence_set_period(struct fence *f, unsigned period_s)
{
	pthread_mutex_lock(&f->tk.lock);
	f->period_ns = period_s * 1000000000ull;
	if (!f->fired)
		f->deadline_ns = now_ns() + f->period_ns;
	ticker_kick(&f->tk);
	pthread_mutex_unlock(&f->tk.lock);
}

uint64_t fence_left_ms(struct fence *f)
{
	uint64_t now = now_ns(), left;

	pthread_mutex_lock(&f->tk.lock);
	left = f->fired || now >= f->deadline_ns ? 0 : (f->deadline_ns - now) / 1000000;
	pthread_mutex_unlock(&f->tk.lock);
	return left;
}

unsigned fence_period_s(const struct fence *f)
{
	return (unsigned)(f->period_ns / 1000000000ull);
}

void fence_stop(struct fence *f)
{
	if (!f)
		return;
	ticker_stop(&f->tk);
	free(f);
}
