/*
 * clusterd: migrations between nodes (docs/cluster.md, "Migration").
 *
 *   begin (state) -> the destination starts `vmon run --incoming` and
 *   proposes ready with its address -> the source tells its vmon to migrate
 *   there and follows it, multicasting progress -> the source proposes end
 *   with vmon's result; placement moves only if vmon reports the
 *   destination acknowledged and resumed.
 *
 * Whoever can no longer do its part is covered by the membership: a
 * destination node that leaves fails the migration (the source's vmon
 * keeps the VM running), and a source node that leaves is settled by the
 * destination, which knows whether its vmon was handed the guest. An agent
 * that restarts while its node stays finds its vmon again and goes on.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

__attribute__((format(printf, 4, 5)))
static void mig_end_async(struct agent *a, const Ferry__Cluster__Vm *vm, bool ok,
			  const char *fmt, ...)
{
	va_list ap;
	Ferry__Cluster__MigrationResult r = FERRY__CLUSTER__MIGRATION_RESULT__INIT;
	Ferry__Cluster__CmdMigEnd c = FERRY__CLUSTER__CMD_MIG_END__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	char msg[CL_ERR_LEN], full[CL_ERR_LEN + 80];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "migrate: %s: %s", vm->name, msg);
	r.ok = ok;
	r.error = ok ? "" : full;
	/* An end that is no vmon's report says how it was settled. */
	r.note = ok ? msg : "";
	c.vm = vm->name;
	c.id = vm->migration->id;
	c.result = &r;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_END;
	cmd.mig_end = &c;
	if (!agent_propose_async(a, &cmd))
		log_info("%s", ok ? msg : full);
}

/* Propose until the cluster took it or the migration is no longer ours. */
static void mig_end_sync(struct agent *a, const char *vm, uint64_t id,
			 Ferry__Cluster__MigrationResult *r)
{
	Ferry__Cluster__CmdMigEnd c = FERRY__CLUSTER__CMD_MIG_END__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	char err[CL_ERR_LEN];

	c.vm = (char *)vm;
	c.id = id;
	c.result = r;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_END;
	cmd.mig_end = &c;
	/* Without quorum the result waits; it is the truth once it lands. */
	for (int i = 0; i < 600 && !a->quit; i++) {
		int ret = agent_propose(a, &cmd, err, sizeof(err));

		if (!ret || ret == -ESTALE || ret == -ENOENT)
			return;
		if (i % 10 == 0)
			log_warn("migrate: %s: cannot record the result yet: %s", vm, err);
		sleep_ms(1000);
	}
}

/* ---- the destination -------------------------------------------------- */

struct incoming_job {
	struct agent *a;
	struct local_vm *lv;
	char vm[CL_NAME_MAX];
	uint64_t id;
};

static void *incoming_run(void *arg)
{
	struct incoming_job *j = arg;
	struct agent *a = j->a;
	Ferry__Cluster__CmdMigReady c = FERRY__CLUSTER__CMD_MIG_READY__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	char err[CL_ERR_LEN], uri[128];
	uint16_t port;
	int ret;

	ret = cl_vmon_incoming_port(j->lv->v, CL_INCOMING_TIMEOUT_S * 1000, &port, err,
				    sizeof(err));
	if (!ret) {
		snprintf(uri, sizeof(uri), "tcp:%s:%u", a->address, port);
		c.vm = j->vm;
		c.id = j->id;
		c.uri = uri;
		cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_READY;
		cmd.mig_ready = &c;
		ret = agent_propose(a, &cmd, err, sizeof(err));
	}
	if (ret) {
		Ferry__Cluster__MigrationResult r = FERRY__CLUSTER__MIGRATION_RESULT__INIT;
		char full[CL_ERR_LEN + 128];

		snprintf(full, sizeof(full), "migrate: %s: destination %s: %s", j->vm,
			 a->name, err);
		log_warn("%s", full);
		r.error = full;
		mig_end_sync(a, j->vm, j->id, &r);
	}
	pthread_mutex_lock(&a->lock);
	agent_local_put(a, j->lv);
	agent_wake(a);
	pthread_mutex_unlock(&a->lock);
	free(j);
	return NULL;
}

static bool ids_has(const struct mig_ids *r, uint64_t id)
{
	for (unsigned i = 0; i < CL_HANDLED_MAX; i++)
		if (r->id[i] == id)
			return true;
	return false;
}

/* Add id unless there: whether it was new. */
static bool ids_once(struct mig_ids *r, uint64_t id)
{
	if (ids_has(r, id))
		return false;
	r->id[r->next++ % CL_HANDLED_MAX] = id;
	return true;
}

/* Migrations this node already took up (dest: its vmon; source: following). */
static bool handled_has(const struct agent *a, uint64_t id)
{
	return ids_has(&a->handled, id);
}

static bool handled_once(struct agent *a, uint64_t id)
{
	return ids_once(&a->handled, id);
}

/* lv for v, this node's vmon for vm's migration in (lock held). */
static struct local_vm *incoming_local(struct agent *a, const Ferry__Cluster__Vm *vm,
				       struct cl_vmon *v, int fence_s)
{
	struct local_vm *lv = calloc(1, sizeof(*lv));

