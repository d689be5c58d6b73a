/*
 * Inside the transports: what xport.c (addresses, sockets, dispatch) shares
 * with the implementations (xport_tcp.c, xport_tls.c). Not for users of
 * net/xport.h.
 */
#ifndef FERRY_XPORT_IMPL_H
#define FERRY_XPORT_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/xport.h"

/* Defaults and limits of the transports, in one place. */
struct xport_limits {
	int sockbuf_bytes;        /* SO_SNDBUF/SO_RCVBUF we ask for (best effort) */
	int listen_backlog;
	int handshake_ms;         /* TLS handshake bound when the caller gave none */
	size_t tls_chunk_bytes;   /* send_file over TLS: pread/SSL_write unit */
	size_t sendfile_max_bytes; /* one sendfile() call at most */
};

extern const struct xport_limits xport_limits;

/* iovecs per sendmsg() (an array on the stack, hence a constant) */
#define XPORT_IOV_BATCH 256

/* ---- errors: one line, "KIND PEER: what" ---- */

/* snprintf into an XPORT_ERR_LEN buffer; NULL err is allowed. */
void xport_errf(char *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* strerror(), first letter in lower case, thread-safe. */
const char *xport_strerror(int errnum, char *buf, size_t len);
/* Set x->err to "NAME PEER: what: strerror(-rc)" (what may be NULL); rc. */
int xport_fail(struct xport *x, int rc, const char *what);

/* ---- deadlines (CLOCK_MONOTONIC ns; XPORT_NO_DEADLINE: none) ---- */

#define XPORT_NO_DEADLINE INT64_MAX

int64_t xport_deadline(int timeout_ms);
/* Milliseconds left for poll(): -1 for no deadline, 0 when passed. */
int xport_remaining_ms(int64_t deadline);
/* Wait for events on fd: 0, -ETIMEDOUT, or -errno. */
int xport_poll(int fd, short events, int64_t deadline);

/* ---- sockets ---- */

int xport_set_nonblock(int fd, bool on);
/* TCP_NODELAY and large buffers, best effort. */
void xport_sock_tune(int fd);
/* "host:port" or "[v6]:port" */
void xport_fmt_peer(char *out, size_t len, const char *host, unsigned port);

/*
 * SIGPIPE for calls that cannot take MSG_NOSIGNAL (sendfile): block it in
 * this thread around the call and swallow one it raised.
 */
struct xport_sigpipe {
	sigset_t old;
	bool was_pending;
};

void xport_sigpipe_block(struct xport_sigpipe *g);
void xport_sigpipe_restore(struct xport_sigpipe *g);

/* ---- implementations ---- */

/* Wrap a connected, blocking socket. Takes fd only on success. */
int xport_tcp_new(int fd, const char *peer, struct xport **out, char *err);

struct ssl_ctx_st;

/* A TLS 1.3 context for one side, with the CA, our certificate and key. */
int xport_tls_ctx_new(const struct xport_tls *tls, bool server,
		      struct ssl_ctx_st **out, char *err);
void xport_tls_ctx_free(struct ssl_ctx_st *ctx);
/*
 * Handshake on a connected socket by the deadline, peer verification
 * included. Takes fd only on success.
 */
int xport_tls_new(struct ssl_ctx_st *ctx, bool server, int fd,
		  const char *peer, const char *peer_name, int64_t deadline,
		  struct xport **out, char *err);

/*
 * RDMA (xport_rdma.c): a queue pair beside a TCP connection that carries
 * the rendezvous and stays as the life line. The listener binds an RDMA
 * listener to the TCP listener's address (sa, any port).
 */
struct xport_rdma_listener;
struct sockaddr;

int xport_rdma_listen(const struct sockaddr *sa, const char *name,
		      struct xport_rdma_listener **out, char *err);
void xport_rdma_listener_close(struct xport_rdma_listener *l);
/* On a connected TCP socket (non-blocking); take fd only on success. */
int xport_rdma_client(int fd, const char *peer, int64_t deadline, struct xport **out,
		      char *err);
int xport_rdma_server(struct xport_rdma_listener *l, int fd, const char *peer,
		      int64_t deadline, struct xport **out, char *err);

#endif
