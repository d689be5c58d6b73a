/*
 * A VM: KVM VM and vCPUs, guest RAM, CPU model, dirty tracking and the
 * guest's published values. One struct vm per vmon process; nothing here
 * is global so that tests can run several VMs in one process.
 */
#ifndef FERRY_VM_H
#define FERRY_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/cpumodel.h"
#include "core/dirty.h"
#include "core/guest_abi.h"
#include "core/mem.h"
#include "core/vm_dev.h"

#define VM_NAME_MAX 64
#define VM_ERR_LEN  512

/* Exit statuses of vmon (and of vm_wait). Guest exit codes pass through. */
enum vm_exit_status {
	VM_EXIT_USAGE = 2,    /* bad command line or configuration */
	VM_EXIT_CRASH = 3,    /* triple fault or unhandled exit */
	VM_EXIT_INTERNAL = 4, /* KVM or host failure */
	VM_EXIT_FENCED = 5,   /* --fence-s: no keepalive from the node agent (core/fence.h) */
	VM_EXIT_DISK_BUSY = 6, /* a disk's lease is held by another process (its owner) */
	VM_EXIT_DISK_GONE = 7, /* a disk's storage could not be reached at start-up */
};

enum vm_state {
	VM_CREATED = 1,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPED,
	VM_CRASHED,
};

const char *vm_state_name(enum vm_state s);

struct vm_config {
	char name[VM_NAME_MAX];
	const char *guest_path;
	const char *args;         /* argument string for the guest */
	uint64_t mem_size;
	unsigned nr_vcpus;
	const char *cpu_model;    /* default "host" */
	const char *cpuid_hide;   /* comma-separated features to hide from the host */
	enum dirty_mode dirty_mode;
	unsigned mem_flags;       /* MEM_HUGEPAGES, MEM_PREALLOC */
	int console_fd;           /* where guest console output goes */
	uint32_t dirty_ring_entries; /* 0 = default */
	/*
	 * Guest RAM made ahead of time (vmon run --incoming --mem): taken over
	 * when its size matches, so a migration's pages land in memory that is
	 * already faulted in. The VM owns it afterwards.
	 */
	struct guest_mem *premade;
};

void vm_config_init(struct vm_config *cfg);

struct vcpu_stats {
	uint64_t exits;
	uint64_t exits_io;
	uint64_t exits_hcall;
	uint64_t exits_intr;
	uint64_t exits_ring_full;
	uint64_t exits_other;
	uint64_t hcalls_console;
	uint64_t hcalls_sleep;
};

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	struct kvm_dirty_gfn *ring;
	size_t ring_bytes;
	struct vcpu_stats stats;   /* written by the vCPU thread only */
};

struct vm_value {
	char name[GABI_NAME_MAX + 1];
	uint64_t value;
	uint64_t live_gpa;         /* 0: a reported value; else read live */
};

struct vm {
	struct vm_config cfg;
	int kvm_fd;
	int vm_fd;
	int run_size;
	struct guest_mem mem;
	unsigned nr_vcpus;
	struct vcpu *vcpus;
	const struct cpumodel *model;  /* NULL for a VM that came in a stream */
	char model_name[32];
	struct cpuid_table cpuid;
	uint64_t xcr0;
	uint64_t tsc_khz;
	enum dirty_mode dirty_mode; /* resolved: bitmap or ring */
	struct dirty *dirty;
	uint64_t entry;
	uint64_t start_ns;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_req;
	bool stop_req;
	bool exit_asked;            /* vm_stop called, maybe after the end: do not linger */
	unsigned nr_parked;        /* vCPU threads waiting in a pause */
	unsigned nr_running;       /* vCPU threads not yet exited */
	int exit_status;
	char reason[VM_ERR_LEN];   /* why it stopped or crashed */
	char pause_reason[VM_ERR_LEN]; /* why a device paused it ("" = no device did) */
	bool pause_pending;        /* vm_pause_for's thread is at work */
	char pending_reason[VM_ERR_LEN]; /* the reason that thread pauses for */
	bool resuming;             /* vm_resume is between its devices and the vCPUs */
	bool user_paused;          /* the operator's pause (or it arrived so): only vm_resume ends it */
	unsigned own_pauses;       /* the program's own pauses in force (vm_pause) */

