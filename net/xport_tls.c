/*
 * TLS 1.3 with mutual certificate authentication (OpenSSL 3).
 *
 * Both ends load the cluster CA, their certificate and key; the server
 * demands a client certificate, both verify the other's chain against the
 * CA, and an optional peer name is checked against the peer certificate's
 * SAN (CN when it has none) on either side. The handshake runs on a
 * non-blocking socket bounded by the caller's deadline; afterwards the
 * socket is blocking and SO_RCVTIMEO/SO_SNDTIMEO (xport_set_timeout) bound
 * each call.
 *
 * In TLS 1.3 the client finishes its handshake before the server has looked
 * at the client certificate, so a refusal would only surface at the client's
 * first read. To make connect() itself fail, the server sends one READY byte
 * once it has accepted the client, and connect() waits for it.
 *
 * Sockets are driven through a small BIO of our own so that every send()
 * carries MSG_NOSIGNAL: a closed peer is an error, never a SIGPIPE. No kTLS
 * here (the host's OpenSSL cannot), so send_file() reads the file in chunks
 * and encrypts them.
 */
#include "net/xport_impl.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TLS_READY 0x52 /* 'R': the server has accepted this client */
#define XPORT_TLS_CIPHERS \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* A fixed type, not BIO_get_new_index(): that hands out only ~128 ever. */
#define FERRY_BIO_TYPE ((BIO_TYPE_START + 70) | BIO_TYPE_SOURCE_SINK)

struct tls_conn {
	struct xport x;
	SSL *ssl;
	BIO_METHOD *meth;
	unsigned char *buf;   /* xport_limits.tls_chunk_bytes */
	size_t buf_len;
	int sys_errno;        /* errno of the last failed send/recv */
	bool eof;             /* recv() returned 0 */
	int broken;           /* 0, or the error every later call returns */
	const char *peer_name;
	char refused_serial[80]; /* the peer's, when the revocation list has it */
	int list_errno;       /* the revocation list could not be read */
};

static int cert_identity(X509 *cert, char *cn, size_t cn_len, char *serial,
			 size_t serial_len);

/* ---- revocation ---- */

int xport_revoked_check(const char *path, const char *serial)
{
	char line[256];
	FILE *f = fopen(path, "re");
	bool whole = true;
	int ret = 0;

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (ret == 0 && fgets(line, sizeof(line), f)) {
		/* The rest of an overlong line is not a line of its own. */
		bool was_whole = whole;
		char *p = line;

		whole = strchr(line, '\n') != NULL;
		if (!was_whole)
			continue;
		p += strspn(p, " \t");
		p[strcspn(p, " \t\r\n#")] = 0;
		while (p[0] == '0' && p[1])
			p++;
		if (*p && !strcasecmp(p, serial))
			ret = 1;
	}
	if (ret == 0 && ferror(f))
		ret = -EIO;
	fclose(f);
	return ret;
}

/*
 * The leaf certificate of a peer whose chain verified: refused when the
 * revocation list of this context (its app data) names its serial, or
 * when the list cannot be read.
 */
static int verify_revoked(int ok, X509_STORE_CTX *sc)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	const char *path = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	X509 *cert = X509_STORE_CTX_get_current_cert(sc);
	char serial[sizeof(c->refused_serial)];
	int r;

	if (!ok || !c || !path || !cert || X509_STORE_CTX_get_error_depth(sc) != 0)
		return ok;
	r = cert_identity(cert, NULL, 0, serial, sizeof(serial));
	if (!r)
		r = xport_revoked_check(path, serial);
	if (r == 0)
		return 1;
	if (r > 0) {
		snprintf(c->refused_serial, sizeof(c->refused_serial), "%s", serial);
		X509_STORE_CTX_set_error(sc, X509_V_ERR_CERT_REVOKED);
	} else {
		c->list_errno = -r;
		X509_STORE_CTX_set_error(sc, X509_V_ERR_APPLICATION_VERIFICATION);
	}
	return 0;
}

/* ---- the socket BIO ---- */

