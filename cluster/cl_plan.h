/*
 * The planner (issue 6): the cost model, the load balancer and the
 * maintenance evacuation, as pure code. No I/O, no clock reads, no
 * threads: everything comes in through struct cl_plan_input, so the same
 * code runs in clusterd, in the simulator (tools/ferry-sim.c) and in the
 * property tests. docs/cluster.md, "Balancing and maintenance", has the
 * model and the guarantees in prose.
 *
 * Use:
 *   cl_plan_defaults(&cfg);             (then the operator's overrides)
 *   cl_plan_input_build(&in, st, figs, n, now_unix_ms, &cfg, err, len);
 *   in->memo = memo;                    (optional, kept from round to round)
 *   cl_plan_balance(in, &plan);  or  cl_plan_evacuate(in, "host3", &plan);
 *   ... propose plan.moves[i] as CmdMigBegin ...
 *   cl_plan_free(&plan); cl_plan_input_free(in);
 *
 * Strings in the results point into the State given to the input: keep
 * the State unchanged and alive until the plan is freed.
 */
#ifndef FERRY_CL_PLAN_H
#define FERRY_CL_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.pb-c.h"

/* Defaults and limits, with units in the names. */
#define CL_PLAN_DEFAULT_THRESHOLD_SSD     0.001 /* least gain of a move: Σ(load-mean)², load 1.0 = a full host */
#define CL_PLAN_DEFAULT_LINK_MBPS         25000 /* a host's NIC, shared by its migrations */
#define CL_PLAN_DEFAULT_STREAM_MBPS       10000 /* what one migration stream can push */
#define CL_PLAN_DEFAULT_MAX_MIG_PER_HOST  2     /* concurrent migrations a host takes part in */
#define CL_PLAN_DEFAULT_MAX_MIG_CLUSTER   8     /* concurrent migrations in the whole cluster */
#define CL_PLAN_DEFAULT_HOLDDOWN_S        600   /* a VM moved this recently is not balanced again */
#define CL_PLAN_DEFAULT_INTERVAL_S        60    /* between balancing rounds (the agent's timer) */
#define CL_PLAN_DEFAULT_CPU_CAP_PCT       100   /* CPU demand a target may reach, of its CPUs */
#define CL_PLAN_DEFAULT_DOWNTIME_MS       30    /* the downtime target migrations are predicted with */
#define CL_PLAN_UNKNOWN_CPU_PCT_PER_VCPU  100   /* a VM without figures is taken as fully busy */
#define CL_PLAN_PAGE_BYTES                4096
#define CL_PLAN_REASON_LEN                256

struct cl_plan_config {
	double threshold_ssd;          /* > 0: a balancing move must gain more than this */
	uint64_t link_mbps;
	uint64_t stream_mbps;
	unsigned max_mig_per_host;
	unsigned max_mig_cluster;
	uint64_t holddown_s;
	uint64_t interval_s;           /* not used by the planner: the agent's period */
	unsigned cpu_cap_pct;
	uint64_t downtime_ms;
};

void cl_plan_defaults(struct cl_plan_config *c);

/*
 * Live figures for one VM, as the agents collect them (VmLoad): cpu_pct
 * is percent of one CPU (100 = one CPU busy over the window), the dirty
 * rate in pages per second. moved_unix_ms: when its last migration ended
 * (0: never or unknown; the State's last_migration.ended_unix_ms counts
 * too). A VM with no figures is taken as fully busy with no dirtying, and
 * the balancer leaves it alone.
 */
struct cl_plan_vm_figs {
	const char *name;
	double cpu_pct;
	double dirty_pages_per_s;
	uint64_t moved_unix_ms;
};

/* What moving a VM costs, from mig_predict. */
struct cl_plan_cost {
	double total_ms;
	double downtime_ms;
	double bytes;
	bool converges;                /* under the downtime target */
	bool needs_throttle;           /* only with auto-converge slowing the guest */
};

struct cl_plan_host {
	const Ferry__Cluster__Host *host;
	const char *name;
	bool active;                   /* ACTIVE with cpus and memory reported: takes VMs */
	double cpus;
	uint64_t mem_bytes;
	double cpu_demand;             /* CPUs' worth its VMs use */
	uint64_t mem_committed;        /* guest RAM placed here, arrivals included */
	unsigned migrations;           /* in flight, as source or destination */
	double load;                   /* normalised: max(cpu_demand/cpus, mem_committed/mem_bytes) */
};

