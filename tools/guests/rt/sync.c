/* Spin barrier for vCPUs. */
#include "rt.h"

int rt_barrier_wait(struct rt_spin_barrier *b, unsigned n, uint64_t timeout_ns)
{
	uint32_t gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
	uint64_t start, spin_until, deadline;

	if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == n) {
		__atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&b->gen, gen + 1, __ATOMIC_RELEASE);
		return 0;
	}
	start = rt_rdtsc();
	spin_until = start + rt_ns_to_tsc(50000);
	deadline = timeout_ns ? start + rt_ns_to_tsc(timeout_ns) : UINT64_MAX;
	while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen) {
		uint64_t now = rt_rdtsc();

		if (now >= deadline)
			return -1;
		/* Spin a little, then let the host run the others (there may
		 * be more vCPUs than host CPUs). */
		if (now < spin_until)
			rt_cpu_relax();
		else
			rt_yield();
	}
	return 0;
}
