/*
 * Live migration: the source's job (a thread in the source vmon) and the
 * destination's receive path (vmon run --incoming). The protocol is part 2
 * of docs/migration-stream.md; the per-round decisions are migrate/policy.h.
 *
 * Ownership: until the source holds the destination's ACK, the VM belongs
 * to the source, and any failure leaves it running there. After the ACK
 * the source never runs it again.
 */
#ifndef FERRY_MIG_LIVE_H
#define FERRY_MIG_LIVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/dirty_rate.h"
#include "core/vm.h"
#include "migrate/mig.h"
#include "migrate/mig_state.h"
#include "migrate/policy.h"
#include "net/xport.h"

#define MIG_MAX_ROUNDS_KEPT 256
#define MIG_HANDSHAKE_TIMEOUT_MS 30000
#define MIG_ACK_TIMEOUT_MS 60000
/*
 * How long a destination that acknowledged waits for the COMMIT. The
 * source sends it straight after the ACK (it only stops its guest and lets
 * go of the disks first); a destination still waiting is unreachable
 * (its control socket comes up only after), so a lost COMMIT should not
 * keep the guest from the cluster, which starts it then, for long.
 */
#define MIG_COMMIT_WAIT_MS 10000
#define MIG_IO_TIMEOUT_MS 30000
/*
 * How long a destination waits for a new connection's first bytes: a
 * source sends its HELLO (or an rdma: source its rendezvous) at once.
 */
#define MIG_FIRST_BYTES_MS 5000
/* The guest is paused while we wait for the ACK: wait this long at most. */
#define MIG_SWITCHOVER_ACK_MS 10000
/*
 * With timeout-action force: at the limit the round in progress stops and
 * the stop-and-copy takes what is left, however much. That switchover
 * may take MIG_FORCE_GRACE_S plus MIG_FORCE_SLACK times its forecast; a
 * sender that never reaches it (a stalled link) is cut MIG_FORCE_GRACE_S
 * after the limit. Either way the VM then stays on the source.
 */
#define MIG_FORCE_GRACE_S 10
#define MIG_FORCE_SLACK 3
/* Data connections (live protocol 2): at most this many. */
#define MIG_CONN_MAX 8
/* The live protocol this vmon speaks (docs/migration-stream.md, part 2). */
#define MIG_LIVE_VERSION 2u

enum mig_job_state {
	MIG_JOB_NONE = 0,
	MIG_JOB_SETUP,
	MIG_JOB_PRECOPY,
	MIG_JOB_SWITCHOVER,
	MIG_JOB_COMPLETED,
	MIG_JOB_FAILED,
	MIG_JOB_CANCELLED,
	MIG_JOB_PREDICTED,
};

const char *mig_job_state_name(enum mig_job_state s);

/* Under way: a thread runs it, and a second one is refused. */
static inline bool mig_job_state_live(enum mig_job_state s)
{
	return s == MIG_JOB_SETUP || s == MIG_JOB_PRECOPY || s == MIG_JOB_SWITCHOVER;
}

struct mig_params {
	char uri[XPORT_HOST_MAX + 16];
	char tls_dir[512];             /* empty: plain TCP */
	struct mig_policy_config policy;
	unsigned connections;
	bool dry_run;
	bool verify;
	char handover_file[512];       /* empty: none (ctl.proto, Migrate) */
	char handover_tag[64];
};

struct mig_round_info {
	struct mig_round r;
	char decision[MIG_REASON_LEN];
};

/*
 * Moments of a migration, so that its time can be accounted for: each is
 * stamped (ns after the start) when reached, and stays 0 otherwise.
 */
enum mig_mark {
	MIG_MARK_CONNECTED,         /* the transport is up (TLS: after its handshake) */
	MIG_MARK_ACCEPTED,          /* the destination's precheck accepted */
	MIG_MARK_TRACKING,          /* data connections open, dirty tracking on */
	MIG_MARK_SYNCED,            /* the destination loaded the last round (SYNC) */
	MIG_MARK_PRECOPY_DONE,      /* the policy ended the rounds */
	MIG_MARK_PAUSED,            /* the vCPUs stopped */
	MIG_MARK_QUIESCED,          /* disks drained and flushed */
	MIG_MARK_SENT,              /* the last pages, vCPU and device state sent */
	MIG_MARK_ACKED,             /* the destination loaded and checked them */
	MIG_MARK_RESUMED,           /* the destination runs the guest */
	MIG_MARK_NR
};
extern const char *const mig_mark_names[MIG_MARK_NR];

