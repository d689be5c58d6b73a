/*
 * The agent's vmon processes: one per VM on this node (docs/cluster.md).
 * clusterd starts them, watches them, asks them things over their control
 * socket and stops them; it never touches guest memory itself.
 *
 * Files of a VM in the agent's run directory RUN:
 *   RUN/NAME.sock          vmon's control socket (RUN/NAME.in.sock while a
 *                          migration comes in, renamed by nothing: the agent
 *                          simply keeps using the path it started with)
 *   RUN/NAME.console       the guest's console, appended to across restarts
 *                          and across migrations into this node
 *   RUN/NAME.log           vmon's stderr
 *   RUN/NAME.in.pid        "PID TAG" of the last incoming vmon started (TAG:
 *                          the migration's id), which has no control socket
 *                          until its guest arrived: how an agent restarted
 *                          meanwhile finds it (cl_vmon_adopt_incoming)
 */
#ifndef FERRY_CL_VMON_H
#define FERRY_CL_VMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/ctl.h"

struct cl_vmon_spec {
	const char *vmon_path;    /* the vmon program */
	const char *run_dir;
	const char *name;         /* the VM */
	/* run a guest */
	const char *guest;
	const char *args;         /* NULL or "" for none */
	uint64_t mem_bytes;
	uint32_t vcpus;
	const char *cpu_model;    /* a vmon model name */
	const char *cpuid_hide;   /* NULL or "" for none */
	char *const *disks;       /* --disk specs (run only: an incoming VM's come
				   * with it in the stream) */
	size_t n_disks;
	char *const *nets;        /* --net specs (run only, as disks) */
	size_t n_nets;
	unsigned fence_s;         /* --fence-s (HA VMs; 0: none) */
	unsigned auto_resume_s;   /* --auto-resume-s (setting disk-auto-resume-s; 0: none) */
	/* or wait for an incoming migration instead (guest/args unused) */
	bool incoming;
	const char *listen_host;  /* the address to listen on (port: any) */
	const char *tls_dir;      /* NULL: plain TCP */
	int incoming_timeout_s;
	uint64_t incoming_tag;    /* written beside its pid (the migration's id) */
};

struct cl_vmon;

/*
 * The hard limit (vmon's --timeout-s) the cluster gives a migration of a
 * VM with mem_bytes of RAM under a cap of cap_mbps (0: none). vmon's own
 * default (300 s) is for a VM that crosses a fast link in seconds: a
 * 64 GiB VM under a 1 Gbit/s cap needs 550 s for one pass and would be
 * aborted at every attempt, and an evacuation would never empty its host.
 * So: vmon's default plus four passes over the RAM at the cap, or at
 * 1 Gbit/s without one. The limit is a backstop; a link that stalls ends
 * a migration through its I/O timeouts, and one that does not converge
 * through the policy's round limit, long before.
 */
#define CL_MIG_TIMEOUT_PASSES 4
#define CL_MIG_TIMEOUT_FLOOR_MBPS 1000
uint64_t cl_vmon_mig_timeout_s(uint64_t mem_bytes, uint64_t cap_mbps);

/* Start vmon; 0 or -errno with the reason. The child gets its own
 * process group, so a signal to the agent does not reach it. */
int cl_vmon_spawn(const struct cl_vmon_spec *spec, struct cl_vmon **out,
		  char *err, size_t err_len);
/*
 * Take over a vmon left running by an earlier agent (found by its control
 * socket RUN/NAME.sock, or RUN/NAME.in.sock for one that received its VM
 * by migration, answering status): watched by pidfd; its exit status
 * cannot be known and reads as "ended".
 */
int cl_vmon_adopt(const char *run_dir, const char *name, struct cl_vmon **out,
		  char *err, size_t err_len);
/*
 * Take over the incoming vmon an earlier agent started with incoming_tag
 * tag, still waiting for its migration or receiving it (no control socket
 * yet): found by RUN/NAME.in.pid, and only if that process still runs
 * vmon with RUN/NAME.in.sock. -ENOENT when there is none.
 */
int cl_vmon_adopt_incoming(const char *run_dir, const char *name, uint64_t tag,
			   struct cl_vmon **out, char *err, size_t err_len);
/* For an incoming vmon: wait for it to listen and return the port. */
int cl_vmon_incoming_port(struct cl_vmon *v, int timeout_ms, uint16_t *port,
			  char *err, size_t err_len);

pid_t cl_vmon_pid(const struct cl_vmon *v);
const char *cl_vmon_name(const struct cl_vmon *v);
const char *cl_vmon_socket(const struct cl_vmon *v);
/* An fd that becomes readable when the process ended (a pidfd). */
int cl_vmon_fd(const struct cl_vmon *v);
/*
 * Collect the process if it ended: true then, with a one-line account in
 * why ("exited with status 0", "crashed (status 3)", "killed by SIGKILL",
 * "ended" for an adopted one) and the raw wait status in *status (-1 when
 * unknown). Never blocks.
 */
bool cl_vmon_reap(struct cl_vmon *v, int *status, char *why, size_t why_len);
/* Stop it: ctl stop, then SIGTERM, then SIGKILL, within timeout_ms; reaps. */
int cl_vmon_stop(struct cl_vmon *v, int timeout_ms);
void cl_vmon_free(struct cl_vmon *v);

/* Control socket calls; resp is freed with ferry__ctl__response__free_unpacked. */
int cl_vmon_call(struct cl_vmon *v, const Ferry__Ctl__Request *req, int timeout_ms,
		 Ferry__Ctl__Response **resp, char *err, size_t err_len);

#endif
