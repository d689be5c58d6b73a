/*
 * Auto-resume on a struct vm without KVM (core/autoresume.c), driven as
 * the cluster agent drives it, through the control handler's auto-resume
 * request: started on a running vmon, given a new period (the next look
 * that far from the change, not from the last one), stopped; a device's
 * pause ends by itself, the operator's never does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <unistd.h>

#include "core/autoresume.h"
#include "core/ctl.h"
#include "core/util.h"
#include "core/vm.h"
#include "tests/fake_vm.h"

/* vmon ctl auto-resume SECONDS: the error, and the period status then says. */
static int ctl_autoresume(struct vm *vm, unsigned seconds, unsigned *now_s)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__AutoResume ar = FERRY__CTL__AUTO_RESUME__INIT;
	Ferry__Ctl__Response resp;

	ar.seconds = seconds;
	req.cmd_case = FERRY__CTL__REQUEST__CMD_AUTO_RESUME;
	req.auto_resume = &ar;
	ctl_handle(vm, NULL, NULL, &req, &resp);
	assert_non_null(resp.status);
	*now_s = resp.status->auto_resume_s;
	return resp.error;
}

/* A device's pause, as blk_dev pauses a VM whose disk filled. */
static void device_pause(struct vm *vm)
{
	assert_int_equal(vm_pause(vm), 0);
	snprintf(vm->pause_reason, sizeof(vm->pause_reason), "disk 0 (/x): the storage is full");
	assert_int_equal(vm_resume_own(vm), 0);
	assert_int_equal(vm_get_state(vm), VM_PAUSED);
}

/* Polls for up to ms: whether the VM ran again by then. */
static bool runs_within(struct vm *vm, unsigned ms)
{
	for (uint64_t end = now_ns() + ms * 1000000ull; now_ns() < end; usleep(20000))
		if (vm_get_state(vm) == VM_RUNNING)
			return true;
	return vm_get_state(vm) == VM_RUNNING;
}

static void test_start_period_stop(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);
	unsigned s;

	(void)unused;
	assert_int_equal(ctl_autoresume(vm, 0, &s), 0);     /* none to stop: fine */
	assert_int_equal(s, 0);
	assert_int_equal(ctl_autoresume(vm, 600, &s), 0);
	assert_int_equal(s, 600);
	assert_non_null(vm->autoresume);
	assert_int_equal(ctl_autoresume(vm, 3601, &s), -EINVAL);
	assert_int_equal(s, 600);                            /* refused: unchanged */
	/* Paused by its disk, looked at every 600 s: nothing for now. */
	device_pause(vm);
	assert_false(runs_within(vm, 300));
	/* A new period counts from the change, not from the last look. */
	assert_int_equal(ctl_autoresume(vm, 1, &s), 0);
	assert_int_equal(s, 1);
	assert_true(runs_within(vm, 3000));
	assert_false(vm_held(vm, NULL, 0));
	/* Stopped: a device's pause waits for the operator again. */
	assert_int_equal(ctl_autoresume(vm, 0, &s), 0);
	assert_int_equal(s, 0);
	assert_null(vm->autoresume);
	device_pause(vm);
	assert_false(runs_within(vm, 1500));
	assert_int_equal(vm_resume(vm), 0);
	fake_vm_free(vm);
}

/*
 * A resume that went through starts the back-off anew: a storage that goes
 * away again soon after is looked at period_s later, not after the doubled
 * waits of the pause before (clsoak --outages saw a VM paused its third
 * time in a row stay so for a minute past the storage's return).
 */
static void test_backoff_ends_with_a_resume(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);
	unsigned s;

	(void)unused;
	assert_int_equal(ctl_autoresume(vm, 1, &s), 0);
	for (int i = 0; i < 4; i++) {
		device_pause(vm);
		assert_true(runs_within(vm, 1600));
	}
	assert_int_equal(ctl_autoresume(vm, 0, &s), 0);
	fake_vm_free(vm);
}

/* The operator's pause is never undone, also over a device's. */
static void test_operator_pause_stays(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);
	unsigned s;

	(void)unused;
	assert_int_equal(ctl_autoresume(vm, 1, &s), 0);
	device_pause(vm);
	assert_int_equal(vm_pause_user(vm), 0);
	assert_false(runs_within(vm, 1500));
	assert_int_equal(vm_resume(vm), 0);
	assert_int_equal(vm_get_state(vm), VM_RUNNING);
	assert_int_equal(ctl_autoresume(vm, 0, &s), 0);
	fake_vm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_period_stop),
		cmocka_unit_test(test_operator_pause_stays),
		cmocka_unit_test(test_backoff_ends_with_a_resume),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
