/*
 * clusterd, the node agent (docs/cluster.md). One struct agent per process,
 * passed explicitly; one lock guards all of it. The main thread polls
 * corosync, the vmon processes and a wake-up eventfd, applies what CPG
 * delivers and reconciles this node's vmons with the state. Client
 * connections and the slow jobs (waiting for an incoming vmon to listen,
 * following a migration, stopping a vmon) run on threads of their own and
 * take the lock to look or to propose.
 */
#ifndef FERRY_CLUSTERD_H
#define FERRY_CLUSTERD_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "cl_cpg.h"
#include "cl_plan.h"
#include "cl_msg.h"
#include "cl_net.h"
#include "cl_state.h"
#include "cl_sync.h"
#include "cl_vmon.h"

#define CL_NAME_MAX 64
#define CL_PROPOSE_TIMEOUT_MS 10000
#define CL_TICK_MS 500
#define CL_LOAD_PERIOD_MS 2000
#define CL_INCOMING_TIMEOUT_S 60
#define CL_FOLLOW_POLL_MS 1
#define CL_PROGRESS_PERIOD_MS 100
/* A destination out of the membership this long has its migration cancelled. */
#define CL_DEST_GONE_MS 1000
#define CL_STOP_TIMEOUT_MS 5000
#define CL_STATS_TIMEOUT_MS 100
/* A landed vmon answers within its COMMIT wait (10 s); this leaves room. */
#define CL_LANDING_WAIT_S 30
/*
 * A destination whose vmon ended without the guest voids the migration
 * once the source's agent has been away this long on a node corosync still
 * has: well past a dead node's verdict (token 3 s by default), which
 * settles it sooner and names the node.
 */
#define CL_SRC_AWAY_VOID_MS 15000
/* A migration's source vmon, just started, has this long to open its socket. */
#define CL_SOURCE_UP_MS 30000
#define CL_SRC_AWAY_MAX 8
#define CL_HANDLED_MAX 64
#define CL_KEEPALIVE_MS 1000
#define CL_UNREPORTED_MAX 64
/*
 * A vmon that could not take its disk (exit 6: the lease is held, often by
 * a fenced vmon of the VM on its way out): started again this many times,
 * 1, 2, 4, 8, 8 and 8 s apart, before its end is reported.
 */
#define CL_DISK_BUSY_TRIES 6
#define CL_DISK_BUSY_WAIT_MAX_MS 8000
/*
 * One whose disk's storage could not be reached (exit 7: a server down, a
 * storage network away; often cut off with a host whose VMs restart here):
 * started again 1, 2, 4, 8, then every 15 s, for up to 10 minutes after
 * the first try, a storage server's restart included.
 */
#define CL_DISK_GONE_WAIT_MAX_MS 15000
#define CL_DISK_GONE_GIVE_UP_S 600
/* A start this long before its vmon's end got past its disks: the wait is over. */
#define CL_DISK_WAIT_STALE_S 60
#define CL_UNREPORTED_RESEND_MS 5000

/* The last CL_HANDLED_MAX migration ids seen for some purpose (a ring). */
struct mig_ids {
	uint64_t id[CL_HANDLED_MAX];
	unsigned next;
};

/* A vmon of this node. */
struct local_vm {
	struct local_vm *next;
	char name[CL_NAME_MAX];
	struct cl_vmon *v;
	uint64_t generation;  /* run instance: the VM generation it serves */
	bool incoming;        /* waits for or receives a migration */
	uint64_t mig_id;      /* incoming: for which migration */
	bool stopping;        /* asked to stop: its end is no news */
	bool following;       /* a migration out of it is being followed */
	bool migrated;        /* it handed the VM over (its end is expected) */
	bool source_gone;     /* incoming: the source's vmon has exited (MigSourceGone) */
	bool source_handed;   /* ...after the ACK: it will never run the guest again */
	bool ended;
	char why[128];        /* how it ended */
	int busy;             /* worker threads using it */
	double cpu_s;         /* CPU time at the last load report */
	uint64_t cpu_ns;      /* and when that was (0: not yet sampled) */
	int status;           /* wait status once ended (-1: unknown) */
	uint64_t mig_began_ns; /* when a migration out of it began here */
	int fence_s;          /* its vmon's fence period: 0 none, -1 unknown (adopted) */
	int auto_resume_s;    /* its auto-resume period: as fence_s; -2 its vmon predates
			       * vmon ctl auto-resume */
};

/*
 * The end of a vmon that the agent could not report (no quorum then). The
 * VM is not started here again until the report went through and the
 * cluster decided: a restart (a new generation), a stop, or, for an HA VM,
 * a recovery elsewhere that made the report stale.
 */
struct unreported {
	char name[CL_NAME_MAX];
	uint64_t generation;
	char reason[CL_ERR_LEN];
	bool restart;
	bool crash;           /* the guest's doing: counts towards crash-restarts */
	uint64_t unix_ms;     /* when it ended, on this node's clock */
	uint64_t sent_ns;     /* the last time the report was sent (0: never) */
};