	if (!lv)
		return NULL;
	snprintf(lv->name, sizeof(lv->name), "%s", vm->name);
	lv->v = v;
	lv->fence_s = fence_s;
	lv->auto_resume_s = -1;   /* asked once it has landed */
	lv->incoming = true;
	lv->mig_id = vm->migration->id;
	lv->next = a->vms;
	a->vms = lv;
	return lv;
}

/*
 * This agent restarted while the migration came in: the vmon an earlier
 * agent started for it may be receiving the guest, or hold it already. A
 * second one would be taken for the VM's at the end while the guest ran in
 * the first, unwatched (and a restart of the "ended" second would run the
 * VM twice). Take the first over if the source was told its address; if
 * not, nothing ever reached it: stop it and start afresh.
 */
static bool incoming_adopt(struct agent *a, Ferry__Cluster__Vm *vm)
{
	struct cl_vmon_spec spec;
	char err[CL_ERR_LEN];
	struct cl_vmon *v;

	if (cl_vmon_adopt_incoming(a->run_dir, vm->name, vm->migration->id, &v, err,
				   sizeof(err)))
		return false;
	agent_vmon_spec(a, vm, &spec);
	if (!*vm->migration->incoming_uri || !incoming_local(a, vm, v, (int)spec.fence_s)) {
		log_info("migrate: %s: stopping the incoming vmon an earlier agent started "
			 "(pid %d), which no source was told of", vm->name, (int)cl_vmon_pid(v));
		cl_vmon_stop(v, 1000);
		cl_vmon_free(v);
		return false;
	}
	agent_wake(a);
	log_info("migrate: %s: adopted the incoming vmon (pid %d) an earlier agent started; "
		 "it goes on receiving from %s", vm->name, (int)cl_vmon_pid(v),
		 vm->migration->source);
	return true;
}

static void incoming_start(struct agent *a, Ferry__Cluster__Vm *vm)
{
	struct stat sb;
	struct cl_vmon_spec spec;
	struct incoming_job *j;
	char err[CL_ERR_LEN];
	struct cl_vmon *v;
	struct local_vm *lv;

	agent_vmon_spec(a, vm, &spec);
	/*
	 * No --mem: vmon would fault the RAM in before it listens, and the
	 * source would wait for that. First touch costs the same whether it
	 * comes first or as the pages arrive (measured on a 768 MiB guest
	 * between lab nodes: 2.1 s lazily, 1.2 s + 1.3 s up front, 2.7 s with a
	 * populating thread beside the receiver), and zero pages are never
	 * touched at all.
	 */
	spec.incoming = true;
	spec.listen_host = a->address;
	spec.tls_dir = stat(a->tls_dir, &sb) ? NULL : a->tls_dir;
	spec.incoming_timeout_s = CL_INCOMING_TIMEOUT_S;
	spec.incoming_tag = vm->migration->id;
	if (cl_vmon_spawn(&spec, &v, err, sizeof(err))) {
		mig_end_async(a, vm, false, "destination: cannot start vmon: %s", err);
		return;
	}
	j = calloc(1, sizeof(*j));
	lv = j ? incoming_local(a, vm, v, (int)spec.fence_s) : NULL;
	if (!lv) {
		free(j);
		cl_vmon_stop(v, 0);
		cl_vmon_free(v);
		return;
	}
	lv->busy = 1;
	j->a = a;
	j->lv = lv;
	j->id = vm->migration->id;
	snprintf(j->vm, sizeof(j->vm), "%s", vm->name);
	if (agent_spawn_thread(incoming_run, j)) {
		lv->busy = 0;
		free(j);
	}
	agent_wake(a);
	log_info("migrate: %s: waiting for it from %s (pid %d)", vm->name,
		 vm->migration->source, (int)cl_vmon_pid(v));
}

/* ---- the source -------------------------------------------------------- */

struct follow_job {
	struct agent *a;
	struct local_vm *lv;
	char vm[CL_NAME_MAX];
	uint64_t id;
	char uri[256];
	uint64_t downtime_ms;
	uint64_t bandwidth_mbps;
	uint64_t timeout_s;       /* what vmon was given (cl_vmon_mig_timeout_s) */
	uint64_t mem_bytes;
	bool dry_run;
	uint64_t began_ns;
	char dest[CL_NAME_MAX];
	uint64_t dest_gone_ns;    /* since when the destination is no member; 0: it is */
	const char *dest_why;     /* "left the cluster", "went into maintenance": and
				     so this agent cancelled the migration */
};

