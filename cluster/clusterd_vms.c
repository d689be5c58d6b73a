/*
 * clusterd: this node's vmons, kept in line with the state. The state says
 * which VMs run here (host == this node, desired running) and at which
 * generation; reconciling starts what is missing, stops what should not
 * run, and reports a vmon that ended on its own (restarting crashes unless
 * crash-restarts of them came within crash-window-s, and fences and power
 * losses always, through the state so every node knows).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cl_cpu.h"
#include "cl_inventory.h"
#include "cl_settings.h"
#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"
#include "storage/blk.h"

struct local_vm *agent_local(struct agent *a, const char *name, bool incoming)
{
	/*
	 * A vmon that handed its VM over is on its way out, however long its
	 * exit takes: it is not the VM's any more. Taken for the VM's vmon, it
	 * kept a VM that came straight back from taking over its new vmon,
	 * which was stopped, and a fresh copy of the guest was started.
	 */
	for (struct local_vm *lv = a->vms; lv; lv = lv->next)
		if (lv->incoming == incoming && !lv->ended && !lv->migrated &&
		    !strcmp(lv->name, name))
			return lv;
	return NULL;
}

static struct local_vm *local_add(struct agent *a, const char *name, struct cl_vmon *v)
{
	struct local_vm *lv = calloc(1, sizeof(*lv));

	if (!lv)
		return NULL;
	snprintf(lv->name, sizeof(lv->name), "%s", name);
	lv->v = v;
	lv->fence_s = -1;
	lv->auto_resume_s = -1;
	lv->next = a->vms;
	a->vms = lv;
	agent_wake(a);
	return lv;
}

/* Drop ended, unused entries (lock held). */
static void local_gc(struct agent *a)
{
	struct local_vm **pp = &a->vms;

	while (*pp) {
		struct local_vm *lv = *pp;

		if (lv->ended && !lv->busy) {
			*pp = lv->next;
			cl_vmon_free(lv->v);
			free(lv);
			continue;
		}
		pp = &lv->next;
	}
}

void agent_local_put(struct agent *a, struct local_vm *lv)
{
	lv->busy--;
	local_gc(a);
}

struct local_job {
	struct agent *a;
	struct local_vm *lv;
	void (*fn)(struct agent *a, struct local_vm *lv);
};

static void *local_job_run(void *arg)
{
	struct local_job *j = arg;

	j->fn(j->a, j->lv);
	pthread_mutex_lock(&j->a->lock);
	agent_local_put(j->a, j->lv);
	pthread_mutex_unlock(&j->a->lock);
	free(j);
	return NULL;
}

int agent_local_spawn(struct agent *a, struct local_vm *lv,
		      void (*fn)(struct agent *a, struct local_vm *lv))
{
	struct local_job *j = malloc(sizeof(*j));

	if (!j)
		return -ENOMEM;
	*j = (struct local_job){ .a = a, .lv = lv, .fn = fn };
	lv->busy++;
	if (agent_spawn_thread(local_job_run, j)) {
		lv->busy--;
		free(j);
		return -EAGAIN;
	}
	return 0;
}

static void stop_job(struct agent *a, struct local_vm *lv)
{
	cl_vmon_stop(lv->v, CL_STOP_TIMEOUT_MS);
	pthread_mutex_lock(&a->lock);
	agent_wake(a);
	pthread_mutex_unlock(&a->lock);
}

/* Stop a vmon in the background; its end comes through the poll loop. */
void agent_local_stop(struct agent *a, struct local_vm *lv, const char *why)
{
	if (lv->stopping || lv->ended)
		return;
	log_info("stopping %s%s (pid %d): %s", lv->name, lv->incoming ? " (incoming)" : "",
		 (int)cl_vmon_pid(lv->v), why);
	lv->stopping = true;
	agent_local_spawn(a, lv, stop_job);
}

bool vm_mine(const struct agent *a, const Ferry__Cluster__Vm *vm)
{
	return vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
	       !strcmp(vm->host, a->name);
}

