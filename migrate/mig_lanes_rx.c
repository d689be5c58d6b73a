/*
 * The destination's data connections (live protocol 2): accept the ones
 * that JOIN this migration, receive each on its own thread straight into
 * guest RAM, and hold the loader at every FENCE until each lane has
 * delivered what the source says it sent. After the final FENCE the lanes
 * are closed: nothing that arrives later touches guest RAM.
 */
#include "migrate/mig_lanes.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/util.h"
#include "migrate/mig_proto.h"

struct rx_lane {
	struct mig_lanes_rx *rx;
	unsigned idx;
	struct xport *x;
	pthread_t thread;
	bool thread_live;
	bool busy;                  /* applying a record (under rx->lock) */
	struct mig_page_sink sink;  /* the shared bitmaps, this lane's counts */
	struct mig_lane_count cnt;  /* under rx->lock */
};

struct mig_lanes_rx {
	unsigned n;
	struct rx_lane lane[MIG_CONN_MAX];
	struct vm *vm;
	uint64_t *touched;          /* pages written: a ZERO entry needs a memset */
	uint64_t *owed;             /* PAGE_HASHED pages that arrived torn */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool closed;                /* the final FENCE was met */
	bool closing;               /* teardown: errors are expected */
	bool failed;
	char err[MIG_ERR_LEN];      /* the first lane failure */
};

/* "host:port" without the port. */
static size_t host_len(const char *peer)
{
	const char *c = strrchr(peer, ':');

	return c ? (size_t)(c - peer) : strlen(peer);
}

static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return !d;
}

/* Read the JOIN of a fresh connection: its lane, or -1 (why says why). */
static int read_join(struct mig_lanes_rx *rx, struct xport *x, const char *ctl_peer,
		     const uint8_t *token, char *why)
{
	struct stream_io io;
	struct stream_reader r;
	ProtobufCMessage *msg = NULL;
	Ferry__Mig__Join *j;
	int lane = -1;

	if (host_len(x->peer) != host_len(ctl_peer) ||
	    strncmp(x->peer, ctl_peer, host_len(ctl_peer))) {
		snprintf(why, MIG_ERR_LEN, "from another host than the migration's %s", ctl_peer);
		return -1;
	}
	mig_xport_io(x, &io);
	stream_reader_init(&r, -1);
	r.io = &io;
	if (mig_recv_msg(&r, STREAM_REC_JOIN, &ferry__mig__join__descriptor, &msg, why))
		goto out;
	j = (Ferry__Mig__Join *)msg;
	if (j->token.len != MIG_LANE_TOKEN_LEN || !same_bytes(j->token.data, token,
							      MIG_LANE_TOKEN_LEN))
		snprintf(why, MIG_ERR_LEN, "a JOIN with the wrong token");
	else if (j->lane >= rx->n)
		snprintf(why, MIG_ERR_LEN, "lane %u of %u", j->lane, rx->n);
	else if (rx->lane[j->lane].x)
		snprintf(why, MIG_ERR_LEN, "lane %u twice", j->lane);
	else
		lane = (int)j->lane;
out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	stream_reader_destroy(&r);
	return lane;
}

/*
 * Wait for a data connection to knock (1), the source to hang up the
 * control connection (-ECONNABORTED) or left_ms to pass (-ETIMEDOUT); 0:
 * look again. Bytes on the control connection are the source going on:
 * only its end counts.
 */
static int lane_knock(struct xport_listener *l, struct xport *ctl, bool *watch_ctl,
		      int left_ms)
{
	struct pollfd p[2] = {
		{ .fd = xport_listener_fd(l), .events = POLLIN },
		{ .fd = ctl->fd, .events = POLLIN },
	};
	int n = poll(p, *watch_ctl ? 2 : 1, left_ms);
	ssize_t r;
	char b;

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (!n)
		return -ETIMEDOUT;
	if (p[0].revents)
		return 1;
	r = recv(ctl->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r > 0)
		*watch_ctl = false;
	else if (r == 0 || (errno != EAGAIN && errno != EINTR))
		return -ECONNABORTED;
	return 0;
}

