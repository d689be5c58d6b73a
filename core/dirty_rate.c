#include "core/dirty_rate.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

static void *dirty_rate_thread(void *arg)
{
	struct dirty_rate *r = arg;
	struct dirty *d = r->vm->dirty;
	unsigned stripe = 0;   /* re-protected by the last harvest or sample */
	bool striped = true;   /* dirty_sample() works here (bitmap mode) */
	uint64_t last;
	int ret;

	/* The first harvest after start reports every page: not a rate. */
	ret = dirty_harvest(d, &r->set);
	/* Once per VM, in the background: the pages a sender may skip (dirty.h). */
	if (!ret) {
		int s = dirty_written_scan(d, r->vm->mem.base, &r->stop);

		if (s && s != -EALREADY && s != -EINTR)
			log_debug("dirty: no written map: %s", strerror(-s));
	}
	last = now_ns();
	pthread_mutex_lock(&r->lock);
	while (!ret && !r->stop) {
		uint64_t deadline = last + r->interval_ns, now, count = 0;
		struct timespec ts = {
			.tv_sec = (time_t)(deadline / 1000000000ull),
			.tv_nsec = (long)(deadline % 1000000000ull),
		};

		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		if (r->stop)
			break;
		if (now_ns() < deadline)
			continue;
		pthread_mutex_unlock(&r->lock);
		/*
		 * A stripe of the pages, not all of them: a full harvest each
		 * time re-protects every page the guest writes, and a busy
		 * guest would pay a fault on each, every interval (dirty.h).
		 */
		if (striped) {
			uint64_t hits;

			ret = dirty_sample(d, stripe, (stripe + 1) % DIRTY_STRIPES, &hits);
			count = hits * DIRTY_STRIPES;
			stripe = (stripe + 1) % DIRTY_STRIPES;
			if (ret == -EOPNOTSUPP) {
				striped = false;
				log_debug("dirty: %s mode: the sampler harvests all pages",
					  dirty_mode_name(d->mode));
			}
		}
		if (!striped) {
			ret = dirty_harvest(d, &r->set);
			count = r->set.count;
		}
		now = now_ns();
		pthread_mutex_lock(&r->lock);
		if (!ret) {
			r->window_ns = now - last;
			r->pages_per_s = (double)count * 1e9 / (double)r->window_ns;
		}
		last = now;
	}
	pthread_mutex_unlock(&r->lock);
	if (ret)
		log_warn("dirty-rate sampler stopped: %s", strerror(-ret));
	return NULL;
}

void dirty_rate_init(struct dirty_rate *r)
{

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	cond_init_monotonic(&r->cond);
}

void dirty_rate_destroy(struct dirty_rate *r)
{
	dirty_rate_stop(r);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
}

/*
 * Under the lock, and never re-initialising it: a stats request may read
 * the rate at any time, also while a failed migration hands tracking back
 * and restarts the sampler.
 */
int dirty_rate_start(struct dirty_rate *r, struct vm *vm, uint64_t interval_ms)
{
	bool tracking = false;
	int ret;

	pthread_mutex_lock(&r->lock);
	if (r->running) {
		pthread_mutex_unlock(&r->lock);
		return -EBUSY;
	}
	r->vm = vm;
	r->interval_ns = interval_ms * 1000000ull;
	r->stop = false;
	r->pages_per_s = 0;
	r->window_ns = 0;
	ret = dirty_set_init(&r->set, vm->dirty->nr_pages);
	if (!ret) {
		ret = dirty_start(vm->dirty);
		tracking = !ret;
	}
	if (!ret)
		ret = -pthread_create(&r->thread, NULL, dirty_rate_thread, r);
	if (ret) {
		if (tracking)
			dirty_stop(vm->dirty);
		dirty_set_free(&r->set);
	} else {
		r->running = true;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void dirty_rate_stop(struct dirty_rate *r)
{
	pthread_mutex_lock(&r->lock);
	if (!r->running || r->stop) {
		/* Not running, or another caller is stopping it. */
		pthread_mutex_unlock(&r->lock);
		return;
	}
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	/* running stays set until here: no start can reuse thread or set. */
	pthread_join(r->thread, NULL);
	dirty_stop(r->vm->dirty);
	dirty_set_free(&r->set);
	pthread_mutex_lock(&r->lock);
	r->running = false;
	r->pages_per_s = 0;
	r->window_ns = 0;
	pthread_mutex_unlock(&r->lock);
}

double dirty_rate_get(struct dirty_rate *r, uint64_t *window_ns)
{
	double v = 0;

	pthread_mutex_lock(&r->lock);
	*window_ns = 0;
	if (r->running && !r->stop) {
		v = r->pages_per_s;
		*window_ns = r->window_ns;
	}
	pthread_mutex_unlock(&r->lock);
	return v;
}
