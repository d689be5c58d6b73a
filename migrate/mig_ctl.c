/* The control-socket requests that belong to the migration layer. */
#include "migrate/mig_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "migrate/mig_snapshot.h"
#include "migrate/mig_state.h"

/* Response storage: valid until the next request on this thread. */
static __thread char mig_ctl_msg[MIG_ERR_LEN];
static __thread Ferry__Ctl__SaveResult mig_ctl_save;
static __thread char mig_ctl_path[4096];
static __thread struct mig_progress mig_ctl_prog;
static __thread Ferry__Ctl__MigrationInfo mig_ctl_mi;
static __thread Ferry__Ctl__MigRound mig_ctl_rounds[MIG_MAX_ROUNDS_KEPT];
static __thread Ferry__Ctl__MigRound *mig_ctl_round_ptrs[MIG_MAX_ROUNDS_KEPT];
static __thread Ferry__Ctl__MigMark mig_ctl_marks[MIG_MARK_NR];
static __thread Ferry__Ctl__MigMark *mig_ctl_mark_ptrs[MIG_MARK_NR];

static void mig_ctl_do_save(struct vm *vm, const Ferry__Ctl__Save *req,
			    Ferry__Ctl__Response *resp)
{
	struct mig_snapshot_result res;
	int ret;

	if (!req->path || !*req->path) {
		resp->error = -EINVAL;
		resp->message = "no file given";
		return;
	}
	ret = mig_snapshot_save(vm, req->path, req->verify, req->stop, &res, mig_ctl_msg);
	if (ret) {
		resp->error = ret;
		resp->message = mig_ctl_msg;
		return;
	}
	ferry__ctl__save_result__init(&mig_ctl_save);
	snprintf(mig_ctl_path, sizeof(mig_ctl_path), "%s", req->path);
	mig_ctl_save.path = mig_ctl_path;
	mig_ctl_save.bytes = res.bytes;
	mig_ctl_save.pages = res.pages;
	mig_ctl_save.zero_pages = res.zero_pages;
	mig_ctl_save.duration_ns = res.duration_ns;
	resp->save = &mig_ctl_save;
}

