/* Snapshots: a VM saved to a file as a migration stream, and back. */
#ifndef FERRY_MIG_SNAPSHOT_H
#define FERRY_MIG_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/vm.h"
#include "migrate/mig.h"

struct mig_snapshot_result {
	uint64_t bytes;
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t duration_ns;   /* the VM was paused this long */
};

/*
 * Pause vm (if running), write it to path, and resume it (or stop it for
 * good with stop). On failure nothing is left at path and the VM runs as
 * before; err says why.
 */
int mig_snapshot_save(struct vm *vm, const char *path, bool verify, bool stop,
		      struct mig_snapshot_result *res, char *err);
/* Build a VM (not started) from a snapshot file. */
int mig_snapshot_open(const char *path, const struct mig_load_opts *o, struct vm **out,
		      struct mig_load_result *res, char *err);

#endif
