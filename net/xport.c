/*
 * Transports, the generic part: addresses, TLS material, connect, listen and
 * accept with timeouts, and the hand-off to an implementation. A connection
 * is always a TCP socket first; TLS (xport_tls.c) runs its handshake on it
 * inside connect/accept, plain TCP (xport_tcp.c) uses it as it is.
 *
 * RDMA ("rdma:HOST:PORT") starts the same way: the TCP connection is made
 * here, then xport_rdma.c holds its rendezvous on it and opens the queue
 * pair beside it through librdmacm; the listener has an RDMA listener on
 * the same address next to its socket.
 */
#include "net/xport_impl.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

/* ---- addresses ---- */

static bool host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static bool is_ipv6_literal(const char *s)
{
	struct addrinfo hints = {
		.ai_family = AF_INET6,
		.ai_flags = AI_NUMERICHOST,
	};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(s, NULL, &hints, &res);

	if (res)
		freeaddrinfo(res);
	return rc == 0;
}

static int parse_port(const char *uri, const char *s, uint16_t *out, char *err)
{
	unsigned long v = 0;

	if (!*s) {
		xport_errf(err, "address '%s' has no port (expected tcp:HOST:PORT)",
			   uri);
		return -EINVAL;
	}
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > 65535) {
			xport_errf(err, "address '%s': port must be a number "
				   "0..65535, not '%s'", uri, s);
			return -EINVAL;
		}
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535) {
		xport_errf(err, "address '%s': port must be a number 0..65535, "
			   "not '%s'", uri, s);
		return -EINVAL;
	}
	*out = (uint16_t)v;
	return 0;
}

int xport_addr_parse(const char *uri, struct xport_addr *out, char *err)
{
	const char *h, *hend, *port;
	size_t hlen;

	if (!uri || !*uri) {
		xport_errf(err, "address is empty (expected tcp:HOST:PORT)");
		return -EINVAL;
	}
	if (!strncmp(uri, "tcp:", 4)) {
		out->kind = XPORT_TCP;
		h = uri + 4;
	} else if (!strncmp(uri, "rdma:", 5)) {
		out->kind = XPORT_RDMA;
		h = uri + 5;
	} else {
		xport_errf(err, "address '%s' does not start with tcp: or rdma: "
			   "(expected tcp:HOST:PORT)", uri);
		return -EINVAL;
	}
	if (*h == '[') {
		h++;
		hend = strchr(h, ']');
		if (!hend) {
			xport_errf(err, "address '%s': '[' without ']' "
				   "(expected tcp:[IPV6]:PORT)", uri);
			return -EINVAL;
		}
		if (hend[1] != ':') {
			xport_errf(err, "address '%s': expected ':PORT' after "
				   "']' (expected tcp:[IPV6]:PORT)", uri);
			return -EINVAL;
		}
		port = hend + 2;
	} else {
		hend = strrchr(h, ':');
		if (!hend) {
			xport_errf(err, "address '%s' has no port (expected "
				   "tcp:HOST:PORT)", uri);
			return -EINVAL;
		}
		if (memchr(h, ':', (size_t)(hend - h))) {
			xport_errf(err, "address '%s': an IPv6 address goes in "
				   "brackets (tcp:[IPV6]:PORT)", uri);
			return -EINVAL;
		}
		port = hend + 1;
	}
	hlen = (size_t)(hend - h);
	if (!hlen) {
		xport_errf(err, "address '%s' has no host (expected "
			   "tcp:HOST:PORT; 0.0.0.0 or [::] for any)", uri);
		return -EINVAL;
	}
	if (hlen >= XPORT_HOST_MAX) {
		xport_errf(err, "address '%.40s...': host is longer than %d "
			   "characters", uri, XPORT_HOST_MAX - 1);
		return -ENAMETOOLONG;
	}
	memcpy(out->host, h, hlen);
	out->host[hlen] = '\0';
	if (h[-1] == '[') {
		if (!is_ipv6_literal(out->host)) {
			xport_errf(err, "address '%s': '%s' is not an IPv6 "
				   "address", uri, out->host);
			return -EINVAL;
		}
	} else {
		for (size_t i = 0; i < hlen; i++) {
			if (!host_char_ok(out->host[i])) {
				xport_errf(err, "address '%s': host '%s' has "
					   "an invalid character", uri,
					   out->host);
				return -EINVAL;
			}
		}
	}
	return parse_port(uri, port, &out->port, err);
}