Ferry__Ctl__MigrationInfo *mig_ctl_info(struct mig_ctl *c)
{
	struct mig_progress *p = &mig_ctl_prog;
	Ferry__Ctl__MigrationInfo *mi = &mig_ctl_mi;
	uint64_t now = now_ns();

	mig_job_progress(&c->job, p);
	ferry__ctl__migration_info__init(mi);
	mi->state = (Ferry__Ctl__MigState)p->state;
	mi->phase = p->phase;
	mi->message = p->message;
	mi->destination = p->destination;
	mi->round = p->round;
	mi->round_pages = p->round_pages;
	mi->round_sent = p->round_sent;
	mi->bytes = p->bytes;
	mi->pages = p->pages;
	mi->zero_pages = p->zero_pages;
	mi->bandwidth_bps = p->bandwidth_Bps;
	mi->dirty_pages_per_s = p->dirty_pages_per_s;
	mi->throttle_pct = p->throttle_pct;
	mi->predicted_downtime_ms = p->predicted_downtime_ms;
	mi->downtime_ms = p->downtime_ms;
	mi->elapsed_ns = p->start_ns ? (p->end_ns ? p->end_ns : now) - p->start_ns : 0;
	/* While it runs, the transfer so far. */
	mi->transfer_ns = p->transfer_ns ? p->transfer_ns :
		(p->state == MIG_JOB_PRECOPY || p->state == MIG_JOB_SWITCHOVER) && p->start_ns ?
		now - p->start_ns : 0;
	mi->ram_bytes = c->job.vm ? c->job.vm->mem.size : 0;
	/* ETA: what is left of this round, and the next one or two, at the link rate. */
	if (p->bandwidth_Bps > 0 && p->round_pages > p->round_sent)
		mi->eta_s = (double)(p->round_pages - p->round_sent) * 4096.0 / p->bandwidth_Bps;
	mi->predicted_converges = p->prediction.converges;
	mi->predicted_total_ms = p->prediction.total_ms;
	mi->prediction = p->prediction.summary;
	for (unsigned i = 0; i < p->nr_rounds; i++) {
		Ferry__Ctl__MigRound *r = &mig_ctl_rounds[i];

		ferry__ctl__mig_round__init(r);
		r->round = p->rounds[i].r.round;
		r->pages = p->rounds[i].r.pages_sent;
		r->zero_pages = p->rounds[i].r.zero_pages;
		r->bytes = p->rounds[i].r.bytes_sent;
		r->duration_ns = p->rounds[i].r.duration_ns;
		r->send_ns = p->rounds[i].r.send_ns;
		r->dirty_pages = p->rounds[i].r.dirty_pages;
		r->cut = p->rounds[i].r.cut;
		r->throttle_pct = p->rounds[i].r.throttle_pct;
		r->decision = p->rounds[i].decision;
		mig_ctl_round_ptrs[i] = r;
	}
	mi->n_rounds = p->nr_rounds;
	mi->rounds = mig_ctl_round_ptrs;
	mi->n_timeline = 0;
	for (unsigned k = 0; k < MIG_MARK_NR; k++) {
		Ferry__Ctl__MigMark *mk = &mig_ctl_marks[mi->n_timeline];

		if (!p->marks_ns[k])
			continue;
		ferry__ctl__mig_mark__init(mk);
		mk->name = (char *)mig_mark_names[k];
		mk->at_ns = p->marks_ns[k];
		mig_ctl_mark_ptrs[mi->n_timeline++] = mk;
	}
	mi->timeline = mig_ctl_mark_ptrs;
	mi->downtime_target_ms = p->policy.downtime_ms;
	mi->bandwidth_cap_mbps = p->policy.bandwidth_mbps;
	mi->timeout_s = p->policy.timeout_s;
	mi->timeout_force = p->policy.timeout_action == MIG_TIMEOUT_FORCE;
	mi->settings_changes = p->settings_changes;
	if (p->state == MIG_JOB_COMPLETED || p->state == MIG_JOB_FAILED ||
	    p->state == MIG_JOB_CANCELLED || p->state == MIG_JOB_PREDICTED)
		__atomic_store_n(&c->final_seen, true, __ATOMIC_RELEASE);
	return mi;
}

static void mig_ctl_do_migrate(struct mig_ctl *c, struct vm *vm, const Ferry__Ctl__Migrate *req,
			       Ferry__Ctl__Response *resp)
{
	struct mig_params p;
	int ret;

	mig_params_defaults(&p);
	if (!req->uri || !*req->uri) {
		resp->error = -EINVAL;
		resp->message = "no destination given";
		return;
	}
	snprintf(p.uri, sizeof(p.uri), "%s", req->uri);
	if (req->tls_dir)
		snprintf(p.tls_dir, sizeof(p.tls_dir), "%s", req->tls_dir);
	if (req->downtime_ms)
		p.policy.downtime_ms = req->downtime_ms;
	p.policy.bandwidth_mbps = req->bandwidth_mbps;
	if (req->timeout_s)
		p.policy.timeout_s = req->timeout_s;
	p.policy.timeout_action = req->timeout_force ? MIG_TIMEOUT_FORCE : MIG_TIMEOUT_ABORT;
	p.policy.auto_converge = !req->no_auto_converge;
	p.connections = req->connections ? req->connections : 1;
	if (p.connections > MIG_CONN_MAX) {
		resp->error = -EINVAL;
		resp->message = "--connections takes 1..8";
		return;
	}
	p.dry_run = req->dry_run;
	p.verify = req->verify;
	if (req->handover_file && *req->handover_file) {
		if (req->handover_file[0] != '/' ||
		    strlen(req->handover_file) >= sizeof(p.handover_file) ||
		    !req->handover_tag || !*req->handover_tag ||
		    strlen(req->handover_tag) >= sizeof(p.handover_tag) ||
		    strpbrk(req->handover_tag, " \n")) {
			resp->error = -EINVAL;
			resp->message = "the handover file must be an absolute path (under 512 "
					"bytes) with a tag of one word (under 64 bytes)";
			return;
		}
		snprintf(p.handover_file, sizeof(p.handover_file), "%s", req->handover_file);
		snprintf(p.handover_tag, sizeof(p.handover_tag), "%s", req->handover_tag);
	}
	/* A new migration's result has not been read by anyone yet. */
	__atomic_store_n(&c->final_seen, false, __ATOMIC_RELEASE);
	ret = mig_job_start(&c->job, vm, c->rate, c->sample_ms, &p, mig_ctl_msg);
	if (ret) {
		resp->error = ret;
		resp->message = mig_ctl_msg;
		return;
	}
	resp->migration = mig_ctl_info(c);
}