/* Progress and result, readable at any time under lock. */
struct mig_progress {
	enum mig_job_state state;
	char phase[16];
	char message[MIG_ERR_LEN];
	char destination[XPORT_HOST_MAX + 16];
	unsigned round;
	uint64_t round_pages, round_sent;
	uint64_t bytes, pages, zero_pages;
	double bandwidth_Bps, dirty_pages_per_s;
	unsigned throttle_pct;
	double predicted_downtime_ms;
	double downtime_ms;            /* measured, source pause to destination resume */
	uint64_t start_ns, end_ns, transfer_ns;
	unsigned nr_rounds;
	struct mig_round_info rounds[MIG_MAX_ROUNDS_KEPT];
	struct mig_prediction prediction;
	uint64_t marks_ns[MIG_MARK_NR];
	unsigned settings_changes;     /* migrate-set requests that changed something */
	struct mig_policy_config policy; /* in force now (mig_job_progress fills it) */
};

struct mig_job {
	struct vm *vm;
	struct dirty_rate *rate;       /* the sampler to stop while we own tracking */
	uint64_t sample_ms;
	struct mig_params p;
	pthread_t thread;
	bool thread_live;
	bool cancel;
	int io_fd;                     /* the live connection's socket, or -1 */
	int lane_fds[MIG_CONN_MAX];    /* the data connections' sockets */
	unsigned nr_lane_fds;
	bool timed_out;                /* the watchdog ended it */
	bool guest_ended;              /* the guest ended here first (mig_job_guest_ended) */
	bool acked;                    /* past the ACK: the watchdog keeps out */
	bool force_due;                /* atomic: past the limit with action force */
	uint64_t force_deadline_ns;    /* a forced switchover's own limit, 0 before */
	pthread_mutex_t lock;
	struct mig_progress prog;
};

void mig_params_defaults(struct mig_params *p);

/*
 * Start a migration of vm in the background. -EBUSY if one is running.
 * Progress through mig_job_progress; the job ends by itself.
 */
int mig_job_start(struct mig_job *job, struct vm *vm, struct dirty_rate *rate,
		  uint64_t sample_ms, const struct mig_params *p, char *err);
void mig_job_progress(struct mig_job *job, struct mig_progress *out);
/* Ask a running job to stop; it leaves the VM running on the source. */
int mig_job_cancel(struct mig_job *job);
/*
 * The guest ended on its own (a fence, a crash, a stop) during pre-copy:
 * wake the job's blocked I/O so that it ends now, naming that cause. Its
 * peer may be unreachable (a fenced host is cut off), and waiting out the
 * I/O timeout would keep this process, and the disk locks it holds, for
 * up to 30 s after the guest stopped.
 */
void mig_job_guest_ended(struct mig_job *job);

/* What migrate-set changes; each set_* says whether its value is given. */
struct mig_settings {
	bool set_downtime, set_bandwidth, set_timeout, set_timeout_action;
	uint64_t downtime_ms;          /* >= 1 */
	uint64_t bandwidth_mbps;       /* 0: lift the cap */
	uint64_t timeout_s;            /* >= 1, from the migration's start */
	enum mig_timeout_action timeout_action;
};
/*
 * Change a migration in flight: the downtime target from the next round's
 * decision on, the cap at once (the senders look at it between records,
 * and while they wait for it), the timeout at once. -ENOENT when none
 * runs, -EBUSY in the switchover, -EINVAL for a timeout already passed;
 * err says so, and then nothing changed.
 */
int mig_job_set(struct mig_job *job, const struct mig_settings *s, char *err);
/* Wait for the job's thread (at exit). */
void mig_job_join(struct mig_job *job);

/* Destination. */
struct mig_incoming_opts {
	struct xport_addr addr;
	bool tls;
	struct xport_tls tls_cfg;
	struct mig_load_opts load;
	int accept_timeout_ms;         /* -1: wait for ever */
	int first_bytes_ms;            /* a peer's time to its first bytes; 0: MIG_FIRST_BYTES_MS */
	void (*listening)(void *ctx, uint16_t port); /* called once bound */
	void *ctx;
};

struct mig_incoming_result {
	struct mig_load_result load;
	char source[XPORT_HOST_MAX + 8];
};

/*
 * Wait for one incoming migration and receive it. On success *out is a VM
 * that holds the guest, started if the source committed; on failure the
 * guest never ran here and err says phase and cause (a precheck refusal is
 * -ENOTSUP or -ENOMEM, told to the source too). A dry run changes
 * nothing here: the same listener waits for the next source.
 */
int mig_incoming(const struct mig_incoming_opts *o, struct vm **out,
		 struct mig_incoming_result *res, char *err);

/* stream_io over a transport. */
void mig_xport_io(struct xport *x, struct stream_io *io);

#endif
