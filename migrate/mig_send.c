/*
 * The source side of a live migration, one job thread per migration:
 *
 *   connect -> HELLO/VERDICT -> pre-copy rounds (harvest, send, ask the
 *   policy) -> pause -> last pages and state -> END -> ACK -> COMMIT
 *
 * The VM is the source's until the ACK: every failure before it resumes
 * the guest here (if we paused it), gives dirty tracking back to the
 * sampler and reports the phase and the cause. After the ACK the guest is
 * stopped for good, whatever happens to the COMMIT.
 */
#include "migrate/mig_live.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "migrate/mig_lanes.h"
#include "migrate/mig_proto.h"
#include "migrate/mig_throttle.h"

const char *const mig_mark_names[MIG_MARK_NR] = {
	[MIG_MARK_CONNECTED] = "connected",
	[MIG_MARK_ACCEPTED] = "accepted",
	[MIG_MARK_TRACKING] = "tracking",
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

/* Everything one run needs, on the job thread's stack. */
struct mig_run {
	struct mig_job *job;
	struct vm *vm;
	struct xport *x;
	struct mig_lanes_tx *lanes; /* data connections (--connections > 1) */
	uint8_t token[MIG_LANE_TOKEN_LEN];
	struct stream_io io;
	struct stream_writer w;
	struct stream_reader r;
	struct dirty_set set;
	struct mig_throttle throttle;
	bool hashed;        /* the destination takes PAGE_HASHED: no page copies */
	bool tracking;      /* we took dirty tracking from the sampler */
	bool paused;        /* we paused the guest */
	bool acked;         /* the destination owns the guest now */
	uint64_t pause_realtime_ns;
	uint64_t t_start;
	char err[MIG_ERR_LEN];
};

static void prog_set(struct mig_job *job, enum mig_job_state st, const char *phase)
{
	pthread_mutex_lock(&job->lock);
	job->prog.state = st;
	snprintf(job->prog.phase, sizeof(job->prog.phase), "%s", phase);
	pthread_mutex_unlock(&job->lock);
}

/* Stamp a moment, from the start that total_ms counts from. Lock held. */
static void mig_mark_locked(struct mig_job *job, enum mig_mark k)
{
	uint64_t t = now_ns() - job->prog.start_ns;

	job->prog.marks_ns[k] = t ? t : 1;
}

static void mig_mark(struct mig_run *m, enum mig_mark k)
{
	pthread_mutex_lock(&m->job->lock);
	mig_mark_locked(m->job, k);
	pthread_mutex_unlock(&m->job->lock);
}

static bool cancelled(struct mig_job *job)
{
	return __atomic_load_n(&job->cancel, __ATOMIC_ACQUIRE);
}

/*
 * The guest crashed or stopped under the migration: there is nothing left
 * worth moving, and "cannot pause" would hide why. It stays here, as it
 * ended, for the operator to look at.
 */
static bool vm_state_over(enum vm_state st)
{
	return st == VM_CRASHED || st == VM_STOPPED;
}

static int mig_guest_gone(struct mig_run *m)
{
	enum vm_state st = vm_get_state(m->vm);
	char reason[VM_ERR_LEN];

	if (!vm_state_over(st))
		return 0;
	/* Both final: the reason is the one written with this state. */
	pthread_mutex_lock(&m->vm->lock);
	snprintf(reason, sizeof(reason), "%s", m->vm->reason);
	pthread_mutex_unlock(&m->vm->lock);
	snprintf(m->err, MIG_ERR_LEN, "the guest %s during the migration%s%.300s; it was "
		 "not moved", st == VM_CRASHED ? "crashed" : "stopped", reason[0] ? ": " : "",
		 reason);
	return -ESRCH;
}

/* A peer that stops reading must not outlast the migration's own limit. */
static int mig_io_timeout_ms(const struct mig_job *job)
{
	return job->p.policy.timeout_s && job->p.policy.timeout_s * 1000 < MIG_IO_TIMEOUT_MS ?
		(int)(job->p.policy.timeout_s * 1000) : MIG_IO_TIMEOUT_MS;
}

/* Wake every blocked send or receive: a cancel, the watchdog. Lock held. */
static void mig_shutdown_io(struct mig_job *job)
{
	if (job->io_fd >= 0)
		shutdown(job->io_fd, SHUT_RDWR);
	for (unsigned i = 0; i < job->nr_lane_fds; i++)
		shutdown(job->lane_fds[i], SHUT_RDWR);
}

/* The HELLO: what the destination must be able to host. */
static int mig_handshake(struct mig_run *m)
{
	Ferry__Mig__Hello h = FERRY__MIG__HELLO__INIT;
	struct mig_cpu_pack *cp = calloc(1, sizeof(*cp));
	struct mig_dev_states devs;
	ProtobufCMessage *msg = NULL;
	const char *page_copy;
	Ferry__Mig__Verdict *v;
	int ret;

	if (!cp)
		return -ENOMEM;
	mig_pack_cpu(m->vm, cp);
	h.min_version = STREAM_VERSION;
	h.max_version = STREAM_VERSION;
	h.vm_name = m->vm->cfg.name;
	h.mem_bytes = m->vm->mem.size;
	h.nr_vcpus = m->vm->nr_vcpus;
	h.cpu_model = &cp->msg;
	h.verify = m->job->p.verify;
	h.dry_run = m->job->p.dry_run;
	h.live_version = MIG_LIVE_VERSION;
	/* FERRY_MIG_PAGE_COPY=1: PAGE_DATA, copied, as protocol 1 (A/B benchmarks). */
	page_copy = getenv("FERRY_MIG_PAGE_COPY");
	h.hashed_pages = !page_copy || strcmp(page_copy, "1");
	h.connections = m->job->p.connections;
	/* The disks: the destination must be able to open them (precheck). */
	ret = mig_dev_states_pack(m->vm, &devs);
	if (ret) {
		free(cp);
		snprintf(m->err, MIG_ERR_LEN, "device states: %s", strerror(-ret));
		return ret;
	}
	h.n_device_states = devs.n;
	h.device_states = devs.ptrs;
	if (h.connections > 1) {
		if (getrandom(m->token, sizeof(m->token), 0) != (ssize_t)sizeof(m->token)) {
			free(cp);
			mig_dev_states_free(&devs);
			snprintf(m->err, MIG_ERR_LEN, "no random bytes for the connection token");
			return -EIO;
		}
		h.lane_token.data = m->token;
		h.lane_token.len = sizeof(m->token);
	}
	ret = mig_send_msg(&m->w, STREAM_REC_HELLO, &h.base);
	free(cp);
	mig_dev_states_free(&devs);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "send HELLO: %s", strerror(-ret));
		return ret;
	}
	ret = mig_recv_msg(&m->r, STREAM_REC_VERDICT, &ferry__mig__verdict__descriptor, &msg,
			   m->err);
	if (ret)
		return ret;
	v = (Ferry__Mig__Verdict *)msg;
	if (!v->accept) {
		size_t used = 0;

		used += (size_t)snprintf(m->err, MIG_ERR_LEN, "precheck: destination %s refused:",
					 v->host && *v->host ? v->host : m->job->p.uri);
		for (size_t i = 0; i < v->n_refusals && used < MIG_ERR_LEN; i++)
			used += (size_t)snprintf(m->err + used, MIG_ERR_LEN - used, "%s %s: %s",
						 i ? ";" : "", v->refusals[i]->cause,
						 v->refusals[i]->message);
		ret = -ENOTSUP;
	} else if ((v->connections ? v->connections : 1) != m->job->p.connections) {
		const char *host = v->host && *v->host ? v->host : m->job->p.uri;

		if (v->live_version < 2)
			snprintf(m->err, MIG_ERR_LEN, "handshake: destination %s speaks live protocol "
				 "%u and cannot take --connections %u; use --connections 1", host,
				 v->live_version ? v->live_version : 1, m->job->p.connections);
		else
			snprintf(m->err, MIG_ERR_LEN, "handshake: destination %s granted %u "
				 "connections, not the %u asked for", host,
				 v->connections ? v->connections : 1, m->job->p.connections);
		ret = -ENOTSUP;
	}
	m->hashed = !ret && h.hashed_pages && v->hashed_pages;
	protobuf_c_message_free_unpacked(msg, NULL);
	return ret;
}