static const char *mig_state_name(Ferry__Ctl__MigState s)
{
	static const char *const names[] = {
		"none", "setup", "precopy", "switchover", "completed", "failed",
		"cancelled", "predicted",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static bool mig_final(Ferry__Ctl__MigState s)
{
	return s == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED ||
	       s == FERRY__CTL__MIG_STATE__MIG_STATE_FAILED ||
	       s == FERRY__CTL__MIG_STATE__MIG_STATE_CANCELLED ||
	       s == FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED;
}

static void progress_send(struct agent *a, const struct follow_job *j,
			  const Ferry__Ctl__MigrationInfo *mi)
{
	Ferry__Cluster__MigProgress p = FERRY__CLUSTER__MIG_PROGRESS__INIT;
	Ferry__Cluster__CpgMsg m = FERRY__CLUSTER__CPG_MSG__INIT;

	p.vm = (char *)j->vm;
	p.id = j->id;
	p.state = (char *)mig_state_name(mi->state);
	p.phase = mi->phase;
	p.round = mi->round;
	p.percent = mi->round_pages ? 100.0 * mi->round_sent / mi->round_pages : 0;
	p.bandwidth_bps = mi->bandwidth_bps;
	p.dirty_pages_per_s = mi->dirty_pages_per_s;
	p.eta_s = mi->eta_s;
	p.throttle_pct = mi->throttle_pct;
	p.bytes = mi->bytes;
	p.downtime_target_ms = mi->downtime_target_ms;
	p.bandwidth_cap_mbps = mi->bandwidth_cap_mbps;
	m.m_case = FERRY__CLUSTER__CPG_MSG__M_PROGRESS;
	m.progress = &p;
	pthread_mutex_lock(&a->lock);
	agent_send(a, &m);
	pthread_mutex_unlock(&a->lock);
}

static bool mark_reached(const Ferry__Ctl__MigrationInfo *mi, const char *name)
{
	for (size_t i = 0; i < mi->n_timeline; i++)
		if (!strcmp(mi->timeline[i]->name, name))
			return true;
	return false;
}

/* err: room for a failure; note: for what went wrong in a migration that ended well. */
static void result_from(Ferry__Cluster__MigrationResult *r, const struct follow_job *j,
			const Ferry__Ctl__MigrationInfo *mi, char *err, size_t err_len,
			char *note, size_t note_len)
{
	r->ok = mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED ||
		mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED;
	if (!r->ok) {
		const char *phase = *mi->phase ? mi->phase : mig_state_name(mi->state);
		const char *why = *mi->message ? mi->message : mig_state_name(mi->state);
		/* vmon's failures name their phase first already. */
		bool named = !strncmp(why, phase, strlen(phase)) && why[strlen(phase)] == ':';

		if (j->dest_why && mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_CANCELLED)
			snprintf(err, err_len, "migrate: %s: destination %s %s during the %s "
				 "phase; cancelled, the VM runs on at the source", j->vm, j->dest,
				 j->dest_why, phase);
		else
			snprintf(err, err_len, "migrate: %s: %s%s%s", j->vm, named ? "" : phase,
				 named ? "" : ": ", why);
		r->error = err;
	} else if (!j->dry_run && !mark_reached(mi, "resumed")) {
		/* The COMMIT or the destination's answer was lost (landing_run). */
		snprintf(note, note_len, "%s; the destination's agent starts it",
			 mi->message);
		r->note = note;
	}
	r->total_ms = mi->elapsed_ns / 1e6;
	r->downtime_ms = mi->downtime_ms;
	r->bytes = mi->bytes;
	r->rounds = mi->round;
	r->predicted_converges = mi->predicted_converges;
	r->predicted_total_ms = mi->predicted_total_ms;
	r->predicted_downtime_ms = mi->predicted_downtime_ms;
	r->prediction = mi->prediction;
}

/*
 * Is vmon migrating to uri already, or has it done so? Each migration's
 * destination vmon listens on a port of its own, so the address names the
 * migration. Reporting such a one failed would be wrong twice: vmon goes
 * on, and once it completes the destination's agent would stop the only
 * vmon that runs the guest.
 */
static bool vmon_on_it(const Ferry__Ctl__MigrationInfo *mi, const char *uri)
{
	if (!mi || strcmp(mi->destination, uri))
		return false;
	return mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_SETUP ||
	       mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_PRECOPY ||
	       mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_SWITCHOVER ||
	       mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED ||
	       mi->state == FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED;
}

/* Has the cluster been asked to cancel this migration? */
static bool cancel_asked(struct agent *a, const struct follow_job *j)
{
	const Ferry__Cluster__Vm *vm;
	bool asked;

	pthread_mutex_lock(&a->lock);
	vm = cl_state_vm(a->st, j->vm);
	asked = vm && vm->migration && vm->migration->id == j->id && vm->migration->cancel;
	pthread_mutex_unlock(&a->lock);
	return asked;
}

/*
 * Has the destination's node left the cluster (for CL_DEST_GONE_MS, as
 * corosync's membership here has it)? Its stream then goes nowhere: vmon
 * would notice only when a send times out (30 s without progress), and
 * under a cap later still. A cancel ends it now, and vmon refuses it once
 * the destination may hold the guest, so it cannot lose one. The node, not
 * its agent: an agent restarted there (an upgrade) takes over the vmon
 * receiving (incoming_adopt), and the migration goes on. An agent that is
 * itself out of touch with corosync sees no members at all: no verdict.
 */
static bool dest_left(struct agent *a, struct follow_job *j)
{
	bool gone;

	pthread_mutex_lock(&a->lock);
	gone = a->cpg && a->n_nodes && !agent_node_up(a, j->dest);
	pthread_mutex_unlock(&a->lock);
	if (!gone) {
		j->dest_gone_ns = 0;
		return false;
	}
	if (!j->dest_gone_ns)
		j->dest_gone_ns = now_ns();
	return now_ns() - j->dest_gone_ns >= CL_DEST_GONE_MS * 1000000ull;
}

/*
 * Has the destination gone into maintenance since the migration began
 * (an operator's, at the same moment as this move, or another host's
 * evacuation sent the VM there)? Maintenance means no new VMs: the move
 * is cancelled rather than landed and moved on again. vmon refuses once
 * the destination may hold the guest; then it lands, and the evacuation
 * takes it on (do_evacuation counts it meanwhile).
 */
static bool dest_maintenance(struct agent *a, const struct follow_job *j)
{
	const Ferry__Cluster__Host *h;
	bool maint;

	pthread_mutex_lock(&a->lock);
	h = cl_state_host(a->st, j->dest);
	maint = h && h->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	pthread_mutex_unlock(&a->lock);
	return maint;
}

/* vmon refuses once the destination may have the guest; it lands then. */
static void cancel_vmon(struct follow_job *j, const char *why)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	char err[CL_ERR_LEN];

	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_CANCEL;
	req.migrate_cancel = &empty;
	if (cl_vmon_call(j->lv->v, &req, CTL_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_warn("migrate: %s: cannot ask vmon to cancel: %s", j->vm, err);
		return;
	}
	if (resp->error)
		log_warn("migrate: %s: vmon does not cancel: %s", j->vm, resp->message);
	else
		log_info("migrate: %s: cancelling, %s", j->vm, why);
	ferry__ctl__response__free_unpacked(resp, NULL);
}

/*
 * migrate-set: what the cluster's state now asks of this migration that
 * vmon was not told yet (a downtime of 0 is vmon's default: nothing to
 * tell). False when nothing changed.
 */
static bool settings_asked(struct agent *a, const struct follow_job *j,
			   Ferry__Ctl__MigrateSet *ms)
{
	const Ferry__Cluster__Vm *vm;

	pthread_mutex_lock(&a->lock);
	vm = cl_state_vm(a->st, j->vm);
	if (vm && vm->migration && vm->migration->id == j->id) {
		ms->set_downtime = vm->migration->downtime_ms &&
				   vm->migration->downtime_ms != j->downtime_ms;
		ms->downtime_ms = vm->migration->downtime_ms;
		ms->set_bandwidth = vm->migration->bandwidth_mbps != j->bandwidth_mbps;
		ms->bandwidth_mbps = vm->migration->bandwidth_mbps;
		/* A lower cap needs a longer limit; a higher one keeps the old. */
		ms->timeout_s = cl_vmon_mig_timeout_s(j->mem_bytes, ms->bandwidth_mbps);
		ms->set_timeout = ms->set_bandwidth && ms->timeout_s > j->timeout_s;
	}
	pthread_mutex_unlock(&a->lock);
	return ms->set_downtime || ms->set_bandwidth;
}

/*
 * Tell vmon once: a refusal (the switchover began) is logged, not
 * retried; the migration then ends as it was going.
 */
static void settings_vmon(struct follow_job *j, Ferry__Ctl__MigrateSet *ms)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Response *resp = NULL;
	char err[CL_ERR_LEN];

	if (ms->set_downtime)
		j->downtime_ms = ms->downtime_ms;
	if (ms->set_bandwidth)
		j->bandwidth_mbps = ms->bandwidth_mbps;
	if (ms->set_timeout)
		j->timeout_s = ms->timeout_s;
	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_SET;
	req.migrate_set = ms;
	if (cl_vmon_call(j->lv->v, &req, CTL_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_warn("migrate: %s: cannot change the migration in vmon: %s", j->vm, err);
		return;
	}
	if (resp->error)
		log_warn("migrate: %s: vmon does not change the migration: %s", j->vm,
			 resp->message);
	else
		log_info("migrate: %s: changed, as asked: downtime target %llu ms, bandwidth cap "
			 "%llu Mbit/s (0: none), timeout %llu s", j->vm,
			 (unsigned long long)resp->migration->downtime_target_ms,
			 (unsigned long long)resp->migration->bandwidth_cap_mbps,
			 (unsigned long long)resp->migration->timeout_s);
	ferry__ctl__response__free_unpacked(resp, NULL);
}

/* RUN/NAME.handover: where the source's vmon records the ACK (ctl.proto, Migrate). */
static bool handover_path(const struct agent *a, const char *vm, char *buf, size_t len)
{
	return (size_t)snprintf(buf, len, "%s/%s.handover", a->run_dir, vm) < len;
}

/*
 * Did this node's vmon of vm, now gone, record that the destination had
 * acknowledged migration id? Only a line with that id counts: none (an
 * older vmon, a crash before it wrote) leaves the guest's fate unknown.
 */
static bool handover_recorded(const struct agent *a, const char *vm, uint64_t id)
{
	char path[PATH_MAX], line[640];
	unsigned long long got;
	bool yes = false;
	FILE *f;

	if (!handover_path(a, vm, path, sizeof(path)))
		return false;
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(line, sizeof(line), f) && sscanf(line, "%llu ", &got) == 1)
		yes = got == id;
	fclose(f);
	return yes;
}

/*
 * The first call to the source's vmon. One just started may still be
 * faulting its guest RAM in (seconds for a large VM here): its control
 * socket comes after that, and is refused for the moment between its
 * bind and its listen (long enough on a loaded host to be seen). A
 * migration asked right after a start waits for it while the vmon lives,
 * rather than fail with "no such file" or "connection refused".
 */
static int source_first_call(struct follow_job *j, const Ferry__Ctl__Request *req,
			     Ferry__Ctl__Response **resp, char *err, size_t err_len)
{
	uint64_t end = now_ns() + CL_SOURCE_UP_MS * 1000000ull;
	bool ended;
	int ret;

	for (;;) {
		ret = cl_vmon_call(j->lv->v, req, CTL_TIMEOUT_MS, resp, err, err_len);
		if ((ret != -ENOENT && ret != -ECONNREFUSED) || now_ns() >= end)
			return ret;
		pthread_mutex_lock(&j->a->lock);
		ended = j->lv->ended;
		pthread_mutex_unlock(&j->a->lock);
		if (ended || cancel_asked(j->a, j))
			return ret;
		sleep_ms(100);
	}
}

/* Start the migration in vmon and poll it to the end; the final info. */
static Ferry__Ctl__Response *follow_vmon(struct follow_job *j, char *err, size_t err_len)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Migrate mg = FERRY__CTL__MIGRATE__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__MigrateSet ms;
	Ferry__Ctl__Response *resp = NULL;
	char path[PATH_MAX], tag[24];
	struct stat sb;
	uint64_t last_progress = 0;
	bool cancelled = false;

	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_STATUS;
	req.migrate_status = &empty;
	if (source_first_call(j, &req, &resp, err, err_len))
		return NULL;
	if (vmon_on_it(resp->migration, j->uri)) {
		/*
		 * An agent before this one (restarted since) told vmon: follow
		 * that, from the settings vmon has, so that a change asked
		 * while no agent ran still reaches it.
		 */
		log_info("migrate: %s: vmon is already on it; following", j->vm);
		j->downtime_ms = resp->migration->downtime_target_ms;
		j->bandwidth_mbps = resp->migration->bandwidth_cap_mbps;
		j->timeout_s = resp->migration->timeout_s;
		goto follow;
	}
	ferry__ctl__response__free_unpacked(resp, NULL);
	resp = NULL;
	if (cancel_asked(j->a, j)) {
		snprintf(err, err_len, "cancelled before any page moved");
		return NULL;
	}
	if (!j->dry_run && dest_maintenance(j->a, j)) {
		snprintf(err, err_len, "destination %s went into maintenance; cancelled before "
			 "any page moved", j->dest);
		return NULL;
	}
	mg.uri = j->uri;
	mg.tls_dir = stat(j->a->tls_dir, &sb) ? "" : j->a->tls_dir;
	mg.downtime_ms = j->downtime_ms;
	mg.bandwidth_mbps = j->bandwidth_mbps;
	mg.timeout_s = j->timeout_s;
	mg.dry_run = j->dry_run;
	if (!j->dry_run && handover_path(j->a, j->vm, path, sizeof(path))) {
		/* A record left by an earlier migration must not speak for this one. */
		unlink(path);
		snprintf(tag, sizeof(tag), "%" PRIu64, j->id);
		mg.handover_file = path;
		mg.handover_tag = tag;
	}
	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE;
	req.migrate = &mg;
	if (cl_vmon_call(j->lv->v, &req, CTL_TIMEOUT_MS, &resp, err, err_len))
		return NULL;
	if (resp->error) {
		snprintf(err, err_len, "%s", resp->message);
		ferry__ctl__response__free_unpacked(resp, NULL);
		return NULL;
	}
	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_STATUS;
	req.migrate_status = &empty;
follow:
	for (;;) {
		if (resp->migration && mig_final(resp->migration->state))
			return resp;
		if (resp->migration && now_ns() - last_progress > CL_PROGRESS_PERIOD_MS * 1000000ull) {
			progress_send(j->a, j, resp->migration);
			last_progress = now_ns();
		}
		ferry__ctl__response__free_unpacked(resp, NULL);
		resp = NULL;
		if (!cancelled && cancel_asked(j->a, j)) {
			cancelled = true;
			cancel_vmon(j, "as asked");
		} else if (!cancelled && !j->dry_run && dest_left(j->a, j)) {
			cancelled = true;
			j->dest_why = "left the cluster";
			cancel_vmon(j, "its destination left the cluster");
		} else if (!cancelled && !j->dry_run && dest_maintenance(j->a, j)) {
			cancelled = true;
			j->dest_why = "went into maintenance";
			cancel_vmon(j, "its destination went into maintenance");
		}
		ms = (Ferry__Ctl__MigrateSet)FERRY__CTL__MIGRATE_SET__INIT;
		if (!cancelled && settings_asked(j->a, j, &ms))
			settings_vmon(j, &ms);
		sleep_ms(CL_FOLLOW_POLL_MS);
		if (cl_vmon_call(j->lv->v, &req, CTL_TIMEOUT_MS, &resp, err, err_len))
			return NULL;
	}
}

