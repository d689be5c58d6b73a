/* A migration's job on the source: its thread, watchdog and end, and the mig_job_* calls. */
#include "migrate/mig_send_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "migrate/mig_proto.h"

const char *const mig_mark_names[MIG_MARK_NR] = {
	[MIG_MARK_CONNECTED] = "connected",
	[MIG_MARK_ACCEPTED] = "accepted",
	[MIG_MARK_TRACKING] = "tracking",
	[MIG_MARK_SYNCED] = "synced",
	[MIG_MARK_PRECOPY_DONE] = "precopy_done",
	[MIG_MARK_PAUSED] = "paused",
	[MIG_MARK_QUIESCED] = "quiesced",
	[MIG_MARK_SENT] = "sent",
	[MIG_MARK_ACKED] = "acked",
	[MIG_MARK_RESUMED] = "resumed",
};

const char *mig_job_state_name(enum mig_job_state s)
{
	static const char *const names[] = {
		[MIG_JOB_NONE] = "none", [MIG_JOB_SETUP] = "setup",
		[MIG_JOB_PRECOPY] = "precopy", [MIG_JOB_SWITCHOVER] = "switchover",
		[MIG_JOB_COMPLETED] = "completed", [MIG_JOB_FAILED] = "failed",
		[MIG_JOB_CANCELLED] = "cancelled", [MIG_JOB_PREDICTED] = "predicted",
	};

	return s <= MIG_JOB_PREDICTED ? names[s] : "unknown";
}

void mig_params_defaults(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	mig_policy_defaults(&p->policy);
	p->connections = 1;
}

/*
 * The watchdog: the migration's time limit holds even when the link
 * stalls (each send has its own timeout, but partial progress renews it).
 * Past the limit it shuts the connection, which ends the job; before the
 * ACK that leaves the guest running on the source. With timeout-action
 * force it tells the sender instead (force_due), which cuts its round
 * short and copies the rest with the guest paused; the connection is shut
 * only if that switchover outlasts its own limit (mig_force_deadline), or
 * if the sender never gets to it (MIG_FORCE_GRACE_S after the limit).
 */
