/*
 * vCPU state save/load on real KVM, without any stream: run a guest, pause
 * it, save every vCPU, build a second VM from the same CPUID, copy RAM and
 * state across, and let the copy run. The counter guest must continue from
 * the value it had, with no value repeated or skipped: this is a migration
 * with the network taken out, and it fails if a pending exit were replayed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vcpu_state.h"
#include "core/vm.h"

static int check_sequence(const char *path, unsigned *last)
{
	FILE *f = fopen(path, "r");
	char line[256];
	unsigned expect = 1, v;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char tail;

		if (sscanf(line, "counter: %u%c", &v, &tail) != 2 || tail != '\n')
			continue;
		if (v != expect) {
			fprintf(stderr, "clone: console says %u where %u was due\n", v, expect);
			fclose(f);
			return -1;
		}
		expect++;
	}
	fclose(f);
	*last = expect - 1;
	return 0;
}

int main(int argc, char **argv)
{
	char out_path[] = "/tmp/ferry-clone-XXXXXX";
	struct vm_config cfg;
	struct vm *a, *b;
	struct vcpu_state st[2];
	char err[VM_ERR_LEN];
	unsigned before, after;
	uint64_t t_save;
	int fd, status;

	if (argc < 2) {
		fprintf(stderr, "usage: state_clone GUEST_COUNTER\n");
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm is not available\n");
		return 77;
	}
	log_init("state_clone", LOGL_WARN, false);
	fd = mkstemp(out_path);
	if (fd < 0)
		return 1;

	vm_config_init(&cfg);
	cfg.guest_path = argv[1];
	cfg.mem_size = 32ull << 20;
	cfg.nr_vcpus = 2;
	cfg.args = "n=40 interval_ms=10";
	cfg.console_fd = fd;
	if (vm_create(&cfg, &a, err) || vm_start(a)) {
		fprintf(stderr, "clone: source: %s\n", err);
		return 1;
	}
	usleep(150000);
	if (vm_pause(a))
		return 1;
	for (unsigned i = 0; i < 2; i++) {
		int ret = vcpu_state_save(&a->vcpus[i], &st[i]);

		if (ret) {
			fprintf(stderr, "clone: save vCPU %u: %s\n", i, strerror(-ret));
			return 1;
		}
	}
	t_save = now_ns();
	if (check_sequence(out_path, &before) || before < 3) {
		fprintf(stderr, "clone: the source did not count (%u)\n", before);
		return 1;
	}

	cfg.guest_path = NULL;
	if (vm_create_incoming(&cfg, a->model_name, &a->cpuid, a->xcr0, &b, err)) {
		fprintf(stderr, "clone: destination: %s\n", err);
		return 1;
	}
	memcpy(b->mem.base, a->mem.base, a->mem.size);
	memcpy(b->values, a->values, sizeof(a->values));
	b->nr_values = a->nr_values;
	for (unsigned i = 0; i < 2; i++) {
		uint64_t delta = (now_ns() - t_save) * a->tsc_khz / 1000000ull;
		int ret = vcpu_state_load(&b->vcpus[i], &st[i], delta);

		if (ret) {
			fprintf(stderr, "clone: load vCPU %u: %s\n", i, strerror(-ret));
			return 1;
		}
		vcpu_state_free(&st[i]);
	}
	/* The source never runs again: that is the rule after a handover. */
	vm_stop(a, "handed over");
	vm_wait(a);
	vm_destroy(a);

	if (vm_start(b))
		return 1;
	status = vm_wait(b);
	if (b->state == VM_CRASHED)
		fprintf(stderr, "clone: copy crashed: %s\n", b->reason);
	vm_destroy(b);

	if (check_sequence(out_path, &after)) {
		unlink(out_path);
		return 1;
	}
	unlink(out_path);
	printf("clone: source counted to %u, the copy went on to %u, exit %d\n",
	       before, after, status);
	return status == 0 && after == 40 ? 0 : 1;
}
