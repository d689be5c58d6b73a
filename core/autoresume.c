/* vmon --auto-resume-s: the thread that retries a device's pause (core/autoresume.h). */
#include "core/autoresume.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/ticker.h"
#include "core/util.h"
#include "core/vm.h"
#include "core/vm_dev.h"

struct autoresume {
	struct vm *vm;
	struct ticker tk;       /* its lock guards the fields below */
	uint64_t period_ns;
	bool changed;           /* a new period: the wait starts again */
};

/* Only a device's own pause, with nothing else holding the VM. */
static bool device_paused(struct vm *vm, char *reason, size_t len)
{
	bool yes;

	pthread_mutex_lock(&vm->lock);
	yes = (vm->state == VM_PAUSED || vm->state == VM_CREATED) && vm->pause_reason[0] &&
	      !vm->user_paused && !vm->own_pauses && !vm->resuming && !vm->stop_req;
	snprintf(reason, len, "%s", vm->pause_reason);
	pthread_mutex_unlock(&vm->lock);
	return yes;
}

static void *autoresume_main(void *arg)
{
	struct autoresume *ar = arg;
	uint64_t wait, max = AUTORESUME_MAX_WAIT_S * 1000000000ull;
	char reason[VM_ERR_LEN], why[VM_ERR_LEN], said[VM_ERR_LEN] = "";

	pthread_mutex_lock(&ar->tk.lock);
	wait = ar->period_ns;
	while (!ar->tk.quit) {
		uint64_t until = now_ns() + wait, period;

		while (!ar->tk.quit && !ar->changed && now_ns() < until)
			ticker_wait(&ar->tk, until);
		if (ar->tk.quit)
			break;
		period = ar->period_ns;
		if (ar->changed) {
			ar->changed = false;
			wait = period;
			continue;
		}
		pthread_mutex_unlock(&ar->tk.lock);
		if (!device_paused(ar->vm, reason, sizeof(reason))) {
			wait = period;
			said[0] = 0;
		} else if (!vm_devs_retry_ready(ar->vm, why, sizeof(why))) {
			/* Said once per cause: a full disk is looked at every period. */
			if (strcmp(said, why))
				log_info("%s: auto-resume: not yet: %s", ar->vm->cfg.name, why);
			snprintf(said, sizeof(said), "%s", why);
		} else {
			log_warn("%s: auto-resume: trying again (%s)", ar->vm->cfg.name, reason);
			said[0] = 0;
			if (!vm_resume(ar->vm)) {
				log_warn("%s: auto-resume: resumed; a request that fails again "
					 "pauses it again", ar->vm->cfg.name);
				/*
				 * Its next pause is a new one: kept doubled, a
				 * storage that went away a few times in a row
				 * was looked at minutes late (clsoak --outages).
				 */
				wait = period;
			} else {
				/* Until it runs again, each failed try waits twice as long. */
				wait = wait * 2 > max ? max : wait * 2;
			}
		}
		pthread_mutex_lock(&ar->tk.lock);
	}
	pthread_mutex_unlock(&ar->tk.lock);
	return NULL;
}

int autoresume_start(struct vm *vm, unsigned period_s, struct autoresume **out)
{
	struct autoresume *ar = calloc(1, sizeof(*ar));
	int ret;

	*out = NULL;
	if (!ar)
		return -ENOMEM;
	ar->vm = vm;
	ar->period_ns = period_s * 1000000000ull;
	ret = ticker_start(&ar->tk, autoresume_main, ar);
	if (ret) {
		free(ar);
		return ret;
	}
	*out = ar;
	return 0;
}

void autoresume_set_period(struct autoresume *ar, unsigned period_s)
{
	pthread_mutex_lock(&ar->tk.lock);
	ar->period_ns = period_s * 1000000000ull;
	ar->changed = true;
	ticker_kick(&ar->tk);
	pthread_mutex_unlock(&ar->tk.lock);
}

unsigned autoresume_period_s(struct autoresume *ar)
{
	unsigned s;

	pthread_mutex_lock(&ar->tk.lock);
	s = (unsigned)(ar->period_ns / 1000000000ull);
	pthread_mutex_unlock(&ar->tk.lock);
	return s;
}

void autoresume_stop(struct autoresume *ar)
{
	if (!ar)
		return;
	ticker_stop(&ar->tk);
	free(ar);
}