static int bio_write(BIO *b, const char *buf, int len)
{
	struct tls_conn *c = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	do
		r = send(c->x.fd, buf, (size_t)len, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		c->sys_errno = errno;
		if (errno == EAGAIN)
			BIO_set_retry_write(b);
		return -1;
	}
	return (int)r;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct tls_conn *c = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	do
		r = recv(c->x.fd, buf, (size_t)len, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		c->sys_errno = errno;
		if (errno == EAGAIN)
			BIO_set_retry_read(b);
		return -1;
	}
	if (r == 0)
		c->eof = true;
	return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return c && c->eof;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *bio_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(FERRY_BIO_TYPE, "ferry socket");

	if (!m)
		return NULL;
	if (!BIO_meth_set_write(m, bio_write) ||
	    !BIO_meth_set_read(m, bio_read) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) ||
	    !BIO_meth_set_create(m, bio_create)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/* ---- errors in words ---- */

/* The OpenSSL error that explains a failure: the first one from libssl. */
static unsigned long ossl_error(void)
{
	unsigned long e, first = 0, ssl = 0;

	while ((e = ERR_get_error())) {
		if (!first)
			first = e;
		if (!ssl && ERR_GET_LIB(e) == ERR_LIB_SSL)
			ssl = e;
	}
	return ssl ? ssl : first;
}

static const char *ossl_reason(unsigned long e, char *buf, size_t len)
{
	const char *s = e ? ERR_reason_error_string(e) : NULL;

	if (s)
		return s;
	if (!e)
		return "unknown error";
	ERR_error_string_n(e, buf, len);
	return buf;
}

static bool verify_error_is_ca(long v)
{
	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return true;
	default:
		return false;
	}
}

/*
 * Say why a handshake (or the first read after it) failed. Returns the
 * errno that goes with it: -EACCES for trust, -EPIPE for a closed peer,
 * -EPROTO for the rest.
 */
static int tls_describe(struct tls_conn *c, int ssl_err, char *err)
{
	const char *p = c->x.peer;
	unsigned long e = ossl_error();
	int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	long v = SSL_get_verify_result(c->ssl);
	char rb[160], eb[96];
	const char *rs = ossl_reason(e, rb, sizeof(rb));

	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK) {
		const char *vs = X509_verify_cert_error_string(v);
		const char *list = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));

		if (v == X509_V_ERR_CERT_REVOKED && c->refused_serial[0])
			xport_errf(err, "tls %s: peer certificate (serial %s) is revoked: "
				   "%s lists it", p, c->refused_serial, list ? list : "?");
		else if (v == X509_V_ERR_APPLICATION_VERIFICATION && c->list_errno)
			xport_errf(err, "tls %s: cannot read the revocation list %s (%s): "
				   "no peer is accepted", p, list ? list : "?",
				   xport_strerror(c->list_errno, eb, sizeof(eb)));
		else if (verify_error_is_ca(v))
			xport_errf(err, "tls %s: peer certificate is not signed "
				   "by our CA (%s: %s)", p, rs, vs);
		else if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
			 v == X509_V_ERR_IP_ADDRESS_MISMATCH)
			xport_errf(err, "tls %s: peer certificate is not for "
				   "'%s' (%s: %s)", p,
				   c->peer_name ? c->peer_name : "?", rs, vs);
		else if (v == X509_V_ERR_CERT_HAS_EXPIRED)
			xport_errf(err, "tls %s: peer certificate has expired "
				   "(%s: %s)", p, rs, vs);
		else if (v == X509_V_ERR_CERT_NOT_YET_VALID)
			xport_errf(err, "tls %s: peer certificate is not valid "
				   "yet (%s: %s)", p, rs, vs);
		else
			xport_errf(err, "tls %s: peer certificate refused (%s: "
				   "%s)", p, rs, vs);
		return -EACCES;
	}
	switch (reason) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		xport_errf(err, "tls %s: peer presented no certificate (%s)",
			   p, rs);
		return -EACCES;
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		xport_errf(err, "tls %s: peer requires a certificate and we "
			   "presented none (%s)", p, rs);
		return -EACCES;
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		xport_errf(err, "tls %s: peer refused our certificate: it is "
			   "not signed by the peer's CA (%s)", p, rs);
		return -EACCES;
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
		xport_errf(err, "tls %s: peer refused the handshake; its log says why "
			   "(%s)", p, rs);
		return -EACCES;
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
		xport_errf(err, "tls %s: peer refused our certificate: it is revoked "
			   "(%s)", p, rs);
		return -EACCES;
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
		xport_errf(err, "tls %s: peer refused our certificate (wrong "
			   "name or purpose?) (%s)", p, rs);
		return -EACCES;
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		xport_errf(err, "tls %s: peer says our certificate has expired "
			   "(%s)", p, rs);
		return -EACCES;
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
		xport_errf(err, "tls %s: peer does not speak TLS 1.3 (%s)", p,
			   rs);
		return -EPROTO;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
		xport_errf(err, "tls %s: peer does not speak TLS (plain TCP?) "
			   "(%s)", p, rs);
		return -EPROTO;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		xport_errf(err, "tls %s: peer closed the connection during the "
			   "handshake", p);
		return -EPIPE;
	default:
		break;
	}
	if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN) {
		if (!c->sys_errno || c->eof || ssl_err == SSL_ERROR_ZERO_RETURN) {
			xport_errf(err, "tls %s: peer closed the connection "
				   "during the handshake", p);
			return -EPIPE;
		}
		if (c->sys_errno == ECONNRESET) {
			xport_errf(err, "tls %s: peer closed the connection "
				   "during the handshake (connection reset)", p);
			return -ECONNRESET;
		}
		xport_errf(err, "tls %s: handshake: %s", p,
			   xport_strerror(c->sys_errno, eb, sizeof(eb)));
		return -c->sys_errno;
	}
	xport_errf(err, "tls %s: handshake failed (%s)", p, rs);
	return -EPROTO;
}