int mig_lanes_rx_accept(struct xport_listener *l, struct xport *ctl, unsigned n,
			const uint8_t *token, int timeout_ms, struct mig_lanes_rx **out,
			char *err)
{
	const char *ctl_peer = ctl->peer;
	bool watch_ctl = true;
	struct mig_lanes_rx *rx = calloc(1, sizeof(*rx));
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	unsigned have = 0;

	*out = NULL;
	if (!rx)
		return -ENOMEM;
	rx->n = n;
	pthread_mutex_init(&rx->lock, NULL);
	cond_init_monotonic(&rx->cond);
	for (unsigned i = 0; i < n; i++) {
		rx->lane[i].rx = rx;
		rx->lane[i].idx = i;
	}
	while (have < n) {
		uint64_t now = now_ns();
		char xerr[XPORT_ERR_LEN], why[MIG_ERR_LEN];
		struct xport *x;
		int lane, knock, left_ms = now < deadline ? (int)((deadline - now) / 1000000ull) : 0;

		knock = left_ms ? lane_knock(l, ctl, &watch_ctl, left_ms) : -ETIMEDOUT;
		if (knock == -ECONNABORTED) {
			snprintf(err, MIG_ERR_LEN, "the source closed the control connection when "
				 "%u of %u data connections had joined", have, n);
			mig_lanes_rx_close(rx);
			return knock;
		}
		if (!knock)
			continue;
		if (knock < 0 || xport_accept(l, left_ms, &x, xerr)) {
			if (knock < 0)
				snprintf(xerr, sizeof(xerr), "%s", knock == -ETIMEDOUT ?
					 "no more came" : strerror(-knock));
			snprintf(err, MIG_ERR_LEN, "%u of %u data connections joined within %d s: %s",
				 have, n, timeout_ms / 1000, xerr);
			mig_lanes_rx_close(rx);
			return -ETIMEDOUT;
		}
		xport_set_timeout(x, left_ms < MIG_IO_TIMEOUT_MS ? left_ms : MIG_IO_TIMEOUT_MS);
		lane = read_join(rx, x, ctl_peer, token, why);
		if (lane < 0) {
			log_warn("incoming: refused a data connection from %s: %s", x->peer, why);
			xport_close(x);
			continue;
		}
		xport_set_timeout(x, MIG_IO_TIMEOUT_MS);
		rx->lane[lane].x = x;
		have++;
	}
	*out = rx;
	return 0;
}

static void lane_fail(struct rx_lane *ln, const char *what)
{
	struct mig_lanes_rx *rx = ln->rx;

	pthread_mutex_lock(&rx->lock);
	if (!rx->failed && !rx->closing) {
		rx->failed = true;
		snprintf(rx->err, MIG_ERR_LEN, "data connection %u: %.200s", ln->idx, what);
	}
	pthread_cond_broadcast(&rx->cond);
	pthread_mutex_unlock(&rx->lock);
}

/* Check a record's pfns against the lane, then put its pages in RAM. */
static int lane_apply(struct rx_lane *ln, struct stream_page_run *run, char *why)
{
	struct mig_lanes_rx *rx = ln->rx;
	struct stream_page_run chk = *run;
	const uint8_t *page;
	uint64_t pfn;

	while (stream_page_next(&chk, &pfn, &page))
		if (mig_lane_of(pfn, rx->n) != ln->idx) {
			snprintf(why, MIG_ERR_LEN, "pfn %llu belongs to lane %u",
				 (unsigned long long)pfn, mig_lane_of(pfn, rx->n));
			return -EBADMSG;
		}
	pthread_mutex_lock(&rx->lock);
	if (rx->closed) {
		pthread_mutex_unlock(&rx->lock);
		snprintf(why, MIG_ERR_LEN, "a page record after the final FENCE");
		return -EBADMSG;
	}
	ln->busy = true;
	pthread_mutex_unlock(&rx->lock);
	/* Lanes own whole 512-page stripes: no two write one bitmap word. */
	mig_page_sink_apply(&ln->sink, run);
	return 0;
}

