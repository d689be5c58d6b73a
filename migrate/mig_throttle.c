#include "migrate/mig_throttle.h"

#include <errno.h>
#include <time.h>

#include "core/util.h"

static void wait_ns(struct mig_throttle *t, uint64_t ns)
{
	uint64_t deadline = now_ns() + ns;
	struct timespec ts = {
		.tv_sec = (time_t)(deadline / 1000000000ull),
		.tv_nsec = (long)(deadline % 1000000000ull),
	};

	while (!t->stop && now_ns() < deadline)
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
}

static void *mig_throttle_thread(void *arg)
{
	struct mig_throttle *t = arg;
	const uint64_t period = MIG_THROTTLE_PERIOD_MS * 1000000ull;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		uint64_t off = period * t->pct / 100;

		if (!off) {
			wait_ns(t, period);
			continue;
		}
		pthread_mutex_unlock(&t->lock);
		if (vm_pause(t->vm)) {
			pthread_mutex_lock(&t->lock);
			break;       /* the VM stopped: nothing left to slow down */
		}
		pthread_mutex_lock(&t->lock);
		wait_ns(t, off);
		pthread_mutex_unlock(&t->lock);
		vm_resume_own(t->vm);
		pthread_mutex_lock(&t->lock);
		wait_ns(t, period - off);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

void mig_throttle_init(struct mig_throttle *t, struct vm *vm)
{

	t->vm = vm;
	t->pct = 0;
	t->running = t->stop = false;
	pthread_mutex_init(&t->lock, NULL);
	cond_init_monotonic(&t->cond);
}

int mig_throttle_set(struct mig_throttle *t, unsigned pct)
{
	if (pct > 99)
		pct = 99;
	if (!pct) {
		mig_throttle_stop(t);
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	t->pct = pct;
	pthread_mutex_unlock(&t->lock);
	if (!t->running) {
		t->stop = false;
		if (pthread_create(&t->thread, NULL, mig_throttle_thread, t))
			return -EAGAIN;
		t->running = true;
	}
	return 0;
}

void mig_throttle_stop(struct mig_throttle *t)
{
	if (!t->running)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	t->pct = 0;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	t->running = false;
}
