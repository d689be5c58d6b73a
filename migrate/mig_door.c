/* The wait for a source's HELLO, with connections taken side by side (mig_door.h). */
#include "migrate/mig_door.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "migrate/mig_live.h"
#include "migrate/mig_proto.h"

struct door;

struct door_conn {
	struct door *d;
	pthread_t th;
	bool busy;                 /* a thread runs for it */
	bool done;                 /* and has finished: join it */
	int fd;                    /* -1 once the thread closes it; under d->lock */
	char peer[XPORT_PEER_LEN];
	struct xport *x;
	struct stream_io io;
	struct stream_reader hr;
	ProtobufCMessage *hello;
};

struct door {
	struct xport_listener *l;
	uint64_t deadline_ns;
	int first_bytes_ms;
	struct mig_door_drops *drops;
	pthread_mutex_t lock;
	int wake;                  /* eventfd: a thread finished */
	bool over;                 /* the wait ended: a thread's failure is ours, not a drop */
	struct door_conn *winner;
	struct door_conn c[MIG_DOOR_SLOTS];
};

static int door_left_ms(uint64_t deadline_ns)
{
	uint64_t now = now_ns();

	if (!deadline_ns)
		return -1;
	return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

/* Under d->lock. */
static void door_drop(struct door *d, const char *why)
{
	struct mig_door_drops *dr = d->drops;

	if (d->over)
		return;
	dr->n++;
	/* A flood of strays must not flood the log: the first ten, then every 100th. */
	if (dr->n <= 10 || dr->n % 100 == 0)
		log_warn("incoming: dropped a connection before its HELLO: %s; still waiting "
			 "for the source%s", why, dr->n == 10 ? " (from now on, one line in 100 "
			 "of these)" : "");
	snprintf(dr->last, sizeof(dr->last), "%s", why);
}

/* One connection, from the accepted socket to its HELLO. */
static int conn_hello(struct door_conn *c, char *why, size_t why_len)
{
	struct door *d = c->d;
	char xerr[MIG_ERR_LEN];   /* mig_recv_msg's size; xport's words are shorter */
	int left = door_left_ms(d->deadline_ns), knock, ret;

	ret = xport_accept_establish(d->l, c->fd, c->peer, left, &c->x, xerr);
	if (ret) {
		/* Forgotten before it is closed: door_close shuts down only live sockets. */
		pthread_mutex_lock(&d->lock);
		close(c->fd);
		c->fd = -1;
		pthread_mutex_unlock(&d->lock);
		snprintf(why, why_len, "%s", xerr);
		return ret;
	}
	/* An rdma: source waits for a rendezvous reply and sends no HELLO. */
	knock = c->x->kind == XPORT_TCP ? xport_rdma_knocking(c->x->fd, d->first_bytes_ms) : 0;
	if (knock == 1) {
		snprintf(why, why_len, "from %s: the source migrates over rdma: and this "
			 "destination listens on tcp: (start it with --incoming rdma:HOST:PORT, or "
			 "migrate to tcp:)", c->peer);
		return -EPROTO;
	}
	if (knock == -ETIMEDOUT) {
		/* A source sends its HELLO at once; do not let a mute peer hold a slot. */
		snprintf(why, why_len, "from %s: sent no HELLO within %d ms", c->peer,
			 d->first_bytes_ms);
		return -ETIMEDOUT;
	}
	/* The HELLO is one small frame, written at once after the first bytes. */
	xport_set_timeout(c->x, d->first_bytes_ms);
	mig_xport_io(c->x, &c->io);
	c->hr.io = &c->io;
	ret = mig_recv_msg(&c->hr, STREAM_REC_HELLO, &ferry__mig__hello__descriptor, &c->hello,
			   xerr);
	if (ret)
		snprintf(why, why_len, "from %s: %.300s", c->peer, xerr);
	return ret;
}

static void *conn_main(void *arg)
{
	struct door_conn *c = arg;
	struct door *d = c->d;
	char why[MIG_ERR_LEN];
	uint64_t one = 1;
	int ret = conn_hello(c, why, sizeof(why));

	pthread_mutex_lock(&d->lock);
	if (!ret && (d->winner || d->over)) {
		snprintf(why, sizeof(why), "from %s: another source's HELLO came first", c->peer);
		ret = -EBUSY;
	}
	if (!ret)
		d->winner = c;
	else
		door_drop(d, why);
	if (ret && c->fd >= 0)
		c->fd = -1;   /* closed below, out of the lock */
	c->done = true;
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		if (c->hello)
			protobuf_c_message_free_unpacked(c->hello, NULL);
		c->hello = NULL;
		xport_close(c->x);
		c->x = NULL;
		stream_reader_destroy(&c->hr);
	}
	if (write(d->wake, &one, sizeof(one)) < 0) {
		/* The main loop also looks on every accept and at its deadline. */
	}
	return NULL;
}

