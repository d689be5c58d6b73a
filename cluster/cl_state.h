/*
 * The replicated cluster state (docs/cluster.md): a State message that
 * changes only by applying Commands, in the total order corosync CPG
 * delivers them. Applying is deterministic, depending on nothing but the
 * state and the command, so every node that applies the same commands in
 * the same order holds the same state. A command that does not fit the
 * state (an unknown VM, a name taken, a host that lacks a CPU feature) is
 * refused by every node alike and changes nothing, seq included.
 */
#ifndef FERRY_CL_STATE_H
#define FERRY_CL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.pb-c.h"

#define CL_ERR_LEN 512

/*
 * The commands this build's state machine applies. Agents report it when
 * they join (Host.agent_proto). An agent of an older build cannot apply a
 * newer command, and its copy of the state would fall behind its peers',
 * so a command newer than some host's agent is refused by every node
 * alike (the old agent refuses it as unknown).
 */
#define CL_PROTO_2 2   /* CmdConfigSet, Host.witness, CmdHostRemove; 1: up to CmdBalanceMode */
#define CL_PROTO_3 3   /* HA: Vm.ha, vmon --fence-s and keepalives, CmdVmRecover */
#define CL_PROTO_4 4   /* NICs: Vm.nets, Inventory.bridges */
#define CL_PROTO_5 5   /* Vm.priority, CmdVmSet.set_priority */
#define CL_PROTO_6 6   /* CmdMigCancel, MigrationResult.cancelled, Host.mode_unix_ms */
#define CL_PROTO_7 7   /* HA on or off while a VM runs: Vm.ha_unarmed, CmdVmHaArmed, vmon ctl fence */
#define CL_PROTO_8 8   /* CmdMigSet: a migration's downtime target and cap changed in flight */
#define CL_PROTO_9 9   /* a destination waits for the source's restarted agent (MigSourceGone) */
/*
 * 10: crash restarts in a window (Vm.crashes_unix_ms, CmdVmExited.crash,
 * the crash-* settings); vm pause (VmResume.pause); disk-auto-resume-s
 */
#define CL_PROTO_10 10
#define CL_PROTO_11 11 /* the ha-host-failures setting (HA admission control) */
#define CL_PROTO_12 12 /* admission control judged again where applied (Admit) */
#define CL_PROTO_13 13 /* entering maintenance judged again where applied */
#define CL_STATE_PROTO CL_PROTO_13
/* A host other than except (NULL: none) whose agent applies less than proto, or NULL. */
const Ferry__Cluster__Host *cl_state_host_below(const Ferry__Cluster__State *st, uint32_t proto,
						const char *except);
#define CL_EVENTS_MAX 200   /* the state keeps the last this many events */

Ferry__Cluster__State *cl_state_new(const char *cluster_name);
/* Read a persisted state: 0, -ENOENT when there is none, -EBADMSG. */
int cl_state_load(const char *path, Ferry__Cluster__State **out, char *err, size_t err_len);
/* Persist atomically (temporary file, fsync, rename). */
int cl_state_save(const char *path, const Ferry__Cluster__State *st, char *err, size_t err_len);

Ferry__Cluster__Vm *cl_state_vm(const Ferry__Cluster__State *st, const char *name);
Ferry__Cluster__Host *cl_state_host(const Ferry__Cluster__State *st, const char *name);
Ferry__Cluster__Host *cl_state_host_by_nodeid(const Ferry__Cluster__State *st, uint32_t nodeid);
/* Guest RAM of the VMs placed on host (running or arriving by migration). */
uint64_t cl_state_host_mem_used(const Ferry__Cluster__State *st, const char *host);
/*
 * unsaved of the online hosts cannot save the state: are the operator's
 * changes to what it keeps refused (more than half; docs/cluster.md)? The
 * agents refuse by it, clusterctl status warns by it.
 */
bool cl_state_unsaved_refuses(size_t unsaved, size_t online);
bool cl_state_revoked(const Ferry__Cluster__State *st, const char *serial);
/*
 * The guest crashes of vm that count at now_ms (the reporter's clock):
 * those within crash-window-s. A crash is restarted while fewer than
 * crash-restarts count.
 */
unsigned cl_vm_crashes_counted(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
			       uint64_t now_ms);
bool cl_vm_crash_restarts(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
			  uint64_t now_ms);
/* The first HA VM that runs, placed on host (NULL: on any host), or NULL. */
const Ferry__Cluster__Vm *cl_state_ha_running(const Ferry__Cluster__State *st, const char *host);
/*
 * Write the revoked serials to path (replaced whole), in the format
 * struct xport_tls.revoked reads: the node's vmons refuse them on
 * migration streams without asking the agent.
 */
int cl_state_write_revoked(const Ferry__Cluster__State *st, const char *path, char *err,
			   size_t err_len);
/*
 * Whether vm can go to host: it exists, takes VMs (not in maintenance),
 * has the CPU features of the VM's model and the memory. 0 or -errno with
 * "WHAT: VM: reason" in err.
 */
int cl_state_host_fits(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		       const char *what, const char *host, char *err, size_t err_len);
/* CPU models a VM may name. */
bool cl_model_known(const char *model);
/* "low", "medium", "high"; NULL for a value no build knows. */
const char *cl_priority_name(Ferry__Cluster__VmPriority p);
/* The order of placement: low 0, medium 1, high 2. */
unsigned cl_priority_rank(Ferry__Cluster__VmPriority p);

/*
 * Apply cmd: 0 with seq advanced, or -errno with the reason in err (as a
 * user reads it: "vm create: vm1: the name is taken") and st unchanged.
 */
/*
 * Log what cmd, just applied, did (cl_state_event.c); the last
 * CL_EVENTS_MAX stay. Only cl_state_apply calls it.
 */
void cl_state_event_add(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd);
int cl_state_apply(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
		   char *err, size_t err_len);

#endif