/* Live protocol 2: the data connections, after an accepting VERDICT. */
static int mig_open_lanes(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct xport_addr addr;
	struct xport_tls tls;
	int fds[MIG_CONN_MAX], ret;
	char xerr[XPORT_ERR_LEN];

	if (job->p.connections <= 1)
		return 0;
	ret = xport_addr_parse(job->p.uri, &addr, xerr);
	if (!ret && job->p.tls_dir[0])
		ret = xport_tls_from_dir(job->p.tls_dir, &tls, xerr);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "%s", xerr);
		return ret;
	}
	ret = mig_lanes_tx_open(&addr, job->p.tls_dir[0] ? &tls : NULL, job->p.connections,
				m->token, m->hashed, mig_io_timeout_ms(job), &m->lanes, fds,
				m->err);
	if (ret)
		return ret;
	pthread_mutex_lock(&job->lock);
	memcpy(job->lane_fds, fds, sizeof(fds[0]) * job->p.connections);
	job->nr_lane_fds = job->p.connections;
	if (cancelled(job) || job->timed_out)
		mig_shutdown_io(job);
	pthread_mutex_unlock(&job->lock);
	return cancelled(job) ? -ECANCELED : 0;
}

/*
 * --bandwidth: after each record, sleep until the bytes sent so far fit
 * the cap. The cap covers all the migration's bytes since it began.
 */
