/* TSC time and the stall tracker. */
#include "rt.h"

uint64_t rt_tsc_khz;
uint64_t rt_ns_per_tsc_q32;
uint64_t rt_tsc_per_ns_q32;
volatile uint64_t rt_max_stall_ns;
volatile uint64_t rt_stall_epoch;
volatile uint64_t rt_switch_stall_ns;

void rt_time_init(uint64_t tsc_khz);

void rt_time_init(uint64_t tsc_khz)
{
	/* 1e6 << 32 and khz << 32 both fit in 64 bits for any real TSC. */
	rt_tsc_khz = tsc_khz;
	rt_ns_per_tsc_q32 = (1000000ull << 32) / tsc_khz;
	rt_tsc_per_ns_q32 = (tsc_khz << 32) / 1000000ull;
}

static uint32_t stall_published;

void rt_stall_init(struct rt_stall *t)
{
	t->max_tsc = 0;
	t->max_ns = 0;
	if (!__atomic_exchange_n(&stall_published, 1, __ATOMIC_ACQ_REL)) {
		rt_publish("max_stall_ns", &rt_max_stall_ns);
		rt_publish("stall_epoch", &rt_stall_epoch);
		rt_publish("switch_stall_ns", &rt_switch_stall_ns);
	}
	t->epoch = rt_stall_epoch;
	t->last = rt_rdtsc();
}

void rt__switch_note(struct rt_stall *t, uint64_t gap)
{
	uint64_t ns = (int64_t)gap > 0 ? rt_tsc_to_ns(gap) : 0;
	uint64_t cur = __atomic_load_n(&rt_switch_stall_ns, __ATOMIC_RELAXED);

	t->epoch = rt_stall_epoch;
	while (ns > cur &&
	       !__atomic_compare_exchange_n(&rt_switch_stall_ns, &cur, ns, 1,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void rt_stall_sleep_ns(struct rt_stall *t, uint64_t ns)
{
	uint64_t now, gap, slept;

	rt_stall_tick(t);
	rt_sleep_ns(ns);
	now = rt_rdtsc();
	gap = now - t->last;
	slept = rt_ns_to_tsc(ns);
	gap = gap > slept ? gap - slept : 0;
	t->last = now;
	if (t->epoch != rt_stall_epoch)
		rt__switch_note(t, gap);
	if (gap > t->max_tsc && (int64_t)gap > 0)
		rt__stall_note(t, gap);
}

uint64_t rt_stall_wait_until(struct rt_stall *t, uint64_t deadline)
{
	const uint64_t spin = rt_ns_to_tsc(RT_NS_PER_MS);
	uint64_t now = rt_stall_tick(t);

	while ((int64_t)(deadline - now) > 0) {
		uint64_t left = deadline - now;

		if (left > spin) {
			uint64_t ns = rt_tsc_to_ns(left);

			rt_stall_sleep_ns(t, ns > 10 * RT_NS_PER_MS ? 10 * RT_NS_PER_MS : ns);
		} else {
			rt_cpu_relax();
		}
		now = rt_stall_tick(t);
	}
	return now;
}