static void *follow_run(void *arg)
{
	struct follow_job *j = arg;
	struct agent *a = j->a;
	Ferry__Cluster__MigrationResult r = FERRY__CLUSTER__MIGRATION_RESULT__INIT;
	Ferry__Ctl__Response *resp;
	char err[CL_ERR_LEN], msg[CL_ERR_LEN + 128], note[CL_ERR_LEN + 64], path[PATH_MAX];

	resp = follow_vmon(j, err, sizeof(err));
	if (resp) {
		result_from(&r, j, resp->migration, msg, sizeof(msg), note, sizeof(note));
		progress_send(a, j, resp->migration);
	} else {
		snprintf(msg, sizeof(msg), "migrate: %s: source %s: %s", j->vm, a->name, err);
		r.error = msg;
	}
	r.orchestration_ms = (now_ns() - j->began_ns) / 1e6;
	pthread_mutex_lock(&a->lock);
	j->lv->following = false;
	if (r.ok && !j->dry_run)
		j->lv->migrated = true;
	/* A source vmon that died under the migration is reported first, so
	 * that nothing restarts it before the cluster knows. */
	if (!r.ok && j->lv->ended)
		agent_vm_report(a, j->lv);
	pthread_mutex_unlock(&a->lock);
	log_info("%s", r.ok ? "migration done" : msg);
	mig_end_sync(a, j->vm, j->id, &r);
	/* The cluster has the end: the record speaks for nothing any more. */
	if (!j->dry_run && handover_path(a, j->vm, path, sizeof(path)))
		unlink(path);
	if (resp)
		ferry__ctl__response__free_unpacked(resp, NULL);
	pthread_mutex_lock(&a->lock);
	agent_local_put(a, j->lv);
	agent_reconcile(a);
	pthread_mutex_unlock(&a->lock);
	free(j);
	return NULL;
}

