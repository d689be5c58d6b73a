/*
 * The agent's request server (cl_net.h): a UNIX socket for local root and
 * a mutual-TLS listener for everyone else with a certificate from the
 * cluster's CA. One accept thread per listener, one thread per connection;
 * all of them are tracked so that cl_server_stop() can end and join them.
 *
 * A TLS client's handshake runs on its connection's thread, not on the
 * accept thread: a client that connects and stalls (or a port scanner)
 * would otherwise hold every operator and every peer agent behind it for
 * the whole handshake timeout. At most max_handshakes run at once; past
 * that, clients wait in the listen backlog.
 *
 * Stopping: an eventfd wakes the accept threads out of poll(), and
 * shutdown() of every connection's socket wakes its thread out of a
 * receive. A connection thread clears its fd under the lock before it
 * closes it, so shutdown() never reaches a number the kernel reused.
 */
#include "cl_net.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_err.h"
#include "cl_msg.h"
#include "core/log.h"

/* Defaults and limits of the server. */
static const struct {
	int frame_timeout_ms;   /* a frame that started must finish by then */
	int handshake_ms;       /* TLS handshake of a new client */
	int listen_backlog;
	int max_handshakes;     /* TLS handshakes in progress at once */
	int max_tls_conns;      /* TLS connections open at once */
} srv_limits = {
	.frame_timeout_ms = CL_CALL_TIMEOUT_MS,
	.handshake_ms = 10000,
	.listen_backlog = 16,
	.max_handshakes = 16,
	.max_tls_conns = 256,
};

struct cl_conn {
	struct cl_server *s;
	struct xport *x;        /* NULL while a TLS handshake is to be done */
	int fd;                 /* for cl_server_stop's shutdown(); -1: closed */
	char addr[XPORT_PEER_LEN];   /* the client's address, for TLS */
	struct cl_peer peer;
	pthread_t th;
	bool counted;           /* one of the server's tls_conns */
	bool done;
	struct cl_conn *next;
};

struct cl_server {
	struct cl_server_cfg cfg;
	int stop_fd;            /* eventfd: readable once stopping */
	int unix_fd;
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat unix_st;    /* to unlink only our own socket file */
	struct xport_listener *tls_l;
	pthread_t unix_th, tls_th;
	bool unix_th_on, tls_th_on;
	pthread_mutex_t lock;
	bool stopping;
	struct cl_conn *conns;
	int handshakes;         /* TLS connections still in their handshake */
	int tls_conns;          /* TLS connections past their handshake, admitted */
	int slot_fd;            /* eventfd: a handshake ended */
};

/* ---- one connection ---- */

/* Answer with an error of our own (the handler never saw the request). */
static int srv_send_error(struct xport *x, int error, const char *message)
{
	Ferry__Cluster__Response r = FERRY__CLUSTER__RESPONSE__INIT;

	r.error = error;
	r.message = (char *)message;
	return cl_frame_send(x, &r.base);
}

