/*
 * Transports: how migration bytes get from one vmon to another. One
 * interface, several implementations behind an ops table: plain TCP, TLS 1.3
 * with mutual certificate authentication (OpenSSL), and later RDMA. The
 * migration engine only ever sees struct xport.
 *
 * Pages live in the guest-RAM memfd. send_file() lets a transport move them
 * without a copy through user space where the kernel allows it (sendfile on
 * TCP); a transport that must encrypt reads them from the mapping instead.
 */
#ifndef FERRY_XPORT_H
#define FERRY_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define XPORT_ERR_LEN 256
#define XPORT_HOST_MAX 256
#define XPORT_PEER_LEN (XPORT_HOST_MAX + 8)   /* "host:port" */

enum xport_kind {
	XPORT_TCP = 1,
	XPORT_TLS,
	XPORT_RDMA, /* librdmacm + libibverbs, beside a TCP life line */
};

/*
 * "tcp:HOST:PORT" or "rdma:HOST:PORT" (HOST may be a name, an IPv4 address
 * or [IPv6]; host is stored without the brackets). Port 0 parses (listen on
 * any free port); connect refuses it. err (XPORT_ERR_LEN, may be NULL) gets
 * one line. kind 0 (an address made by hand) is TCP.
 *
 * rdma: the bytes go over an RDMA reliable connection to HOST; a TCP
 * connection to HOST:PORT carries the rendezvous and stays open beside it,
 * so x->fd is a TCP socket for poll() and shutdown() as with tcp:. HOST
 * must be an address of an RDMA device (RoCE: of its network interface).
 * TLS over rdma: is refused.
 */
struct xport_addr {
	char host[XPORT_HOST_MAX];
	uint16_t port;
	enum xport_kind kind;
};

/* Any RDMA device on this host: how many; names (may be NULL) lists them. */
int xport_rdma_devices(char *names, size_t len);

/*
 * Whether the first bytes waiting on a connected socket are an rdma:
 * client's rendezvous (1) or not (0: other bytes, or the peer closed),
 * looking without taking them and for at most timeout_ms; -ETIMEDOUT if
 * the peer sent nothing, or only a beginning of the rendezvous, by then;
 * -errno if the socket failed. A tcp: listener that an rdma: source
 * reached would otherwise wait for a handshake the source never sends,
 * while the source waits for a rendezvous reply, until both time out.
 */
int xport_rdma_knocking(int fd, int timeout_ms);

int xport_addr_parse(const char *uri, struct xport_addr *out, char *err);

/*
 * TLS material, by path. xport_tls_from_dir() fills it from a directory
 * holding ca.pem (the cluster CA), cert.pem (this node, signed by the CA)
 * and key.pem. Both ends verify the other's chain against the CA; a peer
 * certificate from another CA is refused with a message that says so.
 */
struct xport_tls {
	char ca[512];
	char cert[512];
	char key[512];
	char peer_name[XPORT_HOST_MAX]; /* optional: required CN/SAN of the peer */
	/*
	 * Optional: a revocation list, read at every handshake so that a
	 * running process sees additions. One certificate serial per line,
	 * hex (case and leading zeros do not matter); blank lines and lines
	 * starting with '#' are ignored. A missing file lists nothing; a file
	 * that cannot be read refuses every peer (fail closed).
	 */
	char revoked[512];
};
/*
 * peer_name, when set, is checked on either side: a client checks the
 * server's certificate, a listener every client's; a DNS name matches a
 * DNS SAN (the CN when there is none), an IP address an IP SAN. Without it
 * any certificate from the CA is accepted. A client may leave cert and key
 * empty (servers refuse it: tests only); a server needs both.
 * xport_tls_from_dir() also sets revoked to DIR/revoked, whether or not it
 * exists yet: the cluster agent writes it there (docs/cluster.md). A peer
 * whose serial is listed fails the handshake on either side, and the
 * message names the serial.
 */

int xport_tls_from_dir(const char *dir, struct xport_tls *out, char *err);

struct xport;

struct xport_ops {
	const char *name;
	/* Send all of iov or fail: 0 or -errno. */
	int (*sendv)(struct xport *x, const struct iovec *iov, int iovcnt);
	/* Send len bytes of file fd from off, ideally without copying. */
	int (*send_file)(struct xport *x, int fd, off_t off, size_t len);
	/* Receive exactly len bytes: 0, -EPIPE on EOF, -ETIMEDOUT, -errno. */
	int (*recv)(struct xport *x, void *buf, size_t len);
	/*
	 * The same, scattered over iov (NULL: xport_recvv calls recv per
	 * piece). Lets a receiver put pages where they belong in one call.
	 */
	int (*recvv)(struct xport *x, const struct iovec *iov, int iovcnt);
	/* Flush anything buffered. */
	int (*flush)(struct xport *x);
	void (*close)(struct xport *x);
};

struct xport {
	const struct xport_ops *ops;
	enum xport_kind kind;
	int fd;                 /* the socket, for poll() */
	void *priv;             /* implementation state (SSL *, ...) */
	char peer[XPORT_PEER_LEN]; /* "host:port" for messages */
	char err[XPORT_ERR_LEN];       /* the last error, one line */
	uint64_t bytes_sent;
	uint64_t bytes_received;
	int timeout_ms;         /* xport_set_timeout's, 0 = none */
};