/* A failed read or write on an established connection. */
static int tls_io_fail(struct tls_conn *c, int r, const char *what,
		       bool writing)
{
	int se = SSL_get_error(c->ssl, r);
	int ret;
	char eb[96];

	switch (se) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		/* A blocking socket only says "again" when SO_*TIMEO ran out. */
		ret = xport_fail(&c->x, -ETIMEDOUT, what);
		/* A read may be retried; a half-done write may not. */
		if (!writing)
			return ret;
		break;
	case SSL_ERROR_ZERO_RETURN:
		ret = xport_fail(&c->x, -EPIPE, NULL);
		break;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (c->eof || !c->sys_errno)
			ret = xport_fail(&c->x, -EPIPE, NULL);
		else
			ret = xport_fail(&c->x, -c->sys_errno, what);
		break;
	default: {
		unsigned long e = ossl_error();

		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			xport_errf(c->x.err, "tls %s: connection closed by peer "
				   "(without TLS close_notify)", c->x.peer);
			ret = -EPIPE;
		} else {
			xport_errf(c->x.err, "tls %s: %s: %s", c->x.peer, what,
				   ossl_reason(e, eb, sizeof(eb)));
			ret = -EPROTO;
		}
		break;
	}
	}
	/* OpenSSL forbids more I/O after this: later calls fail the same. */
	c->broken = ret;
	return ret;
}

/* ---- handshake ---- */

enum hs_step { HS_CONNECT, HS_ACCEPT, HS_SEND_READY, HS_WAIT_READY };

