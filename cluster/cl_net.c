/*
 * Frames over a transport and the client side of clusterctl <-> clusterd
 * (cl_net.h). The framing is vmon's (core/ctl_frame.c) over struct xport
 * instead of an fd, so that UNIX and TLS look the same above it.
 */
#include "cl_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void net_errf(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void net_errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int cl_frame_send(struct xport *x, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;
	uint32_t be;
	int ret;

	if (len > CL_FRAME_MAX)
		return -EMSGSIZE;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf);
	be = htonl((uint32_t)len);
	ret = x->ops->sendv(x, (struct iovec[]){
		{ .iov_base = &be, .iov_len = sizeof(be) },
		{ .iov_base = buf, .iov_len = len } }, 2);
	free(buf);
	return ret;
}

int cl_frame_recv(struct xport *x, uint8_t **buf, size_t *len)
{
	uint32_t be;
	size_t n;
	int ret;

	*buf = NULL;
	ret = xport_recv(x, &be, sizeof(be));
	if (ret)
		return ret;
	n = ntohl(be);
	if (n > CL_FRAME_MAX)
		return -EMSGSIZE;
	*buf = malloc(n ? n : 1);
	if (!*buf)
		return -ENOMEM;
	ret = xport_recv(x, *buf, n);
	if (ret) {
		free(*buf);
		*buf = NULL;
		/* EOF inside a frame is a truncated message, not a clean end. */
		return ret == -EPIPE ? -EPROTO : ret;
	}
	*len = n;
	return 0;
}

int cl_connect_unix(const char *path, struct xport **out, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char xerr[XPORT_ERR_LEN];
	int fd, ret;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		net_errf(err, err_len, "connect %s: path too long for a UNIX "
			 "socket", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		net_errf(err, err_len, "connect %s: socket: %s", path,
			 strerror(-ret));
		return ret;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		net_errf(err, err_len, "connect %s: %s%s", path, strerror(-ret),
			 ret == -ENOENT || ret == -ECONNREFUSED ?
			 " (is clusterd running?)" : ret == -EACCES ?
			 " (only root and clusterd's user may use it)" : "");
		goto fail;
	}
	ret = xport_wrap_fd(fd, path, out, xerr);
	if (ret) {
		net_errf(err, err_len, "connect %s: %s", path, xerr);
		goto fail;
	}
	return 0;
fail:
	close(fd);
	return ret;
}

int cl_connect_tls(const struct xport_addr *addr, const struct xport_tls *tls,
		   int timeout_ms, struct xport **out, char *err, size_t err_len)
{
	char xerr[XPORT_ERR_LEN];
	int ret = xport_connect(addr, tls, timeout_ms, out, xerr);

	if (ret)
		net_errf(err, err_len, "connect: %s", xerr);
	return ret;
}

int cl_call(struct xport *x, const Ferry__Cluster__Request *req, int timeout_ms,
	    Ferry__Cluster__Response **resp, char *err, size_t err_len)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	*resp = NULL;
	ret = xport_set_timeout(x, timeout_ms > 0 ? timeout_ms : 0);
	if (!ret)
		ret = cl_frame_send(x, &req->base);
	if (ret) {
		net_errf(err, err_len, "send to %s: %s", x->peer,
			 ret == -EMSGSIZE ? "request too large" : x->err);
		return ret;
	}
	ret = cl_frame_recv(x, &buf, &len);
	switch (ret) {
	case 0:
		break;
	case -ETIMEDOUT:
		net_errf(err, err_len, "%s: no answer within %d ms", x->peer,
			 timeout_ms);
		goto out;
	case -EPIPE:
	case -ECONNRESET:
		net_errf(err, err_len, "%s closed the connection without an "
			 "answer", x->peer);
		goto out;
	case -EMSGSIZE:
		net_errf(err, err_len, "%s: answer larger than %u bytes",
			 x->peer, CL_FRAME_MAX);
		goto out;
	case -EPROTO:
		net_errf(err, err_len, "%s: the answer was cut short", x->peer);
		goto out;
	default:
		net_errf(err, err_len, "receive from %s: %s", x->peer,
			 x->err[0] ? x->err : strerror(-ret));
		goto out;
	}
	*resp = ferry__cluster__response__unpack(NULL, len, buf);
	if (!*resp) {
		net_errf(err, err_len, "%s: the answer is not a valid response",
			 x->peer);
		ret = -EBADMSG;
	}
out:
	free(buf);
	return ret;
}
