/*
 * The source side of a live migration, phase by phase on the wire:
 *
 *   connect -> HELLO/VERDICT -> pre-copy rounds (harvest, send, ask the
 *   policy) -> pause -> last pages and state -> END -> ACK -> COMMIT
 *
 * The VM is the source's until the ACK: every failure before it resumes
 * the guest here (if we paused it), gives dirty tracking back to the
 * sampler and reports the phase and the cause (mig_job.c). After the ACK
 * the guest is stopped for good, whatever happens to the COMMIT.
 */
#include "migrate/mig_send_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"
#include "core/util.h"
#include "migrate/mig_proto.h"

void mig_prog_set(struct mig_job *job, enum mig_job_state st, const char *phase)
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

void mig_tracking_give(struct mig_run *m, bool sampler)
{
	struct mig_job *job = m->job;

	dirty_stop(m->vm->dirty);
	m->tracking = false;
	if (sampler && job->rate && job->sample_ms)
		dirty_rate_start(job->rate, m->vm, job->sample_ms);
}

int mig_tracking_take(struct mig_run *m)
{
	int ret;

	if (m->job->rate)
		dirty_rate_stop(m->job->rate);
	ret = dirty_start(m->vm->dirty);
	if (ret) {
		mig_tracking_give(m, true);
		return ret;
	}
	m->tracking = true;
	return 0;
}

void mig_mark(struct mig_run *m, enum mig_mark k)
{
	pthread_mutex_lock(&m->job->lock);
	mig_mark_locked(m->job, k);
	pthread_mutex_unlock(&m->job->lock);
}

bool mig_cancelled(struct mig_job *job)
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

int mig_guest_gone(struct mig_run *m)
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
	uint64_t t = __atomic_load_n(&job->p.policy.timeout_s, __ATOMIC_ACQUIRE);

	return t && t * 1000 < MIG_IO_TIMEOUT_MS ? (int)(t * 1000) : MIG_IO_TIMEOUT_MS;
}

/* Wake every blocked send or receive: a cancel, the watchdog. Lock held. */
void mig_shutdown_io(struct mig_job *job)
{
	if (job->io_fd >= 0)
		shutdown(job->io_fd, SHUT_RDWR);
	for (unsigned i = 0; i < job->nr_lane_fds; i++)
		shutdown(job->lane_fds[i], SHUT_RDWR);
}

/*
 * Sockets just registered: shut them down too if a stop came while they
 * were being opened (it found nothing to shut down then). Lock held.
 */
static void mig_shutdown_io_late(struct mig_job *job)
{
	if (mig_cancelled(job) || job->timed_out || job->guest_ended)
		mig_shutdown_io(job);
}

/*
 * A guest the operator or a device holds paused stays paused where it
 * lands (StreamEnd.paused): only to a destination that says it keeps it
 * so. An older one would run it. 0, or -ENOTSUP with m->err.
 */
static int mig_held_check(struct mig_run *m, const char *dest, const char *phase)
{
	if (!vm_held(m->vm, m->held_why, sizeof(m->held_why)) || m->keeps_paused)
		return 0;
	snprintf(m->err, MIG_ERR_LEN, "%s: the guest is paused (%.300s), and destination %.100s "
		 "would run it: its vmon predates keeping a paused guest paused; resume the "
		 "guest first, or upgrade the destination", phase, m->held_why, dest);
	return -ENOTSUP;
}

/* The HELLO: what the destination must be able to host. */
int mig_handshake(struct mig_run *m)
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
	/*
	 * A round for the NICs' bookkeeping: the destination's taps come
	 * after this, so what the guest read before is nothing it holds.
	 */
	vm_devs_round_end(m->vm);
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
	m->sync = !ret && v->sync;
	m->keeps_paused = !ret && v->keeps_paused;
	if (!ret)
		ret = mig_held_check(m, v->host && *v->host ? v->host : m->job->p.uri, "precheck");
	protobuf_c_message_free_unpacked(msg, NULL);
	return ret;
}

