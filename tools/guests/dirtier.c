/*
 * dirtier: dirties guest memory at a set rate over a set working set.
 *
 * The working set is [align_up(heap_start, 4 KiB), + ws), split evenly
 * among the vCPUs (among fewer when there are fewer pages, or fewer pages
 * per second, than vCPUs: the others idle). The rate is split likewise. Optionally fill it first, then write one 8-byte word
 * (the first of each page) per 4 KiB page, cyclically, at rate pages per
 * second (for the whole VM) or flat out. Each pass writes a new value:
 * (pass << 40) | page frame number, never 0, never the fill pattern.
 *
 * Args: ws (default 64M; k/M/G suffixes), rate (pages/s for the whole VM,
 * 0 = flat out, default 0), secs (run time, 0 = for ever, default 0),
 * fill (default 1: fill the working set with addr ^ FILL_XOR first),
 * fillsz (bytes to fill from the start of the heap, default ws: fill more
 * than the working set to have non-zero data that stays still).
 * check=1 makes each write first read what the page must hold: the value
 * this vCPU wrote there on the pass before (or the fill, or zero), and in
 * its last word the fill (or zero). A page that came back stale, zeroed or
 * someone else's after a migration, a restore or a round of dirty
 * tracking ends the VM with exit code 9, the address and both values on
 * the console. Off by default: the benchmarks' workload stays as it was.
 * ws=0 writes nothing after the fill: the vCPUs only watch for stalls (an
 * idle guest that still sees its own downtime), spinning, or with
 * tick_us=N sleeping N microseconds between looks (idle, N us resolution).
 * Live values: "filled" (1 once every vCPU finished filling),
 * "pages_written" (total; with several vCPUs updated every 64 pages),
 * "pages_written.vcpuN" (several vCPUs only, exact), "max_stall_ns",
 * "run_id" (the TSC at boot: it moves with a migrated or restored guest and
 * differs for a new run, which is how tools/clsoak tells them apart).
 */
#include "rt.h"

#define FILL_XOR      0xa5a5a5a5a5a5a5a5ull
#define TOTAL_BATCH   64
#define PASS_SHIFT    40
#define LAG_MAX_NS    (10 * RT_NS_PER_MS)
#define CHECK_EXIT    9

static struct rt_padded_u64 written[GABI_MAX_VCPUS];
static volatile uint64_t total_written;
static volatile uint64_t filled;
static volatile uint64_t run_id;
static struct rt_spin_barrier bar;

static const char *const known_args[] = { "ws", "rate", "secs", "fill", "fillsz", "tick_us",
					   "check", NULL };

static void fill_range(uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a < end; a += 8)
		*(volatile uint64_t *)a = a ^ FILL_XOR;
}

static inline uint64_t page_value(uint64_t addr, uint64_t pass)
{
	return (pass << PASS_SHIFT) | (addr >> 12);
}

struct job {
	uint64_t start, end;   /* this vCPU's pages: [start, end), page-aligned */
	uint64_t rate;         /* this vCPU's pages per second, 0 = flat out   */
	uint64_t end_tsc;      /* UINT64_MAX = run for ever                    */
	int multi;             /* several vCPUs: also feed total_written       */
	int check;             /* check=1: read each page before writing it    */
	uint64_t fill_end;     /* [heap base, fill_end) was filled             */
	volatile uint64_t *mine;
	struct rt_stall st;
};

static inline uint64_t fill_value(const struct job *j, uint64_t a)
{
	return a < j->fill_end ? a ^ FILL_XOR : 0;
}

static void check_page(const struct job *j, uint64_t addr, uint64_t pass)
{
	const uint64_t last = addr + RT_PAGE_SIZE - 8;
	uint64_t want = pass > 1 ? page_value(addr, pass - 1) : fill_value(j, addr);
	uint64_t got = *(volatile uint64_t *)addr;

	if (got != want)
		rt_die(CHECK_EXIT, "dirtier: CHECK FAILED: page 0x%lx holds 0x%lx, pass %lu "
		       "expected 0x%lx\n", (unsigned long)addr, (unsigned long)got,
		       (unsigned long)pass, (unsigned long)want);
	got = *(volatile uint64_t *)last;
	want = fill_value(j, last);
	if (got != want)
		rt_die(CHECK_EXIT, "dirtier: CHECK FAILED: word 0x%lx holds 0x%lx, expected "
		       "0x%lx\n", (unsigned long)last, (unsigned long)got, (unsigned long)want);
}

