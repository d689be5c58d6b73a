/*
 * dirty_bench: what dirty tracking costs, in both KVM mechanisms.
 *
 * For each guest size and dirty fraction, a dirtier guest writes one word
 * per page over a working set of that fraction of its RAM, at full speed,
 * on one vCPU. Measured in the same run:
 *   - the guest's write throughput with tracking off, then on while the
 *     monitor harvests every round (the ratio is the tracking overhead);
 *   - the time one harvest takes per round and the pages it returns, and
 *     the first harvest after start, which returns every page (for the
 *     bitmap it also re-protects all of memory: the 100 %-dirty worst case);
 *     "start" is enabling tracking (for the ring, KVM write-protects all of
 *     memory there);
 *   - a host baseline: the monitor's own thread writing one word per page
 *     over the same working set of the same memfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

#define MEASURE_NS (800ull * 1000000ull)
#define ROUND_NS   (50ull * 1000000ull)
#define MAX_ROUNDS 256

struct result {
	double off_pps, on_pps, host_pps;
	double harvest_med_ms, harvest_max_ms, pages_med;
	double start_ms, first_ms;   /* dirty_start, and the all-pages harvest */
	unsigned rounds;
};

static uint64_t guest_value(struct vm *vm, const char *name)
{
	struct vm_value v[GABI_REPORTS_MAX];
	unsigned n = vm_values(vm, v, GABI_REPORTS_MAX);

	for (unsigned i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return v[i].value;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n ? v[n / 2] : 0;
}

/* Pages per second the guest writes over a window. */
static double guest_rate(struct vm *vm, uint64_t window_ns)
{
	uint64_t p0 = guest_value(vm, "pages_written"), t0 = now_ns();

	usleep((useconds_t)(window_ns / 1000));
	return (double)(guest_value(vm, "pages_written") - p0) * 1e9 /
	       (double)(now_ns() - t0);
}

/* The host writing one word per page over the same pages, same memfd. */
static double host_rate(struct vm *vm, uint64_t gpa, uint64_t pages)
{
	volatile uint64_t *base = (volatile uint64_t *)(vm->mem.base + gpa);
	uint64_t t0 = now_ns(), n = 0, pass = 1;

	while (now_ns() - t0 < MEASURE_NS / 4) {
		for (uint64_t i = 0; i < pages; i++)
			base[i * 512] = pass;
		n += pages;
		pass++;
	}
	return (double)n * 1e9 / (double)(now_ns() - t0);
}

static int run_case(const char *guest, uint64_t mem, enum dirty_mode mode,
		    double frac, struct result *res)
{
	static double harvest_ms[MAX_ROUNDS], pages[MAX_ROUNDS];
	struct vm_config cfg;
	struct dirty_set set;
	char args[128], err[VM_ERR_LEN];
	const struct gabi_boot *boot;
	uint64_t ws, heap, t_end, p0, t0;
	struct vm *vm;
	int ret;

	vm_config_init(&cfg);
	cfg.guest_path = guest;
	cfg.mem_size = mem;
	cfg.dirty_mode = mode;
	cfg.console_fd = open("/dev/null", O_WRONLY);
	/* The working set must fit the heap: leave room below for the image. */
	ws = ALIGN_DOWN((uint64_t)((double)mem * frac), GABI_PAGE_SIZE);
	if (ws > mem - (8ull << 20))
		ws = mem - (8ull << 20);
	snprintf(args, sizeof(args), "ws=%llu", (unsigned long long)ws);
	cfg.args = args;
	ret = vm_create(&cfg, &vm, err);
	if (ret) {
		fprintf(stderr, "dirty_bench: %s\n", err);
		return ret;
	}
	boot = (const struct gabi_boot *)(vm->mem.base + GABI_BOOT_GPA);
	heap = ALIGN_UP(boot->heap_start, GABI_PAGE_SIZE);
	ret = dirty_set_init(&set, vm->dirty->nr_pages);
	if (ret || (ret = vm_start(vm)))
		goto out;
	for (t0 = now_ns(); !guest_value(vm, "filled"); usleep(1000)) {
		if (now_ns() - t0 > 120ull * 1000000000ull || vm_get_state(vm) != VM_RUNNING) {
			fprintf(stderr, "dirty_bench: guest never filled its working set: %s\n",
				vm->reason);
			ret = -ETIMEDOUT;
			goto out;
		}
	}

	res->off_pps = guest_rate(vm, MEASURE_NS);

	t0 = now_ns();
	ret = dirty_start(vm->dirty);
	res->start_ms = (double)(now_ns() - t0) / 1e6;
	t0 = now_ns();
	if (!ret)
		ret = dirty_harvest(vm->dirty, &set);   /* the all-pages first pass */
	res->first_ms = (double)(now_ns() - t0) / 1e6;
	if (ret)
		goto out;
	res->rounds = 0;
	p0 = guest_value(vm, "pages_written");
	t0 = now_ns();
	t_end = t0 + MEASURE_NS;
	while (now_ns() < t_end && res->rounds < MAX_ROUNDS) {
		uint64_t h0;

		usleep((useconds_t)(ROUND_NS / 1000));
		h0 = now_ns();
		ret = dirty_harvest(vm->dirty, &set);
		if (ret)
			goto out;
		harvest_ms[res->rounds] = (double)(now_ns() - h0) / 1e6;
		pages[res->rounds] = (double)set.count;
		res->rounds++;
	}
	res->on_pps = (double)(guest_value(vm, "pages_written") - p0) * 1e9 /
		      (double)(now_ns() - t0);
	dirty_stop(vm->dirty);
	res->harvest_max_ms = 0;
	for (unsigned i = 0; i < res->rounds; i++)
		res->harvest_max_ms = MAX(res->harvest_max_ms, harvest_ms[i]);
	res->harvest_med_ms = median(harvest_ms, res->rounds);
	res->pages_med = median(pages, res->rounds);

	vm_pause(vm);
	res->host_pps = host_rate(vm, heap, ws / GABI_PAGE_SIZE);
	vm_resume_own(vm);
out:
	vm_stop(vm, "benchmark done");
	vm_wait(vm);
	dirty_set_free(&set);
	close(cfg.console_fd);
	vm_destroy(vm);
	return ret;
}

int main(int argc, char **argv)
{
	static const double fracs[] = { 0.001, 0.01, 0.10, 1.0 };
	static const enum dirty_mode modes[] = { DIRTY_MODE_BITMAP, DIRTY_MODE_RING };
	uint64_t mems[2] = { 1ull << 30, 4ull << 30 };
	unsigned nr_mems = 2;
	const char *guest = NULL;
	int c;

	while ((c = getopt(argc, argv, "g:q")) != -1) {
		if (c == 'g')
			guest = optarg;
		else if (c == 'q')
			nr_mems = 1;   /* quick: 1 GiB only */
	}
	if (!guest) {
		fprintf(stderr, "usage: dirty_bench -g build/guests/dirtier [-q]\n");
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm is not available\n");
		return 77;
	}
	log_init("dirty_bench", LOGL_WARN, false);
	printf("dirty_bench: one vCPU writing one word per page at full speed over the working set;\n"
	       "harvest every %llu ms for %llu ms; host = the monitor's thread writing the same pages\n\n",
	       (unsigned long long)(ROUND_NS / 1000000), (unsigned long long)(MEASURE_NS / 1000000));
	printf("%-5s %-6s %6s %9s | %8s %9s | %9s %9s %8s | %9s %9s %7s | %9s %6s\n",
	       "guest", "mode", "dirty", "ws pages", "start", "harv all", "harv med", "harv max", "pages/rd",
	       "off Mp/s", "on Mp/s", "on/off", "host Mp/s", "g/host");
	for (unsigned m = 0; m < nr_mems; m++) {
		for (unsigned f = 0; f < sizeof(fracs) / sizeof(fracs[0]); f++) {
			for (unsigned d = 0; d < 2; d++) {
				struct result r;
				uint64_t ws = ALIGN_DOWN((uint64_t)((double)mems[m] * fracs[f]),
							 GABI_PAGE_SIZE);

				if (run_case(guest, mems[m], modes[d], fracs[f], &r)) {
					printf("%-5s %-6s %5.1f%%  (failed)\n",
					       mems[m] == (1ull << 30) ? "1G" : "4G",
					       dirty_mode_name(modes[d]), fracs[f] * 100);
					continue;
				}
				printf("%-5s %-6s %5.1f%% %9llu | %6.2fms %7.2fms | %7.3fms %7.3fms %8.0f | %9.2f %9.2f %6.1f%% | %9.2f %5.1f%%\n",
				       mems[m] == (1ull << 30) ? "1G" : "4G",
				       dirty_mode_name(modes[d]), fracs[f] * 100,
				       (unsigned long long)MIN(ws, mems[m] - (8ull << 20)) / GABI_PAGE_SIZE,
				       r.start_ms, r.first_ms, r.harvest_med_ms, r.harvest_max_ms, r.pages_med,
				       r.off_pps / 1e6, r.on_pps / 1e6,
				       r.off_pps > 0 ? 100.0 * r.on_pps / r.off_pps : 0,
				       r.host_pps / 1e6,
				       r.host_pps > 0 ? 100.0 * r.off_pps / r.host_pps : 0);
				fflush(stdout);
			}
		}
	}
	return 0;
}