/* Live protocol 2: the data connections, after an accepting VERDICT. */
int mig_open_lanes(struct mig_run *m)
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
	mig_shutdown_io_late(job);
	pthread_mutex_unlock(&job->lock);
	return mig_cancelled(job) ? -ECANCELED : 0;
}

/*
 * The time limit passed with timeout-action force (the watchdog says so):
 * a pre-copy round stops after its current record, and the stop-and-copy
 * takes what it had left. The final set is never cut.
 */
static bool mig_force_now(const struct mig_run *m)
{
	return !m->paused && __atomic_load_n(&m->job->force_due, __ATOMIC_ACQUIRE);
}

/* A cancel, a guest that ended, the time limit: stop sending (and pacing). */
static bool mig_stop_sending(void *ctx)
{
	struct mig_run *m = ctx;

	return mig_cancelled(m->job) || vm_state_over(vm_get_state(m->vm)) || mig_force_now(m);
}

/*
 * --bandwidth: after each record, sleep until the bytes sent so far fit
 * the cap. The cap covers the pages' bytes since the first record: time
 * spent before it (a destination that takes seconds to get its RAM ready)
 * is no credit, or the first round would go out at full speed over the
 * link the cap is there to spare. Nor is time the sender spent not
 * sending since, beyond MIG_PACE_BURST_NS (mig_pace_start): a cap is a rate
 * over any stretch of the migration, not an average since its first page.
 */
static void mig_pace(struct mig_run *m)
{
	mig_pace_sleep(&m->pace, m->w.off, &m->job->p.policy.bandwidth_mbps, mig_stop_sending, m);
}

/*
 * Before each round's first record the same: the first one starts the
 * schedule, and the time between rounds (the harvest, the policy's
 * decision) is credit only up to the bucket.
 */
static void mig_pace_round(struct mig_run *m)
{
	mig_pacer_update(&m->pace, m->w.off,
			 __atomic_load_n(&m->job->p.policy.bandwidth_mbps, __ATOMIC_ACQUIRE),
			 now_ns());
}

/* What the stream carried so far, on the control and the data connections. */
void mig_totals(const struct mig_run *m, struct mig_lane_count *t)
{
	mig_lanes_tx_total(m->lanes, t);
	t->bytes += m->w.off;
	t->pages += m->w.pages;
	t->zero_pages += m->w.zero_pages;
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
		.stop = mig_stop_sending, .progress = lanes_progress, .ctx = m,
	};
	struct mig_lane_count c0, c1;
	int ret;

	mig_totals(m, &c0);
	ret = mig_lanes_tx_round(m->lanes, &m->set, m->vm, &m->job->p.policy.bandwidth_mbps,
				 &hooks, m->err);
	mig_totals(m, &c1);
	rd->pages_sent = c1.pages - c0.pages;
	rd->zero_pages = c1.zero_pages - c0.zero_pages;
	if (!ret)
		ret = mig_lanes_tx_fence(m->lanes, &m->w, rd->round, final);
	mig_totals(m, &c1);
	rd->bytes_sent = c1.bytes - c0.bytes;
	if (ret == -ECANCELED) {
		int gone = mig_guest_gone(m);

		if (!gone && !mig_cancelled(m->job) && mig_force_now(m)) {
			/* Cut short: what went out whole need not go again. */
			mig_lanes_tx_forget_sent(m->lanes, &m->set);
			m->err[0] = 0;
			return -ETIME;
		}
		return gone ? gone : ret;
	}
	if (ret && !m->err[0])
		snprintf(m->err, MIG_ERR_LEN, "send FENCE: %s", m->x->err[0] ? m->x->err :
			 strerror(-ret));
	return ret;
}

/*
 * Send one set of pages, with progress and cancellation per record.
 * -ETIME: a pre-copy round cut short at the time limit (mig_force_now);
 * m->set then holds the pages it did not send.
 */