static void mig_pace(struct mig_run *m)
{
	uint64_t cap = m->job->p.policy.bandwidth_mbps;
	uint64_t due_ns, elapsed;

	if (!cap)
		return;
	due_ns = m->w.off * 8ull * 1000ull / cap; /* bytes at cap Mbit/s, in ns */
	elapsed = now_ns() - m->t_start;
	if (due_ns > elapsed)
		usleep((useconds_t)((due_ns - elapsed) / 1000));
}

/*
 * The watchdog: the migration's time limit holds even when the link
 * stalls (each send has its own timeout, but partial progress renews it).
 * Past the limit it shuts the connection, which ends the job; before the
 * ACK that leaves the guest running on the source.
 */
static void *mig_watchdog(void *arg)
{
	struct mig_job *job = arg;
	uint64_t limit_s = job->p.policy.timeout_s +
		(job->p.policy.timeout_action == MIG_TIMEOUT_FORCE ? MIG_FORCE_GRACE_S : 0);
	uint64_t deadline = job->prog.start_ns + limit_s * 1000000000ull;

	while (now_ns() < deadline) {
		enum mig_job_state st;

		usleep(50000);
		pthread_mutex_lock(&job->lock);
		st = job->prog.state;
		pthread_mutex_unlock(&job->lock);
		if (st != MIG_JOB_SETUP && st != MIG_JOB_PRECOPY && st != MIG_JOB_SWITCHOVER)
			return NULL;
	}
	pthread_mutex_lock(&job->lock);
	if (!job->acked) {
		job->timed_out = true;
		mig_shutdown_io(job);
	}
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

/* What the stream carried so far, on the control and the data connections. */
static void mig_totals(const struct mig_run *m, struct mig_lane_count *t)
{
	mig_lanes_tx_total(m->lanes, t);
	t->bytes += m->w.off;
	t->pages += m->w.pages;
	t->zero_pages += m->w.zero_pages;
}

static bool lanes_stop(void *ctx)
{
	struct mig_run *m = ctx;

	return cancelled(m->job) || vm_state_over(vm_get_state(m->vm));
}

static void lanes_progress(void *ctx, uint64_t pages, uint64_t bytes)
{
	struct mig_job *job = ((struct mig_run *)ctx)->job;

	pthread_mutex_lock(&job->lock);
	job->prog.round_sent += pages;
	job->prog.pages += pages;
	job->prog.bytes += bytes;
	pthread_mutex_unlock(&job->lock);
}

/* Send one set of pages on the data connections, then its FENCE. */
static int mig_send_set_lanes(struct mig_run *m, struct mig_round *rd, bool final)
{
	const struct mig_lanes_tx_hooks hooks = {
		.stop = lanes_stop, .progress = lanes_progress, .ctx = m,
	};
	struct mig_lane_count c0, c1;
	int ret;

	mig_totals(m, &c0);
	ret = mig_lanes_tx_round(m->lanes, &m->set, m->vm, m->job->p.policy.bandwidth_mbps,
				 m->t_start, &hooks, m->err);
	mig_totals(m, &c1);
	rd->pages_sent = c1.pages - c0.pages;
	rd->zero_pages = c1.zero_pages - c0.zero_pages;
	if (!ret)
		ret = mig_lanes_tx_fence(m->lanes, &m->w, rd->round, final);
	mig_totals(m, &c1);
	rd->bytes_sent = c1.bytes - c0.bytes;
	if (ret == -ECANCELED) {
		int gone = mig_guest_gone(m);

		return gone ? gone : ret;
	}
	if (ret && !m->err[0])
		snprintf(m->err, MIG_ERR_LEN, "send FENCE: %s", m->x->err[0] ? m->x->err :
			 strerror(-ret));
	return ret;
}

/* Send one set of pages, with progress and cancellation per record. */
static int mig_send_set(struct mig_run *m, struct mig_round *rd, bool final)
{
	struct mig_job *job = m->job;
	uint64_t pfns[STREAM_PAGES_MAX], pfn, z0 = m->w.zero_pages, b0 = m->w.off;
	size_t n = 0;
	int ret;

	/* Up to date with the harvest that made m->set. */
	m->w.written = dirty_written_map(m->vm->dirty);

	pthread_mutex_lock(&job->lock);
	job->prog.round_pages = m->set.count;
	job->prog.round_sent = 0;
	pthread_mutex_unlock(&job->lock);
	if (m->lanes)
		return mig_send_set_lanes(m, rd, final);
	dirty_set_for_each(&m->set, pfn) {
		pfns[n++] = pfn;
		if (n < STREAM_PAGES_MAX && pfn + 1 < m->set.nr_pages)
			continue;
		ret = stream_write_pages(&m->w, pfns, n, m->vm->mem.base);
		if (ret) {
			/* The pages did not go: they are still dirty. */
			for (size_t i = 0; i < n; i++)
				dirty_mark(m->vm->dirty, pfns[i] << MEM_PAGE_SHIFT, 1);
			snprintf(m->err, MIG_ERR_LEN, "send pages: %s", m->x->err[0] ?
				 m->x->err : strerror(-ret));
			return ret;
		}
		rd->pages_sent += n;
		n = 0;
		mig_pace(m);
		pthread_mutex_lock(&job->lock);
		job->prog.round_sent = rd->pages_sent;
		job->prog.bytes = m->w.off;
		job->prog.pages = m->w.pages;
		job->prog.zero_pages = m->w.zero_pages;
		pthread_mutex_unlock(&job->lock);
		if (cancelled(job))
			return -ECANCELED;
		ret = mig_guest_gone(m);
		if (ret)
			return ret;
	}
	if (n) {
		ret = stream_write_pages(&m->w, pfns, n, m->vm->mem.base);
		if (ret) {
			snprintf(m->err, MIG_ERR_LEN, "send pages: %s", strerror(-ret));
			return ret;
		}
		rd->pages_sent += n;
	}
	rd->zero_pages = m->w.zero_pages - z0;
	rd->bytes_sent = m->w.off - b0;
	return 0;
}

static void mig_record_round(struct mig_run *m, const struct mig_round *rd,
			     const struct mig_decision *d)
{
	struct mig_job *job = m->job;
	Ferry__Mig__RoundInfo ri = FERRY__MIG__ROUND_INFO__INIT;

	pthread_mutex_lock(&job->lock);
	if (job->prog.nr_rounds < MIG_MAX_ROUNDS_KEPT) {
		struct mig_round_info *o = &job->prog.rounds[job->prog.nr_rounds++];

		o->r = *rd;
		snprintf(o->decision, sizeof(o->decision), "%s", d->reason);
	}
	job->prog.bandwidth_Bps = d->bandwidth_Bps;
	job->prog.predicted_downtime_ms = d->predicted_downtime_ms;
	job->prog.dirty_pages_per_s = rd->duration_ns ?
		(double)rd->dirty_pages * 1e9 / (double)rd->duration_ns : 0;
	job->prog.throttle_pct = d->throttle_pct;
	snprintf(job->prog.message, sizeof(job->prog.message), "%s", d->reason);
	pthread_mutex_unlock(&job->lock);

	/* The round goes into the stream too: optional, for tools and logs. */
	ri.round = rd->round;
	ri.pages = rd->pages_sent;
	ri.zero_pages = rd->zero_pages;
	ri.bytes = rd->bytes_sent;
	ri.duration_ns = rd->duration_ns;
	ri.dirty_pages = rd->dirty_pages;
	stream_write_pb(&m->w, STREAM_REC_ROUND, &ri.base);
	log_info("%s: migration round %u: %llu pages in %.1f ms, %llu dirtied: %s",
		 m->vm->cfg.name, rd->round, (unsigned long long)rd->pages_sent,
		 (double)rd->duration_ns / 1e6, (unsigned long long)rd->dirty_pages, d->reason);
}

/* Pre-copy: rounds until the policy says stop (1) or abort (negative). */
static int mig_precopy(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct mig_policy_state ps;
	uint64_t start = now_ns();
	int ret;

	mig_policy_init(&ps);
	ret = dirty_harvest(m->vm->dirty, &m->set); /* round 1: every page */
	for (unsigned round = 1; !ret; round++) {
		struct mig_round rd = { .round = round, .throttle_pct = m->throttle.pct };
		struct mig_decision d;
		uint64_t t0 = now_ns();

		pthread_mutex_lock(&job->lock);
		job->prog.round = round;
		pthread_mutex_unlock(&job->lock);
		ret = mig_guest_gone(m);
		if (ret)
			break;
		ret = mig_send_set(m, &rd, false);
		if (ret)
			break;
		rd.send_ns = now_ns() - t0;
		ret = dirty_harvest(m->vm->dirty, &m->set);
		if (ret) {
			snprintf(m->err, MIG_ERR_LEN, "dirty tracking: %s", strerror(-ret));
			break;
		}
		rd.duration_ns = now_ns() - t0;
		rd.dirty_pages = m->set.count;
		mig_policy_decide(&job->p.policy, &ps, &rd, now_ns() - start, &d);
		mig_record_round(m, &rd, &d);
		switch (d.action) {
		case MIG_CONTINUE:
			break;
		case MIG_THROTTLE:
			mig_throttle_set(&m->throttle, d.throttle_pct);
			break;
		case MIG_STOP_AND_COPY:
			mig_mark(m, MIG_MARK_PRECOPY_DONE);
			return 0;
		case MIG_ABORT:
			snprintf(m->err, MIG_ERR_LEN, "%s", d.reason);
			return -ETIMEDOUT;
		}
	}
	return ret;
}

/* Stop-and-copy: the guest pauses here and resumes there. */
static int mig_switchover(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct mig_tail_opts to = { .verify = job->p.verify };
	struct mig_round rd = { .throttle_pct = 0 };
	struct dirty_set last;
	ProtobufCMessage *msg = NULL;
	char why[MIG_ERR_LEN];
	int ret;

	prog_set(job, MIG_JOB_SWITCHOVER, "switchover");
	mig_throttle_set(&m->throttle, 0);
	ret = vm_pause(m->vm);
	if (ret) {
		int gone = mig_guest_gone(m);

		if (gone)
			return gone;
		snprintf(m->err, MIG_ERR_LEN, "cannot pause the guest: %s",
			 strerror(-ret));
		return ret;
	}
	m->paused = true;
	m->pause_realtime_ns = realtime_ns();
	mig_mark(m, MIG_MARK_PAUSED);
	/* Disks: no I/O in flight, everything acknowledged flushed (or we stay). */
	ret = vm_devs_quiesce(m->vm, m->err, MIG_ERR_LEN);
	if (ret)
		return ret;
	mig_mark(m, MIG_MARK_QUIESCED);
	/*
	 * The set still holds what the last round's harvest found; add what
	 * was dirtied since, up to the pause. (Harvesting into the set itself
	 * would clear it and lose those pages.)
	 */
	ret = dirty_set_init(&last, m->set.nr_pages);
	if (!ret)
		ret = dirty_harvest(m->vm->dirty, &last);
	if (ret) {
		dirty_set_free(&last);
		snprintf(m->err, MIG_ERR_LEN, "dirty tracking: %s", strerror(-ret));
		return ret;
	}
	dirty_set_merge(&m->set, &last);
	dirty_set_free(&last);
	rd.round = job->prog.nr_rounds + 1;
	ret = mig_send_set(m, &rd, true);
	if (ret)
		return ret;
	to.rounds = rd.round;
	if (m->lanes) {
		struct mig_lane_count lc;

		mig_lanes_tx_total(m->lanes, &lc);
		to.lane_pages = lc.pages;
		to.lane_zero_pages = lc.zero_pages;
	}
	ret = mig_write_tail(m->vm, &m->w, &to, m->err);
	if (ret)
		return ret;
	mig_mark(m, MIG_MARK_SENT);
	xport_set_timeout(m->x, MIG_SWITCHOVER_ACK_MS);
	ret = mig_recv_msg(&m->r, STREAM_REC_ACK, &ferry__mig__ack__descriptor, &msg, why);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "waiting for the destination's acknowledgement: %s",
			 why);
		return ret;
	}
	if (!((Ferry__Mig__Ack *)msg)->ok) {
		Ferry__Mig__Ack *a = (Ferry__Mig__Ack *)msg;

		snprintf(m->err, MIG_ERR_LEN, "destination refused the state "
			 "in %.32s: %.400s", a->phase, a->message);
		protobuf_c_message_free_unpacked(msg, NULL);
		return -EPROTO;
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	mig_mark(m, MIG_MARK_ACKED);
	pthread_mutex_lock(&job->lock);
	job->acked = true;     /* from here on no watchdog may cut the line */
	pthread_mutex_unlock(&job->lock);
	m->acked = true;
	return 0;
}