/* Wait for the next frame or for stop: true when a frame is coming. */
static bool srv_wait_frame(struct cl_conn *c)
{
	struct pollfd p[2] = {
		{ .fd = c->x->fd, .events = POLLIN },
		{ .fd = c->s->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		return !p[1].revents && p[0].revents;
	}
}

/* One request: 0 to go on, or why the connection ends. */
static int srv_serve_one(struct cl_conn *c)
{
	struct cl_server *s = c->s;
	Ferry__Cluster__Request *req;
	Ferry__Cluster__Response *resp;
	char reason[256];
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = cl_frame_recv(c->x, &buf, &len);

	if (ret == -EMSGSIZE) {
		snprintf(reason, sizeof(reason), "request: frame larger than "
			 "%u bytes", CL_FRAME_MAX);
		srv_send_error(c->x, -EMSGSIZE, reason);
		return ret;   /* the stream cannot be followed any more */
	}
	if (ret)
		return ret;
	req = cl_request_decode(buf, len, reason, sizeof(reason));
	free(buf);
	if (!req) {
		log_debug("agent: %s: %s", c->peer.name, reason);
		return srv_send_error(c->x, -EINVAL, reason);
	}
	resp = s->cfg.handler(s->cfg.opaque, req, &c->peer);
	CL_FREE(req);
	if (!resp)
		return srv_send_error(c->x, -EIO, "agent: the request got no "
				      "answer (internal error)");
	ret = cl_frame_send(c->x, &resp->base);
	if (ret == -EMSGSIZE)
		ret = srv_send_error(c->x, -EMSGSIZE, "agent: the answer is "
				     "too large for one frame");
	CL_FREE(resp);
	return ret;
}

static int srv_tls_establish(struct cl_conn *c);

static void *srv_conn_main(void *arg)
{
	struct cl_conn *c = arg;
	struct xport *x;
	int ret = c->x ? 0 : srv_tls_establish(c);

	x = c->x;
	if (!x)
		goto out;   /* the handshake failed and closed the socket */
	if (!ret)
		ret = xport_set_timeout(x, srv_limits.frame_timeout_ms);
	while (!ret && srv_wait_frame(c))
		ret = srv_serve_one(c);
	if (ret && ret != -EPIPE && ret != -ECONNRESET && ret != -EACCES)
		log_debug("agent: %s: connection ends: %s", c->peer.name,
			  x->err[0] ? x->err : strerror(-ret));
out:
	pthread_mutex_lock(&c->s->lock);
	c->fd = -1;
	c->x = NULL;
	c->done = true;
	if (c->counted)
		c->s->tls_conns--;
	pthread_mutex_unlock(&c->s->lock);
	xport_close(x);
	return NULL;
}

/* Take the connections that ended off the list, and join them. */
static void srv_reap(struct cl_server *s, bool all)
{
	struct cl_conn *gone = NULL, **pp;

	pthread_mutex_lock(&s->lock);
	for (pp = &s->conns; *pp;) {
		struct cl_conn *c = *pp;

		if (all || c->done) {
			*pp = c->next;
			c->next = gone;
			gone = c;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	while (gone) {
		struct cl_conn *c = gone;

		gone = c->next;
		pthread_join(c->th, NULL);
		free(c);
	}
}

/*
 * Hand an accepted connection its thread. x is the transport, or NULL for
 * a TLS client whose handshake the thread does on fd (addr: its address).
 * Takes x, or fd, either way.
 */
static void srv_spawn(struct cl_server *s, struct xport *x, int fd, const char *addr,
		      const struct cl_peer *peer)
{
	struct cl_conn *c = calloc(1, sizeof(*c));
	int ret = -ENOMEM;

	srv_reap(s, false);
	if (!c)
		goto fail;
	c->s = s;
	c->x = x;
	c->fd = x ? x->fd : fd;
	snprintf(c->addr, sizeof(c->addr), "%s", addr ? addr : "");
	c->peer = *peer;
	pthread_mutex_lock(&s->lock);
	ret = s->stopping ? -ESHUTDOWN : -pthread_create(&c->th, NULL,
							  srv_conn_main, c);
	if (!ret) {
		c->next = s->conns;
		s->conns = c;
		if (!x)
			s->handshakes++;
	}
	pthread_mutex_unlock(&s->lock);
	if (!ret)
		return;
fail:
	if (ret != -ESHUTDOWN)
		log_warn("agent: %s: no thread for the connection: %s",
			 x ? peer->name : addr, strerror(-ret));
	free(c);
	if (x)
		xport_close(x);
	else
		close(fd);
}

/* Poll a listening socket and the stop eventfd: true when a client waits. */
static bool srv_wait_client(struct cl_server *s, int fd)
{
	struct pollfd p[2] = {
		{ .fd = fd, .events = POLLIN },
		{ .fd = s->stop_fd, .events = POLLIN },
	};

	while (poll(p, 2, -1) < 0)
		if (errno != EINTR)
			return false;
	return !p[1].revents && (p[0].revents & POLLIN);
}

/*
 * After a failed accept: when the process is out of fds or memory, the
 * client is still queued and poll() would say so at once; give the
 * process a moment rather than spin.
 */
static void srv_backoff(int err)
{
	if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM)
		usleep(100 * 1000);
}

/* ---- the UNIX socket ---- */

static void *srv_unix_main(void *arg)
{
	struct cl_server *s = arg;

	while (srv_wait_client(s, s->unix_fd)) {
		struct cl_peer peer = { .tls = false };
		struct ucred cred;
		socklen_t sl = sizeof(cred);
		char xerr[XPORT_ERR_LEN];
		struct xport *x;
		int fd = accept4(s->unix_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			srv_backoff(-errno);
			continue;   /* gone already, or out of fds: try the next */
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl)) {
			close(fd);
			continue;
		}
		peer.uid = cred.uid;
		snprintf(peer.name, sizeof(peer.name), "uid %u", (unsigned)cred.uid);
		if (xport_wrap_fd(fd, s->unix_path, &x, xerr)) {
			close(fd);
			continue;
		}
		if (cred.uid != 0 && cred.uid != geteuid()) {
			log_warn("agent: refused %s (pid %d) on %s: only root "
				 "and uid %u may use it", peer.name,
				 (int)cred.pid, s->unix_path, (unsigned)geteuid());
			srv_send_error(x, -EACCES, "agent: only root and "
				       "clusterd's user may use this socket");
			xport_close(x);
			continue;
		}
		srv_spawn(s, x, -1, NULL, &peer);
	}
	return NULL;
}

/* Someone answers on path: another agent is running there. */
static bool srv_unix_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return live;
}