static void *mig_watchdog(void *arg)
{
	struct mig_job *job = arg;

	for (;;) {
		enum mig_job_state st;
		uint64_t limit, deadline, now;
		bool force, sent;

		usleep(50000);
		/* migrate-set may have moved the limit. */
		pthread_mutex_lock(&job->lock);
		st = job->prog.state;
		limit = job->prog.start_ns + job->p.policy.timeout_s * 1000000000ull;
		force = job->p.policy.timeout_action == MIG_TIMEOUT_FORCE;
		deadline = job->force_deadline_ns;
		sent = job->prog.marks_ns[MIG_MARK_SENT] != 0;
		pthread_mutex_unlock(&job->lock);
		if (!mig_job_state_live(st))
			return NULL;
		/*
		 * All is sent: the ACK has its own bound (MIG_SWITCHOVER_ACK_MS).
		 * Cutting the wait could only cross a destination that has just
		 * acknowledged, which would then hold the guest awaiting a
		 * COMMIT while it runs on here.
		 */
		if (sent)
			continue;
		now = now_ns();
		if (!force) {
			if (now >= limit)
				break;
			continue;
		}
		if (deadline) {
			if (now >= deadline)
				break;
			continue;
		}
		if (now >= limit && !__atomic_exchange_n(&job->force_due, true, __ATOMIC_ACQ_REL))
			log_info("%s: migration time limit reached: forcing the stop-and-copy",
				 job->vm->cfg.name);
		if (now >= limit + MIG_FORCE_GRACE_S * 1000000000ull)
			break;
	}
	pthread_mutex_lock(&job->lock);
	if (!job->acked) {
		job->timed_out = true;
		mig_shutdown_io(job);
	}
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

void mig_policy_now(struct mig_job *job, struct mig_policy_config *out)
{
	pthread_mutex_lock(&job->lock);
	*out = job->p.policy;
	pthread_mutex_unlock(&job->lock);
}

/*
 * A send failed: the destination probably said why before it hung up (an
 * ABORT naming a bad record). Read it if it is there, briefly.
 */
static void mig_peer_reason(struct mig_run *m)
{
	struct pollfd pf = { .fd = m->x->fd, .events = POLLIN };
	ProtobufCMessage *msg = NULL;
	char why[MIG_ERR_LEN], mine[MIG_ERR_LEN];

	if (poll(&pf, 1, 300) != 1 || !(pf.revents & POLLIN))
		return;
	xport_set_timeout(m->x, 300);
	switch (mig_recv_msg(&m->r, STREAM_REC_ACK, &ferry__mig__ack__descriptor, &msg, why)) {
	case 0:  /* a refusing ACK: the destination could not load what we sent */
		if (((Ferry__Mig__Ack *)msg)->ok)
			break;
		snprintf(why, sizeof(why), "the destination refused: %.400s",
			 ((Ferry__Mig__Ack *)msg)->message);
		/* fall through */
	case -ECONNABORTED:
		snprintf(mine, sizeof(mine), "%s", m->err);
		snprintf(m->err, MIG_ERR_LEN, "%.200s (%.300s)", mine, why);
		break;
	default:
		break;
	}
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

static void mig_finish(struct mig_run *m, int ret)
{
	struct mig_job *job = m->job;
	enum mig_job_state st;
	bool ended;

	mig_throttle_stop(&m->throttle);
	pthread_mutex_lock(&job->lock);
	job->io_fd = -1;
	job->nr_lane_fds = 0;
	ended = job->guest_ended;
	pthread_mutex_unlock(&job->lock);
	/* Whatever broke after a cancel or the watchdog broke because of it. */
	if (ret && !m->acked && m->x && !mig_cancelled(job) && !job->timed_out &&
	    !ended && ret != -ECONNABORTED && ret != -ENOTSUP)
		mig_peer_reason(m);
	/* And what broke after the guest ended and the I/O was woken for it. */
	if (ret && !m->acked && ended && mig_guest_gone(m))
		ret = -ESRCH;
	else if (ret && !m->acked && mig_cancelled(job))
		ret = -ECANCELED;
	else if (ret && !m->acked && job->timed_out && job->force_deadline_ns)
		snprintf(m->err, MIG_ERR_LEN, "%s: timeout: the forced stop-and-copy outlasted "
			 "its own limit (%u times its forecast and %u s) after %.1f s paused; the "
			 "VM runs on at the source", job->prog.phase, MIG_FORCE_SLACK,
			 MIG_FORCE_GRACE_S, (double)(now_ns() - job->prog.start_ns -
						     job->prog.marks_ns[MIG_MARK_PAUSED]) / 1e9);
	else if (ret && !m->acked && job->timed_out)
		snprintf(m->err, MIG_ERR_LEN, "%s: timeout: the migration did not finish within "
			 "%llu s; the VM runs on at the source", job->prog.phase,
			 (unsigned long long)__atomic_load_n(&job->p.policy.timeout_s,
							     __ATOMIC_ACQUIRE));
	if (ret && !m->acked) {
		/* Before the ACK the guest is ours: it runs on, here. */
		if (m->x && ret != -ECONNABORTED)
			mig_send_abort(&m->w, job->prog.phase, m->err);
		if (m->paused)
			vm_resume_own(m->vm);
	}
	if (m->tracking)
		mig_tracking_give(m, !m->acked);
	mig_lanes_tx_close(m->lanes);
	xport_close(m->x);
	stream_writer_destroy(&m->w);
	stream_reader_destroy(&m->r);
	dirty_set_free(&m->set);

	st = !ret ? MIG_JOB_COMPLETED : ret == -ECANCELED ? MIG_JOB_CANCELLED : MIG_JOB_FAILED;
	pthread_mutex_lock(&job->lock);
	/* Every failure names its phase first. */
	if (ret && ret != -ECANCELED &&
	    strncmp(m->err, job->prog.phase, strlen(job->prog.phase))) {
		char why[MIG_ERR_LEN];

		snprintf(why, sizeof(why), "%s", m->err);
		snprintf(m->err, MIG_ERR_LEN, "%s: %s", job->prog.phase, why);
	}
	job->prog.end_ns = now_ns();
	if (ret == -ECANCELED)
		snprintf(m->err, MIG_ERR_LEN, "cancelled during %s; the VM runs on at the source",
			 job->prog.phase);
	if (ret)
		snprintf(job->prog.message, sizeof(job->prog.message), "%s", m->err);
	job->prog.state = st;
	pthread_mutex_unlock(&job->lock);
	if (ret)
		log_err("%s: migration to %s failed: %s", m->vm->cfg.name, job->p.uri, m->err);
	else
		log_info("%s: migrated to %s", m->vm->cfg.name, job->p.uri);
}

static void *mig_job_thread(void *arg)
{
	struct mig_job *job = arg;
	struct mig_run *m = calloc(1, sizeof(*m));
	pthread_t watchdog;
	bool have_watchdog = false;
	struct mig_lane_count tot;
	uint64_t t_transfer;
	int ret;

	if (!m) {
		mig_prog_set(job, MIG_JOB_FAILED, "setup");
		return NULL;
	}
	m->job = job;
	m->vm = job->vm;
	if (job->p.policy.timeout_s &&
	    !pthread_create(&watchdog, NULL, mig_watchdog, job))
		have_watchdog = true;
	stream_writer_init(&m->w, -1);
	stream_reader_init(&m->r, -1);
	mig_throttle_init(&m->throttle, m->vm);
	ret = dirty_set_init(&m->set, m->vm->dirty->nr_pages);
	if (ret)
		goto out;

	ret = mig_connect(m);
	if (!ret) {
		mig_mark(m, MIG_MARK_CONNECTED);
		ret = mig_handshake(m);
	}
	if (!ret)
		mig_mark(m, MIG_MARK_ACCEPTED);
	if (!ret && job->p.dry_run) {
		ret = mig_dry_run(m);
		mig_throttle_stop(&m->throttle);
		xport_close(m->x);
		stream_writer_destroy(&m->w);
		stream_reader_destroy(&m->r);
		dirty_set_free(&m->set);
		pthread_mutex_lock(&job->lock);
		job->prog.end_ns = now_ns();
		job->prog.state = ret ? MIG_JOB_FAILED : MIG_JOB_PREDICTED;
		if (ret)
			snprintf(job->prog.message, sizeof(job->prog.message), "%s", m->err);
		pthread_mutex_unlock(&job->lock);
		free(m);
		if (have_watchdog)
			pthread_join(watchdog, NULL);
		return NULL;
	}
	if (ret)
		goto out;
	/* The handshake's frames are not part of the stream's counts. */
	stream_writer_destroy(&m->w);
	stream_writer_init(&m->w, -1);
	m->w.io = &m->io;
	m->w.hashed = m->hashed;

	ret = mig_open_lanes(m);
	if (ret)
		goto out;

	mig_prog_set(job, MIG_JOB_PRECOPY, "precopy");
	ret = mig_tracking_take(m);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "dirty tracking: %s", strerror(-ret));
		goto out;
	}
	mig_mark(m, MIG_MARK_TRACKING);
	t_transfer = now_ns();
	ret = mig_write_head(m->vm, &m->w, true, m->err);
	if (!ret)
		ret = mig_precopy(m);
	if (!ret && mig_cancelled(job))
		ret = -ECANCELED;
	if (!ret)
		ret = mig_switchover(m);
	mig_totals(m, &tot);
	pthread_mutex_lock(&job->lock);
	job->prog.transfer_ns = now_ns() - t_transfer;
	job->prog.bytes = tot.bytes;
	job->prog.pages = tot.pages;
	job->prog.zero_pages = tot.zero_pages;
	pthread_mutex_unlock(&job->lock);
	if (!ret)
		mig_commit(m);
out:
	mig_finish(m, ret);
	free(m);
	if (have_watchdog)
		pthread_join(watchdog, NULL);
	return NULL;
}