static void follow_start(struct agent *a, Ferry__Cluster__Vm *vm, struct local_vm *lv)
{
	struct follow_job *j = calloc(1, sizeof(*j));

	if (!j)
		return;
	j->a = a;
	j->lv = lv;
	j->id = vm->migration->id;
	j->downtime_ms = vm->migration->downtime_ms;
	j->bandwidth_mbps = vm->migration->bandwidth_mbps;
	j->mem_bytes = vm->mem_bytes;
	j->timeout_s = cl_vmon_mig_timeout_s(vm->mem_bytes, vm->migration->bandwidth_mbps);
	j->dry_run = vm->migration->dry_run;
	j->began_ns = lv->mig_began_ns ? lv->mig_began_ns : now_ns();
	snprintf(j->vm, sizeof(j->vm), "%s", vm->name);
	snprintf(j->uri, sizeof(j->uri), "%s", vm->migration->incoming_uri);
	snprintf(j->dest, sizeof(j->dest), "%s", vm->migration->destination);
	lv->following = true;
	lv->busy++;
	if (agent_spawn_thread(follow_run, j)) {
		lv->following = false;
		lv->busy--;
		free(j);
	}
}

/* ---- reconciling ------------------------------------------------------- */

static bool lowest_online(const struct agent *a)
{
	return a->sync.n_members && a->sync.members[0] == a->nodeid;
}

