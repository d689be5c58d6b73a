/*
 * The dirty-log oracle, after the KVM selftests' dirty_log_test: a real
 * guest writes the current round number into pseudo-random pages while the
 * monitor harvests, and after every harvest every page is checked:
 *
 *  - a page reported dirty holds round r or r-1 (writes of r-2 finished
 *    before every vCPU acknowledged r-1, which was before harvest r-1);
 *  - a page not reported holds what we saw when it was last reported, or r
 *    (written after this harvest re-protected it); in the latter case the
 *    next harvest must report it;
 *  - a page reported dirty may still hold its old value when the vCPU's
 *    store was logged at fault time but had not retired when the harvest
 *    re-protected the page: then the retried store must fault again and
 *    the next harvest must report it;
 *  - pages the monitor itself wrote this round are reported.
 *
 * With --inject-drop the tracker drops one page from one harvest; the test
 * then passes only if the oracle catches it.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

#define SKIP 77
#define SHARED_ROUND 0
#define SHARED_STOP 1
#define SHARED_ACK 16
#define MONITOR_WRITES_PER_ROUND 32

struct oracle {
	struct vm *vm;
	uint64_t first_pfn, nr_pages;  /* the guest's oracle region */
	uint64_t *seen;                /* value when last reported */
	uint64_t *pending;             /* round of an unreported write, or 0 */
	uint64_t monitor_pfns[MONITOR_WRITES_PER_ROUND];
	uint64_t checked, reported, monitor_checked, inflight;
	uint64_t rng;
	int failures;
};

static uint64_t rnd(struct oracle *o)
{
	o->rng ^= o->rng << 13;
	o->rng ^= o->rng >> 7;
	o->rng ^= o->rng << 17;
	return o->rng;
}

static volatile uint64_t *word(struct vm *vm, uint64_t gpa)
{
	return (volatile uint64_t *)(vm->mem.base + gpa);
}