struct pending {
	struct pending *next;
	uint64_t req_id;
	bool done;
	int ret;
	char msg[CL_ERR_LEN];
};

struct agent {
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* a proposal was decided */

	/* configuration */
	char name[CL_NAME_MAX];
	char cluster[CL_NAME_MAX];
	char dir[PATH_MAX];
	char run_dir[PATH_MAX];
	char state_path[PATH_MAX];
	char unsaved[CL_ERR_LEN];      /* why the last save of the state failed; "" when saved */
	uint64_t unsaved_unix_ms;      /* since when (the first failure in a row) */
	char sock_path[PATH_MAX];
	char tls_dir[PATH_MAX];
	char address[64];
	uint16_t port;
	char vmon[PATH_MAX];
	char hide[1024];
	bool witness;          /* --witness: no KVM, no VMs; a vote and the state */
	uint64_t guest_mem;    /* --guest-mem: what it offers guests (0: all its RAM) */
	Ferry__Cluster__Inventory *inv;

	/* corosync */
	struct cl_cpg *cpg;    /* NULL while corosync is away */
	uint32_t nodeid;
	struct cl_sync sync;   /* the agents' group */
	bool quorate;
	uint32_t nodes[CL_MAX_NODES]; /* corosync's members, agent or not */
	size_t n_nodes;
	uint64_t joined_seq;   /* when our host entry was last proposed */

	Ferry__Cluster__State *st;
	uint64_t next_req;
	struct pending *pending;
	struct local_vm *vms;
	/* live figures other agents multicast (not state) */
	Ferry__Cluster__MigProgress **progress;
	size_t n_progress;
	Ferry__Cluster__HostLoad **loads;
	size_t n_loads;
	/* the planner (clusterd_plan.c), used by the leader */
	struct cl_plan_config plan_cfg;
	struct cl_plan_memo *plan_memo;
	uint64_t balanced_ns, evacuated_ns;
	/* HA (clusterd_ha.c, the leader): hosts it has seen out of the membership */
	struct ha_lost { char host[CL_NAME_MAX]; uint64_t since_ns; } *lost;
	size_t n_lost;
	uint64_t ha_ns;        /* the last HA round */
	uint64_t ha_stuck_ns;  /* the last time VMs that fit nowhere were named */
	struct unreported unrep[CL_UNREPORTED_MAX];
	size_t n_unrep;
	/*
	 * VMs whose vmon found a disk in use or its storage out of reach: the
	 * next start waits until retry_ns. why: vmon's last word, for vm show.
	 */
	struct disk_wait {
		char name[CL_NAME_MAX];
		uint64_t generation, retry_ns, first_ns;
		unsigned tries;
		bool gone;
		char why[300];
	} disk_waits[CL_UNREPORTED_MAX];
	size_t n_disk_waits;
	/* destination: since when each migration's source agent is away */
	struct src_away { uint64_t id, since_ns; } src_away[CL_SRC_AWAY_MAX];
	/* migration ids taken up here, so a reconcile starts each once */
	struct mig_ids handled;
	/* destination, no vmon left: the source said its vmon is gone too */
	struct mig_ids gone_both;

	struct cl_server *srv;
	int wake_fd;
	volatile sig_atomic_t quit;
};

/* clusterd_repl.c: CPG messages, sync, proposals */
extern const struct cl_cpg_ops agent_cpg_ops;
/* Multicast a proposal and wait until the cluster decided it (lock NOT
 * held by the caller). 0 or -errno with the reason. */
int agent_propose(struct agent *a, const Ferry__Cluster__Command *cmd, char *err,
		  size_t err_len);
/* Multicast without waiting (lock held; main thread). */
int agent_propose_async(struct agent *a, const Ferry__Cluster__Command *cmd);
/* Multicast any CPG message (lock held). */
int agent_send(struct agent *a, const Ferry__Cluster__CpgMsg *m);
/*
 * A request to the cluster that waits for an answer by req_id (lock held):
 * pending_add gives p its req_id; pending_wait waits on a->cond until
 * pending_done answers it or deadline_ns (now_ns) passes, then removes it,
 * true when answered; pending_del removes one that will not be waited for.
 */
void pending_add(struct agent *a, struct pending *p);
void pending_del(struct agent *a, struct pending *p);
bool pending_wait(struct agent *a, struct pending *p, uint64_t deadline_ns);
void pending_done(struct agent *a, uint64_t req_id, int ret, const char *msg);
/* clusterd_resume.c: clusterctl vm resume, here or through the VM's host. */
int agent_vm_resume(struct agent *a, const Ferry__Cluster__Vm *vm, bool pause, char *msg,
		    size_t len);
