/*
 * The written map (dirty.h): which pages of guest RAM may hold data. A
 * sender's first pass must otherwise read every page to find the zero
 * ones, and on a mostly empty guest that read is most of its time. Here
 * one scan, made once in the background with logging already on, plus the
 * OR of every harvest since, says the same without touching the pages.
 */
#include "core/dirty.h"

#include <errno.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

/* Pages between looks at *stop (16 MiB). */
#define SCAN_STEP_PAGES 4096u

int dirty_written_scan(struct dirty *d, const uint8_t *ram, const bool *stop)
{
	uint64_t epoch, t0 = now_ns(), found = 0;
	int ret = 0;

	pthread_mutex_lock(&d->lock);
	if (!d->tracking || d->written_valid || d->written_scanning) {
		ret = d->tracking ? -EALREADY : -ENOTCONN;
		pthread_mutex_unlock(&d->lock);
		return ret;
	}
	/* From here, a write the scan misses is in a later harvest. */
	d->written_scanning = true;
	epoch = d->log_epoch;
	pthread_mutex_unlock(&d->lock);

	for (uint64_t pfn = 0; pfn < d->nr_pages && !ret; pfn++) {
		if (pfn % SCAN_STEP_PAGES == 0 && __atomic_load_n(stop, __ATOMIC_RELAXED))
			ret = -EINTR;
		else if (!mem_page_is_zero(ram + pfn * MEM_PAGE_SIZE)) {
			__atomic_fetch_or(&d->written[pfn / 64], 1ull << (pfn % 64),
					  __ATOMIC_RELAXED);
			found++;
		}
	}

	pthread_mutex_lock(&d->lock);
	d->written_scanning = false;
	if (!ret && d->logging && d->log_epoch == epoch)
		d->written_valid = true;
	else if (!ret)
		ret = -EAGAIN;
	pthread_mutex_unlock(&d->lock);
	if (!ret)
		log_debug("dirty: written map: %llu of %llu pages hold data (%.1f ms)",
			  (unsigned long long)found, (unsigned long long)d->nr_pages,
			  (double)(now_ns() - t0) / 1e6);
	return ret;
}

const uint64_t *dirty_written_map(struct dirty *d)
{
	const uint64_t *map;

	pthread_mutex_lock(&d->lock);
	map = d->written_valid && d->logging ? d->written : NULL;
	pthread_mutex_unlock(&d->lock);
	return map;
}