static struct unreported *unrep_find(struct agent *a, const char *name)
{
	for (size_t i = 0; i < a->n_unrep; i++)
		if (!strcmp(a->unrep[i].name, name))
			return &a->unrep[i];
	return NULL;
}

static void unrep_drop(struct agent *a, struct unreported *u)
{
	*u = a->unrep[--a->n_unrep];
}

/* 0 when the report went out (the cluster still decides on it). */
static int report_send(struct agent *a, const struct unreported *u)
{
	Ferry__Cluster__CmdVmExited c = FERRY__CLUSTER__CMD_VM_EXITED__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.name = (char *)u->name;
	c.host = a->name;
	c.generation = u->generation;
	c.reason = (char *)u->reason;
	c.restart = u->restart;
	c.crash = u->crash;
	c.unix_ms = u->unix_ms;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_EXITED;
	cmd.vm_exited = &c;
	return agent_propose_async(a, &cmd);
}

/* crash: the guest's doing, counted towards crash-restarts (restart says whether this one is). */
static void report_exit(struct agent *a, const Ferry__Cluster__Vm *vm, uint64_t generation,
			const char *reason, bool restart, bool crash)
{
	struct unreported r = { .generation = generation, .restart = restart, .crash = crash,
				.unix_ms = realtime_ns() / 1000000 };
	struct unreported *u = unrep_find(a, vm->name);

	snprintf(r.name, sizeof(r.name), "%s", vm->name);
	snprintf(r.reason, sizeof(r.reason), "%s: %s", a->name, reason);
	log_info("%s: %s%s", vm->name, r.reason, restart ? "; restarting it" : "");
	if (!u && a->n_unrep < CL_UNREPORTED_MAX)
		u = &a->unrep[a->n_unrep++];
	if (!u) {
		log_warn("%s: too many unreported ends; this one is lost", vm->name);
		report_send(a, &r);
		return;
	}
	/* Kept until the cluster decided (unrep_settle): a sent proposal may still be lost. */
	*u = r;
	u->sent_ns = report_send(a, u) ? 0 : now_ns();
	if (!u->sent_ns)
		log_warn("%s: could not report its end now; it does not start here again until "
			 "the report went through and the cluster decided", vm->name);
}

/*
 * Whether vm must wait for a report of its end here: true while the state
 * still shows the generation that ended, resending it now and then.
 */
static bool unrep_settle(struct agent *a, const Ferry__Cluster__Vm *vm)
{
	struct unreported *u = unrep_find(a, vm->name);
	uint64_t now = now_ns();

	/* Another generation: decided (restarted, moved, recovered); the reconcile forgets it. */
	if (!u || vm->generation != u->generation)
		return false;
	if (a->quorate && (!u->sent_ns || now - u->sent_ns >= CL_UNREPORTED_RESEND_MS * 1000000ull) &&
	    !report_send(a, u))
		u->sent_ns = now;
	return true;
}

/* The last line vmon wrote to its log, for messages. */
static void log_tail(const struct agent *a, const char *name, char *out, size_t len)
{
	char path[PATH_MAX + 64], line[512] = "";
	FILE *f;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/%s.log", a->run_dir, name);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (line[0] != '\n')
			snprintf(out, len, "%s", line);
	fclose(f);
	out[strcspn(out, "\n")] = 0;
}

void agent_vmon_spec(const struct agent *a, const Ferry__Cluster__Vm *vm,
		     struct cl_vmon_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->vmon_path = a->vmon;
	spec->run_dir = a->run_dir;
	spec->name = vm->name;
	spec->vcpus = vm->vcpus;
	spec->cpuid_hide = a->hide;
	spec->fence_s = vm->ha ? (unsigned)cl_setting_get(a->st, CL_SET_HA_FENCE_S) : 0;
	spec->auto_resume_s = (unsigned)cl_setting_get(a->st, CL_SET_DISK_AUTO_RESUME_S);
}

/*
 * v, a vmon of vm that an earlier agent left, is the VM's now (lock held).
 * One that received its VM by migration may hold it unstarted (a lost
 * COMMIT while no agent ran here): agent_mig_landing sees to it.
 */