/* What lv's vmon says its guest is doing (UNKNOWN when it does not answer). */
static Ferry__Ctl__VmState vmon_vm_state(struct local_vm *lv, char *err, size_t err_len)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	Ferry__Ctl__VmState st = FERRY__CTL__VM_STATE__VM_STATE_UNKNOWN;

	req.cmd_case = FERRY__CTL__REQUEST__CMD_STATUS;
	req.status = &empty;
	if (cl_vmon_call(lv->v, &req, 1000, &resp, err, err_len))
		return st;
	if (resp->status)
		st = resp->status->state;
	ferry__ctl__response__free_unpacked(resp, NULL);
	return st;
}

static int vmon_resume(struct local_vm *lv, char *err, size_t err_len)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	int ret;

	req.cmd_case = FERRY__CTL__REQUEST__CMD_RESUME;
	req.resume = &empty;
	ret = cl_vmon_call(lv->v, &req, CTL_TIMEOUT_MS, &resp, err, err_len);
	if (ret)
		return ret;
	if (resp->error) {
		snprintf(err, err_len, "%s", resp->message);
		ret = -EIO;
	}
	ferry__ctl__response__free_unpacked(resp, NULL);
	return ret;
}

uint32_t agent_proto_of(const struct agent *a, const char *host)
{
	const Ferry__Cluster__Host *h = cl_state_host(a->st, host);

	return h ? h->agent_proto : 0;
}

/*
 * This agent restarted and its vmon of a VM migrating away has exited: it
 * either handed the guest over or died. Only the destination knows which
 * (its vmon runs the guest or not), so tell it, until it has ended the
 * migration; an agent down there hears it once it is back.
 */
static void source_gone_send(struct agent *a, const Ferry__Cluster__Vm *vm, bool dst_on)
{
	Ferry__Cluster__MigSourceGone g = FERRY__CLUSTER__MIG_SOURCE_GONE__INIT;
	Ferry__Cluster__CpgMsg msg = FERRY__CLUSTER__CPG_MSG__INIT;

	if (!dst_on)
		return;
	g.vm = vm->name;
	g.id = vm->migration->id;
	g.source = a->name;
	g.handed_over = handover_recorded(a, vm->name, g.id);
	msg.m_case = FERRY__CLUSTER__CPG_MSG__M_SOURCE_GONE;
	msg.source_gone = &g;
	if (!agent_send(a, &msg))
		log_debug("migrate: %s: its vmon here has exited%s; %s settles the migration",
			  vm->name, g.handed_over ? " after the ACK" : "",
			  vm->migration->destination);
}