int mig_job_start(struct mig_job *job, struct vm *vm, struct dirty_rate *rate,
		  uint64_t sample_ms, const struct mig_params *p, char *err)
{
	enum mig_job_state st;
	int ret;

	pthread_mutex_lock(&job->lock);
	/*
	 * The last job's thread has reported its end but may still be
	 * joining its watchdog, which takes this lock once more before it
	 * sees the end: join it with the lock dropped, or all three wait on
	 * each other for good. Then look again, in case another start came.
	 */
	while (job->thread_live && !mig_job_state_live(job->prog.state)) {
		pthread_t last = job->thread;

		job->thread_live = false;
		pthread_mutex_unlock(&job->lock);
		pthread_join(last, NULL);
		pthread_mutex_lock(&job->lock);
	}
	st = job->prog.state;
	if (mig_job_state_live(st)) {
		pthread_mutex_unlock(&job->lock);
		snprintf(err, MIG_ERR_LEN, "a migration of this VM is already in progress (%s)",
			 mig_job_state_name(st));
		return -EBUSY;
	}
	if (st == MIG_JOB_COMPLETED) {
		pthread_mutex_unlock(&job->lock);
		snprintf(err, MIG_ERR_LEN, "this VM has already been migrated away");
		return -EALREADY;
	}
	if (vm_get_state(vm) != VM_RUNNING && vm_get_state(vm) != VM_PAUSED) {
		pthread_mutex_unlock(&job->lock);
		snprintf(err, MIG_ERR_LEN, "the VM is %s", vm_state_name(vm_get_state(vm)));
		return -EINVAL;
	}
	memset(&job->prog, 0, sizeof(job->prog));
	job->prog.state = MIG_JOB_SETUP;
	snprintf(job->prog.phase, sizeof(job->prog.phase), "connect");
	snprintf(job->prog.destination, sizeof(job->prog.destination), "%s", p->uri);
	job->prog.start_ns = now_ns();
	job->vm = vm;
	job->rate = rate;
	job->sample_ms = sample_ms;
	job->p = *p;
	job->cancel = false;
	job->timed_out = false;
	job->guest_ended = false;
	job->acked = false;
	job->force_due = false;
	job->force_deadline_ns = 0;
	job->io_fd = -1;
	ret = -pthread_create(&job->thread, NULL, mig_job_thread, job);
	if (ret) {
		job->prog.state = MIG_JOB_FAILED;
		snprintf(err, MIG_ERR_LEN, "cannot start the migration thread");
	} else {
		job->thread_live = true;
	}
	pthread_mutex_unlock(&job->lock);
	return ret;
}