static struct local_vm *local_take_over(struct agent *a, const Ferry__Cluster__Vm *vm,
					struct cl_vmon *v)
{
	struct local_vm *lv = local_add(a, vm->name, v);
	size_t n = strlen(cl_vmon_socket(v));

	if (!lv)
		return NULL;
	lv->generation = vm->generation;
	if (n > 8 && !strcmp(cl_vmon_socket(v) + n - 8, ".in.sock"))
		agent_mig_landing(a, lv);
	return lv;
}

static void start_vm(struct agent *a, const Ferry__Cluster__Vm *vm)
{
	const Ferry__Cluster__Host *self = cl_state_host(a->st, a->name);
	struct cl_vmon_spec spec;
	char model[32], hide[1024], all_hide[2200], err[CL_ERR_LEN];
	struct cl_vmon *v;
	struct local_vm *lv;

	/* Never a second copy: a vmon that already answers for it is the VM. */
	if (!cl_vmon_adopt(a->run_dir, vm->name, &v, err, sizeof(err))) {
		local_take_over(a, vm, v);
		log_warn("%s: found its vmon (pid %d) running; took it over instead of "
			 "starting another", vm->name, (int)cl_vmon_pid(v));
		return;
	}
	if (!self || cl_cpu_vmon_args(a->st, vm, self, model, sizeof(model), hide,
				      sizeof(hide))) {
		report_exit(a, vm, vm->generation, "cannot resolve the CPU model", false, false);
		return;
	}
	snprintf(all_hide, sizeof(all_hide), "%s%s%s", a->hide, *a->hide && *hide ? "," : "",
		 hide);
	agent_vmon_spec(a, vm, &spec);
	spec.guest = vm->guest;
	spec.args = vm->args;
	spec.disks = vm->disks;
	spec.n_disks = vm->n_disks;
	spec.nets = vm->nets;
	spec.n_nets = vm->n_nets;
	spec.mem_bytes = vm->mem_bytes;
	spec.cpu_model = model;
	spec.cpuid_hide = all_hide;
	if (cl_vmon_spawn(&spec, &v, err, sizeof(err))) {
		report_exit(a, vm, vm->generation, err, false, false);
		return;
	}
	lv = local_add(a, vm->name, v);
	if (!lv) {
		cl_vmon_stop(v, 0);
		cl_vmon_free(v);
		return;
	}
	lv->generation = vm->generation;
	lv->fence_s = (int)spec.fence_s;
	lv->auto_resume_s = (int)spec.auto_resume_s;
	log_info("started %s (generation %llu, pid %d)", vm->name,
		 (unsigned long long)vm->generation, (int)cl_vmon_pid(v));
}

/* A crash is worth a restart; a guest that exited or a refusal is not. */
static bool exit_restartable(int status)
{
	if (status == -1)
		return true;   /* an adopted vmon: how it ended is unknown */
	if (WIFSIGNALED(status))
		return true;
	/* 5: fenced while this host was cut off; back in the cluster, it may run again. */
	return WIFEXITED(status) && (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4 ||
				     WEXITSTATUS(status) == 5);
}

/*
 * Whether the end was the host's doing, not the guest's: a fence (this
 * host was cut off) or an end nobody saw (the host lost power, the vmon
 * was adopted). Those restart whatever the crash count: crash-restarts
 * stops a guest that crashes again and again, and a soak found it stopping
 * an HA VM for good on its fourth fence or power loss when they counted.
 */
static bool exit_hosts_fault(int status)
{
	return status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 5);
}

/* A start made this long ago got past its disks: its wait is over. */
static bool disk_wait_stale(const struct disk_wait *w, uint64_t now)
{
	return now > w->retry_ns + CL_DISK_WAIT_STALE_S * 1000000000ull;
}

static struct disk_wait *disk_wait_find(struct agent *a, const char *name)
{
	for (size_t i = 0; i < a->n_disk_waits; i++)
		if (!strcmp(a->disk_waits[i].name, name))
			return &a->disk_waits[i];
	return NULL;
}

