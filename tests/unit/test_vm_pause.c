/*
 * Who holds a VM paused (core/vm.c), on a struct vm without KVM: the
 * program's own pauses (a switchover, auto-converge, a snapshot) end with
 * vm_resume_own and never undo the operator's pause or a device's; the
 * operator's resume waits while one of the program's own is in force.
 * Until session 27 any of them resumed whatever paused the VM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "core/vm.h"
#include "tests/fake_vm.h"

static enum vm_state state(struct vm *vm)
{
	return vm_get_state(vm);
}

/* A migration's pause over the operator's: a failed one leaves it paused. */
static void test_own_over_user(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);
	char why[VM_ERR_LEN];

	(void)unused;
	assert_int_equal(vm_pause_user(vm), 0);
	assert_true(vm_held(vm, why, sizeof(why)));
	assert_string_equal(why, "paused by the operator");
	assert_int_equal(vm_pause(vm), 0);        /* the switchover */
	assert_int_equal(vm_resume(vm), -EBUSY);  /* not under the switchover */
	assert_int_equal(vm_resume_own(vm), 0);   /* it failed: its pause ends */
	assert_int_equal(state(vm), VM_PAUSED);   /* the operator's holds */
	assert_int_equal(vm_resume(vm), 0);
	assert_int_equal(state(vm), VM_RUNNING);
	assert_false(vm_held(vm, NULL, 0));
	fake_vm_free(vm);
}

/* Two of the program's own (auto-converge, then a snapshot): the last one out resumes. */
static void test_own_nested(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);

	(void)unused;
	assert_int_equal(vm_pause(vm), 0);
	assert_int_equal(vm_pause(vm), 0);
	assert_int_equal(vm_resume_own(vm), 0);
	assert_int_equal(state(vm), VM_PAUSED);
	assert_int_equal(vm_resume_own(vm), 0);
	assert_int_equal(state(vm), VM_RUNNING);
	fake_vm_free(vm);
}

/* A device's pause (its reason) holds too; the operator's resume clears it. */
static void test_device_held(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);
	char why[VM_ERR_LEN];

	(void)unused;
	assert_int_equal(vm_pause(vm), 0);
	snprintf(vm->pause_reason, sizeof(vm->pause_reason), "disk 0 (/x): the storage is full");
	assert_int_equal(vm_resume_own(vm), 0);
	assert_int_equal(state(vm), VM_PAUSED);
	assert_true(vm_held(vm, why, sizeof(why)));
	assert_string_equal(why, "disk 0 (/x): the storage is full");
	assert_int_equal(vm_resume(vm), 0);
	assert_int_equal(state(vm), VM_RUNNING);
	assert_false(vm_held(vm, NULL, 0));
	fake_vm_free(vm);
}

/* The operator pausing during one of the program's own pauses: it holds after that ends. */
static void test_user_during_own(void **unused)
{
	struct vm *vm = fake_vm_make(2 << 20);

	(void)unused;
	assert_int_equal(vm_pause(vm), 0);        /* auto-converge's off time */
	assert_int_equal(vm_pause_user(vm), 0);
	assert_int_equal(vm_resume_own(vm), 0);
	assert_int_equal(state(vm), VM_PAUSED);
	assert_int_equal(vm_resume(vm), 0);
	assert_int_equal(state(vm), VM_RUNNING);
	fake_vm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_over_user),
		cmocka_unit_test(test_own_nested),
		cmocka_unit_test(test_device_held),
		cmocka_unit_test(test_user_during_own),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