/*
 * Usage rules:
 * - After connect/accept the socket is blocking with no timeout; set one
 *   with xport_set_timeout(). A timeout reads as -ETIMEDOUT.
 * - Any failed call, a timeout included, leaves the stream at an unknown
 *   position (part of the data may have gone or arrived): close the
 *   connection. To wait for a message without that risk, poll(x->fd).
 * - A connection belongs to one thread at a time. (TCP would tolerate one
 *   sender and one receiver thread; TLS does not.)
 * - poll(x->fd) is a valid "has the peer sent something" test between
 *   whole messages: TLS reads no further ahead than the record asked for.
 * - bytes_sent/bytes_received count payload bytes (no TLS overhead).
 * - No call raises SIGPIPE; a closed peer is -EPIPE or -ECONNRESET.
 */

struct xport_listener;

/*
 * Listen on addr (tls NULL: plain TCP). Accept one connection within
 * timeout_ms (-1 = forever); for TLS, the handshake and peer verification
 * happen inside accept and a failure names the cause. The handshake gets
 * its own timeout_ms (30 s when -1) from the moment the client arrives. A
 * failed accept leaves the listener usable for the next one.
 */
int xport_listen(const struct xport_addr *addr, const struct xport_tls *tls,
		 struct xport_listener **out, char *err);
/* The port actually bound (for port 0 in tests). */
uint16_t xport_listener_port(const struct xport_listener *l);
/*
 * The listening socket, for a caller that polls it together with its own
 * stop signal before calling xport_accept (which then finds a client).
 */
int xport_listener_fd(const struct xport_listener *l);
int xport_accept(struct xport_listener *l, int timeout_ms, struct xport **out,
		 char *err);
/*
 * xport_accept in two halves, for a server that handshakes with several
 * clients at once. xport_accept_fd takes the next client's socket (peer:
 * its address) within timeout_ms. xport_accept_establish makes the
 * transport on it (the TLS handshake, or the RDMA rendezvous) within
 * timeout_ms, at most 30 s; when that fails the socket is still the
 * caller's to close. Shut the socket down from another thread to end a
 * handshake early. Several threads
 * may establish at once on a TCP or TLS listener; an RDMA listener's
 * rendezvous takes one client at a time (xport_listener_serial).
 */
int xport_accept_fd(struct xport_listener *l, int timeout_ms, int *fd, char *peer,
		    size_t peer_len, char *err);
int xport_accept_establish(struct xport_listener *l, int fd, const char *peer, int timeout_ms,
			   struct xport **out, char *err);
bool xport_listener_serial(const struct xport_listener *l);
/*
 * After xport_accept failed: the peer whose handshake (TLS, or the RDMA
 * rendezvous) failed, or NULL if the listener itself failed or timed out.
 * A server tells one bad client from a dead listener by it.
 */
const char *xport_accept_failed_peer(const struct xport_listener *l);
void xport_listener_close(struct xport_listener *l);

/*
 * Connect within timeout_ms, TCP connect and TLS handshake together (-1:
 * the kernel's connect timeout, and 30 s for the handshake). With TLS it
 * returns only once the server has accepted our certificate, so a refusal
 * is reported here, in words, on both sides.
 */
int xport_connect(const struct xport_addr *addr, const struct xport_tls *tls,
		  int timeout_ms, struct xport **out, char *err);

/*
 * Wrap a connected stream socket that is not TCP (a UNIX socket) in the
 * plain transport; messages name it "unix". Takes fd only on success.
 */
int xport_wrap_fd(int fd, const char *peer, struct xport **out, char *err);

/*
 * Who the verified peer of a TLS connection is: its certificate's CN and
 * serial in lower-case hex without leading zeros (as
 * xport_tls_cert_identity writes it). -ENOTSUP for other transports.
 */
int xport_tls_peer_identity(struct xport *x, char *cn, size_t cn_len,
			    char *serial, size_t serial_len);
/*
 * Whether a revocation list (struct xport_tls.revoked) names serial: 1 yes,
 * 0 no (a missing file names nothing), -errno if it cannot be read.
 */
int xport_revoked_check(const char *path, const char *serial);
/* The same for the certificate in a PEM file (cn may be NULL). */
int xport_tls_cert_identity(const char *pem_path, char *cn, size_t cn_len,
			    char *serial, size_t serial_len, char *err);

/* Receive and send timeouts for an established connection (0 = none). */
int xport_set_timeout(struct xport *x, int timeout_ms);

static inline int xport_send(struct xport *x, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return x->ops->sendv(x, &iov, 1);
}

static inline int xport_recv(struct xport *x, void *buf, size_t len)
{
	return x->ops->recv(x, buf, len);
}

static inline int xport_recvv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	int ret = 0;

	if (x->ops->recvv)
		return x->ops->recvv(x, iov, iovcnt);
	for (int i = 0; i < iovcnt && !ret; i++)
		ret = x->ops->recv(x, iov[i].iov_base, iov[i].iov_len);
	return ret;
}

static inline void xport_close(struct xport *x)
{
	if (x)
		x->ops->close(x);
}

#endif