/* Whether two --disk specs name the same storage (blk_spec_parse's target). */
static bool same_disk(const char *a, const char *b)
{
	struct blk_spec x, y;
	char err[8];

	return !blk_spec_parse(a, &x, err, sizeof(err)) && !blk_spec_parse(b, &y, err, sizeof(err)) &&
	       !strcmp(x.target, y.target);
}

/*
 * Another VM the cluster runs (or means to) names one of vm's disks: a
 * disk in use by it is a conflict, not a previous run on its way out.
 */
static bool disk_shared_with_other(const struct agent *a, const Ferry__Cluster__Vm *vm)
{
	for (size_t i = 0; i < a->st->n_vms; i++) {
		const Ferry__Cluster__Vm *o = a->st->vms[i];

		if (o == vm || o->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING)
			continue;
		for (size_t d = 0; d < vm->n_disks; d++)
			for (size_t e = 0; e < o->n_disks; e++)
				if (same_disk(vm->disks[d], o->disks[e]))
					return true;
	}
	return false;
}

/*
 * The vmon could not take a disk: another process holds its lease (6), or
 * its storage could not be reached (7). After a fence elsewhere the holder
 * is the VM's fenced vmon, gone in a moment; a host cut off from its
 * cluster may have been cut off from the storage too, and the storage
 * back in a moment as well. The end reported now would leave the VM down
 * for good (an HA recovery refused). So start it again here, with growing
 * waits, a few times for a held lease, for up to CL_DISK_GONE_GIVE_UP_S
 * for storage out of reach; true while it will be. A lease held for a VM
 * of the cluster that names the same disk is a conflict, not a leftover:
 * said at once, as any end after the tries.
 */
static bool disk_wait_again(struct agent *a, struct local_vm *lv)
{
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, lv->name);
	struct disk_wait *w = disk_wait_find(a, lv->name);
	uint64_t now = now_ns();
	char tail[300];
	unsigned ms, max_ms;
	bool gone;

	if (!WIFEXITED(lv->status) || !vm || vm->generation != lv->generation)
		return false;
	gone = WEXITSTATUS(lv->status) == 7;
	if (!gone && (WEXITSTATUS(lv->status) != 6 || disk_shared_with_other(a, vm)))
		return false;
	if (!w) {
		if (a->n_disk_waits >= CL_UNREPORTED_MAX)
			return false;
		w = &a->disk_waits[a->n_disk_waits++];
		memset(w, 0, sizeof(*w));
	} else if (w->generation != lv->generation || w->gone != gone ||
		   disk_wait_stale(w, now)) {
		w->tries = 0;   /* a new run, another cause, or a run that got going */
	}
	snprintf(w->name, sizeof(w->name), "%s", lv->name);
	w->generation = lv->generation;
	if (!w->tries)
		w->first_ns = now;
	w->gone = gone;
	log_tail(a, lv->name, tail, sizeof(tail));
	snprintf(w->why, sizeof(w->why), "%s", tail);
	if (gone ? now - w->first_ns >= CL_DISK_GONE_GIVE_UP_S * 1000000000ull :
		   w->tries >= CL_DISK_BUSY_TRIES) {
		log_warn("%s: %s after %u tries in %llu s; reporting its end: %s", lv->name,
			 gone ? "its storage is still out of reach" : "its disk is still in use",
			 w->tries + 1, (unsigned long long)((now - w->first_ns) / 1000000000ull),
			 tail);
		*w = a->disk_waits[--a->n_disk_waits];
		return false;
	}
	ms = 1000u << (w->tries < 4 ? w->tries : 4);
	max_ms = gone ? CL_DISK_GONE_WAIT_MAX_MS : CL_DISK_BUSY_WAIT_MAX_MS;
	ms = ms > max_ms ? max_ms : ms;
	w->tries++;
	w->retry_ns = now + ms * 1000000ull;
	if (gone)
		log_warn("%s: its disk's storage is out of reach; starting it again in %u s "
			 "(try %u; until %u s after the first): %s", lv->name, ms / 1000,
			 w->tries + 1, CL_DISK_GONE_GIVE_UP_S, tail);
	else
		log_warn("%s: its disk is in use; starting it again in %u s (try %u of %u): %s",
			 lv->name, ms / 1000, w->tries + 1, CL_DISK_BUSY_TRIES + 1, tail);
	return true;
}

