/*
 * Frames over a transport and the client side of clusterctl <-> clusterd
 * (cl_net.h). The framing is vmon's (core/ctl_frame.c) over struct xport
 * instead of an fd, so that UNIX and TLS look the same above it.
 */
#include "cl_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_err.h"

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
		cl_errf(err, err_len, "connect %s: path too long for a UNIX "
			 "socket", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		cl_errf(err, err_len, "connect %s: socket: %s", path,
			 strerror(-ret));
		return ret;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		cl_errf(err, err_len, "connect %s: %s%s", path, strerror(-ret),
			 ret == -ENOENT || ret == -ECONNREFUSED ?
			 " (is clusterd running?)" : ret == -EACCES ?
			 " (only root and clusterd's user may use it)" : "");
		goto fail;
	}
	ret = xport_wrap_fd(fd, path, out, xerr);
	if (ret) {
		cl_errf(err, err_len, "connect %s: %s", path, xerr);
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
		cl_errf(err, err_len, "connect: %s", xerr);
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
		cl_errf(err, err_len, "send to %s: %s", x->peer,
			 ret == -EMSGSIZE ? "request too large" : x->err);
		return ret;
	}
	ret = cl_frame_recv(x, &buf, &len);
	switch (ret) {
	case 0:
		break;
	case -ETIMEDOUT:
		cl_errf(err, err_len, "%s: no answer within %d ms", x->peer,
			 timeout_ms);
		goto out;
	case -EPIPE:
	case -ECONNRESET:
		cl_errf(err, err_len, "%s closed the connection without an "
			 "answer", x->peer);
		goto out;
	case -EMSGSIZE:
		cl_errf(err, err_len, "%s: answer larger than %u bytes",
			 x->peer, CL_FRAME_MAX);
		goto out;
	case -EPROTO:
		cl_errf(err, err_len, "%s: the answer was cut short", x->peer);
		goto out;
	default:
		cl_errf(err, err_len, "receive from %s: %s", x->peer,
			 x->err[0] ? x->err : strerror(-ret));
		goto out;
	}
	*resp = ferry__cluster__response__unpack(NULL, len, buf);
	if (!*resp) {
		cl_errf(err, err_len, "%s: the answer is not a valid response",
			 x->peer);
		ret = -EBADMSG;
	}
out:
	free(buf);
	return ret;
}