void agent_on_vm_resume(struct agent *a, const Ferry__Cluster__VmResume *q);
void agent_on_vm_resume_reply(struct agent *a, const Ferry__Cluster__VmResumeReply *r);
bool agent_online(const struct agent *a, const char *host);
/* The protocol host's agent applies (CL_PROTO_*; 0: no such host). */
uint32_t agent_proto_of(const struct agent *a, const char *host);
/* Is host's node a member of corosync's (this partition's), its agent running or not? */
bool agent_node_up(const struct agent *a, const char *host);
/* Why changes are refused now, or NULL when they are not. */
const char *agent_refusal(const struct agent *a, char *buf, size_t len);
/* Why an operator's change to what the cluster keeps is refused: most hosts cannot save it. */
const char *agent_unsaved_most(const struct agent *a, char *buf, size_t len);
/*
 * The revoked serials, as TLS_DIR/revoked for this node's vmons (which
 * read it at every handshake): after every state change and at start.
 */
int agent_publish_revoked(struct agent *a, char *err, size_t err_len);
void agent_persist(struct agent *a);
/* Record why the state (or the revocation list) is not saved; since when, at the first. */
void agent_unsaved(struct agent *a, const char *why);
void agent_wake(struct agent *a);

/* clusterd_vms.c: this node's vmons */
void agent_reconcile(struct agent *a);
/* A vmon's pidfd fired: collect it and report an unexpected end. */
void agent_vm_ended(struct agent *a, struct local_vm *lv);
/* Report the end of an ended run instance to the cluster, if it matters. */
void agent_vm_report(struct agent *a, struct local_vm *lv);
void agent_local_stop(struct agent *a, struct local_vm *lv, const char *why);
void agent_adopt(struct agent *a);
struct local_vm *agent_local(struct agent *a, const char *name, bool incoming);
void agent_local_put(struct agent *a, struct local_vm *lv);
/* Run fn(a, lv) on a thread of its own, lv held busy until it returns (lock held). */
int agent_local_spawn(struct agent *a, struct local_vm *lv,
		      void (*fn)(struct agent *a, struct local_vm *lv));
void agent_send_load(struct agent *a);
/* HA: keep this node's HA vmons from fencing (only while synced and quorate). */
void agent_keepalive(struct agent *a);
/* What every vmon of this node gets: program, run dir, name, vCPUs, mask. */
void agent_vmon_spec(const struct agent *a, const Ferry__Cluster__Vm *vm,
		     struct cl_vmon_spec *spec);

/* clusterd_mig.c: migrations to and from this node */
void agent_mig_reconcile(struct agent *a, Ferry__Cluster__Vm *vm);
/* lv's vmon took its VM in a migration that ended well: make sure it runs it. */
void agent_mig_landing(struct agent *a, struct local_vm *lv);
/* The state wants vm running on this node. */
bool vm_mine(const struct agent *a, const Ferry__Cluster__Vm *vm);
void agent_mig_source_gone(struct agent *a, const Ferry__Cluster__MigSourceGone *g);
Ferry__Cluster__MigProgress *agent_progress(struct agent *a, const char *vm);

/* clusterd_req.c: clusterctl's requests */
Ferry__Cluster__Response *agent_handle(void *opaque, const Ferry__Cluster__Request *req,
				       const struct cl_peer *peer);
bool agent_revoked(void *opaque, const char *serial);

/* clusterd_plan.c: the balancer and evacuations */
bool agent_is_leader(const struct agent *a);
const char *agent_leader_name(const struct agent *a);
/* The planner's input from the state and the last loads (lock held). */
int agent_plan_input(struct agent *a, struct cl_plan_input **in, char *err, size_t err_len);
/* Is host in the cluster now (agent_online, as HA admission control asks it)? */
bool agent_admit_up(const void *opaque, const char *host);
/*
 * This agent's view for a command that HA admission control judges again
 * where it is applied (Admit in cluster.proto): the hosts it sees down.
 * Kept here, not pointing into the state, which a sync may replace while
 * the proposal waits.
 */
struct agent_admit {
	Ferry__Cluster__Admit msg;
	char *down[CL_MAX_NODES];
	char names[CL_MAX_NODES][CL_NAME_MAX];
};
/* adm filled (lock held), or NULL when ha-host-failures is off: nothing to judge. */
Ferry__Cluster__Admit *agent_admit_view(struct agent *a, struct agent_admit *adm);
/* HA admission control on a balancing plan: the moves that break it left out (cl_admit_plan). */
void agent_plan_admit(struct agent *a, struct cl_plan *plan);
/* The leader's periodic work: evacuations every second, balancing rounds. */
void agent_plan_tick(struct agent *a);

/* clusterd_ha.c: the leader restarts the HA VMs of hosts lost past the fence time */
void agent_ha_tick(struct agent *a);

/* A detached worker thread. */
int agent_spawn_thread(void *(*fn)(void *), void *arg);

#endif