/* Whether vm's start here waits for disk_wait_again's time; forgets stale waits. */
static bool disk_wait_holds(struct agent *a, const Ferry__Cluster__Vm *vm)
{
	struct disk_wait *w = disk_wait_find(a, vm->name);

	if (!w)
		return false;
	if (w->generation != vm->generation || disk_wait_stale(w, now_ns())) {
		*w = a->disk_waits[--a->n_disk_waits];
		return false;
	}
	return now_ns() < w->retry_ns;
}

void agent_vm_ended(struct agent *a, struct local_vm *lv)
{
	if (!cl_vmon_reap(lv->v, &lv->status, lv->why, sizeof(lv->why)))
		return;
	lv->ended = true;
	log_info("%s%s (pid %d) %s", lv->name, lv->incoming ? " (incoming)" : "",
		 (int)cl_vmon_pid(lv->v), lv->why);
	if (lv->stopping || lv->migrated || lv->incoming || lv->following)
		return;   /* asked for, or the migration's follower reports it */
	if (disk_wait_again(a, lv))
		return;   /* the reconcile starts it again once the wait is over */
	agent_vm_report(a, lv);
}

void agent_vm_report(struct agent *a, struct local_vm *lv)
{
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, lv->name);
	char reason[CL_ERR_LEN], tail[300], capped[160] = "";
	uint64_t now_ms = realtime_ns() / 1000000;
	bool crash, restart;

	if (!vm || !vm_mine(a, vm) || vm->generation != lv->generation)
		return;
	crash = exit_restartable(lv->status) && !exit_hosts_fault(lv->status);
	restart = exit_restartable(lv->status) &&
		  (!crash || cl_vm_crash_restarts(a->st, vm, now_ms));
	if (crash && !restart)
		snprintf(capped, sizeof(capped), "; not restarted: it crashed %u times in the %llu s "
			 "before (crash-restarts %llu, crash-window-s %llu)",
			 cl_vm_crashes_counted(a->st, vm, now_ms),
			 (unsigned long long)cl_setting_get(a->st, CL_SET_CRASH_WINDOW_S),
			 (unsigned long long)cl_setting_get(a->st, CL_SET_CRASH_RESTARTS),
			 (unsigned long long)cl_setting_get(a->st, CL_SET_CRASH_WINDOW_S));
	log_tail(a, lv->name, tail, sizeof(tail));
	snprintf(reason, sizeof(reason), "vmon %s%s%s%s", lv->why, capped, *tail ? ": " : "", tail);
	report_exit(a, vm, lv->generation, reason, restart, crash);
}

void agent_reconcile(struct agent *a)
{
	if (!a->sync.synced)
		return;   /* the state may be stale until the view is synced */
	for (size_t i = 0; i < a->st->n_vms; i++) {
		Ferry__Cluster__Vm *vm = a->st->vms[i];
		struct local_vm *lv;

		agent_mig_reconcile(a, vm);
		lv = agent_local(a, vm->name, false);
		if (vm_mine(a, vm)) {
			if (lv && lv->generation != vm->generation && !lv->following)
				agent_local_stop(a, lv, "replaced by a new generation");
			/*
			 * Never without quorum: the state may be stale, and the
			 * majority may have restarted an HA VM elsewhere already
			 * (this host's vmon fenced itself for that reason).
			 */
			else if (!lv && a->quorate && !unrep_settle(a, vm) &&
				 !disk_wait_holds(a, vm) && !agent_local(a, vm->name, true) &&
				 !(vm->migration && !strcmp(vm->migration->source, a->name)))
				start_vm(a, vm);
		} else if (lv && !lv->following && !lv->migrated) {
			agent_local_stop(a, lv, vm->desired ==
				   FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING ?
				   "the VM runs elsewhere" : "the VM is stopped");
		}
	}
	/* Ends the cluster has decided on, one way or another. */
	for (size_t i = 0; i < a->n_unrep;) {
		const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, a->unrep[i].name);

		if (!vm || !vm_mine(a, vm) || vm->generation != a->unrep[i].generation)
			unrep_drop(a, &a->unrep[i]);
		else
			i++;
	}
	/* vmons of VMs the state no longer has */
	for (struct local_vm *lv = a->vms; lv; lv = lv->next)
		if (!lv->ended && !cl_state_vm(a->st, lv->name))
			agent_local_stop(a, lv, "the VM was deleted");
	local_gc(a);
}