static void mig_ctl_do_set(struct mig_ctl *c, const Ferry__Ctl__MigrateSet *req,
			   Ferry__Ctl__Response *resp)
{
	struct mig_settings s = {
		.set_downtime = req->set_downtime, .downtime_ms = req->downtime_ms,
		.set_bandwidth = req->set_bandwidth, .bandwidth_mbps = req->bandwidth_mbps,
		.set_timeout = req->set_timeout, .timeout_s = req->timeout_s,
		.set_timeout_action = req->set_timeout_action,
		.timeout_action = req->timeout_force ? MIG_TIMEOUT_FORCE : MIG_TIMEOUT_ABORT,
	};
	int ret;

	/* The client checks these too; a request from elsewhere may not have. */
	if ((s.set_downtime && !s.downtime_ms) || (s.set_timeout && !s.timeout_s)) {
		resp->error = -EINVAL;
		resp->message = "the downtime target and the timeout must be at least 1";
		return;
	}
	if (!s.set_downtime && !s.set_bandwidth && !s.set_timeout && !s.set_timeout_action) {
		resp->error = -EINVAL;
		resp->message = "nothing to change";
		return;
	}
	ret = mig_job_set(&c->job, &s, mig_ctl_msg);
	if (ret) {
		resp->error = ret;
		resp->message = mig_ctl_msg;
	}
	resp->migration = mig_ctl_info(c);
}

static bool mig_ctl_handle(void *opaque, struct vm *vm, const Ferry__Ctl__Request *req,
			   Ferry__Ctl__Response *resp)
{
	struct mig_ctl *c = opaque;
	int ret;

	switch (req->cmd_case) {
	case FERRY__CTL__REQUEST__CMD_SAVE:
		mig_ctl_do_save(vm, req->save, resp);
		return true;
	case FERRY__CTL__REQUEST__CMD_MIGRATE:
		mig_ctl_do_migrate(c, vm, req->migrate, resp);
		return true;
	case FERRY__CTL__REQUEST__CMD_MIGRATE_STATUS:
		resp->migration = mig_ctl_info(c);
		return true;
	case FERRY__CTL__REQUEST__CMD_MIGRATE_SET:
		mig_ctl_do_set(c, req->migrate_set, resp);
		return true;
	case FERRY__CTL__REQUEST__CMD_MIGRATE_CANCEL:
		ret = mig_job_cancel(&c->job);
		if (ret) {
			resp->error = ret;
			resp->message = ret == -EBUSY ?
				"the migration is in switchover and cannot be "
				"cancelled any more" : "no migration in progress";
		}
		resp->migration = mig_ctl_info(c);
		return true;
	default:
		return false;
	}
}

void mig_ctl_init(struct mig_ctl *c, struct dirty_rate *rate, uint64_t sample_ms)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->job.lock, NULL);
	c->rate = rate;
	c->sample_ms = sample_ms;
	c->ext.opaque = c;
	c->ext.handle = mig_ctl_handle;
}

bool mig_ctl_migrated(struct mig_ctl *c)
{
	struct mig_progress p;

	mig_job_progress(&c->job, &p);
	return p.state == MIG_JOB_COMPLETED;
}

bool mig_ctl_running(struct mig_ctl *c)
{
	struct mig_progress p;

	mig_job_progress(&c->job, &p);
	return mig_job_state_live(p.state);
}

void mig_ctl_destroy(struct mig_ctl *c)
{
	mig_job_join(&c->job);
	pthread_mutex_destroy(&c->job.lock);
}