struct cl_plan_vm {
	const Ferry__Cluster__Vm *vm;
	const char *name;
	int host;                      /* index in hosts; -1: not running anywhere */
	int dest;                      /* an in-flight migration's destination, or -1 */
	double cpu;                    /* CPUs' worth of demand */
	double dirty_pages_per_s;
	uint64_t mem_bytes;
	bool figs;                     /* figures were given */
	bool held;                     /* within the hold-down */
	struct cl_plan_cost cost;      /* alone on the link: min(stream, link) */
	size_t *rules;                 /* indices in rules of the rules naming it */
	size_t n_rules;
	unsigned cpu_class;            /* private: compatibility memo */
};

struct cl_plan_rule {
	const Ferry__Cluster__Rule *rule;
	const char *name;
	Ferry__Cluster__RuleKind kind;
	size_t *vms;                   /* indices in vms (names not in the state are dropped) */
	size_t n_vms;
	bool *hosts;                   /* per host index: named by the rule */
};

struct cl_plan_compat;
struct cl_plan_memo;
struct cl_plan_input;

/*
 * Optional, for the evacuation: does HA admission control's room hold
 * (cl_admit.h) with in->hosts[src] in maintenance and VM vms[i] on host
 * to[i], each an index in in's arrays? The evacuation places each VM on a
 * host where it does, if one takes it; a host where it does not still
 * takes a VM that no other takes, since the host must empty.
 */
struct cl_plan_room {
	bool (*holds)(void *opaque, const struct cl_plan_input *in, size_t src,
		      const size_t *vms, const size_t *to, size_t n);
	void *opaque;
	/*
	 * 0, or the wall time one plan may spend judging (a judgement costs
	 * 0.02-0.2 ms on roomy clusters of 16-64 hosts, up to 0.2 s on one of
	 * 64 kept at its limit): the VMs placed after it are counted in
	 * cl_plan.room_unjudged and placed as without the room.
	 */
	unsigned budget_ms;
};

/*
 * Optional: CPU compatibility answers kept from one input to the next
 * (set in->memo after building; one memo per thread). Without it every
 * input asks cl_cpu_check afresh, once per (model, host feature list).
 */
struct cl_plan_memo *cl_plan_memo_new(void);
void cl_plan_memo_free(struct cl_plan_memo *m);

struct cl_plan_input {
	struct cl_plan_config cfg;
	const Ferry__Cluster__State *st;
	uint64_t now_unix_ms;
	struct cl_plan_host *hosts;
	size_t n_hosts;
	struct cl_plan_vm *vms;
	size_t n_vms;
	struct cl_plan_rule *rules;
	size_t n_rules;
	unsigned in_flight;            /* migrations in flight cluster-wide */
	struct cl_plan_compat *compat; /* private: filled lazily, so one input is one thread's */
	struct cl_plan_memo *memo;     /* NULL, or the caller's (cl_plan_memo_new) */
	struct cl_plan_room room;      /* evacuation: HA room to keep; holds NULL: none */
};

/*
 * The snapshot the planners work on: st's hosts, VMs and rules with figs
 * (any order, n_figs of them, names not in st ignored) and cfg (NULL:
 * defaults). 0, -ENOMEM, -EINVAL (a bad config: err says which field).
 */
int cl_plan_input_build(struct cl_plan_input **out, const Ferry__Cluster__State *st,
			const struct cl_plan_vm_figs *figs, size_t n_figs, uint64_t now_unix_ms,
			const struct cl_plan_config *cfg, char *err, size_t err_len);
void cl_plan_input_free(struct cl_plan_input *in);

/* The cost of moving vm (index) with bandwidth_Bps on the link. */
void cl_plan_cost(const struct cl_plan_input *in, size_t vm, double bandwidth_Bps,
		  struct cl_plan_cost *out);
/* Whether vm's CPU model runs on host (cl_cpu_check, memoised). */
bool cl_plan_compatible(const struct cl_plan_input *in, size_t vm, size_t host);
/* The imbalance: the standard deviation of the active hosts' loads. */
double cl_plan_imbalance(const struct cl_plan_input *in);