void agent_adopt(struct agent *a)
{
	for (size_t i = 0; i < a->st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = a->st->vms[i];
		char err[CL_ERR_LEN];
		struct cl_vmon *v;

		if (!vm_mine(a, vm) || cl_vmon_adopt(a->run_dir, vm->name, &v, err, sizeof(err)))
			continue;
		pthread_mutex_lock(&a->lock);
		if (local_take_over(a, vm, v))
			log_info("adopted %s (pid %d) left running by an earlier clusterd",
				 vm->name, (int)cl_vmon_pid(v));
		pthread_mutex_unlock(&a->lock);
	}
}

static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')))
		return 0;
	/* fields 14 and 15 (utime, stime), counted from the state at field 3 */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * The guest's dirty rate as its vmon measures it (0 when unknown), and in
 * reason why the vmon paused its guest on its own (a disk full or gone),
 * or ""; in held whether the operator paused it. A passing pause (a
 * switchover, auto-converge) is not reported. A short timeout:
 * this runs on the main loop, and a vmon busy elsewhere only costs one
 * figure.
 */
static double vmon_sample(struct local_vm *lv, char *reason, size_t len, bool *held)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	const Ferry__Ctl__Status *st;
	char err[CL_ERR_LEN];
	double rate = 0;

	*reason = '\0';
	*held = false;
	req.cmd_case = FERRY__CTL__REQUEST__CMD_STATS;
	req.stats = &empty;
	if (cl_vmon_call(lv->v, &req, CL_STATS_TIMEOUT_MS, &resp, err, sizeof(err)))
		return 0;
	if (!resp->error && resp->stats && resp->stats->dirty)
		rate = resp->stats->dirty->pages_per_s;
	st = !resp->error && resp->stats ? resp->stats->status : NULL;
	if (st && st->state == FERRY__CTL__VM_STATE__VM_STATE_PAUSED && st->reason && *st->reason)
		snprintf(reason, len, "%s", st->reason);
	*held = st && st->state == FERRY__CTL__VM_STATE__VM_STATE_PAUSED && st->held;
	ferry__ctl__response__free_unpacked(resp, NULL);
	return rate;
}

/*
 * Set vmon's fence (fence) or auto-resume period to seconds (0: off), or
 * ask what both are (seconds < 0). A vmon that predates vmon ctl
 * auto-resume refuses it as unknown: -EOPNOTSUPP, not logged here.
 */
static int vmon_period(struct local_vm *lv, bool fence, int seconds)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Fence f = FERRY__CTL__FENCE__INIT;
	Ferry__Ctl__AutoResume ar = FERRY__CTL__AUTO_RESUME__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	const char *what = fence ? "fence" : "auto-resume";
	char err[CL_ERR_LEN];
	int ret;

	if (seconds < 0) {
		req.cmd_case = FERRY__CTL__REQUEST__CMD_STATUS;
		req.status = &empty;
	} else if (fence) {
		f.seconds = (uint32_t)seconds;
		req.cmd_case = FERRY__CTL__REQUEST__CMD_FENCE;
		req.fence = &f;
	} else {
		ar.seconds = (uint32_t)seconds;
		req.cmd_case = FERRY__CTL__REQUEST__CMD_AUTO_RESUME;
		req.auto_resume = &ar;
	}
	if (cl_vmon_call(lv->v, &req, CL_STATS_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_warn("%s: %s: %s", lv->name, what, err);
		return -EIO;
	}
	ret = resp->error;
	if (ret && ret != -EOPNOTSUPP)
		log_warn("%s: %s: %s", lv->name, what, resp->message);
	if (!ret && resp->status) {
		lv->fence_s = (int)resp->status->fence_s;
		if (lv->auto_resume_s != -2)
			lv->auto_resume_s = (int)resp->status->auto_resume_s;
	}
	ferry__ctl__response__free_unpacked(resp, NULL);
	return ret;
}