static void run_flat_out(struct job *j)
{
	const uint64_t start = j->start, end = j->end, end_tsc = j->end_tsc;
	const int multi = j->multi, check = j->check;
	volatile uint64_t *const mine = j->mine;
	uint64_t addr = start, pass = 1, batch = 0, n = *mine;

	for (;;) {
		if (check)
			check_page(j, addr, pass);
		*(volatile uint64_t *)addr = page_value(addr, pass);
		*mine = ++n;
		if (multi && ++batch == TOTAL_BATCH) {
			__atomic_fetch_add(&total_written, TOTAL_BATCH, __ATOMIC_RELAXED);
			batch = 0;
		}
		addr += RT_PAGE_SIZE;
		if (addr == end) {
			addr = start;
			pass++;
		}
		if (rt_stall_tick(&j->st) >= end_tsc)
			break;
	}
	if (multi)
		__atomic_fetch_add(&total_written, batch, __ATOMIC_RELAXED);
}

static void run_rated(struct job *j)
{
	const uint64_t hz = rt_tsc_khz * 1000;
	const uint64_t step = hz / j->rate, step_rem = hz % j->rate;
	const uint64_t lag_max = rt_ns_to_tsc(LAG_MAX_NS);
	uint64_t addr = j->start, pass = 1, acc = 0;
	uint64_t next = rt_rdtsc();

	for (;;) {
		uint64_t now = rt_stall_wait_until(&j->st,
						   next < j->end_tsc ? next : j->end_tsc);

		if (now >= j->end_tsc)
			break;
		/* Far behind (a pause, a migration): do not catch up in a burst. */
		if (now - next > lag_max)
			next = now;
		if (j->check)
			check_page(j, addr, pass);
		*(volatile uint64_t *)addr = page_value(addr, pass);
		*j->mine = *j->mine + 1;
		if (j->multi)
			__atomic_fetch_add(&total_written, 1, __ATOMIC_RELAXED);
		addr += RT_PAGE_SIZE;
		if (addr == j->end) {
			addr = j->start;
			pass++;
		}
		/* next += hz / rate exactly, without drift */
		next += step;
		acc += step_rem;
		if (acc >= j->rate) {
			acc -= j->rate;
			next++;
		}
	}
}

/* Nothing to write (fewer pages or a lower rate than vCPUs). */
static void run_idle(struct job *j)
{
	for (;;) {
		uint64_t now = rt_stall_tick(&j->st);

		if (now >= j->end_tsc)
			break;
		rt_stall_sleep_ns(&j->st, 10 * RT_NS_PER_MS);
	}
}

/* Write nothing; only watch the clock, to see every stall the guest gets. */
static void run_spin(struct job *j, uint64_t tick_us)
{
	while (rt_stall_tick(&j->st) < j->end_tsc)
		if (tick_us)
			rt_stall_sleep_ns(&j->st, tick_us * 1000);
}