struct cl_plan_move {
	size_t vm;                     /* index in the input's vms */
	const char *vm_name, *from, *to;
	struct cl_plan_cost cost;      /* at the bandwidth it is planned with */
	double imbalance_before;       /* the cluster's, before and after this move */
	double imbalance_after;
	double start_ms;               /* evacuation: predicted start and end from plan start */
	double end_ms;
	double cpu_over_pct;           /* evacuation: 0, or placed over cpu_cap_pct where no
					  host had room under it: the target's CPU demand
					  after, in % of its CPUs */
	bool room_lost;                /* evacuation: no host that took it kept HA's room
					  (in->room), so it goes where the room is lost */
};

enum cl_plan_why {
	CL_PLAN_WHY_NO_COMPATIBLE_HOST = 1, /* no active host runs its CPU model */
	CL_PLAN_WHY_NO_ROOM,                /* compatible hosts allowed by the rules lack memory */
	CL_PLAN_WHY_RULE,                   /* every compatible host is ruled out by a rule */
	CL_PLAN_WHY_IN_FLIGHT,              /* a migration of it is already in flight */
	CL_PLAN_WHY_CANCELLED,              /* an operator cancelled its move during this evacuation */
};

const char *cl_plan_why_name(enum cl_plan_why why);
/*
 * For the logs of an evacuation's or HA restart's move: ", over the CPU cap:
 * ..." when it passes cpu_cap_pct (in buf), "" when not.
 */
const char *cl_plan_over_cap_note(const struct cl_plan_move *m, char *buf, size_t len);

struct cl_plan_stuck {
	size_t vm;
	const char *vm_name;
	enum cl_plan_why why;
	char reason[CL_PLAN_REASON_LEN];    /* "evacuate: vm7: no active host runs model x86-64-v4" */
};

struct cl_plan {
	struct cl_plan_move *moves;    /* in the order to start them */
	size_t n_moves;
	struct cl_plan_stuck *stuck;   /* evacuation: VMs that stay, with why */
	size_t n_stuck;
	double imbalance_before, imbalance_after;
	double bytes;                  /* all moves' data */
	unsigned concurrency;          /* evacuation: migrations at once */
	double eta_ms;                 /* evacuation: all moves done, with that concurrency */
	double naive_ms;               /* evacuation: one at a time, in state order, full stream */
	double mean_done_ms;           /* evacuation: when a VM is off the host, on average */
	double naive_mean_done_ms;     /* the same, one at a time in state order */
	size_t room_unjudged;          /* evacuation: VMs placed without HA's room judged
					  (in->room's budget spent) */
};

/*
 * One balancing round: moves (at most the free migration slots) that
 * each cut the imbalance by more than cfg.threshold_ssd, cheapest VMs
 * first from the most loaded hosts; none breaks a hard rule, makes a VM
 * worse off against its soft rules, overfills a host, exceeds a cap or
 * touches a VM in its hold-down. 0 or -ENOMEM (out zeroed first).
 */
int cl_plan_balance(const struct cl_plan_input *in, struct cl_plan *out);

/*
 * Empty host (its mode may already be MAINTENANCE): a target for each
 * VM running there, start order cheapest first, the schedule with the
 * concurrency the caps allow, the ETA; VMs that cannot go anywhere are in
 * stuck with their reason. 0, -ENOENT (no such host), -ENOMEM.
 */
int cl_plan_evacuate(const struct cl_plan_input *in, const char *host, struct cl_plan *out);

void cl_plan_free(struct cl_plan *p);

/*
 * Whether the hard rules let vm run on host, as things stand in st:
 * 0, or -EPERM with "rule NAME (KIND) keeps it off HOST" in why.
 */
int cl_plan_rules_allow(const Ferry__Cluster__State *st, const char *vm, const char *host,
			char *why, size_t why_len);
/* Rule kinds by their clusterctl names (affinity, anti-affinity, host-must, ...). */
const char *cl_rule_kind_name(Ferry__Cluster__RuleKind kind);
int cl_rule_kind_parse(const char *s, Ferry__Cluster__RuleKind *out);

#endif
