/*
 * VM disks: a raw image on a shared filesystem, or an NBD export (libnbd).
 * One ops table per backend (blk_file.c, blk_nbd.c); ownership is an OFD
 * lock (blk_lease.c); the guest's block device and its I/O threads are in
 * blk_dev.c. docs/storage.md has the design, docs/guest-abi.md the ABI.
 */
#ifndef FERRY_BLK_H
#define FERRY_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_abi.h"

#define BLK_SPEC_MAX 512
#define BLK_ERR_LEN  512

/* Defaults and limits, with their units. */
struct blk_defaults {
	unsigned workers;          /* I/O threads per VM */
	unsigned reconnect_tries;  /* per vmon ctl resume */
	unsigned reconnect_wait_ms;
	unsigned ring_poll_us;     /* a ring's poller spins this long after its last work, µs */
	unsigned probe_wait_ms;    /* a precheck waits this long for a disk's storage */
	unsigned connect_wait_ms;  /* an open or reconnect waits this long for TCP's connect */
	unsigned ack_wait_ms;      /* NBD: data the server's host leaves unacknowledged this
				    * long ends the connection (TCP_USER_TIMEOUT): gone */
};
extern const struct blk_defaults blk_defaults;

enum blk_kind { BLK_FILE = 1, BLK_NBD };

/* --disk PATH | nbd://HOST:PORT/EXPORT,lease=PATH, parsed. */
struct blk_spec {
	enum blk_kind kind;
	char spec[BLK_SPEC_MAX];   /* as given: it travels in the stream */
	char target[BLK_SPEC_MAX]; /* the path or the nbd:// URI */
	char lease[BLK_SPEC_MAX];  /* the lease file (NBD); "" for a file */
};

/* Pure: 0, or -EINVAL with the reason in err. */
int blk_spec_parse(const char *s, struct blk_spec *out, char *err, size_t err_len);

struct blk_disk;

struct blk_backend_ops {
	const char *name;
	/*
	 * Requests are quick and local enough for the ring's poller to run
	 * them itself (no hand-off to an I/O thread): a file, not a network
	 * round trip.
	 */
	bool poll_inline;
	/* Open (no ownership yet) and learn the size. */
	int (*open)(struct blk_disk *d, char *err, size_t err_len);
	/*
	 * A migration's precheck: would the disk open here, and how big is
	 * it? Like open, but it takes no lock, creates nothing and gives up
	 * after blk_defaults.probe_wait_ms. -EINPROGRESS: the storage is
	 * there but could not say its size in time. close() afterwards.
	 */
	int (*probe)(struct blk_disk *d, char *err, size_t err_len);
	int (*pread)(struct blk_disk *d, void *buf, uint64_t len, uint64_t off);
	int (*pwrite)(struct blk_disk *d, const void *buf, uint64_t len, uint64_t off);
	int (*flush)(struct blk_disk *d);
	/*
	 * Optional: do a read or write now if that cannot block (page cache,
	 * RWF_NOWAIT); 0 when done, -EAGAIN (or any error) to queue it for the
	 * I/O threads instead, which redo it whole.
	 */
	int (*try_nowait)(struct blk_disk *d, const struct gabi_blk_req *q, void *buf);
	/* True when an error means the storage went away (not this request). */
	bool (*gone)(struct blk_disk *d, int err);
	/*
	 * Optional: a request stuck on the storage returns at once, and
	 * nothing sent and not yet delivered is ever delivered (the VM stops
	 * for good; blk_dev.c, blk_abort). Any thread, under the device lock.
	 */
	void (*abort)(struct blk_disk *d);
	/* After gone: connect again; 0 once requests can be retried. */
	int (*reconnect)(struct blk_disk *d, char *err, size_t err_len);
	void (*close)(struct blk_disk *d);
};

extern const struct blk_backend_ops blk_file_ops;
extern const struct blk_backend_ops blk_nbd_ops;

struct blk_disk_stats {
	uint64_t reads, writes, flushes;
	uint64_t bytes_read, bytes_written;
	uint64_t errors;           /* requests that ended with an error status */
	uint64_t reconnects;
	uint64_t inline_done;      /* requests done at submit without blocking */
	uint64_t ring_taken;       /* requests taken from the disk's ring */
	uint64_t ring_kicks;       /* blk_kick hypercalls: the poller was asleep */
	uint64_t ring_errors;      /* ring entries naming no slot */
};

struct blk_disk {
	unsigned index;
	struct blk_spec spec;
	const struct blk_backend_ops *ops;
	uint64_t size;             /* bytes */
	int fd;                    /* file backend */
	void *nbd;                 /* struct nbd_handle *, NBD backend */
	int nbd_fd;                /* its socket, for abort from another thread; -1 none */
	int lock_fd;               /* holds the OFD lock: the image or the lease file */
	bool owned;
	bool gone;                 /* the storage went away; requests are held */
	bool full;                 /* ...or it had no room (gone set too, no reconnect) */
	bool error_logged;
	uint32_t no_nowait;        /* bit op: the file system refused RWF_NOWAIT for it */
	uint64_t unflushed;        /* writes done since the last flush began */
	struct blk_disk_stats stats;
};

/* Open a disk from its spec (no lock taken). */
int blk_disk_open(struct blk_disk *d, const struct blk_spec *spec, char *err, size_t len);
/* The backend's probe instead (see blk_backend_ops.probe); blk_disk_close after. */
int blk_disk_probe(struct blk_disk *d, const struct blk_spec *spec, char *err, size_t len);
void blk_disk_close(struct blk_disk *d);
/*
 * Whether an open's error says the storage could not be reached (a server
 * down, a network away) rather than a wrong configuration: such a start
 * may succeed when tried again later.
 */
bool blk_unreachable(int err);

/*
 * Ownership: an OFD write lock on the image (file) or the lease file
 * (NBD), which dies with the process. -EBUSY with the holder in err.
 */
int blk_lease_acquire(struct blk_disk *d, char *err, size_t len);
void blk_lease_release(struct blk_disk *d);
/* Who holds path's OFD lock, as text ("pid 123 (vmon) on this host"). */
void blk_lease_holder(int fd, const char *path, char *out, size_t len);

struct vm;
/*
 * The guest's block device over these disks, attached to vm (which owns
 * it from then on). Disks are opened, not yet owned: vm_devs_acquire takes
 * them.
 */
int blk_dev_create(struct vm *vm, const struct blk_spec *specs, unsigned n,
		   char *err, size_t err_len);
/* The device kind for incoming streams (vm_dev_type_register it). */
extern const struct vm_dev_type blk_dev_type;
/*
 * Its precheck: would the disks of this state open here, the same sizes?
 * Image files are opened, NBD lease files too, and NBD servers asked for
 * the export's size; no lock is taken.
 */
int blk_state_precheck(uint32_t version, const uint8_t *data, size_t len, char *err,
		       size_t err_len);

#endif