/* After the ACK: the guest is the destination's. Tell it to run. */
static void mig_commit(struct mig_run *m)
{
	struct mig_job *job = m->job;
	Ferry__Mig__Empty e = FERRY__MIG__EMPTY__INIT;
	ProtobufCMessage *msg = NULL;
	char why[MIG_ERR_LEN];
	int ret;

	vm_finish(m->vm, VM_STOPPED, 0, "migrated to %s", job->p.uri);
	/* The destination takes the disks on COMMIT: let go of them first. */
	vm_devs_release(m->vm);
	ret = mig_send_msg(&m->w, STREAM_REC_COMMIT, &e.base);
	if (!ret)
		ret = mig_recv_msg(&m->r, STREAM_REC_RESUMED, &ferry__mig__resumed__descriptor,
				   &msg, why);
	pthread_mutex_lock(&job->lock);
	if (!ret) {
		uint64_t resumed = ((Ferry__Mig__Resumed *)msg)->realtime_ns;

		job->prog.downtime_ms = resumed > m->pause_realtime_ns ?
			(double)(resumed - m->pause_realtime_ns) / 1e6 : 0;
		mig_mark_locked(job, MIG_MARK_RESUMED);
	} else {
		/* The guest is stopped here and maybe not yet running there. */
		snprintf(job->prog.message, sizeof(job->prog.message),
			 "committed, but the destination did not confirm that it resumed "
			 "the guest (%s); it holds the guest until told to resume it",
			 ret == -EPIPE || ret == -ECONNRESET || ret == -ECONNABORTED ?
			 "the connection broke" : why);
		log_err("%s: migration committed but the destination did not confirm: %s",
			m->vm->cfg.name, ret ? strerror(-ret) : why);
	}
	pthread_mutex_unlock(&job->lock);
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

static int mig_connect(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct xport_addr addr;
	struct xport_tls tls;
	char xerr[XPORT_ERR_LEN];
	int ret;

	ret = xport_addr_parse(job->p.uri, &addr, xerr);
	if (!ret && job->p.tls_dir[0])
		ret = xport_tls_from_dir(job->p.tls_dir, &tls, xerr);
	if (!ret)
		ret = xport_connect(&addr, job->p.tls_dir[0] ? &tls : NULL,
				    MIG_HANDSHAKE_TIMEOUT_MS, &m->x, xerr);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "%s", xerr);
		return ret;
	}
	/* A cancel shuts this socket down, so no blocking call outlives it. */
	pthread_mutex_lock(&job->lock);
	job->io_fd = m->x->fd;
	snprintf(job->prog.phase, sizeof(job->prog.phase), "handshake");
	pthread_mutex_unlock(&job->lock);
	if (cancelled(job)) {
		shutdown(m->x->fd, SHUT_RDWR);
		return -ECANCELED;
	}
	xport_set_timeout(m->x, mig_io_timeout_ms(job));
	mig_xport_io(m->x, &m->io);
	m->w.io = &m->io;
	m->r.io = &m->io;
	return 0;
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

	mig_throttle_stop(&m->throttle);
	pthread_mutex_lock(&job->lock);
	job->io_fd = -1;
	job->nr_lane_fds = 0;
	pthread_mutex_unlock(&job->lock);
	/* Whatever broke after a cancel or the watchdog broke because of it. */
	if (ret && !m->acked && m->x && !cancelled(job) && !job->timed_out &&
	    ret != -ECONNABORTED && ret != -ENOTSUP)
		mig_peer_reason(m);
	if (ret && !m->acked && cancelled(job))
		ret = -ECANCELED;
	else if (ret && !m->acked && job->timed_out)
		snprintf(m->err, MIG_ERR_LEN, "%s: timeout: the migration did not finish within "
			 "%llu s; the VM runs on here", job->prog.phase,
			 (unsigned long long)job->p.policy.timeout_s);
	if (ret && !m->acked) {
		/* Before the ACK the guest is ours: it runs on, here. */
		if (m->x && ret != -ECONNABORTED)
			mig_send_abort(&m->w, job->prog.phase, m->err);
		if (m->paused)
			vm_resume(m->vm);
	}
	if (m->tracking) {
		dirty_stop(m->vm->dirty);
		if (!m->acked && job->rate && job->sample_ms)
			dirty_rate_start(job->rate, m->vm, job->sample_ms);
	}
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
		snprintf(m->err, MIG_ERR_LEN, "cancelled during %s; the VM runs on here",
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

/*
 * A dry run: the precheck has passed; measure the link with PROBE frames,
 * take the guest's dirty rate from the sampler and its non-zero pages from
 * RAM, and let the policy's predictor say how the real thing would go.
 */
#define MIG_PROBE_BYTES (1u << 20)
#define MIG_PROBE_NS (200ull * 1000000ull)

static int mig_dry_run(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct mig_workload wl = { 0 };
	struct mig_prediction pr;
	uint8_t *buf = malloc(MIG_PROBE_BYTES);
	uint64_t t0, sent = 0, window_ns = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	prog_set(job, MIG_JOB_SETUP, "dry-run");
	for (size_t i = 0; i < MIG_PROBE_BYTES; i++)
		buf[i] = (uint8_t)(i * 131 + 7);  /* not compressible, not zero */
	t0 = now_ns();
	while (now_ns() - t0 < MIG_PROBE_NS && sent < (256ull << 20)) {
		ret = stream_write_record(&m->w, STREAM_REC_PROBE, buf, MIG_PROBE_BYTES);
		if (ret) {
			snprintf(m->err, MIG_ERR_LEN, "dry run: measuring the link: %s",
				 m->x->err[0] ? m->x->err : strerror(-ret));
			goto out;
		}
		sent += MIG_PROBE_BYTES;
	}
	wl.bandwidth_Bps = (double)sent * 1e9 / (double)(now_ns() - t0);
	mig_send_abort(&m->w, "dry-run", "dry run finished: nothing moved");

	wl.mem_pages = mem_pages(&m->vm->mem);
	for (uint64_t pfn = 0; pfn < wl.mem_pages; pfn++)
		wl.nonzero_pages += !mem_page_is_zero(m->vm->mem.base + (pfn << MEM_PAGE_SHIFT));
	if (job->rate)
		wl.dirty_pages_per_s = dirty_rate_get(job->rate, &window_ns);
	wl.wss_pages = (uint64_t)(wl.dirty_pages_per_s * (double)window_ns / 1e9);
	mig_predict(&job->p.policy, &wl, &pr);
	pthread_mutex_lock(&job->lock);
	job->prog.prediction = pr;
	job->prog.bandwidth_Bps = wl.bandwidth_Bps;
	job->prog.dirty_pages_per_s = wl.dirty_pages_per_s;
	job->prog.predicted_downtime_ms = pr.downtime_ms;
	snprintf(job->prog.message, sizeof(job->prog.message),
		 "precheck passed; link %.0f MB/s, %llu non-zero pages of %llu, dirty rate "
		 "%.0f pages/s: %s", wl.bandwidth_Bps / 1e6,
		 (unsigned long long)wl.nonzero_pages, (unsigned long long)wl.mem_pages,
		 wl.dirty_pages_per_s, pr.summary);
	pthread_mutex_unlock(&job->lock);
out:
	free(buf);
	return ret;
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
		prog_set(job, MIG_JOB_FAILED, "setup");
		return NULL;
	}
	m->job = job;
	m->vm = job->vm;
	m->t_start = now_ns();
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

	prog_set(job, MIG_JOB_PRECOPY, "precopy");
	if (job->rate)
		dirty_rate_stop(job->rate);
	ret = dirty_start(m->vm->dirty);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "dirty tracking: %s", strerror(-ret));
		goto out;
	}
	m->tracking = true;
	mig_mark(m, MIG_MARK_TRACKING);
	t_transfer = now_ns();
	ret = mig_write_head(m->vm, &m->w, true, m->err);
	if (!ret)
		ret = mig_precopy(m);
	if (!ret && cancelled(job))
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
	st = job->prog.state;
	if (st == MIG_JOB_SETUP || st == MIG_JOB_PRECOPY || st == MIG_JOB_SWITCHOVER) {
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
	if (job->thread_live) {
		pthread_join(job->thread, NULL);
		job->thread_live = false;
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
	job->acked = false;
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

void mig_job_join(struct mig_job *job)
{
	if (job->thread_live) {
		pthread_join(job->thread, NULL);
		job->thread_live = false;
	}
}