void agent_mig_source_gone(struct agent *a, const Ferry__Cluster__MigSourceGone *g)
{
	struct local_vm *in = agent_local(a, g->vm, true);
	const Ferry__Cluster__Vm *vm = cl_state_vm(a->st, g->vm);

	/*
	 * No vmon here either (it ended, its entry went): nothing of the
	 * migration runs anywhere, and only this says so. Remembered by id,
	 * for reconcile_dest.
	 */
	if (!in && vm && vm->migration && vm->migration->id == g->id &&
	    !strcmp(vm->migration->destination, a->name) && handled_has(a, g->id) &&
	    ids_once(&a->gone_both, g->id)) {
		log_info("migrate: %s: the vmon at the source %s has exited, and ours had ended; "
			 "settling", g->vm, g->source);
		agent_wake(a);
		return;
	}
	if (!in || in->mig_id != g->id || in->source_gone)
		return;
	in->source_gone = true;
	in->source_handed = g->handed_over;
	log_info("migrate: %s: the vmon at the source %s has exited%s; settling", g->vm, g->source,
		 g->handed_over ? ", recording that it had our ACK" : "");
	agent_wake(a);
}

/* The source left: did its vmon hand the guest over to ours? */
static bool incoming_took_over(struct local_vm *in)
{
	char err[CL_ERR_LEN];

	return in && !in->ended &&
	       vmon_vm_state(in, err, sizeof(err)) == FERRY__CTL__VM_STATE__VM_STATE_RUNNING;
}

/*
 * The migration ended well: the source's vmon had the ACK and stopped its
 * guest for good. Ours starts the guest on COMMIT; if the COMMIT was lost
 * (the connection broke just after the ACK), it holds the guest loaded and
 * paused instead, and nobody would ever run it. The cluster's recorded end
 * is the commit then: start it. Until its COMMIT wait is over
 * (MIG_COMMIT_WAIT_MS, 10 s) the vmon does not answer; keep asking.
 */
static bool landing_ended(struct agent *a, struct local_vm *lv)
{
	bool ended;

	pthread_mutex_lock(&a->lock);
	ended = lv->ended || lv->stopping;
	pthread_mutex_unlock(&a->lock);
	return ended;
}

/*
 * Still this node's to run, in a state synced with the others? An agent
 * that adopted the vmon at its start did so from the state on its disk.
 */
static bool landing_ours(struct agent *a, struct local_vm *lv)
{
	const Ferry__Cluster__Vm *vm;
	bool ours;

	pthread_mutex_lock(&a->lock);
	vm = cl_state_vm(a->st, lv->name);
	ours = a->sync.synced && vm && vm_mine(a, vm) && vm->generation == lv->generation &&
	       !lv->ended && !lv->stopping;
	pthread_mutex_unlock(&a->lock);
	return ours;
}

static void landing_run(struct agent *a, struct local_vm *lv)
{
	uint64_t deadline = now_ns() + CL_LANDING_WAIT_S * 1000000000ull;
	Ferry__Ctl__VmState st = FERRY__CTL__VM_STATE__VM_STATE_UNKNOWN;
	char err[CL_ERR_LEN] = "";

	for (; !landing_ended(a, lv) && now_ns() < deadline; sleep_ms(200)) {
		st = vmon_vm_state(lv, err, sizeof(err));
		if (st != FERRY__CTL__VM_STATE__VM_STATE_UNKNOWN &&
		    st != FERRY__CTL__VM_STATE__VM_STATE_CREATED)
			break;
		/* Not answering yet; or not synced yet, or no longer ours: ask again. */
		if (st == FERRY__CTL__VM_STATE__VM_STATE_UNKNOWN || !landing_ours(a, lv))
			continue;
		log_warn("%s: its vmon holds the guest, loaded but never started: the COMMIT did "
			 "not reach it. The source handed the guest over (the migration ended "
			 "well), so it starts now", lv->name);
		if (!vmon_resume(lv, err, sizeof(err))) {
			log_info("%s runs here now (started by its agent)", lv->name);
			break;
		}
		log_warn("%s: cannot start it: %s", lv->name, err);
	}
	if (st == FERRY__CTL__VM_STATE__VM_STATE_UNKNOWN && !landing_ended(a, lv))
		log_warn("%s: its vmon has not said for %u s whether it runs the guest: %s",
			 lv->name, CL_LANDING_WAIT_S, err);
}

void agent_mig_landing(struct agent *a, struct local_vm *lv)
{
	agent_local_spawn(a, lv, landing_run);
}

/*
 * Since when the agent at the source of migration id has been away (0: it
 * is not). Kept by id, not with the incoming vmon: that one's entry goes
 * once it has ended.
 */
static uint64_t src_away_since(struct agent *a, uint64_t id, bool away)
{
	struct src_away *slot = &a->src_away[0];

	for (unsigned i = 0; i < CL_SRC_AWAY_MAX; i++) {
		if (a->src_away[i].id == id) {
			if (!away)
				a->src_away[i] = (struct src_away){ 0, 0 };
			return away ? a->src_away[i].since_ns : 0;
		}
		if (a->src_away[i].since_ns < slot->since_ns)
			slot = &a->src_away[i];
	}
	if (!away)
		return 0;
	slot->id = id;
	slot->since_ns = now_ns();
	return slot->since_ns;
}