/* ---- TLS material ---- */

static int tls_file(const char *dir, const char *name, char *out, size_t len,
		    char *err)
{
	int n = snprintf(out, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len) {
		xport_errf(err, "tls: path %s/%s is too long", dir, name);
		return -ENAMETOOLONG;
	}
	if (access(out, R_OK)) {
		int e = errno;
		char eb[96];

		if (e == ENOENT)
			xport_errf(err, "tls: %s is missing from %s", name, dir);
		else
			xport_errf(err, "tls: cannot read %s: %s", out,
				   xport_strerror(e, eb, sizeof(eb)));
		return -e;
	}
	return 0;
}

int xport_tls_from_dir(const char *dir, struct xport_tls *out, char *err)
{
	struct stat st;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!dir || !*dir) {
		xport_errf(err, "tls: no certificate directory given");
		return -EINVAL;
	}
	if (stat(dir, &st)) {
		int e = errno;
		char eb[96];

		xport_errf(err, "tls: certificate directory %s: %s", dir,
			   xport_strerror(e, eb, sizeof(eb)));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		xport_errf(err, "tls: %s is not a directory", dir);
		return -ENOTDIR;
	}
	ret = tls_file(dir, "ca.pem", out->ca, sizeof(out->ca), err);
	if (!ret)
		ret = tls_file(dir, "cert.pem", out->cert, sizeof(out->cert),
			       err);
	if (!ret)
		ret = tls_file(dir, "key.pem", out->key, sizeof(out->key), err);
	if (!ret && (size_t)snprintf(out->revoked, sizeof(out->revoked), "%s/revoked",
				     dir) >= sizeof(out->revoked)) {
		xport_errf(err, "tls: path %s/revoked is too long", dir);
		ret = -ENAMETOOLONG;
	}
	return ret;
}

/* ---- connections ---- */

struct xport_listener {
	int fd;
	uint16_t port;
	SSL_CTX *ctx;                    /* NULL: plain TCP */
	struct xport_rdma_listener *rdma; /* rdma: the queue pairs' listener */
	char peer_name[XPORT_HOST_MAX];
	char name[XPORT_PEER_LEN];  /* "host:port" we listen on */
	char failed_peer[XPORT_PEER_LEN]; /* the last accept's, if its handshake failed */
};

static const char *kind_name(const struct xport_addr *addr, const struct xport_tls *tls)
{
	if (addr->kind == XPORT_RDMA)
		return "rdma";
	return tls ? "tls" : "tcp";
}

static int rdma_no_tls(const struct xport_addr *addr, const struct xport_tls *tls,
		       const char *peer, char *err)
{
	if (addr->kind != XPORT_RDMA || !tls)
		return 0;
	xport_errf(err, "rdma %s: TLS over RDMA is not supported (use tcp: with "
		   "certificates, or rdma: on a fabric you trust)", peer);
	return -EPROTONOSUPPORT;
}

static int resolve(const struct xport_addr *addr, bool passive,
		   struct addrinfo **res, const char *kname, const char *peer,
		   char *err)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	char port[8], eb[96];
	int rc, e;

	snprintf(port, sizeof(port), "%u", addr->port);
	rc = getaddrinfo(addr->host, port, &hints, res);
	if (!rc)
		return 0;
	e = errno;
	xport_errf(err, "%s %s: cannot resolve %s: %s", kname, peer,
		   addr->host, rc == EAI_SYSTEM ?
		   xport_strerror(e, eb, sizeof(eb)) : gai_strerror(rc));
	return rc == EAI_SYSTEM ? -e : -EHOSTUNREACH;
}