static void *rx_lane_thread(void *arg)
{
	struct rx_lane *ln = arg;
	struct mig_lanes_rx *rx = ln->rx;
	uint64_t nr_pages = mem_pages(&rx->vm->mem);
	struct stream_io io;
	struct stream_reader r;
	char why[MIG_ERR_LEN];

	mig_xport_io(ln->x, &io);
	stream_reader_init(&r, -1);
	r.io = &io;
	for (;;) {
		struct stream_page_run run;
		const void *body;
		uint64_t len, off0 = r.off;
		uint32_t type;
		int ret = stream_read_frame(&r, &type, &body, &len);

		if (ret) {
			lane_fail(ln, ret == -EPIPE ? "the source closed it" : r.err);
			break;
		}
		if (type != STREAM_REC_PAGE_DATA && type != STREAM_REC_PAGE_HASHED) {
			snprintf(why, sizeof(why), "%s where only page records may come",
				 stream_type_name(type) ? stream_type_name(type) : "an unknown frame");
			lane_fail(ln, why);
			break;
		}
		if (stream_read_pages(&r, body, len, nr_pages, &run)) {
			lane_fail(ln, r.err);
			break;
		}
		if (lane_apply(ln, &run, why)) {
			lane_fail(ln, why);
			break;
		}
		pthread_mutex_lock(&rx->lock);
		ln->busy = false;
		ln->cnt.records++;
		ln->cnt.bytes += r.off - off0;
		ln->cnt.pages += run.count;
		ln->cnt.zero_pages += run.count - run.ndata;
		pthread_cond_broadcast(&rx->cond);
		pthread_mutex_unlock(&rx->lock);
	}
	/*
	 * Keep reading (and dropping) until the teardown: a source blocked on
	 * a full socket would not reach the FENCE that reports the failure.
	 */
	for (;;) {
		pthread_mutex_lock(&rx->lock);
		bool done = rx->closing;
		pthread_mutex_unlock(&rx->lock);
		if (done || xport_recv(ln->x, why, sizeof(why)))
			break;
	}
	stream_reader_destroy(&r);
	return NULL;
}

