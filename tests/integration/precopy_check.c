/*
 * Pre-copy without a network: copy all of guest RAM while the guest runs,
 * keep copying what dirty tracking reports, then pause, copy the last
 * harvest, and compare the copy with guest RAM page by page. Any page that
 * differs was written and never reported: the one thing migration must
 * never get wrong. Runs in both tracking modes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

static int run(const char *guest, const char *args, enum dirty_mode mode, unsigned rounds)
{
	struct vm_config cfg;
	struct dirty_set set;
	struct vm *vm;
	uint8_t *copy;
	char err[VM_ERR_LEN];
	uint64_t pfn, bad = 0, sent = 0;
	int ret = 1;

	vm_config_init(&cfg);
	cfg.guest_path = guest;
	cfg.mem_size = 128ull << 20;
	cfg.dirty_mode = mode;
	cfg.args = args;
	cfg.console_fd = -1;
	if (vm_create(&cfg, &vm, err)) {
		fprintf(stderr, "precopy: %s\n", err);
		return 1;
	}
	copy = malloc(vm->mem.size);
	if (!copy || dirty_set_init(&set, vm->dirty->nr_pages) || vm_start(vm))
		goto out;
	usleep(300000);
	if (dirty_start(vm->dirty) || dirty_harvest(vm->dirty, &set))
		goto out;
	for (unsigned r = 0; r <= rounds; r++) {
		if (r == rounds && vm_pause(vm))
			goto out;
		if (r > 0 && dirty_harvest(vm->dirty, &set))
			goto out;
		dirty_set_for_each(&set, pfn) {
			memcpy(copy + pfn * 4096, vm->mem.base + pfn * 4096, 4096);
			sent++;
		}
		usleep(100000);
	}
	for (pfn = 0; pfn < mem_pages(&vm->mem); pfn++) {
		if (memcmp(copy + pfn * 4096, vm->mem.base + pfn * 4096, 4096)) {
			if (bad++ < 8)
				fprintf(stderr, "precopy: %s: page 0x%llx (gpa 0x%llx) changed and was "
					"never reported\n", dirty_mode_name(mode),
					(unsigned long long)pfn, (unsigned long long)pfn * 4096);
		}
	}
	printf("precopy: %s, guest '%s': %u rounds, %llu pages copied, %llu lost\n",
	       dirty_mode_name(mode), args, rounds, (unsigned long long)sent,
	       (unsigned long long)bad);
	ret = bad ? 1 : 0;
out:
	vm_stop(vm, "done");
	vm_wait(vm);
	dirty_set_free(&set);
	free(copy);
	vm_destroy(vm);
	return ret;
}

int main(int argc, char **argv)
{
	static const char *const loads[] = { "ws=0 fillsz=16M", "ws=8M fillsz=16M" };
	int fails = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: precopy_check GUEST_DIRTIER\n");
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm is not available\n");
		return 77;
	}
	log_init("precopy_check", LOGL_WARN, false);
	for (unsigned l = 0; l < 2; l++) {
		fails += run(argv[1], loads[l], DIRTY_MODE_BITMAP, 3);
		fails += run(argv[1], loads[l], DIRTY_MODE_RING, 3);
	}
	return fails ? 1 : 0;
}