static int hs_run(struct tls_conn *c, enum hs_step step, int64_t deadline,
		  char *err)
{
	unsigned char ready = TLS_READY;
	size_t n = 0;
	int r, se, ret;

	for (;;) {
		ERR_clear_error();
		c->sys_errno = 0;
		switch (step) {
		case HS_CONNECT:
			r = SSL_connect(c->ssl);
			break;
		case HS_ACCEPT:
			r = SSL_accept(c->ssl);
			break;
		case HS_SEND_READY:
			r = SSL_write_ex(c->ssl, &ready, 1, &n);
			break;
		default:
			r = SSL_read_ex(c->ssl, &ready, 1, &n);
			break;
		}
		if (r == 1)
			break;
		se = SSL_get_error(c->ssl, r);
		if (se != SSL_ERROR_WANT_READ && se != SSL_ERROR_WANT_WRITE)
			return tls_describe(c, se, err);
		ret = xport_poll(c->x.fd, se == SSL_ERROR_WANT_READ ? POLLIN :
				 POLLOUT, deadline);
		if (ret == -ETIMEDOUT) {
			xport_errf(err, "tls %s: the handshake did not finish "
				   "in time", c->x.peer);
			return ret;
		}
		if (ret) {
			char eb[96];

			xport_errf(err, "tls %s: handshake: %s", c->x.peer,
				   xport_strerror(-ret, eb, sizeof(eb)));
			return ret;
		}
	}
	if (step == HS_WAIT_READY && ready != TLS_READY) {
		xport_errf(err, "tls %s: the peer is not a Ferry transport "
			   "(no READY after the handshake)", c->x.peer);
		return -EPROTO;
	}
	return 0;
}

/* ---- data ---- */

static int tls_write_all(struct tls_conn *c, const void *p, size_t len)
{
	if (c->broken)
		return c->broken;
	while (len > 0) {
		size_t n = 0;
		int r;

		ERR_clear_error();
		c->sys_errno = 0;
		r = SSL_write_ex(c->ssl, p, len, &n);
		if (r != 1)
			return tls_io_fail(c, r, "send", true);
		c->x.bytes_sent += n;
		p = (const char *)p + n;
		len -= n;
	}
	return 0;
}

/* Small iovecs are gathered into one record; large ones go as they are. */
static int tls_sendv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	struct tls_conn *c = x->priv;
	size_t fill = 0;
	int ret;

	for (int i = 0; i < iovcnt; i++) {
		const char *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		if (len >= c->buf_len / 2) {
			if (fill) {
				ret = tls_write_all(c, c->buf, fill);
				if (ret)
					return ret;
				fill = 0;
			}
			ret = tls_write_all(c, p, len);
			if (ret)
				return ret;
			continue;
		}
		if (fill + len > c->buf_len) {
			ret = tls_write_all(c, c->buf, fill);
			if (ret)
				return ret;
			fill = 0;
		}
		memcpy(c->buf + fill, p, len);
		fill += len;
	}
	return fill ? tls_write_all(c, c->buf, fill) : 0;
}

static int tls_send_file(struct xport *x, int fd, off_t off, size_t len)
{
	struct tls_conn *c = x->priv;
	int ret;

	while (len > 0) {
		size_t n = len < c->buf_len ? len : c->buf_len;
		ssize_t r = pread(fd, c->buf, n, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return xport_fail(x, -errno, "send_file: read");
		}
		if (r == 0) {
			xport_errf(x->err, "tls %s: send_file: the file ends at "
				   "offset %lld, %zu bytes short", x->peer,
				   (long long)off, len);
			return -EIO;
		}
		ret = tls_write_all(c, c->buf, (size_t)r);
		if (ret)
			return ret;
		off += r;
		len -= (size_t)r;
	}
	return 0;
}

static int tls_recv(struct xport *x, void *buf, size_t len)
{
	struct tls_conn *c = x->priv;
	char *p = buf;

	if (c->broken)
		return c->broken;
	while (len > 0) {
		size_t n = 0;
		int r;

		ERR_clear_error();
		c->sys_errno = 0;
		r = SSL_read_ex(c->ssl, p, len, &n);
		if (r != 1)
			return tls_io_fail(c, r, "receive", false);
		x->bytes_received += n;
		p += n;
		len -= n;
	}
	return 0;
}

static int tls_flush(struct xport *x)
{
	/* sendv and send_file hand everything to the socket before returning. */
	return 0;
}

static void conn_free(struct tls_conn *c)
{
	SSL_free(c->ssl);      /* and the BIO with it */
	BIO_meth_free(c->meth);
	free(c->buf);
	free(c);
}

static void tls_close(struct xport *x)
{
	struct tls_conn *c = x->priv;

	if (!c->broken) {
		/* close_notify if it fits in the socket buffer; never wait. */
		xport_set_nonblock(x->fd, true);
		ERR_clear_error();
		SSL_shutdown(c->ssl);
	}
	ERR_clear_error();
	close(x->fd);
	conn_free(c);
}

