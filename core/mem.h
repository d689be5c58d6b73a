/*
 * Guest RAM: one memfd (so it can be handed over, dumped or mapped by a
 * peer), mapped once in the monitor, and registered with KVM as one memory
 * slot per region. Regions are at most MEM_REGION_MAX bytes so that even a
 * small guest exercises the multi-slot paths of dirty tracking.
 */
#ifndef FERRY_MEM_H
#define FERRY_MEM_H

#include <stdbool.h>
#include <stdint.h>

#define MEM_PAGE_SHIFT 12
#define MEM_PAGE_SIZE  (1ull << MEM_PAGE_SHIFT)
#define MEM_REGION_MAX (1ull << 30)
#define MEM_MAX_REGIONS 256
#define MEM_ALIGN      (2ull << 20) /* guest RAM is a multiple of 2 MiB */

enum mem_flags {
	MEM_HUGEPAGES = 1u << 0, /* back RAM with 2 MiB huge pages        */
	MEM_PREALLOC  = 1u << 1, /* fault every page in before the guest runs */
	MEM_WARM      = 1u << 2, /* and touch each once from kernel and user */
};

struct mem_region {
	uint32_t slot;
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	int memfd;
	uint64_t size;
	uint8_t *base;
	unsigned flags;
	/*
	 * With MEM_PREALLOC: what the kernel's first write to a page of this
	 * RAM costs over a second one, ns per page (mem_cold_write_ns).
	 */
	int64_t cold_write_ns;
	unsigned nr_regions;
	struct mem_region regions[MEM_MAX_REGIONS];
};

int mem_create(struct guest_mem *m, uint64_t size, unsigned flags);
/* Touch fresh (all-zero) RAM once from the kernel and from user code. */
int mem_warm(uint8_t *base, uint64_t size);
/*
 * What the kernel pays to write a page of fresh (all-zero) RAM the first
 * time over the second, in ns per page: the median of 4 groups of 32
 * pages at the top of [base, base + size), which it leaves zero and warm.
 * A few ns on most hosts, microseconds on some virtualised ones. -errno.
 */
int64_t mem_cold_write_ns(uint8_t *base, uint64_t size);
void mem_destroy(struct guest_mem *m);
/* Register (or re-register with new flags) every region with KVM. */
int mem_register(struct guest_mem *m, int vm_fd, bool log_dirty);
/* Host pointer for [gpa, gpa + len) or NULL if any of it is outside RAM. */
void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Whether a 4 KiB page holds only zeros (it may be sent as a marker). */
bool mem_page_is_zero(const void *page);

static inline uint64_t mem_pages(const struct guest_mem *m)
{
	return m->size >> MEM_PAGE_SHIFT;
}

#endif