int guest_main(unsigned cpu, const struct gabi_boot *boot)
{
	const unsigned nr = boot->nr_vcpus;
	uint64_t ws, rate, secs, fill, fillsz, base, npages, first, last, t0;
	unsigned nact;
	struct job j = { 0 };

	rt_args_check("dirtier", known_args);
	ws = rt_arg_u64("ws", 64ull << 20);
	rate = rt_arg_u64("rate", 0);
	secs = rt_arg_u64("secs", 0);
	fill = rt_arg_u64("fill", 1);
	fillsz = RT_ALIGN_DOWN(rt_arg_u64("fillsz", ws), RT_PAGE_SIZE);

	base = RT_ALIGN_UP(boot->heap_start, RT_PAGE_SIZE);
	ws = RT_ALIGN_DOWN(ws, RT_PAGE_SIZE);
	if (base >= boot->heap_end || ws > boot->heap_end - base ||
	    fillsz > boot->heap_end - base)
		rt_die(2, "dirtier: working set or fill of %lu bytes does not fit in the "
		       "heap [0x%lx, 0x%lx) (%lu bytes free)\n",
		       (unsigned long)(ws > fillsz ? ws : fillsz),
		       (unsigned long)base, (unsigned long)boot->heap_end,
		       (unsigned long)(base < boot->heap_end ? boot->heap_end - base : 0));
	if (secs > 100ull * 365 * 24 * 3600)
		rt_die(2, "dirtier: secs %lu is too large\n", (unsigned long)secs);

	/* The vCPUs that write: each gets at least a page and a page/s. */
	npages = ws / RT_PAGE_SIZE;
	nact = nr;
	if (nact > npages)
		nact = (unsigned)npages;
	if (rate && nact > rate)
		nact = (unsigned)rate;
	if (cpu < nact) {
		first = npages * cpu / nact;
		last = npages * (cpu + 1) / nact;
		j.start = base + first * RT_PAGE_SIZE;
		j.end = base + last * RT_PAGE_SIZE;
		j.rate = rate / nact + (cpu < rate % nact ? 1 : 0);
	}
	j.multi = nr > 1;
	j.check = rt_arg_u64("check", 0) != 0;
	j.fill_end = fill ? base + fillsz : base;
	j.mine = &written[cpu].v;

	if (cpu == 0) {
		run_id = rt_rdtsc();
		rt_publish("run_id", &run_id);
		rt_publish("filled", &filled);
		rt_publish("pages_written", nr > 1 ? &total_written : &written[0].v);
		rt_printf("dirtier: ws=%lu KiB (%lu pages) at 0x%lx, rate=%lu pages/s%s, "
			  "secs=%lu, fill=%lu, vcpus=%u%s\n", (unsigned long)(ws >> 10),
			  (unsigned long)npages, (unsigned long)base,
			  (unsigned long)rate, rate ? "" : " (flat out)",
			  (unsigned long)secs, (unsigned long)fill, nr,
			  j.check ? ", checking every page" : "");
	}
	if (nr > 1)
		rt_publishf(j.mine, "pages_written.vcpu%u", cpu);

	t0 = rt_rdtsc();
	if (fill && fillsz)
		fill_range(base + RT_ALIGN_DOWN(fillsz * cpu / nr, RT_PAGE_SIZE),
			   base + RT_ALIGN_DOWN(fillsz * (cpu + 1) / nr, RT_PAGE_SIZE));
	rt_barrier_wait(&bar, nr, 0);
	if (cpu == 0 && fill) {
		filled = 1;
		rt_printf("dirtier: filled %lu MiB in %lu ms\n",
			  (unsigned long)(fillsz >> 20),
			  (unsigned long)(rt_tsc_to_ns(rt_rdtsc() - t0) / RT_NS_PER_MS));
	}

	rt_stall_init(&j.st);
	j.end_tsc = secs ? rt_rdtsc() + rt_ns_to_tsc(secs * RT_NS_PER_SEC) : UINT64_MAX;
	if (!ws)
		run_spin(&j, rt_arg_u64("tick_us", 0));
	else if (cpu >= nact)
		run_idle(&j);
	else if (rate)
		run_rated(&j);
	else
		run_flat_out(&j);

	if (rt_barrier_wait(&bar, nr, 10 * RT_NS_PER_SEC)) {
		if (cpu != 0)
			rt_park();
		rt_printf("dirtier: a vcpu did not finish in time\n");
		return 1;
	}
	if (cpu != 0)
		rt_park();
	rt_printf("dirtier: done: %lu pages written, max stall %lu us\n",
		  (unsigned long)(nr > 1 ? total_written : written[0].v),
		  (unsigned long)(rt_max_stall_ns / 1000));
	return 0;
}
