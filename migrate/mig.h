/*
 * The migration engine's entry points. The stream format is in
 * docs/migration-stream.md and migrate/stream.h; the per-round decisions in
 * migrate/policy.h.
 */
#ifndef FERRY_MIG_H
#define FERRY_MIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dirty.h"
#include "core/vm.h"
#include "migrate/stream.h"

struct mig_tail_opts {
	bool verify;        /* put an XXH3-128 digest of all RAM into END */
	unsigned rounds;
	/* Pages sent on data connections (live protocol 2), counted in END too. */
	uint64_t lane_pages, lane_zero_pages;
};

/* Source side. The VM must be paused for the tail. */
int mig_write_head(struct vm *vm, struct stream_writer *w, bool live, char *err);
int mig_write_set(struct vm *vm, struct stream_writer *w, const struct dirty_set *set,
		  char *err);
int mig_write_tail(struct vm *vm, struct stream_writer *w, const struct mig_tail_opts *o,
		   char *err);
/* A paused VM, whole, as a snapshot. */
int mig_save_snapshot(struct vm *vm, struct stream_writer *w, bool verify, char *err);

/* Destination side. */
struct mig_page_lanes;

/*
 * Where checked page records land: guest RAM and one bit per page of
 * what is known about it. Sinks of disjoint 64-page groups may share the
 * bitmaps (the data connections do).
 */
struct mig_page_sink {
	uint8_t *ram;
	uint64_t *touched;      /* written since the VM was made */
	uint64_t *owed;         /* arrived torn: must come again */
	uint64_t pages, zero_pages, torn, nr_owed;
};

/*
 * Put a parsed run's pages into RAM. A ZERO entry for a page never
 * written needs no memset (a fresh VM's RAM is zero); a page that fails
 * its own hash (PAGE_HASHED) is skipped and owed until an intact copy.
 */
void mig_page_sink_apply(struct mig_page_sink *s, struct stream_page_run *run);

/*
 * A single connection's pages go straight from the socket into guest RAM,
 * except where the kernel's first write to a page of that RAM is dear
 * (mem->cold_write_ns above MIG_RECV_COLD_NS_MAX): straight in, the kernel's
 * copy and then the hash each pay a first touch; through a buffer that
 * stays in cache, only our copy out of it does (docs/benchmarks.md).
 * FERRY_MIG_RECV_BUFFERED=1 or =0 in the environment decides instead.
 */
#define MIG_RECV_COLD_NS_MAX 1000
bool mig_recv_buffered(const struct guest_mem *mem);

struct mig_load_opts {
	enum dirty_mode dirty_mode;
	unsigned mem_flags;
	int console_fd;
	const char *cpuid_hide;
	const char *name;       /* override the VM's name; NULL keeps it */
	struct guest_mem *premade; /* RAM faulted in ahead of time, or NULL */
	const struct mig_page_lanes *lanes; /* pages on data connections, or NULL */
	/* Live: where SYNCED answers the source's SYNC; NULL: SYNC is an error. */
	struct stream_writer *reply;
};

/*
 * Live protocol 2: the pages travel on data connections, and the stream
 * holds a FENCE after each round instead. fence() waits until every
 * connection has delivered what the FENCE body counts; on the final one
 * it closes them and sets the pages they carried (*pages, *zero_pages and
 * *torn_pages, torn ones that came again).
 * It fills err (MIG_ERR_LEN) on failure.
 */
struct mig_page_lanes {
	int (*fence)(void *ctx, const void *body, uint64_t len, bool *final,
		     uint64_t *pages, uint64_t *zero_pages, uint64_t *torn_pages, char *err);
	void *ctx;
};

/* Put what the destination decides (name override, tracking, RAM, console) into cfg. */
void mig_load_opts_apply(const struct mig_load_opts *o, struct vm_config *cfg);

struct mig_load_result {
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t torn_pages;    /* PAGE_HASHED pages that failed and came again */
	uint64_t records;
	uint64_t bytes;
	unsigned rounds;
	bool verified;          /* the RAM digest was present and matched */
	uint64_t load_ns;       /* END received to vCPUs loaded */
};

/*
 * Read a stream (preamble to END) and build the VM it describes, or fill
 * *vmp if the caller created it already (a live destination builds its VM
 * from HELLO so RAM is populated before the first page). Nothing of the
 * guest runs: the caller starts the VM. On failure the VM is destroyed if
 * this function created it, and err says which record and why.
 */
int mig_load_stream(struct stream_reader *r, const struct mig_load_opts *o,
		    struct vm **vmp, struct mig_load_result *res, char *err);

#endif
