/*
 * RDMA: the bytes travel over a reliable-connected queue pair (librdmacm
 * sets it up, libibverbs moves the data), a TCP connection to the same
 * HOST:PORT beside it carries the rendezvous and stays open as the
 * connection's life line.
 *
 * Why a TCP connection as well: the engine cancels a migration by shutting
 * down x->fd from another thread and asks poll(x->fd) whether the peer has
 * gone; a completion channel takes neither. The TCP socket does both, and a
 * peer that dies is seen at once (its kernel closes the socket) instead of
 * after the RC retry timeout. It also lets the server match the RDMA
 * connection to the client that asked for it (a token), so a stray connect
 * request on the RDMA port is refused.
 *
 * Rendezvous (docs/migration-stream.md, "Transports"): the client sends
 * 16 bytes of magic on TCP, the server answers with the magic, the port of
 * its RDMA listener and a 16-byte random token, the client connects with
 * rdma_connect() carrying the token as private data.
 *
 * Data: each side registers RDMA_NSLOT slots of RDMA_SLOT bytes for sending
 * and as many for receiving. sendv() gathers the caller's pieces into a
 * slot and posts a SEND; the peer's receive slots are always posted, and
 * the QP retries without end while none is (rnr_retry 7), which is the flow
 * control. recv() copies out of completed receive slots in order and posts
 * each one again once it is empty. A slot is a copy on each side, as the
 * kernel's TCP copies are; registering guest RAM to send pages from it
 * without the copy is the next step (docs/migration-stream.md).
 */
#include "net/xport_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define RDMA_SLOT (64u << 10)
#define RDMA_NSLOT 32u
#define RDMA_TOKEN_LEN 16
/* After the life line closes, completions already on their way still count. */
#define RDMA_EOF_GRACE_MS 50
/* close(): how long queued sends get to reach the peer. */
#define RDMA_CLOSE_DRAIN_MS 2000
/* close(): how long the device gets to hand back every work request. */
#define RDMA_FLUSH_WAIT_MS 1000

static const char rdma_magic[16] = "FERRY-RDMA-1\0\0\0";

/* server -> client over TCP, after the client's magic */
struct rdma_hello {
	char magic[16];
	uint16_t port;          /* the RDMA listener's, network order */
	uint8_t pad[6];
	uint8_t token[RDMA_TOKEN_LEN];
};

struct xport_rdma_listener {
	struct rdma_event_channel *ech;
	struct rdma_cm_id *id;
	uint16_t port;
};

struct rdma_conn {
	struct rdma_event_channel *ech;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cch;
	struct ibv_cq *cq;
	bool qp;
	struct ibv_mr *send_mr, *recv_mr;
	uint8_t *send_buf, *recv_buf;
	/* sending: slots are filled and complete in ring order */
	unsigned send_head, send_inflight;
	size_t send_fill;       /* bytes in slot send_head, not yet posted */
	/* receiving: completions come in the order the slots were posted */
	uint32_t recv_len[RDMA_NSLOT];
	bool recv_full[RDMA_NSLOT];
	unsigned recv_cur;
	size_t recv_off;
	unsigned recv_posted;   /* receive WRs the device still holds */
	bool connected;
	bool peer_gone;         /* the life line or the CM said so */
	int failed;             /* a completion error: the QP is dead */
	char why[160];
};

static struct rdma_conn *conn_of(struct xport *x)
{
	return x->priv;
}

/* ---- waiting ---- */

static int64_t io_deadline(const struct xport *x)
{
	return x->timeout_ms > 0 ? xport_deadline(x->timeout_ms) : XPORT_NO_DEADLINE;
}

static int post_recv(struct rdma_conn *c, unsigned slot)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(c->recv_buf + (size_t)slot * RDMA_SLOT),
		.length = RDMA_SLOT,
		.lkey = c->recv_mr->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = slot, .sg_list = &sge, .num_sge = 1 }, *bad;
	int rc = ibv_post_recv(c->id->qp, &wr, &bad);

	c->recv_posted += !rc;
	return -rc;
}

