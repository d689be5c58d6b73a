/*
 * oracle: the dirty-log oracle writer (after the Linux KVM selftests'
 * dirty_log_test). The host drives rounds through the shared page:
 *
 *   shared[0]        host: current round, 0 = not started
 *   shared[1]        host: stop flag
 *   shared[16 + i]   guest: vCPU i's acknowledgement = the round it is in
 *
 * Each vCPU loops: read the round r; on stop, vCPU 0 ends the VM with 0
 * (the others park); if r is 0, yield; else store r at shared[16 + cpu],
 * then write the 64-bit value r into the first word of `batch` random
 * pages of the oracle region, and go again. The ack is stored before the
 * round's page writes (program order; x86 keeps store order), and after
 * all the writes of the previous round: once the host reads ack == r, it
 * knows every write of a value < r by that vCPU is in guest memory.
 *
 * Args: batch (default 256), pages (default 0 = the whole heap), seed
 * (default 0; vCPU i's PRNG is seeded from seed and i).
 * Live value: "writes" (page writes by all vCPUs, updated per batch).
 */
#include "rt.h"

#define ACK_WORD GABI_SHARED_HOST_WORDS  /* 16 */

static volatile uint64_t writes;

static const char *const known_args[] = { "batch", "pages", "seed", NULL };

int guest_main(unsigned cpu, const struct gabi_boot *boot)
{
	volatile uint64_t *const shared = (volatile uint64_t *)boot->shared_gpa;
	uint64_t batch, pages, seed, base, limit;
	struct rt_rand rng;

	rt_args_check("oracle", known_args);
	batch = rt_arg_u64("batch", 256);
	pages = rt_arg_u64("pages", 0);
	seed = rt_arg_u64("seed", 0);

	base = RT_ALIGN_UP(boot->heap_start, RT_PAGE_SIZE);
	limit = RT_ALIGN_DOWN(boot->heap_end, RT_PAGE_SIZE);
	if (base >= limit)
		rt_die(2, "oracle: no heap ([0x%lx, 0x%lx))\n",
		       (unsigned long)boot->heap_start, (unsigned long)boot->heap_end);
	if (!pages)
		pages = (limit - base) / RT_PAGE_SIZE;
	else if (pages > (limit - base) / RT_PAGE_SIZE)
		rt_die(2, "oracle: pages=%lu does not fit in the heap (%lu pages at 0x%lx)\n",
		       (unsigned long)pages, (unsigned long)((limit - base) / RT_PAGE_SIZE),
		       (unsigned long)base);
	if (!batch)
		rt_die(2, "oracle: batch must be > 0\n");

	rt_rand_seed(&rng, seed * 0x9e3779b97f4a7c15ull + cpu + 1);
	if (cpu == 0) {
		rt_publish("writes", &writes);
		rt_printf("oracle: %lu pages at 0x%lx, batch %lu, seed %lu, %u vcpus\n",
			  (unsigned long)pages, (unsigned long)base,
			  (unsigned long)batch, (unsigned long)seed, boot->nr_vcpus);
	}

	for (;;) {
		uint64_t r = shared[0];

		if (shared[1]) {
			if (cpu != 0)
				rt_park();
			rt_printf("oracle: stopped in round %lu after %lu writes\n",
				  (unsigned long)r, (unsigned long)writes);
			return 0;
		}
		if (!r) {
			rt_yield();
			continue;
		}
		shared[ACK_WORD + cpu] = r;
		/* The ack is a volatile store and so are the page writes, so the
		 * compiler keeps their order; the barrier says so explicitly. */
		rt_compiler_barrier();
		for (uint64_t i = 0; i < batch; i++) {
			uint64_t page = rt_rand_below(&rng, pages);

			*(volatile uint64_t *)(base + page * RT_PAGE_SIZE) = r;
		}
		__atomic_fetch_add(&writes, batch, __ATOMIC_RELAXED);
	}
}