static int vmon_fence(struct local_vm *lv, int seconds)
{
	return vmon_period(lv, true, seconds);
}

/*
 * disk-auto-resume-s changed: a vmon started before takes the new period
 * (or none) within a keepalive period, as one started now would have it.
 */
static void autoresume_sync(struct agent *a, struct local_vm *lv)
{
	int want = (int)cl_setting_get(a->st, CL_SET_DISK_AUTO_RESUME_S);
	int ret;

	if (lv->auto_resume_s == -2 || lv->auto_resume_s == want)
		return;
	if (lv->auto_resume_s == -1 && (vmon_period(lv, false, -1) || lv->auto_resume_s == want))
		return;
	ret = vmon_period(lv, false, want);
	if (ret == -EOPNOTSUPP) {
		log_info("%s: its vmon predates vmon ctl auto-resume: disk-auto-resume-s holds "
			 "for it from its next start or migration", lv->name);
		lv->auto_resume_s = -2;
	} else if (!ret) {
		if (want)
			log_info("%s: its vmon resumes a VM its disk paused, looked at every %d s "
				 "(disk-auto-resume-s)", lv->name, want);
		else
			log_info("%s: its vmon no longer resumes a VM its disk paused "
				 "(disk-auto-resume-s none)", lv->name);
	}
}

/*
 * HA changed while the VM runs here: arm its vmon's fence, then tell the
 * cluster (only then may a recovery restart it elsewhere); or disarm it,
 * the cluster having dropped HA already. Retried every keepalive period.
 */
static void fence_sync(struct agent *a, struct local_vm *lv, const Ferry__Cluster__Vm *vm)
{
	bool want = vm->ha && lv->generation == vm->generation && vm_mine(a, vm);
	unsigned period = (unsigned)cl_setting_get(a->st, CL_SET_HA_FENCE_S);

	if (lv->fence_s < 0 && vmon_fence(lv, -1))
		return;
	if (!want && lv->fence_s > 0 && !vmon_fence(lv, 0))
		log_info("%s: HA is off: its vmon's fence is disarmed", vm->name);
	/* Whatever the state believes, an HA VM's vmon here fences. */
	if (want && !lv->fence_s && vmon_fence(lv, (int)period))
		return;
	if (want && vm->ha_unarmed) {
		Ferry__Cluster__CmdVmHaArmed c = FERRY__CLUSTER__CMD_VM_HA_ARMED__INIT;
		Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

		c.vm = vm->name;
		c.generation = vm->generation;
		cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_HA_ARMED;
		cmd.vm_ha_armed = &c;
		if (!agent_propose_async(a, &cmd))
			log_info("%s: HA is on: its vmon's fence is armed (%u s)", vm->name,
				 (unsigned)lv->fence_s);
	}
}

/*
 * HA: tell each fenced vmon that this host is still in the quorate part
 * of the cluster (the caller checks), so its fence does not stop it.
 */