static const struct xport_ops tls_ops = {
	.name = "tls",
	.sendv = tls_sendv,
	.send_file = tls_send_file,
	.recv = tls_recv,
	.flush = tls_flush,
	.close = tls_close,
};

int xport_tls_new(SSL_CTX *ctx, bool server, int fd, const char *peer,
		  const char *peer_name, int64_t deadline, struct xport **out,
		  char *err)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	BIO *bio;
	int ret = -ENOMEM;

	*out = NULL;
	if (!c) {
		xport_errf(err, "tls %s: out of memory", peer);
		return -ENOMEM;
	}
	c->x.ops = &tls_ops;
	c->x.kind = XPORT_TLS;
	c->x.fd = fd;
	c->x.priv = c;
	snprintf(c->x.peer, sizeof(c->x.peer), "%s", peer);
	c->peer_name = peer_name && *peer_name ? peer_name : NULL;
	c->buf_len = xport_limits.tls_chunk_bytes;
	c->buf = malloc(c->buf_len);
	c->meth = bio_method_new();
	c->ssl = SSL_new(ctx);
	if (!c->buf || !c->meth || !c->ssl) {
		xport_errf(err, "tls %s: out of memory", peer);
		goto fail;
	}
	bio = BIO_new(c->meth);
	if (!bio) {
		xport_errf(err, "tls %s: out of memory", peer);
		goto fail;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);  /* for verify_revoked */
	/* Checked on both sides: a hostname, or an IP address. */
	if (c->peer_name && SSL_set1_host(c->ssl, c->peer_name) != 1) {
		xport_errf(err, "tls %s: cannot check the peer name '%s'", peer,
			   c->peer_name);
		ret = -EINVAL;
		goto fail;
	}
	ret = xport_set_nonblock(fd, true);
	if (!ret)
		ret = hs_run(c, server ? HS_ACCEPT : HS_CONNECT, deadline, err);
	if (!ret)
		ret = hs_run(c, server ? HS_SEND_READY : HS_WAIT_READY,
			     deadline, err);
	if (!ret)
		ret = xport_set_nonblock(fd, false);
	if (ret)
		goto fail;
	/* peer_name points into the caller's memory: done with it. */
	c->peer_name = NULL;
	*out = &c->x;
	return 0;
fail:
	ERR_clear_error();
	conn_free(c);
	return ret;
}

/* ---- contexts ---- */

/* "tls: WHAT[ PATH]: the OpenSSL reason" */
static int ctx_fail(char *err, int ret, const char *what, const char *path)
{
	unsigned long e = ossl_error();
	char rb[160];

	xport_errf(err, "tls: %s%s%s: %s", what, path ? " " : "",
		   path ? path : "", ossl_reason(e, rb, sizeof(rb)));
	return ret;
}

static bool is_key_mismatch(unsigned long e)
{
	return ERR_GET_LIB(e) == ERR_LIB_X509 &&
	       (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
}

static int load_identity(SSL_CTX *ctx, const struct xport_tls *tls, char *err)
{
	unsigned long e;

	if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1)
		return ctx_fail(err, -EINVAL, "cannot load certificate",
				tls->cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1) {
		e = ERR_peek_last_error();
		if (is_key_mismatch(e)) {
			ERR_clear_error();
			xport_errf(err, "tls: %s does not match %s", tls->key,
				   tls->cert);
			return -EINVAL;
		}
		return ctx_fail(err, -EINVAL, "cannot load key", tls->key);
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		xport_errf(err, "tls: %s does not match %s", tls->key,
			   tls->cert);
		return -EINVAL;
	}
	return 0;
}

