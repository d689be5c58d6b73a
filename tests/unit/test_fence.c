/*
 * vmon --fence-s (core/fence.c): keepalives hold the fence off; without
 * them it stops the VM for good with exit status 5 and says why; a late
 * keepalive does not undo it; the control socket's keepalive reaches it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "core/ctl.h"
#include "core/fence.h"
#include "core/util.h"
#include "core/vm.h"

/* Just what vm_finish and the control handler touch: no KVM. */
static void vm_fake(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->state = VM_RUNNING;
}

static bool vm_stopped(struct vm *vm)
{
	bool s;

	pthread_mutex_lock(&vm->lock);
	s = vm->stop_req;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

static void keepalive(struct vm *vm, int want_error)
{
	static Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Response resp;

	req.cmd_case = FERRY__CTL__REQUEST__CMD_KEEPALIVE;
	req.keepalive = &empty;
	ctl_handle(vm, NULL, NULL, &req, &resp);
	assert_int_equal(resp.error, want_error);
	if (want_error)
		assert_non_null(strstr(resp.message, "without --fence-s"));
	else
		assert_int_equal(resp.status->fence_s, 1);
}

static void test_keepalives_hold_it_off(void **state)
{
	struct vm vm;
	uint64_t t0 = now_ns();

	vm_fake(&vm);
	assert_int_equal(fence_start(&vm, 1, &vm.fence), 0);
	assert_int_equal(fence_period_s(vm.fence), 1);
	/* 2 s of keepalives every 300 ms, over the control handler. */
	while (now_ns() - t0 < 2000000000ull) {
		usleep(300 * 1000);
		keepalive(&vm, 0);
		assert_false(vm_stopped(&vm));
		assert_true(fence_left_ms(vm.fence) > 500 && fence_left_ms(vm.fence) <= 1000);
	}
	fence_stop(vm.fence);
	assert_false(vm_stopped(&vm));
}

static void test_silence_fences(void **state)
{
	struct vm vm;
	uint64_t t0, ms;

	vm_fake(&vm);
	assert_int_equal(fence_start(&vm, 1, &vm.fence), 0);
	t0 = now_ns();
	while (!vm_stopped(&vm) && now_ns() - t0 < 3000000000ull)
		usleep(10 * 1000);
	ms = (now_ns() - t0) / 1000000;
	print_message("fenced after %llu ms (--fence-s 1)\n", (unsigned long long)ms);
	assert_true(vm_stopped(&vm));
	assert_true(ms >= 950 && ms < 1500);
	assert_int_equal(vm.exit_status, VM_EXIT_FENCED);
	assert_int_equal(vm.state, VM_STOPPED);
	assert_non_null(strstr(vm.reason, "fenced: no keepalive from the node agent for 1 s"));
	/* Too late: the VM stays stopped, and the fence says so. */
	fence_renew(vm.fence);
	assert_int_equal(fence_left_ms(vm.fence), 0);
	fence_stop(vm.fence);
}

static void test_without_fence(void **state)
{
	struct vm vm;

	vm_fake(&vm);
	keepalive(&vm, -ENOTSUP);
	fence_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keepalives_hold_it_off),
		cmocka_unit_test(test_silence_fences),
		cmocka_unit_test(test_without_fence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