/* This node receives vm; in: its vmon for that, if the agent has one. */
static void reconcile_dest(struct agent *a, Ferry__Cluster__Vm *vm, struct local_vm *in,
			   bool src_on)
{
	const Ferry__Cluster__Migration *m = vm->migration;
	bool told, took, node, handed, gone, gave_up;
	uint64_t away;

	/* An agent restarted while the migration ran first looks for its vmon. */
	if (!in && handled_once(a, m->id)) {
		if (!incoming_adopt(a, vm) && src_on)
			incoming_start(a, vm);
		return;
	}
	told = (in && in->source_gone) || (!in && ids_has(&a->gone_both, m->id));
	away = src_away_since(a, m->id, !src_on);
	if (src_on && !told)
		return;
	took = incoming_took_over(in);
	node = agent_node_up(a, m->source);
	/* Ours holds the guest (the COMMIT lost), and the source had the ACK. */
	handed = told && in && in->source_handed && !in->ended;
	/*
	 * Ours ended without the guest (its entry gone with it), and the
	 * source's agent stays away past any corosync verdict on its node:
	 * nothing is left to wait for (before, this waited for good).
	 */
	gone = !in || in->ended;
	gave_up = gone && away && now_ns() - away >= CL_SRC_AWAY_VOID_MS * 1000000ull;
	/*
	 * Only its agent is gone (an upgrade), or the node too, and corosync
	 * has not said so yet (its agent's leaving comes first): wait. The next
	 * agent follows its vmon or says it has exited; a node that left is
	 * settled below.
	 */
	if (!took && !told && node && !gave_up && agent_proto_of(a, m->source) >= CL_PROTO_9)
		return;
	if (took)
		mig_end_async(a, vm, true, "source %s %s after handing the VM over",
			      m->source, node ? "lost its agent" : "left");
	else if (handed)
		mig_end_async(a, vm, true, "the vmon at the source %s exited after our ACK, while "
			      "its agent was away: the guest is ours", m->source);
	else if (gave_up && node && !told)
		mig_end_async(a, vm, false, "no vmon here has the guest, and the agent at the "
			      "source %s has been away for %u s; the migration is void",
			      m->source, CL_SRC_AWAY_VOID_MS / 1000);
	else if (!node)
		mig_end_async(a, vm, false, "source %s left the cluster; the migration is void",
			      m->source);
	else if (told && !in)
		mig_end_async(a, vm, false, "the vmon at the source %s has exited, and the one "
			      "here had ended without the guest; the migration is void", m->source);
	else
		mig_end_async(a, vm, false, "%s at the source %s ended before the guest ran here; "
			      "the migration is void", told ? "the vmon" : "the agent", m->source);
}

void agent_mig_reconcile(struct agent *a, Ferry__Cluster__Vm *vm)
{
	Ferry__Cluster__Migration *m = vm->migration;
	struct local_vm *in = agent_local(a, vm->name, true);
	struct local_vm *run = agent_local(a, vm->name, false);
	bool src_on, dst_on;

	if (in && (!m || m->id != in->mig_id)) {
		const Ferry__Cluster__MigrationResult *r = vm->last_migration;

		if (r && r->id == in->mig_id && r->ok && !r->dry_run &&
		    !strcmp(vm->host, a->name) && !run) {
			/* The guest runs in it now: it is the VM's vmon. */
			in->incoming = false;
			in->generation = vm->generation;
			log_info("%s now runs here (pid %d)", vm->name, (int)cl_vmon_pid(in->v));
			agent_mig_landing(a, in);
		} else {
			agent_local_stop(a, in, "its migration is over");
		}
		in = NULL;
	}
	if (!m)
		return;
	src_on = agent_online(a, m->source);
	dst_on = agent_online(a, m->destination);
	if (!strcmp(m->destination, a->name)) {
		reconcile_dest(a, vm, in, src_on);
		return;
	}
	if (!strcmp(m->source, a->name)) {
		/* Once followed, the follower alone reports the end (and cancels). */
		if (handled_has(a, m->id))
			return;
		/* Without the address no vmon was told; with it, the follower cancels. */
		if (m->cancel && !*m->incoming_uri && handled_once(a, m->id))
			mig_end_async(a, vm, false, "cancelled before any page moved; it runs on %s",
				      a->name);
		else if (run && *m->incoming_uri && handled_once(a, m->id))
			follow_start(a, vm, run);
		else if (!run && *m->incoming_uri && agent_node_up(a, m->destination) &&
			 agent_proto_of(a, m->destination) >= CL_PROTO_9)
			source_gone_send(a, vm, dst_on);
		else if (!run)
			mig_end_async(a, vm, false, "the source vmon on %s is gone", a->name);
		else if (!dst_on)
			mig_end_async(a, vm, false, "destination %s left the cluster before it "
				      "was ready", m->destination);
		return;
	}
	/* Nodes, not agents: a migration between two restarting agents goes on. */
	if (!agent_node_up(a, m->source) && !agent_node_up(a, m->destination) &&
	    lowest_online(a))
		mig_end_async(a, vm, false, "both %s and its destination left the cluster",
			      m->source);
}

Ferry__Cluster__MigProgress *agent_progress(struct agent *a, const char *vm)
{
	for (size_t i = 0; i < a->n_progress; i++)
		if (!strcmp(a->progress[i]->vm, vm))
			return a->progress[i];
	return NULL;
}