#define WR_SEND (1ull << 32)

/* A work request is back from the device, done or flushed. */
static void wr_done(struct rdma_conn *c, const struct ibv_wc *wc)
{
	if (wc->wr_id & WR_SEND)
		c->send_inflight--;
	else
		c->recv_posted--;
}

/*
 * After the QP has gone to the error state: every work request comes back,
 * flushed, before the memory it names is let go. The kernel should not
 * need that, but a driver that still wrote into a receive slot after its
 * MR was gone would write into freed pages (see tools/nested-kvm/README.md
 * on the soft-RoCE panics).
 */
static void wr_flush_wait(struct rdma_conn *c, int64_t deadline)
{
	struct ibv_wc wc[16];

	while ((c->recv_posted || c->send_inflight) && xport_remaining_ms(deadline) != 0) {
		int n = ibv_poll_cq(c->cq, 16, wc);

		if (n < 0)
			return;
		for (int i = 0; i < n; i++)
			wr_done(c, &wc[i]);
		if (!n)
			usleep(1000);
	}
}

/* Take what the CQ holds: 1 if anything came, 0 if not, -errno on a dead QP. */
static int cq_drain(struct xport *x, struct rdma_conn *c)
{
	struct ibv_wc wc[16];
	int n, got = 0;

	if (c->failed)
		return c->failed;
	while ((n = ibv_poll_cq(c->cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			wr_done(c, &wc[i]);
			if (wc[i].status != IBV_WC_SUCCESS) {
				/* Flushes follow the first error: name that one. */
				if (!c->failed)
					snprintf(c->why, sizeof(c->why), "%s %s",
						 wc[i].wr_id & WR_SEND ? "send" : "receive",
						 ibv_wc_status_str(wc[i].status));
				c->failed = c->peer_gone ? -EPIPE : -ECONNRESET;
				continue;
			}
			got = 1;
			if (!(wc[i].wr_id & WR_SEND)) {
				unsigned s = (unsigned)wc[i].wr_id;

				c->recv_len[s] = wc[i].byte_len;
				c->recv_full[s] = true;
			}
		}
	}
	if (n < 0) {
		snprintf(c->why, sizeof(c->why), "polling the completion queue failed");
		c->failed = -EIO;
	}
	if (c->failed) {
		xport_errf(x->err, "rdma %s: %s", x->peer, c->why);
		return c->failed;
	}
	return got;
}

/* The CM's view of the connection: a DISCONNECTED means the peer went. */
static void cm_events(struct rdma_conn *c)
{
	struct rdma_cm_event *ev;

	while (!rdma_get_cm_event(c->ech, &ev)) {
		if (ev->event == RDMA_CM_EVENT_DISCONNECTED ||
		    ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL)
			c->peer_gone = true;
		rdma_ack_cm_event(ev);
	}
}

/*
 * Sleep until a completion, the peer's going or the deadline: 0 (look
 * again), -EPIPE once the peer is gone and nothing more came, -ETIMEDOUT.
 */
static int cq_wait(struct xport *x, struct rdma_conn *c, int64_t deadline, const char *what)
{
	struct pollfd p[3] = {
		{ .fd = c->cch->fd, .events = POLLIN },
		{ .fd = x->fd, .events = POLLIN },
		{ .fd = c->ech->fd, .events = POLLIN },
	};
	int ret, n;

	if (ibv_req_notify_cq(c->cq, 0)) {
		xport_errf(x->err, "rdma %s: arming the completion queue failed", x->peer);
		return -EIO;
	}
	/* A completion between the last poll and the arming raises no event. */
	ret = cq_drain(x, c);
	if (ret)
		return ret < 0 ? ret : 0;
	if (c->peer_gone) {
		/* What the peer sent before it went may still be landing. */
		int64_t grace = xport_deadline(RDMA_EOF_GRACE_MS);

		n = poll(p, 1, xport_remaining_ms(grace < deadline ? grace : deadline));
	} else {
		n = poll(p, 3, xport_remaining_ms(deadline));
	}
	if (n < 0)
		return errno == EINTR ? 0 : xport_fail(x, -errno, what);
	if (p[0].revents) {
		struct ibv_cq *cq;
		void *ctx;

		if (!ibv_get_cq_event(c->cch, &cq, &ctx))
			ibv_ack_cq_events(cq, 1);
		return 0;
	}
	if (p[1].revents || p[2].revents) {
		/* The life line carries nothing after the rendezvous: EOF or shut down. */
		if (p[2].revents)
			cm_events(c);
		if (p[1].revents)
			c->peer_gone = true;
		return 0;
	}
	if (c->peer_gone)
		return xport_fail(x, -EPIPE, what);
	return xport_fail(x, -ETIMEDOUT, what);
}

/* ---- sending ---- */

static int post_send(struct xport *x, struct rdma_conn *c)
{
	unsigned slot = c->send_head;
	struct ibv_sge sge = {
		.addr = (uintptr_t)(c->send_buf + (size_t)slot * RDMA_SLOT),
		.length = (uint32_t)c->send_fill,
		.lkey = c->send_mr->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = WR_SEND | slot,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;
	int rc;

	if (!c->send_fill)
		return 0;
	rc = ibv_post_send(c->id->qp, &wr, &bad);
	if (rc)
		return xport_fail(x, -rc, "post send");
	x->bytes_sent += c->send_fill;
	c->send_inflight++;
	c->send_head = (slot + 1) % RDMA_NSLOT;
	c->send_fill = 0;
	return 0;
}

/*
 * Until at most `most` sends are in flight: RDMA_NSLOT - 1 for a slot to
 * fill, 0 for all of them at the peer.
 */
static int sends_wait(struct xport *x, struct rdma_conn *c, int64_t deadline, unsigned most)
{
	while (c->send_inflight > most) {
		int ret = cq_drain(x, c);

		if (ret < 0)
			return ret;
		if (!ret && c->send_inflight > most) {
			if (c->peer_gone)
				return xport_fail(x, -EPIPE, "send");
			ret = cq_wait(x, c, deadline, "send");
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int slot_wait(struct xport *x, struct rdma_conn *c, int64_t deadline)
{
	return sends_wait(x, c, deadline, RDMA_NSLOT - 1);
}

/* n more bytes are in the slot being filled: a full one goes. */
static int slot_add(struct xport *x, struct rdma_conn *c, size_t n)
{
	c->send_fill += n;
	return c->send_fill == RDMA_SLOT ? post_send(x, c) : 0;
}

/* The end of a call: nothing is held back, as TCP_NODELAY holds nothing back. */
static int slot_flush(struct xport *x, struct rdma_conn *c, int64_t deadline)
{
	int ret = slot_wait(x, c, deadline);

	return ret ? ret : post_send(x, c);
}

static uint8_t *slot_room(struct rdma_conn *c, size_t *room)
{
	*room = RDMA_SLOT - c->send_fill;
	return c->send_buf + (size_t)c->send_head * RDMA_SLOT + c->send_fill;
}

static int rdma_sendv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	struct rdma_conn *c = conn_of(x);
	int64_t deadline = io_deadline(x);
	int ret;

	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		while (len) {
			size_t room, n;
			uint8_t *dst;

			ret = slot_wait(x, c, deadline);
			if (ret)
				return ret;
			dst = slot_room(c, &room);
			n = len < room ? len : room;
			memcpy(dst, p, n);
			p += n;
			len -= n;
			ret = slot_add(x, c, n);
			if (ret)
				return ret;
		}
	}
	return slot_flush(x, c, deadline);
}

static int rdma_send_file(struct xport *x, int fd, off_t off, size_t len)
{
	struct rdma_conn *c = conn_of(x);
	int64_t deadline = io_deadline(x);
	int ret;

	while (len) {
		size_t room;
		uint8_t *dst;
		ssize_t r;

		ret = slot_wait(x, c, deadline);
		if (ret)
			return ret;
		dst = slot_room(c, &room);
		r = pread(fd, dst, len < room ? len : room, off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return xport_fail(x, -errno, "read the file");
		}
		if (r == 0) {
			xport_errf(x->err, "rdma %s: send_file: the file ends at offset %lld, "
				   "%zu bytes short", x->peer, (long long)off, len);
			return -EIO;
		}
		off += r;
		len -= (size_t)r;
		ret = slot_add(x, c, (size_t)r);
		if (ret)
			return ret;
	}
	return slot_flush(x, c, deadline);
}

static int rdma_flush(struct xport *x)
{
	/* Every posted send completed: the peer holds the bytes. */
	return sends_wait(x, conn_of(x), io_deadline(x), 0);
}

/* ---- receiving ---- */

static int rdma_recv(struct xport *x, void *buf, size_t len)
{
	struct rdma_conn *c = conn_of(x);
	int64_t deadline = io_deadline(x);
	uint8_t *p = buf;
	int ret;

	while (len) {
		unsigned s = c->recv_cur;

		if (c->recv_full[s]) {
			size_t avail = c->recv_len[s] - c->recv_off, n = len < avail ? len : avail;

			memcpy(p, c->recv_buf + (size_t)s * RDMA_SLOT + c->recv_off, n);
			x->bytes_received += n;
			c->recv_off += n;
			p += n;
			len -= n;
			if (c->recv_off == c->recv_len[s]) {
				c->recv_full[s] = false;
				c->recv_off = 0;
				c->recv_cur = (s + 1) % RDMA_NSLOT;
				ret = post_recv(c, s);
				if (ret)
					return xport_fail(x, ret, "post receive");
			}
			continue;
		}
		ret = cq_drain(x, c);
		if (ret < 0)
			return ret;
		if (!ret && !c->recv_full[s]) {
			ret = cq_wait(x, c, deadline, "receive");
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* ---- set-up and tear-down ---- */

static void conn_free(struct rdma_conn *c)
{
	if (!c)
		return;
	if (c->qp) {
		struct ibv_qp_attr a = { .qp_state = IBV_QPS_ERR };

		ibv_modify_qp(c->id->qp, &a, IBV_QP_STATE);
		wr_flush_wait(c, xport_deadline(RDMA_FLUSH_WAIT_MS));
		rdma_destroy_qp(c->id);
	}
	if (c->send_mr)
		ibv_dereg_mr(c->send_mr);
	if (c->recv_mr)
		ibv_dereg_mr(c->recv_mr);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cch)
		ibv_destroy_comp_channel(c->cch);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->id)
		rdma_destroy_id(c->id);
	if (c->ech)
		rdma_destroy_event_channel(c->ech);
	free(c->send_buf);
	free(c->recv_buf);
	free(c);
}

static void rdma_close(struct xport *x)
{
	struct rdma_conn *c = conn_of(x);

	if (c && c->connected) {
		/* What sendv() queued is the caller's: let it reach the peer. */
		if (!c->failed && !c->peer_gone)
			sends_wait(x, c, xport_deadline(RDMA_CLOSE_DRAIN_MS), 0);
		rdma_disconnect(c->id);
	}
	conn_free(c);
	if (x->fd >= 0)
		close(x->fd);
	free(x);
}

static const struct xport_ops rdma_ops = {
	.name = "rdma",
	.sendv = rdma_sendv,
	.send_file = rdma_send_file,
	.recv = rdma_recv,
	/* .recvv NULL: xport_recvv calls recv per piece, all this would do. */
	.flush = rdma_flush,
	.close = rdma_close,
};

/*
 * The next CM event on ech by the deadline: 0 with *ev (ack it), or
 * -ETIMEDOUT / -errno.
 */
static int cm_next(struct rdma_event_channel *ech, int64_t deadline,
		   struct rdma_cm_event **ev)
{
	for (;;) {
		int ret;

		if (!rdma_get_cm_event(ech, ev))
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		ret = xport_poll(ech->fd, POLLIN, deadline);
		if (ret)
			return ret;
	}
}

/* Wait for one expected event on the connection's own channel. */
static int cm_expect(struct rdma_conn *c, enum rdma_cm_event_type want, int64_t deadline,
		     const char *what, const char *peer, char *err)
{
	struct rdma_cm_event *ev;
	char eb[96];
	int ret = cm_next(c->ech, deadline, &ev), status;
	enum rdma_cm_event_type got;

	if (ret) {
		xport_errf(err, "rdma %s: %s: %s", peer, what,
			   ret == -ETIMEDOUT ? "no answer in time" :
			   xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	got = ev->event;
	status = ev->status;
	rdma_ack_cm_event(ev);
	if (got == want)
		return 0;
	switch (got) {
	case RDMA_CM_EVENT_ADDR_ERROR:
		xport_errf(err, "rdma %s: %s: no RDMA device reaches this address (%s)",
			   peer, what, xport_strerror(status < 0 ? -status : status, eb, sizeof(eb)));
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_REJECTED:
		xport_errf(err, "rdma %s: %s: the peer refused the RDMA connection", peer, what);
		return -ECONNREFUSED;
	default:
		xport_errf(err, "rdma %s: %s: %s (status %d)", peer, what, rdma_event_str(got),
			   status);
		return -ECONNREFUSED;
	}
}

static int conn_new(struct rdma_conn **out, const char *peer, char *err)
{
	struct rdma_conn *c = calloc(1, sizeof(*c));
	char eb[96];

	*out = c;
	if (!c) {
		xport_errf(err, "rdma %s: out of memory", peer);
		return -ENOMEM;
	}
	c->ech = rdma_create_event_channel();
	if (!c->ech) {
		int e = errno;

		xport_errf(err, "rdma %s: no RDMA device on this host (librdmacm: %s)", peer,
			   xport_strerror(e, eb, sizeof(eb)));
		return -(e ? e : ENODEV);
	}
	return xport_set_nonblock(c->ech->fd, true);
}

/* The verbs resources of a connection whose id knows its device. */
static int conn_setup(struct rdma_conn *c, const char *peer, char *err)
{
	struct ibv_context *dev = c->id->verbs;
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
		.cap = {
			.max_send_wr = RDMA_NSLOT,
			.max_recv_wr = RDMA_NSLOT,
			.max_send_sge = 1,
			.max_recv_sge = 1,
		},
	};
	size_t bytes = (size_t)RDMA_NSLOT * RDMA_SLOT;
	const char *what;
	char eb[96];
	int e;

	what = "protection domain";
	c->pd = ibv_alloc_pd(dev);
	if (!c->pd)
		goto fail;
	what = "completion channel";
	c->cch = ibv_create_comp_channel(dev);
	if (!c->cch || xport_set_nonblock(c->cch->fd, true))
		goto fail;
	what = "completion queue";
	c->cq = ibv_create_cq(dev, 2 * RDMA_NSLOT + 2, NULL, c->cch, 0);
	if (!c->cq)
		goto fail;
	what = "buffers";
	c->send_buf = aligned_alloc(4096, bytes);
	c->recv_buf = aligned_alloc(4096, bytes);
	if (!c->send_buf || !c->recv_buf)
		goto fail;
	what = "memory registration";
	c->send_mr = ibv_reg_mr(c->pd, c->send_buf, bytes, IBV_ACCESS_LOCAL_WRITE);
	c->recv_mr = ibv_reg_mr(c->pd, c->recv_buf, bytes, IBV_ACCESS_LOCAL_WRITE);
	if (!c->send_mr || !c->recv_mr)
		goto fail;
	what = "queue pair";
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	if (rdma_create_qp(c->id, c->pd, &qa))
		goto fail;
	c->qp = true;
	/* Every receive slot is posted before the peer may send. */
	for (unsigned s = 0; s < RDMA_NSLOT; s++) {
		e = post_recv(c, s);
		if (e) {
			errno = -e;
			what = "post receive";
			goto fail;
		}
	}
	return 0;
fail:
	e = errno ? errno : ENOMEM;
	xport_errf(err, "rdma %s: %s on %s: %s", peer, what,
		   ibv_get_device_name(dev->device), xport_strerror(e, eb, sizeof(eb)));
	return -e;
}

static void conn_param_init(struct rdma_conn_param *p, const void *priv, uint8_t len)
{
	memset(p, 0, sizeof(*p));
	p->private_data = priv;
	p->private_data_len = len;
	p->retry_count = 7;
	/* 7: retry without end while the peer has no receive posted. */
	p->rnr_retry_count = 7;
}

/* Whole buffers over the (non-blocking) life line by the deadline. */
static int line_io(int fd, void *buf, size_t len, bool out, int64_t deadline)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		int ret;

		if (r > 0) {
			p += r;
			len -= (size_t)r;
			continue;
		}
		if (r == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		ret = xport_poll(fd, out ? POLLOUT : POLLIN, deadline);
		if (ret)
			return ret;
	}
	return 0;
}

static int wrap(struct rdma_conn *c, int fd, const char *peer, struct xport **out, char *err)
{
	struct xport *x = calloc(1, sizeof(*x));

	if (!x) {
		xport_errf(err, "rdma %s: out of memory", peer);
		return -ENOMEM;
	}
	c->connected = true;
	x->ops = &rdma_ops;
	x->kind = XPORT_RDMA;
	x->fd = fd;
	x->priv = c;
	snprintf(x->peer, sizeof(x->peer), "%s", peer);
	*out = x;
	return 0;
}

/* A librdmacm call failed: one line naming what, from errno. */
static int cm_fail(const char *what, const char *peer, char *err)
{
	int e = errno ? errno : EIO;
	char eb[96];

	xport_errf(err, "rdma %s: %s: %s", peer, what, xport_strerror(e, eb, sizeof(eb)));
	return -e;
}

/*
 * The last steps on either side, once the id knows its device: the verbs
 * resources, then connect (the client, with the server's token) or accept
 * (token NULL), ESTABLISHED, and the transport.
 */
static int conn_open(struct rdma_conn *c, int fd, const uint8_t *token, const char *peer,
		     int64_t deadline, struct xport **out, char *err)
{
	const char *what = token ? "connect" : "accept";
	struct rdma_conn_param p;
	int ret = conn_setup(c, peer, err);

	if (ret)
		return ret;
	conn_param_init(&p, token, token ? RDMA_TOKEN_LEN : 0);
	if (token ? rdma_connect(c->id, &p) : rdma_accept(c->id, &p))
		return cm_fail(what, peer, err);
	ret = cm_expect(c, RDMA_CM_EVENT_ESTABLISHED, deadline, what, peer, err);
	return ret ? ret : wrap(c, fd, peer, out, err);
}

int xport_rdma_client(int fd, const char *peer, int64_t deadline, struct xport **out,
		      char *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct rdma_hello h;
	struct rdma_conn *c;
	char eb[96];
	int ret;

	ret = line_io(fd, (void *)rdma_magic, sizeof(rdma_magic), true, deadline);
	if (!ret)
		ret = line_io(fd, &h, sizeof(h), false, deadline);
	if (ret) {
		xport_errf(err, "rdma %s: rendezvous: %s", peer, ret == -EPIPE || ret == -ECONNRESET ?
			   "the peer closed the connection (is it listening for tcp: "
			   "or tls: instead of rdma:?)" : xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	if (memcmp(h.magic, rdma_magic, sizeof(rdma_magic))) {
		xport_errf(err, "rdma %s: rendezvous: the peer does not speak Ferry's RDMA "
			   "rendezvous (is it listening for tcp: instead of rdma:?)", peer);
		return -EPROTO;
	}
	/* The RDMA connection goes to the address the TCP one reached. */
	if (getpeername(fd, (struct sockaddr *)&ss, &sl))
		return cm_fail("the TCP connection's address", peer, err);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = h.port;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = h.port;
	ret = conn_new(&c, peer, err);
	if (ret)
		goto fail;
	if (rdma_create_id(c->ech, &c->id, NULL, RDMA_PS_TCP)) {
		ret = cm_fail("create id", peer, err);
		goto fail;
	}
	if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&ss,
			      xport_remaining_ms(deadline) > 0 ? xport_remaining_ms(deadline) : 2000)) {
		ret = -errno;
		xport_errf(err, "rdma %s: resolve address: %s (no RDMA device reaches it?)",
			   peer, xport_strerror(-ret, eb, sizeof(eb)));
		goto fail;
	}
	ret = cm_expect(c, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, "resolve address", peer, err);
	if (ret)
		goto fail;
	if (rdma_resolve_route(c->id, 2000)) {
		ret = cm_fail("resolve route", peer, err);
		goto fail;
	}
	ret = cm_expect(c, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, "resolve route", peer, err);
	if (ret)
		goto fail;
	ret = conn_open(c, fd, h.token, peer, deadline, out, err);
	if (ret)
		goto fail;
	return 0;
fail:
	conn_free(c);
	return ret;
}

int xport_rdma_listen(const struct sockaddr *sa, const char *name,
		      struct xport_rdma_listener **out, char *err)
{
	struct xport_rdma_listener *l = calloc(1, sizeof(*l));
	struct sockaddr_storage ss;
	char eb[96];
	int ret;

	*out = NULL;
	if (!l) {
		xport_errf(err, "rdma %s: out of memory", name);
		return -ENOMEM;
	}
	l->ech = rdma_create_event_channel();
	if (!l->ech) {
		ret = -(errno ? errno : ENODEV);
		xport_errf(err, "rdma %s: listen: no RDMA device on this host (librdmacm: %s)",
			   name, xport_strerror(-ret, eb, sizeof(eb)));
		goto fail;
	}
	ret = xport_set_nonblock(l->ech->fd, true);
	if (ret)
		goto fail;
	if (rdma_create_id(l->ech, &l->id, NULL, RDMA_PS_TCP)) {
		ret = cm_fail("listen", name, err);
		goto fail;
	}
	/* The TCP port is taken by the life line: the RDMA listener gets its own. */
	memcpy(&ss, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
	       sizeof(struct sockaddr_in));
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	else
		((struct sockaddr_in *)&ss)->sin_port = 0;
	if (rdma_bind_addr(l->id, (struct sockaddr *)&ss)) {
		ret = -errno;
		xport_errf(err, "rdma %s: listen: %s (no RDMA device has this address?)", name,
			   xport_strerror(-ret, eb, sizeof(eb)));
		goto fail;
	}
	if (rdma_listen(l->id, xport_limits.listen_backlog)) {
		ret = cm_fail("listen", name, err);
		goto fail;
	}
	l->port = rdma_get_src_port(l->id);
	*out = l;
	return 0;
fail:
	xport_rdma_listener_close(l);
	return ret;
}

void xport_rdma_listener_close(struct xport_rdma_listener *l)
{
	if (!l)
		return;
	if (l->id)
		rdma_destroy_id(l->id);
	if (l->ech)
		rdma_destroy_event_channel(l->ech);
	free(l);
}

/* A connect request that does not carry our token: refused, the wait goes on. */
static void refuse(struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;

	rdma_reject(id, NULL, 0);
	rdma_ack_cm_event(ev);
	rdma_destroy_id(id);
}

int xport_rdma_server(struct xport_rdma_listener *l, int fd, const char *peer,
		      int64_t deadline, struct xport **out, char *err)
{
	struct rdma_hello h = { .port = l->port };
	char magic[sizeof(rdma_magic)], eb[96];
	struct rdma_conn *c = NULL;
	struct rdma_cm_event *ev;
	int ret;

	memcpy(h.magic, rdma_magic, sizeof(rdma_magic));
	ret = line_io(fd, magic, sizeof(magic), false, deadline);
	if (ret) {
		xport_errf(err, "rdma %s: rendezvous: %s", peer,
			   xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	if (memcmp(magic, rdma_magic, sizeof(magic))) {
		xport_errf(err, "rdma %s: rendezvous: the client does not speak Ferry's RDMA "
			   "rendezvous (a tcp: or tls: client?)", peer);
		return -EPROTO;
	}
	if (getrandom(h.token, sizeof(h.token), 0) != (ssize_t)sizeof(h.token)) {
		ret = -errno;
		xport_errf(err, "rdma %s: token: %s", peer, xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	ret = line_io(fd, &h, sizeof(h), true, deadline);
	if (ret) {
		xport_errf(err, "rdma %s: rendezvous: %s", peer,
			   xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	for (;;) {
		const struct rdma_conn_param *cp;

		ret = cm_next(l->ech, deadline, &ev);
		if (ret) {
			xport_errf(err, "rdma %s: the client did not open its RDMA connection: %s",
				   peer, ret == -ETIMEDOUT ? "no request in time" :
				   xport_strerror(-ret, eb, sizeof(eb)));
			return ret;
		}
		if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			rdma_ack_cm_event(ev);
			continue;
		}
		cp = &ev->param.conn;
		if (cp->private_data_len >= RDMA_TOKEN_LEN &&
		    !memcmp(cp->private_data, h.token, RDMA_TOKEN_LEN))
			break;
		refuse(ev);
	}
	ret = conn_new(&c, peer, err);
	if (ret) {
		refuse(ev);
		goto fail;
	}
	c->id = ev->id;
	rdma_ack_cm_event(ev);
	/* Its own events (DISCONNECTED) on its own channel, not the listener's. */
	if (rdma_migrate_id(c->id, c->ech)) {
		ret = cm_fail("migrate id", peer, err);
		goto fail;
	}
	ret = conn_open(c, fd, NULL, peer, deadline, out, err);
	if (ret)
		goto fail;
	return 0;
fail:
	conn_free(c);
	return ret;
}

int xport_rdma_knocking(int fd, int timeout_ms)
{
	int64_t deadline = xport_deadline(timeout_ms);
	char b[sizeof(rdma_magic)];

	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
		int ret;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		if (n == 0)
			return 0;
		/* A Ferry stream differs from the magic in its first bytes. */
		if (n > 0 && memcmp(b, rdma_magic, (size_t)n))
			return 0;
		if (n == (ssize_t)sizeof(b))
			return 1;
		/* A prefix of the magic, or nothing yet: more is coming. */
		if (xport_remaining_ms(deadline) == 0)
			return -ETIMEDOUT;
		if (n > 0) {
			usleep(1000);   /* poll() would return at once on what is there */
			continue;
		}
		ret = xport_poll(fd, POLLIN, deadline);
		if (ret)
			return ret;
	}
}

int xport_rdma_devices(char *names, size_t len)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);
	size_t off = 0;

	if (names && len)
		names[0] = 0;
	if (!list)
		return 0;
	for (int i = 0; i < n && names; i++) {
		int w = snprintf(names + off, off < len ? len - off : 0, "%s%s", i ? " " : "",
				 ibv_get_device_name(list[i]));

		if (w > 0)
			off += (size_t)w;
	}
	ibv_free_device_list(list);
	return n;
}