/* Connect one address by the deadline: the socket, or -errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
	int fd, ret, soerr = 0;
	socklen_t sl = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	/* Buffer sizes before connect: the window scale is set by the SYN. */
	xport_sock_tune(fd);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		ret = -errno;
		goto fail;
	}
	ret = xport_poll(fd, POLLOUT, deadline);
	if (ret)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl)) {
		ret = -errno;
		goto fail;
	}
	if (soerr) {
		ret = -soerr;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

/* The connected socket becomes a transport: TCP as is, TLS, or RDMA's life line. */
static int establish(int fd, SSL_CTX *ctx, struct xport_rdma_listener *rdma, bool rdma_client,
		     bool server, const char *peer, const char *peer_name, int64_t deadline,
		     struct xport **out, char *err)
{
	char eb[96];
	int ret;

	if (rdma)
		return xport_rdma_server(rdma, fd, peer, deadline, out, err);
	if (rdma_client)
		return xport_rdma_client(fd, peer, deadline, out, err);
	if (ctx)
		return xport_tls_new(ctx, server, fd, peer, peer_name,
				     deadline, out, err);
	ret = xport_set_nonblock(fd, false);
	if (ret) {
		xport_errf(err, "tcp %s: %s", peer,
			   xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	return xport_tcp_new(fd, peer, out, err);
}

/* A caller's time for a handshake, never more than the limit's. */
static int64_t handshake_deadline(int timeout_ms)
{
	return xport_deadline(timeout_ms > 0 && timeout_ms < xport_limits.handshake_ms ?
			      timeout_ms : xport_limits.handshake_ms);
}

int xport_connect(const struct xport_addr *addr, const struct xport_tls *tls,
		  int timeout_ms, struct xport **out, char *err)
{
	const char *kname = kind_name(addr, tls);
	struct addrinfo *res = NULL;
	SSL_CTX *ctx = NULL;
	char peer[XPORT_PEER_LEN];
	char eb[96];
	int64_t deadline = xport_deadline(timeout_ms);
	int fd = -1, ret;

	*out = NULL;
	xport_fmt_peer(peer, sizeof(peer), addr->host, addr->port);
	if (!addr->port) {
		xport_errf(err, "%s %s: cannot connect to port 0", kname, peer);
		return -EINVAL;
	}
	ret = rdma_no_tls(addr, tls, peer, err);
	if (ret)
		return ret;
	if (tls) {
		ret = xport_tls_ctx_new(tls, false, &ctx, err);
		if (ret)
			return ret;
	}
	ret = resolve(addr, false, &res, kname, peer, err);
	if (ret)
		goto out;
	ret = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, deadline);
		if (fd >= 0)
			break;
		ret = fd;
		if (ret == -ETIMEDOUT)
			break;
	}
	if (fd < 0) {
		if (ret == -ETIMEDOUT)
			xport_errf(err, "%s %s: connect: no answer within %d ms",
				   kname, peer, timeout_ms);
		else
			xport_errf(err, "%s %s: connect: %s", kname, peer,
				   xport_strerror(-ret, eb, sizeof(eb)));
		goto out;
	}
	if ((tls || addr->kind == XPORT_RDMA) && timeout_ms < 0)
		deadline = handshake_deadline(timeout_ms);
	ret = establish(fd, ctx, NULL, addr->kind == XPORT_RDMA, false, peer,
			tls ? tls->peer_name : NULL, deadline, out, err);
	if (ret)
		close(fd);
out:
	if (res)
		freeaddrinfo(res);
	xport_tls_ctx_free(ctx);
	return ret;
}

int xport_listen(const struct xport_addr *addr, const struct xport_tls *tls,
		 struct xport_listener **out, char *err)
{
	const char *kname = kind_name(addr, tls);
	struct xport_listener *l;
	struct addrinfo *res = NULL;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} sa;
	socklen_t sl = sizeof(sa);
	char eb[96];
	int ret, one = 1;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		xport_errf(err, "%s: out of memory", kname);
		return -ENOMEM;
	}
	l->fd = -1;
	xport_fmt_peer(l->name, sizeof(l->name), addr->host, addr->port);
	ret = rdma_no_tls(addr, tls, l->name, err);
	if (ret)
		goto fail;
	if (tls) {
		ret = xport_tls_ctx_new(tls, true, &l->ctx, err);
		if (ret)
			goto fail;
		snprintf(l->peer_name, sizeof(l->peer_name), "%s",
			 tls->peer_name);
	}
	ret = resolve(addr, true, &res, kname, l->name, err);
	if (ret)
		goto fail;
	ret = -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		l->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			       ai->ai_protocol);
		if (l->fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Accepted sockets inherit the buffer sizes. */
		xport_sock_tune(l->fd);
		if (bind(l->fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(l->fd, xport_limits.listen_backlog) == 0)
			break;
		ret = -errno;
		close(l->fd);
		l->fd = -1;
	}
	if (l->fd < 0) {
		xport_errf(err, "%s %s: listen: %s", kname, l->name,
			   xport_strerror(-ret, eb, sizeof(eb)));
		goto fail;
	}
	if (getsockname(l->fd, &sa.sa, &sl) == 0)
		l->port = ntohs(sa.sa.sa_family == AF_INET6 ? sa.in6.sin6_port :
				sa.in.sin_port);
	else if (addr->kind == XPORT_RDMA) {
		/* The RDMA listener binds to the address the socket got. */
		ret = -errno;
		xport_errf(err, "%s %s: listen: %s", kname, l->name,
			   xport_strerror(-ret, eb, sizeof(eb)));
		goto fail;
	}
	if (addr->kind == XPORT_RDMA) {
		ret = xport_rdma_listen(&sa.sa, l->name, &l->rdma, err);
		if (ret)
			goto fail;
	}
	freeaddrinfo(res);
	*out = l;
	return 0;
fail:
	if (res)
		freeaddrinfo(res);
	xport_listener_close(l);
	return ret;
}

