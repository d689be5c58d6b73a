/*
 * counter: the liveness workload.
 *
 * vCPU 0 prints "counter: 1", "counter: 2", ... one line per interval and
 * exits 0 after n lines (n=0: for ever); the live value "count" is the last
 * number printed. Every other vCPU increments its own counter in a tight
 * loop ("count.vcpuN"). With several vCPUs, vCPU 0 first checks that they
 * all run while it runs itself and prints
 * "counter: N vcpus running concurrently".
 *
 * Args: n (default 10, 0 = for ever), interval_ms (default 100).
 */
#include "rt.h"

#define CONCURRENCY_TIMEOUT_NS (5 * RT_NS_PER_SEC)

static struct rt_padded_u64 counts[GABI_MAX_VCPUS];
static volatile uint64_t count;

static const char *const known_args[] = { "n", "interval_ms", NULL };

static RT_NORETURN void spinner(unsigned cpu)
{
	volatile uint64_t *c = &counts[cpu].v;
	struct rt_stall st;

	rt_publishf(c, "count.vcpu%u", cpu);
	rt_stall_init(&st);
	for (;;) {
		*c = *c + 1;
		rt_stall_tick(&st);
	}
}

/* vCPU 0 spins and watches every other vCPU's counter move. */
static int check_concurrency(unsigned nr)
{
	uint64_t start[GABI_MAX_VCPUS];
	uint64_t deadline = rt_rdtsc() + rt_ns_to_tsc(CONCURRENCY_TIMEOUT_NS);
	unsigned missing = nr - 1;
	uint32_t seen = 1;  /* bit i: vCPU i moved while we were spinning */

	for (unsigned i = 1; i < nr; i++)
		start[i] = counts[i].v;
	while (missing) {
		for (unsigned i = 1; i < nr; i++) {
			if (!(seen & (1u << i)) && counts[i].v != start[i]) {
				seen |= 1u << i;
				missing--;
			}
		}
		if (rt_rdtsc() > deadline) {
			for (unsigned i = 1; i < nr; i++)
				if (!(seen & (1u << i)))
					rt_printf("counter: vcpu %u is not running (count %lu)\n",
						  i, (unsigned long)counts[i].v);
			return -1;
		}
		rt_cpu_relax();
	}
	return 0;
}

int guest_main(unsigned cpu, const struct gabi_boot *boot)
{
	uint64_t n, interval_ms, step, next;
	unsigned nr = boot->nr_vcpus;
	struct rt_stall st;

	rt_args_check("counter", known_args);
	n = rt_arg_u64("n", 10);
	interval_ms = rt_arg_u64("interval_ms", 100);
	if (interval_ms > 60000)
		rt_die(2, "counter: interval_ms %lu > 60000\n", (unsigned long)interval_ms);
	if (cpu != 0)
		spinner(cpu);

	rt_publish("count", &count);
	if (nr > 1) {
		if (check_concurrency(nr)) {
			rt_printf("counter: vcpus are not running concurrently\n");
			return 1;
		}
		rt_printf("counter: %u vcpus running concurrently\n", nr);
	}

	/*
	 * Absolute deadlines, so the period does not drift; after a long
	 * pause we start again from now instead of printing a burst.
	 * The loop variable lives in a register and in "count": a pause or
	 * a migration neither skips nor repeats a value.
	 */
	rt_stall_init(&st);
	step = rt_ns_to_tsc(interval_ms * RT_NS_PER_MS);
	next = rt_rdtsc();
	for (uint64_t i = 1;; i++) {
		uint64_t now;

		count = i;
		rt_printf("counter: %lu\n", (unsigned long)i);
		if (n && i >= n)
			break;
		next += step;
		now = rt_stall_tick(&st);
		if ((int64_t)(now - next) > (int64_t)step)
			next = now;
		rt_stall_wait_until(&st, next);
	}
	return 0;
}
