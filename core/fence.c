/* vmon --fence-s: the timer thread, renewed by keepalives (core/fence.h). */
#include "core/fence.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

struct fence {
	struct vm *vm;
	uint64_t period_ns;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* CLOCK_MONOTONIC */
	uint64_t deadline_ns;   /* now_ns() clock */
	bool fired, quit;
};

static void *fence_main(void *arg)
{
	struct fence *f = arg;

	pthread_mutex_lock(&f->lock);
	while (!f->quit) {
		uint64_t now = now_ns();
		struct timespec ts;

		if (now >= f->deadline_ns) {
			f->fired = true;
			break;
		}
		/* now_ns() is CLOCK_MONOTONIC, as the condition's clock. */
		ts.tv_sec = (time_t)(f->deadline_ns / 1000000000ull);
		ts.tv_nsec = (long)(f->deadline_ns % 1000000000ull);
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
	}
	pthread_mutex_unlock(&f->lock);
	if (f->fired) {
		unsigned s = (unsigned)(f->period_ns / 1000000000ull);

		log_err("fenced: no keepalive from the node agent for %u s (its host may be cut "
			  "off from the cluster, which then restarts HA VMs elsewhere): stopping "
			  "the VM for good", s);
		vm_finish(f->vm, VM_STOPPED, VM_EXIT_FENCED, "fenced: no keepalive from the node "
			  "agent for %u s", s);
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
	pthread_mutex_init(&f->lock, NULL);
	cond_init_monotonic(&f->cond);
	ret = -pthread_create(&f->th, NULL, fence_main, f);
	if (ret) {
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->lock);
		free(f);
		return ret;
	}
	*out = f;
	return 0;
}

void fence_renew(struct fence *f)
{
	pthread_mutex_lock(&f->lock);
	/* Once fired the guest is stopping: a late keepalive cannot bring it back. */
	if (!f->fired)
		f->deadline_ns = now_ns() + f->period_ns;
	pthread_mutex_unlock(&f->lock);
}

void fence_set_period(struct fence *f, unsigned period_s)
{
	pthread_mutex_lock(&f->lock);
	f->period_ns = period_s * 1000000000ull;
	if (!f->fired)
		f->deadline_ns = now_ns() + f->period_ns;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

uint64_t fence_left_ms(struct fence *f)
{
	uint64_t now = now_ns(), left;

	pthread_mutex_lock(&f->lock);
	left = f->fired || now >= f->deadline_ns ? 0 : (f->deadline_ns - now) / 1000000;
	pthread_mutex_unlock(&f->lock);
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
	pthread_mutex_lock(&f->lock);
	f->quit = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->th, NULL);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