void mig_job_progress(struct mig_job *job, struct mig_progress *out)
{
	pthread_mutex_lock(&job->lock);
	*out = job->prog;
	out->policy = job->p.policy;
	pthread_mutex_unlock(&job->lock);
}

int mig_job_cancel(struct mig_job *job)
{
	enum mig_job_state st;

	pthread_mutex_lock(&job->lock);
	st = job->prog.state;
	pthread_mutex_unlock(&job->lock);
	if (st != MIG_JOB_SETUP && st != MIG_JOB_PRECOPY)
		return st == MIG_JOB_SWITCHOVER ? -EBUSY : -ENOENT;
	__atomic_store_n(&job->cancel, true, __ATOMIC_RELEASE);
	/* Wake a thread blocked on the peer (a silent destination, say). */
	pthread_mutex_lock(&job->lock);
	mig_shutdown_io(job);
	pthread_mutex_unlock(&job->lock);
	return 0;
}

int mig_job_set(struct mig_job *job, const struct mig_settings *s, char *err)
{
	struct mig_policy_config *c = &job->p.policy;
	char what[MIG_ERR_LEN] = "", a[32], b[32];
	uint64_t ran_s;
	int ret = 0;

	pthread_mutex_lock(&job->lock);
	switch (job->prog.state) {
	case MIG_JOB_SETUP:
	case MIG_JOB_PRECOPY:
		break;
	case MIG_JOB_SWITCHOVER:
		snprintf(err, MIG_ERR_LEN, "the migration is in switchover; its settings "
			 "cannot change any more");
		ret = -EBUSY;
		goto out;
	default:
		snprintf(err, MIG_ERR_LEN, "no migration in progress");
		ret = -ENOENT;
		goto out;
	}
	/*
	 * A limit already behind us would end the migration at once, which is
	 * what migrate-cancel is for; refuse it and change nothing.
	 */
	ran_s = (now_ns() - job->prog.start_ns) / 1000000000ull;
	if (s->set_timeout && s->timeout_s <= ran_s) {
		snprintf(err, MIG_ERR_LEN, "the migration has run for %llu s; a timeout of %llu s "
			 "would end it at once (migrate-cancel stops it)",
			 (unsigned long long)ran_s, (unsigned long long)s->timeout_s);
		ret = -EINVAL;
		goto out;
	}
	if (s->set_downtime && s->downtime_ms != c->downtime_ms) {
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
			 ", downtime target %llu -> %llu ms", (unsigned long long)c->downtime_ms,
			 (unsigned long long)s->downtime_ms);
		c->downtime_ms = s->downtime_ms;
	}
	if (s->set_bandwidth && s->bandwidth_mbps != c->bandwidth_mbps) {
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
			 ", bandwidth cap %s -> %s", fmt_cap_mbps(c->bandwidth_mbps, a, sizeof(a)),
			 fmt_cap_mbps(s->bandwidth_mbps, b, sizeof(b)));
		__atomic_store_n(&c->bandwidth_mbps, s->bandwidth_mbps, __ATOMIC_RELEASE);
	}
	if (s->set_timeout && s->timeout_s != c->timeout_s) {
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
			 ", timeout %llu -> %llu s", (unsigned long long)c->timeout_s,
			 (unsigned long long)s->timeout_s);
		__atomic_store_n(&c->timeout_s, s->timeout_s, __ATOMIC_RELEASE);
		/* A limit moved into the future is not reached any more. */
		__atomic_store_n(&job->force_due, false, __ATOMIC_RELEASE);
	}
	if (s->set_timeout_action && s->timeout_action != c->timeout_action) {
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
			 ", at the timeout %s", s->timeout_action == MIG_TIMEOUT_FORCE ?
			 "force the switchover" : "abort");
		c->timeout_action = s->timeout_action;
	}
	if (what[0]) {
		job->prog.settings_changes++;
		log_info("%s: migration to %s: %s (migrate-set)", job->vm->cfg.name,
			 job->prog.destination, what + 2);
	}
out:
	pthread_mutex_unlock(&job->lock);
	return ret;
}

void mig_job_guest_ended(struct mig_job *job)
{
	pthread_mutex_lock(&job->lock);
	if (!job->acked && (job->prog.state == MIG_JOB_SETUP ||
			    job->prog.state == MIG_JOB_PRECOPY)) {
		job->guest_ended = true;
		mig_shutdown_io(job);
	}
	pthread_mutex_unlock(&job->lock);
}

/* Whoever clears thread_live under the lock joins: never twice, never locked. */
void mig_job_join(struct mig_job *job)
{
	pthread_t last;
	bool live;

	pthread_mutex_lock(&job->lock);
	live = job->thread_live;
	last = job->thread;
	job->thread_live = false;
	pthread_mutex_unlock(&job->lock);
	if (live)
		pthread_join(last, NULL);
}