int xport_tls_ctx_new(const struct xport_tls *tls, bool server, SSL_CTX **out,
		      char *err)
{
	SSL_CTX *ctx;
	int ret;

	*out = NULL;
	if (!tls->ca[0]) {
		xport_errf(err, "tls: no CA certificate (ca.pem) given");
		return -EINVAL;
	}
	if (server ? !tls->cert[0] || !tls->key[0] :
	    !tls->cert[0] != !tls->key[0]) {
		xport_errf(err, "tls: %s needs both a certificate (cert.pem) "
			   "and a key (key.pem)", server ? "a server" :
			   "a client with a certificate");
		return -EINVAL;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		return ctx_fail(err, -ENOMEM, "cannot create a context", NULL);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
		ret = ctx_fail(err, -EPROTO, "TLS 1.3 is not available", NULL);
		goto fail;
	}
	/*
	 * AES-128-GCM first: as strong as needed and faster than AES-256
	 * with AES-NI. Both ends run this code, so the client's order wins.
	 */
	if (SSL_CTX_set_ciphersuites(ctx, XPORT_TLS_CIPHERS) != 1) {
		ret = ctx_fail(err, -EPROTO, "no usable TLS 1.3 cipher suite",
			       NULL);
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);
	if (SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1) {
		ret = ctx_fail(err, -EINVAL, "cannot load CA certificate",
			       tls->ca);
		goto fail;
	}
	if (tls->cert[0]) {
		ret = load_identity(ctx, tls, err);
		if (ret)
			goto fail;
	}
	if (tls->revoked[0]) {
		char *list = strdup(tls->revoked);

		if (!list || !SSL_CTX_set_app_data(ctx, list)) {
			free(list);
			ret = ctx_fail(err, -ENOMEM, "out of memory", NULL);
			goto fail;
		}
	}
	SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER |
			   SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
			   tls->revoked[0] ? verify_revoked : NULL);
	*out = ctx;
	return 0;
fail:
	ERR_clear_error();
	xport_tls_ctx_free(ctx);
	return ret;
}

void xport_tls_ctx_free(SSL_CTX *ctx)
{
	if (ctx)
		free(SSL_CTX_get_app_data(ctx));
	SSL_CTX_free(ctx);
}

/* ---- identities ---- */

/*
 * CN and serial of a certificate. The serial is hex without leading
 * zeros, lower case: the form revocation lists compare as strings.
 */
static int cert_identity(X509 *cert, char *cn, size_t cn_len, char *serial,
			 size_t serial_len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	const char *h = hex;
	int ret = -ENOMEM;

	if (!hex)
		goto out;
	while (h[0] == '0' && h[1])
		h++;
	ret = -ENOSPC;
	if (strlen(h) >= serial_len)
		goto out;
	for (size_t i = 0; i <= strlen(h); i++)
		serial[i] = (char)tolower((unsigned char)h[i]);
	if (cn && cn_len) {
		cn[0] = 0;
		/* No CN is "": the caller decides whether that is acceptable. */
		if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
					      NID_commonName, cn,
					      (int)cn_len) < 0)
			cn[0] = 0;
	}
	ret = 0;
out:
	OPENSSL_free(hex);
	BN_free(bn);
	ERR_clear_error();
	return ret;
}

int xport_tls_peer_identity(struct xport *x, char *cn, size_t cn_len,
			    char *serial, size_t serial_len)
{
	struct tls_conn *c = x->priv;
	X509 *cert;

	if (x->ops != &tls_ops)
		return -ENOTSUP;
	cert = SSL_get0_peer_certificate(c->ssl);
	if (!cert)
		return -ENOENT;
	return cert_identity(cert, cn, cn_len, serial, serial_len);
}

int xport_tls_cert_identity(const char *pem_path, char *cn, size_t cn_len,
			    char *serial, size_t serial_len, char *err)
{
	FILE *f = fopen(pem_path, "r");
	X509 *cert = NULL;
	char eb[96];
	int ret;

	if (!f) {
		ret = -errno;
		xport_errf(err, "tls: %s: %s", pem_path,
			   xport_strerror(-ret, eb, sizeof(eb)));
		return ret;
	}
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!cert)
		return ctx_fail(err, -EINVAL, "cannot read certificate",
				pem_path);
	ret = cert_identity(cert, cn, cn_len, serial, serial_len);
	if (ret)
		xport_errf(err, "tls: %s: %s", pem_path,
			   xport_strerror(-ret, eb, sizeof(eb)));
	X509_free(cert);
	return ret;
}
