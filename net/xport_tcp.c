/*
 * Plain TCP: sendmsg() with MSG_NOSIGNAL for buffers, sendfile() for pages
 * straight from the guest-RAM memfd, recv()/recvmsg() with MSG_WAITALL. The
 * socket is blocking; xport_set_timeout() bounds every call with SO_RCVTIMEO
 * and SO_SNDTIMEO, and a timeout reads as -ETIMEDOUT.
 */
#include "net/xport_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

/* EAGAIN from a blocking socket means SO_RCVTIMEO/SO_SNDTIMEO expired. */
static int io_errno(int e)
{
	return e == EAGAIN ? -ETIMEDOUT : -e;
}

/* r bytes of v[*i..n) went: step *i and the partly done piece past them. */
static void iov_advance(struct iovec *v, int n, int *i, size_t r)
{
	while (r > 0 && *i < n) {
		size_t take = r < v[*i].iov_len ? r : v[*i].iov_len;

		v[*i].iov_base = (char *)v[*i].iov_base + take;
		v[*i].iov_len -= take;
		r -= take;
		if (!v[*i].iov_len)
			(*i)++;
	}
}

/*
 * All of iov, in batches of XPORT_IOV_BATCH pieces: sendmsg out, or (in)
 * recvmsg with MSG_WAITALL straight into the caller's buffers.
 */
static int tcp_iov(struct xport *x, const struct iovec *iov, int iovcnt, bool in)
{
	struct iovec v[XPORT_IOV_BATCH];

	while (iovcnt > 0) {
		int n = iovcnt < XPORT_IOV_BATCH ? iovcnt : XPORT_IOV_BATCH, i = 0;

		memcpy(v, iov, (size_t)n * sizeof(*v));
		iov += n;
		iovcnt -= n;
		while (i < n) {
			struct msghdr mh = { .msg_iov = v + i, .msg_iovlen = (size_t)(n - i) };
			ssize_t r;

			if (!v[i].iov_len) {
				i++;
				continue;
			}
			r = in ? recvmsg(x->fd, &mh, MSG_WAITALL) : sendmsg(x->fd, &mh, MSG_NOSIGNAL);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return xport_fail(x, io_errno(errno), in ? "receive" : "send");
			}
			if (in && r == 0)
				return xport_fail(x, -EPIPE, NULL);
			if (in)
				x->bytes_received += (uint64_t)r;
			else
				x->bytes_sent += (uint64_t)r;
			iov_advance(v, n, &i, (size_t)r);
		}
	}
	return 0;
}

static int tcp_sendv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	return tcp_iov(x, iov, iovcnt, false);
}

static int tcp_send_file(struct xport *x, int fd, off_t off, size_t len)
{
	struct xport_sigpipe g;
	int ret = 0, e = 0;

	/* sendfile() takes no MSG_NOSIGNAL. */
	xport_sigpipe_block(&g);
	while (len > 0) {
		size_t n = len < xport_limits.sendfile_max_bytes ?
			len : xport_limits.sendfile_max_bytes;
		ssize_t r = sendfile(x->fd, fd, &off, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			break;
		}
		if (r == 0) {
			ret = -EIO;
			break;
		}
		x->bytes_sent += (uint64_t)r;
		len -= (size_t)r;
	}
	xport_sigpipe_restore(&g);
	if (e)
		return xport_fail(x, io_errno(e), "sendfile");
	if (ret) {
		xport_errf(x->err, "%s %s: sendfile: the file ends at offset "
			   "%lld, %zu bytes short", x->ops->name, x->peer,
			   (long long)off, len);
		return ret;
	}
	return 0;
}

static int tcp_recv(struct xport *x, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = recv(x->fd, p, len, MSG_WAITALL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return xport_fail(x, io_errno(errno), "receive");
		}
		if (r == 0)
			return xport_fail(x, -EPIPE, NULL);
		x->bytes_received += (uint64_t)r;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static int tcp_recvv(struct xport *x, const struct iovec *iov, int iovcnt)
{
	return tcp_iov(x, iov, iovcnt, true);
}

static int tcp_flush(struct xport *x)
{
	/* TCP_NODELAY is on and nothing is held back in user space. */
	return 0;
}

static void tcp_close(struct xport *x)
{
	if (x->fd >= 0)
		close(x->fd);
	free(x);
}

static const struct xport_ops tcp_ops = {
	.name = "tcp",
	.sendv = tcp_sendv,
	.send_file = tcp_send_file,
	.recv = tcp_recv,
	.recvv = tcp_recvv,
	.flush = tcp_flush,
	.close = tcp_close,
};

/* The ops use nothing TCP-specific: a UNIX stream socket works with them. */
static const struct xport_ops unix_ops = {
	.name = "unix",
	.sendv = tcp_sendv,
	.send_file = tcp_send_file,
	.recv = tcp_recv,
	.recvv = tcp_recvv,
	.flush = tcp_flush,
	.close = tcp_close,
};

static int plain_new(const struct xport_ops *ops, int fd, const char *peer,
		     struct xport **out, char *err)
{
	struct xport *x = calloc(1, sizeof(*x));

	if (!x) {
		xport_errf(err, "%s %s: out of memory", ops->name, peer);
		return -ENOMEM;
	}
	x->ops = ops;
	x->kind = XPORT_TCP;
	x->fd = fd;
	snprintf(x->peer, sizeof(x->peer), "%s", peer);
	*out = x;
	return 0;
}

int xport_tcp_new(int fd, const char *peer, struct xport **out, char *err)
{
	return plain_new(&tcp_ops, fd, peer, out, err);
}

int xport_wrap_fd(int fd, const char *peer, struct xport **out, char *err)
{
	return plain_new(&unix_ops, fd, peer, out, err);
}