static int srv_unix_open(struct cl_server *s, const char *path, char *err,
			 size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		cl_errf(err, err_len, "listen %s: path too long for a UNIX "
			 "socket", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	snprintf(s->unix_path, sizeof(s->unix_path), "%s", path);
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			cl_errf(err, err_len, "listen %s: the path exists and "
				 "is not a socket", path);
			return -EEXIST;
		}
		if (srv_unix_live(&sa)) {
			cl_errf(err, err_len, "listen %s: another agent is "
				 "listening there", path);
			return -EADDRINUSE;
		}
		unlink(path);   /* left behind by an agent that died */
	}
	s->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->unix_fd < 0)
		goto sys;
	/* chmod before listen(): nobody can connect in between. */
	if (bind(s->unix_fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto sys;
	if (chmod(path, 0600) || stat(path, &s->unix_st) ||
	    listen(s->unix_fd, srv_limits.listen_backlog))
		goto sys_bound;
	return 0;
sys_bound:
	ret = -errno;
	unlink(path);
	goto fail;
sys:
	ret = -errno;
fail:
	cl_errf(err, err_len, "listen %s: %s", path, strerror(-ret));
	return ret;
}

/* ---- TLS ---- */

/* A handshake ended: free its slot, and wake the accept thread if it waited. */
static void srv_handshake_done(struct cl_server *s)
{
	uint64_t one = 1;
	bool wake;

	pthread_mutex_lock(&s->lock);
	wake = s->handshakes-- >= srv_limits.max_handshakes;
	pthread_mutex_unlock(&s->lock);
	if (wake && write(s->slot_fd, &one, sizeof(one)) < 0)
		log_warn("agent: cannot wake the TLS listener: %s", strerror(errno));
}

/*
 * On the connection's thread: the TLS handshake, then who the client is.
 * On success c->x is the transport; when the handshake fails c->x stays
 * NULL and the socket is closed. Any other failure leaves c->x for the
 * caller to close.
 */
static int srv_tls_establish(struct cl_conn *c)
{
	struct cl_server *s = c->s;
	char xerr[XPORT_ERR_LEN], reason[256];
	struct cl_peer *peer = &c->peer;
	struct xport *x = NULL;
	bool full;
	int ret = xport_accept_establish(s->tls_l, c->fd, c->addr, srv_limits.handshake_ms,
					 &x, xerr);

	pthread_mutex_lock(&s->lock);
	if (ret) {
		/* Forgotten before it is closed: stop shuts down only live sockets. */
		close(c->fd);
		c->fd = -1;
	}
	c->x = x;
	full = s->tls_conns >= srv_limits.max_tls_conns;
	if (!ret && !full) {
		s->tls_conns++;
		c->counted = true;
	}
	pthread_mutex_unlock(&s->lock);
	srv_handshake_done(s);
	if (ret) {
		log_info("agent: %s", xerr);
		return ret;
	}
	if (xport_tls_peer_identity(x, peer->name, sizeof(peer->name), peer->serial,
				    sizeof(peer->serial))) {
		log_warn("agent: %s: cannot read the peer's certificate", x->peer);
		return -EACCES;
	}
	if (s->cfg.revoked && s->cfg.revoked(s->cfg.opaque, peer->serial)) {
		log_warn("agent: refused %s from %s: certificate serial %s is revoked",
			 peer->name, x->peer, peer->serial);
		snprintf(reason, sizeof(reason), "agent: certificate %s (serial %s) is "
			 "revoked", peer->name, peer->serial);
		srv_send_error(x, -EACCES, reason);
		return -EACCES;
	}
	if (full) {
		log_warn("agent: refused %s from %s: %d TLS connections are open already",
			 peer->name, x->peer, srv_limits.max_tls_conns);
		snprintf(reason, sizeof(reason), "agent: too many connections (%d are open); "
			 "try again later", srv_limits.max_tls_conns);
		srv_send_error(x, -EBUSY, reason);
		return -EACCES;
	}
	return 0;
}

/* Wait for a client while a handshake slot is free, or for stop: true when one waits. */
static bool srv_tls_wait(struct cl_server *s, int lfd)
{
	struct pollfd p[3] = {
		{ .fd = s->stop_fd, .events = POLLIN },
		{ .fd = s->slot_fd, .events = POLLIN },
		{ .fd = lfd, .events = POLLIN },
	};
	uint64_t n;

	for (;;) {
		bool room;

		pthread_mutex_lock(&s->lock);
		room = s->handshakes < srv_limits.max_handshakes;
		pthread_mutex_unlock(&s->lock);
		if (poll(p, room ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (p[0].revents)
			return false;
		/* Only a reset of the counter: a failed read leaves it readable, no harm. */
		if ((p[1].revents & POLLIN) && read(s->slot_fd, &n, sizeof(n)) < 0 &&
		    errno != EAGAIN)
			log_debug("agent: TLS listener: slot counter: %s", strerror(errno));
		if (room && (p[2].revents & POLLIN))
			return true;
	}
}

static void *srv_tls_main(void *arg)
{
	struct cl_server *s = arg;
	int lfd = xport_listener_fd(s->tls_l);

	while (srv_tls_wait(s, lfd)) {
		struct cl_peer peer = { .tls = true, .uid = (uid_t)-1 };
		char xerr[XPORT_ERR_LEN], addr[XPORT_PEER_LEN];
		int fd, ret = xport_accept_fd(s->tls_l, 0, &fd, addr, sizeof(addr), xerr);

		if (ret == -ETIMEDOUT)
			continue;   /* the client gave up before we took it */
		if (ret) {
			log_info("agent: %s", xerr);
			srv_backoff(ret);
			continue;
		}
		srv_spawn(s, NULL, fd, addr, &peer);
	}
	return NULL;
}

/* ---- start and stop ---- */

int cl_server_start(const struct cl_server_cfg *cfg, struct cl_server **out,
		    char *err, size_t err_len)
{
	struct cl_server *s;
	char xerr[XPORT_ERR_LEN];
	int ret;

	*out = NULL;
	if (!cfg->handler || (!cfg->unix_path && !cfg->tls_addr) ||
	    (cfg->tls_addr && !cfg->tls)) {
		cl_errf(err, err_len, "agent: a server needs a handler and a "
			 "UNIX path or a TLS address with certificates");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		cl_errf(err, err_len, "agent: out of memory");
		return -ENOMEM;
	}
	s->cfg = *cfg;
	s->cfg.unix_path = NULL;   /* the caller's memory: use s->unix_path */
	s->cfg.tls_addr = NULL;
	s->cfg.tls = NULL;
	s->unix_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	s->slot_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0 || s->slot_fd < 0) {
		ret = -errno;
		cl_errf(err, err_len, "agent: eventfd: %s", strerror(-ret));
		goto fail;
	}
	if (cfg->unix_path) {
		ret = srv_unix_open(s, cfg->unix_path, err, err_len);
		if (ret)
			goto fail;
	}
	if (cfg->tls_addr) {
		ret = xport_listen(cfg->tls_addr, cfg->tls, &s->tls_l, xerr);
		if (ret) {
			cl_errf(err, err_len, "agent: %s", xerr);
			goto fail;
		}
	}
	if (s->unix_fd >= 0) {
		ret = -pthread_create(&s->unix_th, NULL, srv_unix_main, s);
		s->unix_th_on = !ret;
	}
	if (!ret && s->tls_l) {
		ret = -pthread_create(&s->tls_th, NULL, srv_tls_main, s);
		s->tls_th_on = !ret;
	}
	if (ret) {
		cl_errf(err, err_len, "agent: thread: %s", strerror(-ret));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	cl_server_stop(s);
	return ret;
}

uint16_t cl_server_tls_port(const struct cl_server *s)
{
	return s->tls_l ? xport_listener_port(s->tls_l) : 0;
}

void cl_server_stop(struct cl_server *s)
{
	uint64_t one = 1;
	struct stat st;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	for (struct cl_conn *c = s->conns; c; c = c->next)
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	if (s->stop_fd >= 0 && write(s->stop_fd, &one, sizeof(one)) < 0)
		log_warn("agent: cannot signal stop: %s", strerror(errno));
	if (s->unix_th_on)
		pthread_join(s->unix_th, NULL);
	if (s->tls_th_on)
		pthread_join(s->tls_th, NULL);
	srv_reap(s, true);
	if (s->unix_fd >= 0) {
		close(s->unix_fd);
		/* Only our own file: a new agent may have replaced it. */
		if (!stat(s->unix_path, &st) && st.st_ino == s->unix_st.st_ino &&
		    st.st_dev == s->unix_st.st_dev)
			unlink(s->unix_path);
	}
	xport_listener_close(s->tls_l);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->slot_fd >= 0)
		close(s->slot_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