static int mig_send_set(struct mig_run *m, struct mig_round *rd, bool final)
{
	struct mig_job *job = m->job;
	uint64_t pfns[STREAM_PAGES_MAX], pfn, z0 = m->w.zero_pages, b0 = m->w.off;
	size_t n = 0;
	int ret = 0;

	/* Up to date with the harvest that made m->set. */
	m->w.written = dirty_written_map(m->vm->dirty);
	mig_pace_round(m);

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
		if (mig_cancelled(job))
			return -ECANCELED;
		ret = mig_guest_gone(m);
		if (ret)
			return ret;
		if (!final && mig_force_now(m)) {
			/* Cut short: the pages up to here went out, in pfn order. */
			dirty_set_remove_range(&m->set, 0, pfn + 1);
			ret = -ETIME;
			break;
		}
	}
	if (n) {          /* never after a cut: it comes right after a record */
		ret = stream_write_pages(&m->w, pfns, n, m->vm->mem.base);
		if (ret) {
			snprintf(m->err, MIG_ERR_LEN, "send pages: %s", strerror(-ret));
			return ret;
		}
		rd->pages_sent += n;
	}
	rd->zero_pages = m->w.zero_pages - z0;
	rd->bytes_sent = m->w.off - b0;
	return ret;
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
	/* A cut round's dirty_pages are what it left, not a rate. */
	if (!rd->cut)
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
	ri.cut = rd->cut;
	stream_write_pb(&m->w, STREAM_REC_ROUND, &ri.base);
	vm_devs_round_end(m->vm);
	log_info("%s: migration round %u: %llu pages in %.1f ms, %llu %s: %s",
		 m->vm->cfg.name, rd->round, (unsigned long long)rd->pages_sent,
		 (double)rd->duration_ns / 1e6, (unsigned long long)rd->dirty_pages,
		 rd->cut ? "left unsent" : "dirtied", d->reason);
}

/*
 * A round's pages are written: before harvesting, let a slower destination
 * load what still queues for it (docs/migration-stream.md, SYNC). The
 * harvest then sees what the guest dirtied while it waited, the policy
 * decides on that, and when it stops nothing is left queued to be read
 * inside the downtime.
 */
static int mig_sync(struct mig_run *m, unsigned round)
{
	Ferry__Mig__Sync s = FERRY__MIG__SYNC__INIT;
	ProtobufCMessage *msg = NULL;
	char why[MIG_ERR_LEN];
	unsigned got;
	int ret;

	if (!m->sync)
		return 0;
	s.round = round;
	ret = mig_send_msg(&m->w, STREAM_REC_SYNC, &s.base);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "send SYNC: %s", strerror(-ret));
		return ret;
	}
	ret = mig_recv_msg(&m->r, STREAM_REC_SYNCED, &ferry__mig__sync__descriptor, &msg, why);
	if (ret) {
		snprintf(m->err, MIG_ERR_LEN, "waiting for the destination to catch up: %s", why);
		return ret;
	}
	got = ((Ferry__Mig__Sync *)msg)->round;
	protobuf_c_message_free_unpacked(msg, NULL);
	if (got != round) {
		snprintf(m->err, MIG_ERR_LEN, "the destination caught up with round %u, "
			 "not round %u", got, round);
		return -EPROTO;
	}
	mig_mark(m, MIG_MARK_SYNCED);
	return 0;
}

