#include "core/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/memfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/*
 * On some virtualised hosts (KVM on PVM, docs/benchmarks.md) memory that
 * MADV_POPULATE_WRITE faulted in is still slow on first touch, and the
 * kernel's and user code's first touches are paid separately, about 4.5 us
 * per page each. A migration pays both on the destination: the kernel
 * copies a page in, the hash then reads it. Paying them here, at start-up,
 * takes them off the migration. Only for fresh RAM: it writes zeros.
 */
static int read_zero(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int mem_warm(uint8_t *base, uint64_t size)
{
	volatile uint8_t sink = 0;
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	/* The kernel's side: read() writes every page through its mapping. */
	ret = read_zero(fd, base, size);
	close(fd);
	/* User code's side: one read per cache line, as the hash will. */
	for (uint64_t off = 0; off < size && !ret; off += 64)
		sink ^= base[off];
	(void)sink;
	return ret;
}

#define PROBE_GROUPS 4
#define PROBE_PAGES  32u

int64_t mem_cold_write_ns(uint8_t *base, uint64_t size)
{
	const size_t group = PROBE_PAGES * MEM_PAGE_SIZE;
	int64_t cost[PROBE_GROUPS], t;
	int fd, ret = 0;

	if (size < PROBE_GROUPS * group)
		return -EINVAL;
	fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (unsigned g = 0; g < PROBE_GROUPS && !ret; g++) {
		uint8_t *p = base + size - (g + 1) * group;
		uint64_t t0 = now_ns(), t1, t2;

		ret = read_zero(fd, p, group);   /* cold */
		t1 = now_ns();
		if (!ret)
			ret = read_zero(fd, p, group); /* warm */
		t2 = now_ns();
		cost[g] = ((int64_t)(t1 - t0) - (int64_t)(t2 - t1)) / (int64_t)PROBE_PAGES;
	}
	close(fd);
	if (ret)
		return ret;
	/* Median of four: the middle two, sorted. */
	for (unsigned i = 1; i < PROBE_GROUPS; i++)
		for (unsigned j = i; j && cost[j - 1] > cost[j]; j--)
			t = cost[j], cost[j] = cost[j - 1], cost[j - 1] = t;
	t = (cost[1] + cost[2]) / 2;
	return t > 0 ? t : 0;
}

int mem_create(struct guest_mem *m, uint64_t size, unsigned flags)
{
	unsigned mfd_flags = MFD_CLOEXEC;
	int ret;

	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	if (!size || size % MEM_ALIGN || size / MEM_REGION_MAX >= MEM_MAX_REGIONS)
		return -EINVAL;
	if (flags & MEM_HUGEPAGES)
		mfd_flags |= MFD_HUGETLB | MFD_HUGE_2MB;

	m->memfd = memfd_create("ferry-guest-ram", mfd_flags);
	if (m->memfd < 0) {
		ret = -errno;
		log_err("memfd_create(%s): %s",
			(flags & MEM_HUGEPAGES) ? "hugetlb" : "shmem", strerror(errno));
		goto fail;
	}
	if (ftruncate(m->memfd, (off_t)size)) {
		ret = -errno;
		goto fail;
	}
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->memfd, 0);
	if (m->base == MAP_FAILED) {
		ret = -errno;
		m->base = NULL;
		goto fail;
	}
	m->size = size;
	m->flags = flags;
	/*
	 * First touch of fresh memory is slow on virtualised hosts (the page
	 * comes back from the hypervisor below us); doing it now keeps it out
	 * of the guest's run time and out of a migration's downtime.
	 */
	if ((flags & MEM_PREALLOC) &&
	    madvise(m->base, size, MADV_POPULATE_WRITE)) {
		ret = -errno;
		log_err("cannot preallocate %llu MiB of guest RAM: %s",
			(unsigned long long)(size >> 20), strerror(errno));
		goto fail;
	}
	if ((flags & (MEM_PREALLOC | MEM_WARM)) == (MEM_PREALLOC | MEM_WARM)) {
		ret = mem_warm(m->base, size);
		if (ret) {
			log_err("cannot warm %llu MiB of guest RAM: %s",
				(unsigned long long)(size >> 20), strerror(-ret));
			goto fail;
		}
	}
	if (flags & MEM_PREALLOC) {
		int64_t c = mem_cold_write_ns(m->base, size);

		m->cold_write_ns = c > 0 ? c : 0;
	}
	madvise(m->base, size, MADV_DONTDUMP);

	for (uint64_t gpa = 0; gpa < size; gpa += MEM_REGION_MAX) {
		struct mem_region *r = &m->regions[m->nr_regions];

		r->slot = m->nr_regions;
		r->gpa = gpa;
		r->size = MIN(MEM_REGION_MAX, size - gpa);
		r->hva = m->base + gpa;
		m->nr_regions++;
	}
	return 0;

fail:
	mem_destroy(m);
	return ret;
}

void mem_destroy(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
}

int mem_register(struct guest_mem *m, int vm_fd, bool log_dirty)
{
	for (unsigned i = 0; i < m->nr_regions; i++) {
		struct mem_region *r = &m->regions[i];
		struct kvm_userspace_memory_region kr = {
			.slot = r->slot,
			.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};

		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &kr))
			return -errno;
	}
	return 0;
}

void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (gpa > m->size || len > m->size - gpa)
		return NULL;
	return m->base + gpa;
}

bool mem_page_is_zero(const void *page)
{
	const uint8_t *p = page;
	uint64_t acc = 0;

	/*
	 * A data page almost always shows a non-zero word in its first cache
	 * line: look there first, so a data page is read once (by the copy),
	 * not twice. Only a page that starts with zeros is scanned whole, as
	 * one OR that vectorizes.
	 */
	for (unsigned i = 0; i < 64; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		acc |= v;
	}
	if (acc)
		return false;
	for (unsigned i = 64; i < MEM_PAGE_SIZE; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		acc |= v;
	}
	return acc == 0;
}