	struct fence *fence;       /* --fence-s, or NULL; set before the control socket opens */
	struct autoresume *autoresume; /* --auto-resume-s, or NULL; as fence */

	unsigned nr_devs;          /* disks: see core/vm_dev.h */
	struct vm_dev devs[VM_DEVS_MAX];

	pthread_mutex_t console_lock;
	unsigned nr_values;
	struct vm_value values[GABI_REPORTS_MAX];
};

/*
 * Create a VM from cfg: KVM VM, RAM, CPU model, vCPUs, the guest image and
 * its boot state. On failure returns -errno with a one-line reason in
 * err[VM_ERR_LEN] suitable for the user.
 */
int vm_create(const struct vm_config *cfg, struct vm **out, char *err);
/*
 * Create a VM to be filled from a stream (incoming migration or restore):
 * RAM and vCPUs without boot state, with exactly the CPUID the guest saw
 * on its source. Refused with the missing features when this host cannot
 * supply them.
 */
int vm_create_incoming(const struct vm_config *cfg, const char *model_name,
		       const struct cpuid_table *cpuid, uint64_t xcr0,
		       struct vm **out, char *err);
void vm_destroy(struct vm *vm);

/*
 * Take the devices (disk leases) for a VM about to run here; one that
 * cannot is held paused with why as its reason. 0, or -errno + why.
 */
int vm_take_devs(struct vm *vm, char *why, size_t len);
/* Start the vCPU threads (vm_take_devs first). */
int vm_start(struct vm *vm);
/*
 * Stop every vCPU outside KVM_RUN and wait until they are parked. A pause
 * of the program's own (a migration's switchover, auto-converge, a
 * snapshot) ends with vm_resume_own; the operator's (vmon ctl pause,
 * vm_pause_user) and a device's (vm_pause_for) only with vm_resume.
 */
int vm_pause(struct vm *vm);
int vm_pause_user(struct vm *vm);
/* A device's pause (vm_pause_for's thread): held by its reason. */
int vm_pause_held(struct vm *vm);
/*
 * Run again (vmon ctl resume): devices first (held requests), then the
 * vCPUs. -EBUSY while a pause of the program's own is in force (a
 * switchover, a snapshot being written): the guest must not run under it.
 */
int vm_resume(struct vm *vm);
/*
 * End a pause of the program's own (vm_pause): the VM runs again once no
 * other is in force, unless it is held (vm_held).
 */
int vm_resume_own(struct vm *vm);
/*
 * Whether the operator or a device holds the VM paused; why (may be NULL)
 * says which. A migration carries that to the destination (StreamEnd).
 */
bool vm_held(struct vm *vm, char *why, size_t len);
/* Ask the vCPUs to stop for good (the guest does not run again). */
void vm_stop(struct vm *vm, const char *reason);
/* Wait for all vCPU threads; returns the exit status (guest code or VM_EXIT_*). */
int vm_wait(struct vm *vm);

enum vm_state vm_get_state(struct vm *vm);

/* Write into guest RAM on the monitor's behalf, tracked as dirty. */
int vm_write_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len);

/* The guest address of the published (live) value name: 0, or -ENOENT. */
int vm_value_gpa(struct vm *vm, const char *name, uint64_t *gpa);
/* Snapshot the guest's published values (live ones read now). */
unsigned vm_values(struct vm *vm, struct vm_value *out, unsigned max);

/* Internal to core/: vCPU thread body, and the crash/exit path. */
void *vcpu_thread(void *arg);
void vm_finish(struct vm *vm, enum vm_state state, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Park the calling vCPU while a pause is requested; false when stopping. */
bool vm_vcpu_checkpoint(struct vcpu *v);

#endif