/* Pre-copy: rounds until the policy says stop (1) or abort (negative). */
int mig_precopy(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct mig_policy_state ps;
	struct mig_policy_config pol;
	uint64_t start;
	int ret;

	/* The limit counts from the migration's start, as the watchdog's does. */
	pthread_mutex_lock(&job->lock);
	start = job->prog.start_ns;
	pthread_mutex_unlock(&job->lock);
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
		if (ret == -ETIME) {
			/*
			 * Cut short at the limit: the policy decides on the pages
			 * the round had left. No harvest: what the guest dirtied
			 * since the last one stays in the log for the next.
			 */
			rd.cut = true;
			rd.send_ns = now_ns() - t0;
			ret = 0;
		} else {
			if (ret)
				break;
			rd.send_ns = now_ns() - t0;
			ret = mig_sync(m, round);
			if (ret)
				break;
			ret = dirty_harvest(m->vm->dirty, &m->set);
			if (ret) {
				snprintf(m->err, MIG_ERR_LEN, "dirty tracking: %s", strerror(-ret));
				break;
			}
		}
		rd.duration_ns = now_ns() - t0;
		rd.dirty_pages = m->set.count;
		mig_policy_now(job, &pol);
		mig_policy_decide(&pol, &ps, &rd, now_ns() - start, &d);
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

/*
 * A guest that tracks its stalls (tools/guests/rt/rt.h) learns that a
 * switchover began: the gap its first look after it sees is the downtime
 * it observed ("switch_stall_ns"), without the host's noise of before.
 * Written through the dirty map, so the final pages carry it.
 */
static void mig_stall_epoch(struct vm *vm)
{
	uint64_t gpa, epoch = realtime_ns(), zero = 0;

	if (!vm_value_gpa(vm, "stall_epoch", &gpa))
		vm_write_guest(vm, gpa, &epoch, sizeof(epoch));
	if (!vm_value_gpa(vm, "switch_stall_ns", &gpa))
		vm_write_guest(vm, gpa, &zero, sizeof(zero));
}

/*
 * With timeout-action force, the switchover gets a limit of its own
 * (MIG_FORCE_GRACE_S plus MIG_FORCE_SLACK times the time its pages take at
 * the policy's bandwidth) instead of a fixed grace after the migration's:
 * a forced stop-and-copy of a large set may need more than that grace, and
 * cutting it would leave the guest paused for nothing. Never earlier than
 * the old limit, the migration's plus the grace.
 */
static void mig_force_deadline(struct mig_run *m)
{
	struct mig_job *job = m->job;
	uint64_t now = now_ns(), need_ns = 0, limit;

	pthread_mutex_lock(&job->lock);
	if (job->p.policy.timeout_action == MIG_TIMEOUT_FORCE) {
		if (job->prog.bandwidth_Bps > 0)
			need_ns = (uint64_t)((double)m->set.count * MEM_PAGE_SIZE * 1e9 /
					     job->prog.bandwidth_Bps);
		limit = job->prog.start_ns + (job->p.policy.timeout_s + MIG_FORCE_GRACE_S) *
			1000000000ull;
		job->force_deadline_ns = MAX(limit, now + MIG_FORCE_GRACE_S * 1000000000ull +
					     MIG_FORCE_SLACK * need_ns);
	}
	pthread_mutex_unlock(&job->lock);
}

/* Stop-and-copy: the guest pauses here and resumes there. */
int mig_switchover(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct mig_tail_opts to = { .verify = job->p.verify };
	struct mig_round rd = { .throttle_pct = 0 };
	struct dirty_set last;
	ProtobufCMessage *msg = NULL;
	char why[MIG_ERR_LEN];
	int ret;

	mig_prog_set(job, MIG_JOB_SWITCHOVER, "switchover");
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
	if (!ret)   /* a device may have paused it since the handshake (a disk filled) */
		ret = mig_held_check(m, m->job->p.uri, "switchover");
	if (ret)
		return ret;
	mig_mark(m, MIG_MARK_QUIESCED);
	mig_stall_epoch(m->vm);
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
	mig_force_deadline(m);
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

		/* Its phase is the record's that failed, maybe a page of a round. */
		snprintf(m->err, MIG_ERR_LEN, "the destination refused the migration "
			 "(%.32s on its side): %.400s", a->phase, a->message);
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

/*
 * The guest is the destination's now, and this vmon will never run it
 * again: say so where the orchestrator asked, since once this process
 * has exited nothing else can tell a handed-over guest from a dead one
 * (a lost COMMIT leaves the destination holding it, awaiting a word).
 */
static void mig_handover_record(struct mig_run *m)
{
	const struct mig_params *p = &m->job->p;
	char line[sizeof(p->handover_tag) + sizeof(p->uri) + 2];
	int len, ret;

	if (!p->handover_file[0])
		return;
	len = snprintf(line, sizeof(line), "%s %s\n", p->handover_tag, p->uri);
	ret = write_file_atomic(p->handover_file, line, (size_t)len);
	if (ret)
		log_err("%s: cannot record the handover in %s: %s", m->vm->cfg.name,
			p->handover_file, strerror(-ret));
}

/* After the ACK: the guest is the destination's. Tell it to run. */
void mig_commit(struct mig_run *m)
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
	/* Past the downtime's critical path: the destination has its COMMIT. */
	mig_handover_record(m);
	if (!ret)
		ret = mig_recv_msg(&m->r, STREAM_REC_RESUMED, &ferry__mig__resumed__descriptor,
				   &msg, why);
	pthread_mutex_lock(&job->lock);
	if (!ret && ((Ferry__Mig__Resumed *)msg)->kept_paused) {
		/* Nothing ran again: there is no downtime to measure. */
		snprintf(job->prog.message, sizeof(job->prog.message), "the guest was paused (%.300s) "
			 "and stays paused at the destination, which took its disks; vmon ctl resume "
			 "there runs it", m->held_why);
		mig_mark_locked(job, MIG_MARK_RESUMED);
	} else if (!ret) {
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

int mig_connect(struct mig_run *m)
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
	mig_shutdown_io_late(job);
	pthread_mutex_unlock(&job->lock);
	if (mig_cancelled(job)) {
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
 * A dry run: the precheck has passed; measure the link with PROBE frames,
 * take the guest's dirty rate from the sampler and its non-zero pages from
 * RAM, and let the policy's predictor say how the real thing would go.
 */
#define MIG_PROBE_BYTES (1u << 20)
#define MIG_PROBE_NS (200ull * 1000000ull)

/*
 * What hashing a page from RAM costs the sender beyond the probe. The
 * probe's filler is one hot buffer; the migration hashes each page from the
 * guest's RAM, cold, in the sending thread, before the kernel copies it.
 * Nanoseconds a page: up to MIG_PROBE_HASH_PAGES of the guest's non-zero
 * pages against as many hashes of the hot buffer. 0 when the guest has no
 * non-zero page.
 */
#define MIG_PROBE_HASH_PAGES 8192u

static double probe_hash_ns(const struct guest_mem *mem, const uint8_t *hot)
{
	uint64_t n = mem_pages(mem), t0, cold_ns, hot_ns, sum = 0;
	/* Runs of a record's pages, in order, spread over RAM: as round 1 meets them. */
	uint64_t run = STREAM_PAGES_MAX, nruns = MIG_PROBE_HASH_PAGES / STREAM_PAGES_MAX;
	uint64_t stride = n > MIG_PROBE_HASH_PAGES ? n / nruns : run;
	const uint8_t **pages = malloc(MIG_PROBE_HASH_PAGES * sizeof(*pages));
	uint32_t k = 0;

	if (!pages)
		return 0;
	/* The zero check comes first on the real path too. */
	for (uint64_t start = 0; start < n && k < MIG_PROBE_HASH_PAGES; start += stride)
		for (uint64_t pfn = start; pfn < MIN(start + run, n) &&
		     k < MIG_PROBE_HASH_PAGES; pfn++)
			if (!mem_page_is_zero(mem->base + (pfn << MEM_PAGE_SHIFT)))
				pages[k++] = mem->base + (pfn << MEM_PAGE_SHIFT);
	t0 = now_ns();
	for (uint32_t i = 0; i < k; i++)
		sum += XXH3_64bits(pages[i], MEM_PAGE_SIZE);
	cold_ns = now_ns() - t0;
	t0 = now_ns();
	for (uint32_t i = 0; i < k; i++)
		sum += XXH3_64bits(hot + (i % (MIG_PROBE_BYTES / MEM_PAGE_SIZE)) * MEM_PAGE_SIZE,
				   MEM_PAGE_SIZE);
	hot_ns = now_ns() - t0;
	__asm__ volatile("" : : "r"(sum));  /* the hashes are only timed */
	free(pages);
	return k && cold_ns > hot_ns ? (double)(cold_ns - hot_ns) / k : 0;
}

/*
 * The guest's dirty rate as the rounds will see it, pages a second. The
 * sampler's is the guest's rate untracked (it re-protects 1/64 of RAM a
 * look); in a round every page is protected, and each first write is a
 * fault (about 25 us under PVM), so a busy guest dirties far fewer pages:
 * S4's 65 k pages/s became about 40 k, and the forecast had rounds the
 * migration never needed (docs/benchmarks.md). So track the guest fully
 * for MIG_PROBE_TRACK_NS, as round 1 will, then hand tracking back to the
 * sampler. -errno, and the caller keeps the sampler's figure.
 */
#define MIG_PROBE_TRACK_NS (100ull * 1000000ull)

static int probe_tracked_rate(struct mig_run *m, double *rate)
{
	struct dirty *d = m->vm->dirty;
	struct timespec ts = { 0, (long)MIG_PROBE_TRACK_NS };
	uint64_t t0;
	int ret;

	ret = mig_tracking_take(m);
	if (ret)
		return ret;
	/* Reports every page and protects them all: round 1's start. */
	ret = dirty_harvest(d, &m->set);
	t0 = now_ns();
	while (!ret && nanosleep(&ts, &ts) && errno == EINTR)
		;
	if (!ret) {
		dirty_set_clear(&m->set);
		ret = dirty_harvest(d, &m->set);
	}
	if (!ret)
		*rate = (double)m->set.count * 1e9 / (double)(now_ns() - t0);
	dirty_set_clear(&m->set);
	mig_tracking_give(m, true);
	return ret;
}

int mig_dry_run(struct mig_run *m)
{
	struct mig_job *job = m->job;
	struct mig_workload wl = { 0 };
	struct mig_policy_config pol;
	struct mig_prediction pr;
	uint8_t *buf = malloc(MIG_PROBE_BYTES);
	uint64_t t0, sent = 0, window_ns = 0;
	double link_Bps, sampled = 0, tracked = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	mig_prog_set(job, MIG_JOB_SETUP, "dry-run");
	/* The connection and the precheck, as the real one will have them. */
	pthread_mutex_lock(&job->lock);
	wl.setup_ms = (double)(now_ns() - job->prog.start_ns) / 1e6;
	pthread_mutex_unlock(&job->lock);
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
	link_Bps = (double)sent * 1e9 / (double)(now_ns() - t0);
	mig_send_abort(&m->w, "dry-run", "dry run finished: nothing moved");
	wl.bandwidth_Bps = MEM_PAGE_SIZE /
		(MEM_PAGE_SIZE / link_Bps + probe_hash_ns(&m->vm->mem, buf) / 1e9);

	wl.mem_pages = mem_pages(&m->vm->mem);
	for (uint64_t pfn = 0; pfn < wl.mem_pages; pfn++)
		wl.nonzero_pages += !mem_page_is_zero(m->vm->mem.base + (pfn << MEM_PAGE_SHIFT));
	if (job->rate)
		sampled = dirty_rate_get(job->rate, &window_ns);
	/* The sampler's window says how many distinct pages the guest keeps writing. */
	wl.wss_pages = (uint64_t)(sampled * (double)window_ns / 1e9);
	wl.dirty_pages_per_s = probe_tracked_rate(m, &tracked) ? sampled : tracked;
	mig_policy_now(job, &pol);
	mig_predict(&pol, &wl, &pr);
	pthread_mutex_lock(&job->lock);
	job->prog.prediction = pr;
	job->prog.bandwidth_Bps = wl.bandwidth_Bps;
	job->prog.dirty_pages_per_s = wl.dirty_pages_per_s;
	job->prog.predicted_downtime_ms = pr.downtime_ms;
	snprintf(job->prog.message, sizeof(job->prog.message),
		 "precheck passed; link %.0f MB/s (pages from RAM %.0f MB/s), %llu "
		 "non-zero pages of %llu, dirty rate %.0f pages/s (%.0f tracked): %s",
		 link_Bps / 1e6, wl.bandwidth_Bps / 1e6,
		 (unsigned long long)wl.nonzero_pages, (unsigned long long)wl.mem_pages,
		 sampled, wl.dirty_pages_per_s, pr.summary);
	pthread_mutex_unlock(&job->lock);
out:
	free(buf);
	return ret;
}
