/*
 * Devices of a VM beyond its vCPUs (the disks of storage/, the NICs of net/). core/ knows
 * them only through this ops table, so the monitor's lifecycle (start,
 * pause, resume, switchover, destroy) can ask them to drain, flush, give up
 * or take ownership without core/ depending on the layers above it.
 */
#ifndef FERRY_VM_DEV_H
#define FERRY_VM_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

#define VM_DEVS_MAX     4
#define VM_DEV_STATS_MAX 32

struct vm_dev_stat {
	char name[48];
	uint64_t value;
};

struct vm_dev_ops {
	const char *name;      /* its DEVICE_STATE name in a migration stream */
	/* The hypercalls it takes: GABI_HC_BLK_* for disks, _NET_* for NICs. */
	uint64_t hc_first, hc_last;
	/* A decoded hypercall in [hc_first, hc_last]. */
	int64_t (*hcall)(void *ctx, struct vcpu *v, uint64_t nr, const uint64_t *args);
	/* VM paused (any pause, throttling too): wait for the work in flight. */
	void (*drain)(void *ctx);
	/* Switchover: drain, then flush what the guest was told is done. */
	int (*quiesce)(void *ctx, char *err, size_t len);
	/* Exclusive ownership (disk leases): idempotent both ways. */
	int (*acquire)(void *ctx, char *err, size_t len);
	void (*release)(void *ctx);
	/*
	 * The end of each pre-copy round (a ROUND record), on the source and
	 * on the destination: a NIC sorts out which frames the source's guest
	 * read. Optional.
	 */
	void (*round_end)(void *ctx);
	/* Before a paused VM runs again: retry what stalled (reconnect). */
	int (*resume)(void *ctx, char *err, size_t len);
	/*
	 * Optional, for vmon --auto-resume-s: whether a retry of what stalled
	 * may go through now (a full file system has room again). 1 yes; 0
	 * not yet, why says.
	 */
	int (*retry_ready)(void *ctx, char *why, size_t len);
	/*
	 * Optional: the VM stops for good and another host may take it over
	 * (a fence). End at once what is stuck in flight (storage cut off
	 * with this host), and make sure nothing it sent can reach the
	 * storage after the device's ownership is gone, so that the process
	 * can exit and give its disks up. Called from any thread.
	 */
	void (*abort)(void *ctx);
	/* DEVICE_STATE bytes (malloc'ed) for the stream. */
	int (*save)(void *ctx, uint32_t *version, uint8_t **buf, size_t *len);
	/* Counters for vmon ctl stats; returns how many were filled. */
	unsigned (*stats)(void *ctx, struct vm_dev_stat *out, unsigned max);
	void (*destroy)(void *ctx);
};

struct vm_dev {
	const struct vm_dev_ops *ops;
	void *ctx;
};

/* A kind of device that can arrive in a stream, by DEVICE_STATE name. */
struct vm_dev_type {
	const char *name;
	const char *what;      /* a refusal's subject: "disk", "network" */
	/* Build the device from its state and attach it to vm; -errno + err. */
	int (*load)(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
		    char *err, size_t err_len);
	/*
	 * Optional: could load() succeed here? Asked in the migration's
	 * precheck, before a page moves, with the state the source has now;
	 * it must change nothing (no lock, no device). 0, or -errno + err.
	 */
	int (*precheck)(uint32_t version, const uint8_t *data, size_t len, char *err,
			size_t err_len);
	/*
	 * Optional: once a migration's destination has built the VM, make the
	 * device from the precheck's state and attach it, so the switchover
	 * need not (a NIC's tap takes a millisecond or more to make). load()
	 * then finds it, and checks that the final state is the same.
	 */
	int (*prepare)(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
		       char *err, size_t err_len);
};

/* The VM owns ctx from here on (ops->destroy at vm_destroy). */
int vm_dev_attach(struct vm *vm, const struct vm_dev_ops *ops, void *ctx);
void vm_devs_drain(struct vm *vm);
/* Each device's abort (a fence): see vm_dev_ops.abort. */
void vm_devs_abort(struct vm *vm);
int vm_devs_quiesce(struct vm *vm, char *err, size_t len);
int vm_devs_acquire(struct vm *vm, char *err, size_t len);
void vm_devs_release(struct vm *vm);
void vm_devs_round_end(struct vm *vm);
int vm_devs_resume(struct vm *vm, char *err, size_t len);
/* Every device's retry_ready: true when none says not yet (why: the first that does). */
bool vm_devs_retry_ready(struct vm *vm, char *why, size_t len);
void vm_devs_destroy(struct vm *vm);
/* The device whose range holds nr takes it; -ENODEV where none does. */
int64_t vm_devs_hcall(struct vm *vm, struct vcpu *v, uint64_t nr, const uint64_t *args);
unsigned vm_devs_stats(struct vm *vm, struct vm_dev_stat *out, unsigned max);

/* The program registers the device kinds it links (before any stream). */
int vm_dev_type_register(const struct vm_dev_type *t);
const struct vm_dev_type *vm_dev_type_find(const char *name);

/*
 * A device asks for the VM to pause on its own (the storage went away):
 * from any thread but a vCPU's; the reason shows in vmon ctl status.
 */
void vm_pause_for(struct vm *vm, const char *reason);
/* Wait for a pause vm_pause_for started (before the VM goes away). */
void vm_devs_wait_pause(struct vm *vm);

#endif