/* Join the threads that finished; the number of slots in use. Not under d->lock. */
static unsigned door_reap(struct door *d, bool serial)
{
	unsigned used = 0;

	for (unsigned i = 0; i < MIG_DOOR_SLOTS; i++) {
		struct door_conn *c = &d->c[i];
		bool done;

		if (!c->busy)
			continue;
		pthread_mutex_lock(&d->lock);
		done = c->done && d->winner != c;
		pthread_mutex_unlock(&d->lock);
		if (done) {
			pthread_join(c->th, NULL);
			c->busy = false;
		} else {
			used++;
		}
	}
	return serial && used ? MIG_DOOR_SLOTS : used;
}

static int door_start(struct door *d, int fd, const char *peer)
{
	struct door_conn *c = NULL;
	int ret;

	for (unsigned i = 0; i < MIG_DOOR_SLOTS && !c; i++)
		if (!d->c[i].busy)
			c = &d->c[i];
	if (!c) {
		close(fd);
		return -EBUSY;
	}
	memset(c, 0, sizeof(*c));
	c->d = d;
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	stream_reader_init(&c->hr, -1);
	ret = -pthread_create(&c->th, NULL, conn_main, c);
	if (ret) {
		close(fd);
		stream_reader_destroy(&c->hr);
		return ret;
	}
	c->busy = true;
	return 0;
}

/* The end of a wait: every connection still in progress is ended and joined. */
static void door_close(struct door *d)
{
	pthread_mutex_lock(&d->lock);
	d->over = true;
	for (unsigned i = 0; i < MIG_DOOR_SLOTS; i++)
		if (d->c[i].busy && d->c[i].fd >= 0 && d->winner != &d->c[i])
			shutdown(d->c[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < MIG_DOOR_SLOTS; i++)
		if (d->c[i].busy) {
			pthread_join(d->c[i].th, NULL);
			d->c[i].busy = false;
		}
}

int mig_door_wait(struct xport_listener *l, uint64_t deadline_ns, int first_bytes_ms,
		  struct mig_door_drops *drops, struct mig_door_guest *g, char *err, size_t err_len)
{
	struct door d = { .l = l, .deadline_ns = deadline_ns, .first_bytes_ms = first_bytes_ms,
			  .drops = drops };
	bool serial = xport_listener_serial(l);
	char xerr[XPORT_ERR_LEN], peer[XPORT_PEER_LEN];
	int ret, left, fd;

	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&d.lock, NULL);
	d.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.wake < 0) {
		ret = -errno;
		snprintf(err, err_len, "eventfd: %s", strerror(-ret));
		goto out;
	}
	for (;;) {
		/* Full: the next client waits in the listen backlog for a slot. */
		bool room = door_reap(&d, serial) < MIG_DOOR_SLOTS;
		struct pollfd p[2] = {
			{ .fd = d.wake, .events = POLLIN },
			{ .fd = xport_listener_fd(l), .events = POLLIN },
		};
		uint64_t cleared;

		pthread_mutex_lock(&d.lock);
		ret = d.winner ? 0 : 1;
		pthread_mutex_unlock(&d.lock);
		if (!ret)
			break;
		left = door_left_ms(deadline_ns);
		if (!left) {
			ret = -ETIMEDOUT;
			break;
		}
		if (poll(p, room ? 2 : 1, left) < 0 && errno != EINTR) {
			ret = -errno;
			snprintf(err, err_len, "poll: %s", strerror(-ret));
			break;
		}
		if (p[0].revents & POLLIN) {
			if (read(d.wake, &cleared, sizeof(cleared)) < 0) {
				/* EAGAIN: another look found it first. */
			}
		}
		if (!room || !(p[1].revents & POLLIN))
			continue;
		ret = xport_accept_fd(l, 0, &fd, peer, sizeof(peer), xerr);
		if (ret == -ETIMEDOUT)
			continue;   /* the client gave up before we took it */
		if (ret) {
			snprintf(err, err_len, "%s", xerr);
			break;
		}
		ret = door_start(&d, fd, peer);
		if (ret) {
			snprintf(err, err_len, "no thread for %s: %s", peer, strerror(-ret));
			break;
		}
	}
	door_close(&d);
	if (!ret) {
		g->x = d.winner->x;
		g->hr = d.winner->hr;
		g->hello = (Ferry__Mig__Hello *)d.winner->hello;
	} else if (d.winner) {
		/* A HELLO that came as the wait failed: nobody takes it. */
		protobuf_c_message_free_unpacked(d.winner->hello, NULL);
		xport_close(d.winner->x);
		stream_reader_destroy(&d.winner->hr);
	}
out:
	if (d.wake >= 0)
		close(d.wake);
	pthread_mutex_destroy(&d.lock);
	return ret;
}