/* The FENCE hook of the loader (struct mig_page_lanes). */
static int rx_fence(void *ctx, const void *body, uint64_t len, bool *final,
		    uint64_t *pages, uint64_t *zero_pages, uint64_t *torn, char *err)
{
	struct mig_lanes_rx *rx = ctx;
	Ferry__Mig__Fence *f = (Ferry__Mig__Fence *)protobuf_c_message_unpack(
		&ferry__mig__fence__descriptor, NULL, len, body);
	uint64_t deadline = now_ns() + MIG_IO_TIMEOUT_MS * 1000000ull;
	struct timespec ts = {
		.tv_sec = (time_t)(deadline / 1000000000ull),
		.tv_nsec = (long)(deadline % 1000000000ull),
	};
	int ret = 0;

	if (!f) {
		snprintf(err, MIG_ERR_LEN, "FENCE does not parse");
		return -EBADMSG;
	}
	if (f->n_lanes != rx->n) {
		snprintf(err, MIG_ERR_LEN, "FENCE counts %zu data connections, %u joined",
			 f->n_lanes, rx->n);
		protobuf_c_message_free_unpacked(&f->base, NULL);
		return -EBADMSG;
	}
	pthread_mutex_lock(&rx->lock);
	for (;;) {
		bool done = true;

		if (rx->failed) {
			snprintf(err, MIG_ERR_LEN, "%s", rx->err);
			ret = -EIO;
			break;
		}
		for (unsigned i = 0; i < rx->n; i++)
			if (rx->lane[i].busy || rx->lane[i].cnt.records < f->lanes[i]->records)
				done = false;
		if (done)
			break;
		if (pthread_cond_timedwait(&rx->cond, &rx->lock, &ts) == ETIMEDOUT) {
			snprintf(err, MIG_ERR_LEN, "round %u: the data connections did not deliver "
				 "their pages within %d s", f->round, MIG_IO_TIMEOUT_MS / 1000);
			ret = -ETIMEDOUT;
			break;
		}
	}
	*final = f->final;
	*pages = *zero_pages = *torn = 0;
	for (unsigned i = 0; !ret && f->final && i < rx->n; i++) {
		const struct mig_lane_count *c = &rx->lane[i].cnt;
		const Ferry__Mig__LaneCount *s = f->lanes[i];

		if (c->records != s->records || c->bytes != s->bytes || c->pages != s->pages ||
		    c->zero_pages != s->zero_pages) {
			snprintf(err, MIG_ERR_LEN, "final FENCE: data connection %u delivered %llu "
				 "records, %llu bytes, %llu pages; the source sent %llu, %llu, %llu",
				 i, (unsigned long long)c->records, (unsigned long long)c->bytes,
				 (unsigned long long)c->pages, (unsigned long long)s->records,
				 (unsigned long long)s->bytes, (unsigned long long)s->pages);
			ret = -EBADMSG;
			break;
		}
		if (rx->lane[i].sink.nr_owed) {
			uint64_t owed = rx->lane[i].sink.nr_owed;

			snprintf(err, MIG_ERR_LEN, "data connection %u: %llu page%s failed %s "
				 "checksum and never came again", i, (unsigned long long)owed,
				 owed == 1 ? "" : "s", owed == 1 ? "its" : "their");
			ret = -EBADMSG;
			break;
		}
		*pages += c->pages;
		*zero_pages += c->zero_pages;
		*torn += rx->lane[i].sink.torn;
	}
	if (!ret && f->final)
		rx->closed = true;
	pthread_mutex_unlock(&rx->lock);
	protobuf_c_message_free_unpacked(&f->base, NULL);
	return ret;
}

int mig_lanes_rx_start(struct mig_lanes_rx *rx, struct vm *vm,
		       struct mig_page_lanes *hooks, char *err)
{
	rx->vm = vm;
	rx->touched = calloc((mem_pages(&vm->mem) + 63) / 64, sizeof(uint64_t));
	rx->owed = calloc((mem_pages(&vm->mem) + 63) / 64, sizeof(uint64_t));
	if (!rx->touched || !rx->owed) {
		snprintf(err, MIG_ERR_LEN, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < rx->n; i++) {
		rx->lane[i].sink = (struct mig_page_sink){
			.ram = vm->mem.base, .touched = rx->touched, .owed = rx->owed,
		};
		if (pthread_create(&rx->lane[i].thread, NULL, rx_lane_thread, &rx->lane[i])) {
			snprintf(err, MIG_ERR_LEN, "cannot start the receiving threads");
			return -EAGAIN;
		}
		rx->lane[i].thread_live = true;
	}
	hooks->fence = rx_fence;
	hooks->ctx = rx;
	return 0;
}

const char *mig_lanes_rx_error(struct mig_lanes_rx *rx)
{
	const char *e;

	if (!rx)
		return NULL;
	pthread_mutex_lock(&rx->lock);
	e = rx->failed ? rx->err : NULL;
	pthread_mutex_unlock(&rx->lock);
	return e;
}

void mig_lanes_rx_close(struct mig_lanes_rx *rx)
{
	if (!rx)
		return;
	pthread_mutex_lock(&rx->lock);
	rx->closing = true;
	pthread_mutex_unlock(&rx->lock);
	for (unsigned i = 0; i < rx->n; i++)
		if (rx->lane[i].x)
			shutdown(rx->lane[i].x->fd, SHUT_RDWR);
	for (unsigned i = 0; i < rx->n; i++) {
		if (rx->lane[i].thread_live)
			pthread_join(rx->lane[i].thread, NULL);
		xport_close(rx->lane[i].x);
	}
	pthread_mutex_destroy(&rx->lock);
	pthread_cond_destroy(&rx->cond);
	free(rx->touched);
	free(rx->owed);
	free(rx);
}