uint16_t xport_listener_port(const struct xport_listener *l)
{
	return l->port;
}

int xport_listener_fd(const struct xport_listener *l)
{
	return l->fd;
}

static void fmt_sockaddr(const struct sockaddr *sa, char *out, size_t len)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	socklen_t sl = sa->sa_family == AF_INET6 ?
		sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (getnameinfo(sa, sl, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(out, len, "?");
		return;
	}
	xport_fmt_peer(out, len, host, (unsigned)atoi(serv));
}

int xport_accept_fd(struct xport_listener *l, int timeout_ms, int *fdp, char *peer,
		    size_t peer_len, char *err)
{
	const char *kname = l->rdma ? "rdma" : l->ctx ? "tls" : "tcp";
	struct sockaddr_storage ss;
	socklen_t sl;
	char eb[96];
	int64_t deadline = xport_deadline(timeout_ms);
	int fd, ret;

	*fdp = -1;
	for (;;) {
		ret = xport_poll(l->fd, POLLIN, deadline);
		if (ret == -ETIMEDOUT) {
			xport_errf(err, "%s %s: no connection within %d ms",
				   kname, l->name, timeout_ms);
			return ret;
		}
		if (ret) {
			xport_errf(err, "%s %s: accept: %s", kname, l->name,
				   xport_strerror(-ret, eb, sizeof(eb)));
			return ret;
		}
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			break;
		/* The client gave up between poll and accept: wait again. */
		if (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR)
			continue;
		ret = -errno;
		xport_errf(err, "%s %s: accept: %s", kname, l->name,
			   xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	fmt_sockaddr((struct sockaddr *)&ss, peer, peer_len);
	/* Re-applied: not every option is inherited on every kernel. */
	xport_sock_tune(fd);
	*fdp = fd;
	return 0;
}

int xport_accept_establish(struct xport_listener *l, int fd, const char *peer, int timeout_ms,
			   struct xport **out, char *err)
{
	/* One client's handshake never takes all of a long wait for clients. */
	return establish(fd, l->ctx, l->rdma, false, true, peer,
			 l->peer_name[0] ? l->peer_name : NULL,
			 handshake_deadline(timeout_ms), out, err);
}

bool xport_listener_serial(const struct xport_listener *l)
{
	return l->rdma != NULL;
}

int xport_accept(struct xport_listener *l, int timeout_ms, struct xport **out,
		 char *err)
{
	char peer[XPORT_PEER_LEN];
	int fd, ret;

	*out = NULL;
	l->failed_peer[0] = 0;
	ret = xport_accept_fd(l, timeout_ms, &fd, peer, sizeof(peer), err);
	if (ret)
		return ret;
	ret = xport_accept_establish(l, fd, peer, timeout_ms, out, err);
	if (ret) {
		close(fd);
		snprintf(l->failed_peer, sizeof(l->failed_peer), "%s", peer);
	}
	return ret;
}

const char *xport_accept_failed_peer(const struct xport_listener *l)
{
	return l->failed_peer[0] ? l->failed_peer : NULL;
}

void xport_listener_close(struct xport_listener *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	xport_tls_ctx_free(l->ctx);
	xport_rdma_listener_close(l->rdma);
	free(l);
}

int xport_set_timeout(struct xport *x, int timeout_ms)
{
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};

	if (timeout_ms < 0) {
		xport_errf(x->err, "%s %s: timeout must be >= 0 ms, not %d",
			   x->ops->name, x->peer, timeout_ms);
		return -EINVAL;
	}
	x->timeout_ms = timeout_ms;
	if (setsockopt(x->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(x->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return xport_fail(x, -errno, "set timeout");
	return 0;
}
