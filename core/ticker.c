/* The timer thread of the fence and of auto-resume (core/ticker.h). */
#include "core/ticker.h"

#include <time.h>

#include "core/util.h"

int ticker_start(struct ticker *t, void *(*fn)(void *), void *arg)
{
	int ret;

	t->quit = false;
	pthread_mutex_init(&t->lock, NULL);
	cond_init_monotonic(&t->cond);
	ret = -pthread_create(&t->th, NULL, fn, arg);
	if (ret) {
		pthread_cond_destroy(&t->cond);
		pthread_mutex_destroy(&t->lock);
	}
	return ret;
}

void ticker_wait(struct ticker *t, uint64_t deadline_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000ull),
			       .tv_nsec = (long)(deadline_ns % 1000000000ull) };

	if (!t->quit)
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
}

void ticker_kick(struct ticker *t)
{
	pthread_cond_signal(&t->cond);
}

void ticker_stop(struct ticker *t)
{
	pthread_mutex_lock(&t->lock);
	t->quit = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->th, NULL);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}