static void fail(struct oracle *o, uint64_t round, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct oracle *o, uint64_t round, const char *fmt, ...)
{
	va_list ap;

	if (o->failures++ < 10) {
		fprintf(stderr, "oracle: round %llu: ", (unsigned long long)round);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
}

static int set_shared(struct vm *vm, unsigned idx, uint64_t v)
{
	return vm_write_guest(vm, GABI_SHARED_GPA + idx * 8, &v, sizeof(v));
}

static int wait_acks(struct oracle *o, uint64_t r)
{
	uint64_t deadline = now_ns() + 20ull * 1000000000ull;

	for (unsigned i = 0; i < o->vm->nr_vcpus; i++) {
		while (*word(o->vm, GABI_SHARED_GPA + (SHARED_ACK + i) * 8) != r) {
			if (vm_get_state(o->vm) != VM_RUNNING || now_ns() > deadline) {
				fprintf(stderr, "oracle: vCPU %u never acknowledged round %llu (%s)\n",
					i, (unsigned long long)r, o->vm->reason);
				return -ETIMEDOUT;
			}
			usleep(50);
		}
	}
	return 0;
}

static void check_round(struct oracle *o, const struct dirty_set *s, uint64_t r)
{
	for (uint64_t i = 0; i < o->nr_pages; i++) {
		uint64_t pfn = o->first_pfn + i;
		uint64_t v = *word(o->vm, pfn << MEM_PAGE_SHIFT);

		o->checked++;
		if (dirty_set_test(s, pfn)) {
			o->reported++;
			if (v == r || v == r - 1) {
				o->seen[i] = v;
				o->pending[i] = 0;
				continue;
			}
			if (v == o->seen[i]) {
				/*
				 * KVM logs a page when it handles the write fault;
				 * the store retires when the vCPU runs again. If
				 * this harvest re-protected the page first, the
				 * retried store faults again: the next harvest
				 * must report it.
				 */
				o->inflight++;
				o->pending[i] = r;
				continue;
			}
			fail(o, r, "page 0x%llx reported dirty but holds %llu (last seen %llu)",
			     (unsigned long long)pfn, (unsigned long long)v,
			     (unsigned long long)o->seen[i]);
			o->seen[i] = v;
			o->pending[i] = 0;
			continue;
		}
		if (o->pending[i]) {
			fail(o, r, "page 0x%llx held round %llu after harvest %llu "
			     "and was not reported by this one",
			     (unsigned long long)pfn, (unsigned long long)o->pending[i],
			     (unsigned long long)o->pending[i]);
			o->pending[i] = 0;
			o->seen[i] = v;
			continue;
		}
		if (v == o->seen[i])
			continue;
		if (v == r) {
			o->pending[i] = r;  /* written after the harvest: next one */
			continue;
		}
		fail(o, r, "page 0x%llx holds %llu, last reported %llu, not reported now",
		     (unsigned long long)pfn, (unsigned long long)v,
		     (unsigned long long)o->seen[i]);
		o->seen[i] = v;
	}
	for (unsigned k = 0; k < MONITOR_WRITES_PER_ROUND; k++) {
		o->monitor_checked++;
		if (!dirty_set_test(s, o->monitor_pfns[k]))
			fail(o, r, "monitor write to page 0x%llx not reported",
			     (unsigned long long)o->monitor_pfns[k]);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: dirty_oracle --guest FILE [--mode ring|bitmap] [--vcpus N]\n"
		"                    [--rounds N] [--mem SIZE] [--inject-drop ROUND]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "guest", required_argument, NULL, 'g' },
		{ "mode", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "mem", required_argument, NULL, 'M' },
		{ "inject-drop", required_argument, NULL, 'i' },
		{ 0 },
	};
	struct oracle o = { .rng = 0x9e3779b97f4a7c15ull };
	struct vm_config cfg;
	struct dirty_set set;
	const struct gabi_boot *boot;
	uint64_t rounds = 200, inject = 0, v;
	char err[VM_ERR_LEN];
	int c, status;

	vm_config_init(&cfg);
	cfg.mem_size = 64ull << 20;
	cfg.dirty_mode = DIRTY_MODE_RING;
	cfg.args = "batch=256";
	snprintf(cfg.name, sizeof(cfg.name), "oracle");
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'g': cfg.guest_path = optarg; break;
		case 'm': if (dirty_mode_parse(optarg, &cfg.dirty_mode)) usage(); break;
		case 'c': if (parse_u64(optarg, 1, 32, &v)) usage(); cfg.nr_vcpus = (unsigned)v; break;
		case 'r': if (parse_u64(optarg, 2, 100000, &rounds)) usage(); break;
		case 'M': if (parse_size(optarg, &cfg.mem_size)) usage(); break;
		case 'i': if (parse_u64(optarg, 1, 100000, &inject)) usage(); break;
		default: usage();
		}
	}
	if (!cfg.guest_path)
		usage();
	log_init("dirty_oracle", LOGL_WARN, false);
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: %s is not available: %s\n", "/dev/kvm", strerror(errno));
		return SKIP;
	}
	if (vm_create(&cfg, &o.vm, err)) {
		fprintf(stderr, "oracle: %s\n", err);
		return 1;
	}
	boot = (const struct gabi_boot *)(o.vm->mem.base + GABI_BOOT_GPA);
	o.first_pfn = ALIGN_UP(boot->heap_start, GABI_PAGE_SIZE) >> MEM_PAGE_SHIFT;
	o.nr_pages = (boot->heap_end >> MEM_PAGE_SHIFT) - o.first_pfn;
	o.seen = calloc(o.nr_pages, sizeof(uint64_t));
	o.pending = calloc(o.nr_pages, sizeof(uint64_t));
	if (!o.seen || !o.pending || dirty_set_init(&set, o.vm->dirty->nr_pages))
		return 1;

	if (dirty_start(o.vm->dirty) || vm_start(o.vm))
		return 1;
	/* Round 0: the guest waits; the first harvest reports everything. */
	if (dirty_harvest(o.vm->dirty, &set))
		return 1;
	for (uint64_t i = 0; i < o.nr_pages; i++)
		o.seen[i] = *word(o.vm, (o.first_pfn + i) << MEM_PAGE_SHIFT);

	for (uint64_t r = 1; r <= rounds && o.failures == 0; r++) {
		if (set_shared(o.vm, SHARED_ROUND, r) || wait_acks(&o, r)) {
			o.failures++;
			break;
		}
		/* Monitor-side writes: invisible to KVM, they must still show. */
		for (unsigned k = 0; k < MONITOR_WRITES_PER_ROUND; k++) {
			uint64_t pfn = o.first_pfn + rnd(&o) % o.nr_pages;

			o.monitor_pfns[k] = pfn;
			vm_write_guest(o.vm, pfn << MEM_PAGE_SHIFT, &r, sizeof(r));
		}
		usleep(500 + rnd(&o) % 2500);
		if (r == inject) {
			/*
			 * Drop the lowest dirty page at or above one the monitor
			 * wrote: it is certainly dirty and nobody may rewrite
			 * it before the check, so the drop is caught every time.
			 */
			uint64_t lo = o.monitor_pfns[0];

			for (unsigned k = 1; k < MONITOR_WRITES_PER_ROUND; k++)
				lo = MIN(lo, o.monitor_pfns[k]);
			o.vm->dirty->test_drop_min_pfn = lo;
			o.vm->dirty->test_drop_pages = 1;
		}
		if (dirty_harvest(o.vm->dirty, &set)) {
			fprintf(stderr, "oracle: harvest failed\n");
			o.failures++;
			break;
		}
		check_round(&o, &set, r);
	}

	set_shared(o.vm, SHARED_STOP, 1);
	status = vm_wait(o.vm);
	printf("oracle: mode %s, %u vCPU(s), %llu pages, %llu page checks, %llu reported dirty, "
	       "%llu in flight at harvest, %llu monitor writes checked, guest exit %d: %s\n",
	       dirty_mode_name(o.vm->dirty_mode), o.vm->nr_vcpus,
	       (unsigned long long)o.nr_pages, (unsigned long long)o.checked,
	       (unsigned long long)o.reported, (unsigned long long)o.inflight,
	       (unsigned long long)o.monitor_checked,
	       status, o.failures ? "FAILED" : "ok");
	if (o.vm->state == VM_CRASHED)
		fprintf(stderr, "oracle: guest crashed: %s\n", o.vm->reason);
	if (o.reported == 0)
		o.failures++;   /* a run in which nothing was dirty proves nothing */

	dirty_set_free(&set);
	free(o.seen);
	free(o.pending);
	vm_destroy(o.vm);
	if (inject) {
		if (o.failures) {
			printf("oracle: the dropped page was detected, as it must be\n");
			return 0;
		}
		fprintf(stderr, "oracle: a page was dropped and the oracle did not notice\n");
		return 1;
	}
	return o.failures || status ? 1 : 0;
}