void agent_keepalive(struct agent *a)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	char err[CL_ERR_LEN];

	req.cmd_case = FERRY__CTL__REQUEST__CMD_KEEPALIVE;
	req.keepalive = &empty;
	for (struct local_vm *lv = a->vms; lv; lv = lv->next) {
		const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, lv->name);
		Ferry__Ctl__Response *resp = NULL;

		if (lv->ended || !vm)
			continue;
		/* An incoming vmon has the fence it was started with, HA being fixed meanwhile. */
		if (!lv->incoming && !lv->stopping && !lv->migrated) {
			fence_sync(a, lv, vm);
			autoresume_sync(a, lv);
		}
		if (lv->incoming ? !vm->ha : lv->fence_s <= 0)
			continue;
		/* An incoming vmon answers once its VM arrived; until then it runs nothing. */
		if (cl_vmon_call(lv->v, &req, CL_STATS_TIMEOUT_MS, &resp, err, sizeof(err))) {
			if (!lv->incoming)
				log_debug("%s: keepalive: %s", lv->name, err);
			continue;
		}
		if (resp->error)
			log_warn("%s: keepalive: %s", lv->name, resp->message);
		ferry__ctl__response__free_unpacked(resp, NULL);
	}
}

void agent_send_load(struct agent *a)
{
	Ferry__Cluster__HostLoad l = FERRY__CLUSTER__HOST_LOAD__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;
	Ferry__Cluster__VmLoad loads[256], *ptrs[256];
	static char reasons[256][CL_ERR_LEN];   /* the agent's loop thread only */
	uint64_t now = now_ns();
	double dt;
	size_t n = 0;

	/* A state that could not be saved: try again before telling. */
	if (*a->unsaved)
		agent_persist(a);
	l.host = a->name;
	l.state_unsaved = a->unsaved;
	l.state_unsaved_unix_ms = a->unsaved_unix_ms;
	l.cpu_load = cl_host_load();
	l.vm_mem_bytes = cl_state_host_mem_used(a->st, a->name);
	for (struct local_vm *lv = a->vms; lv && n < 256; lv = lv->next) {
		bool held;
		double cpu;

		if (lv->ended || lv->incoming)
			continue;
		ferry__cluster__vm_load__init(&loads[n]);
		cpu = proc_cpu_s(cl_vmon_pid(lv->v));
		/* A vmon seen for the first time (new, adopted, or just in by
		 * migration) has no window yet: no figures rather than wrong ones. */
		if (!lv->cpu_ns) {
			lv->cpu_s = cpu;
			lv->cpu_ns = now;
			continue;
		}
		dt = (now - lv->cpu_ns) / 1e9;
		loads[n].name = lv->name;
		loads[n].pid = cl_vmon_pid(lv->v);
		loads[n].cpu_pct = dt > 0 && cpu >= lv->cpu_s ? 100 * (cpu - lv->cpu_s) / dt : 0;
		loads[n].dirty_pages_per_s = vmon_sample(lv, reasons[n], sizeof(reasons[n]),
							 &held);
		loads[n].reason = reasons[n];
		loads[n].held = held;
		loads[n].state = lv->stopping ? "stopping" : *reasons[n] || held ? "paused" :
				 "running";
		lv->cpu_s = cpu;
		lv->cpu_ns = now;
		ptrs[n] = &loads[n];
		n++;
	}
	/* VMs to be started again (disk_wait_again): no vmon, but why not. */
	for (size_t i = 0; i < a->n_disk_waits && n < 256; i++) {
		const struct disk_wait *w = &a->disk_waits[i];
		const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, w->name);
		char of[16] = "";

		if (!vm || !vm_mine(a, vm) || vm->generation != w->generation ||
		    agent_local(a, w->name, false) || disk_wait_stale(w, now))
			continue;
		if (!w->gone)
			snprintf(of, sizeof(of), " of %u", CL_DISK_BUSY_TRIES + 1);
		ferry__cluster__vm_load__init(&loads[n]);
		snprintf(reasons[n], sizeof(reasons[n]), "%s; trying again in %llu s (try %u%s): %s",
			 w->gone ? "its disk's storage is out of reach" : "its disk is in use",
			 (unsigned long long)(w->retry_ns > now ?
					      (w->retry_ns - now + 999999999) / 1000000000 : 0),
			 w->tries + 1, of, w->why);
		loads[n].name = (char *)w->name;
		loads[n].state = "waiting";
		loads[n].reason = reasons[n];
		ptrs[n] = &loads[n];
		n++;
	}
	l.vms = ptrs;
	l.n_vms = n;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_LOAD;
	m.load = &l;
	agent_send(a, &m);
}
