/* The stream's I/O over a transport, and the protocol's small messages. */
#include "migrate/mig_live.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int mig_xio_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
	struct xport *x = ctx;

	return x->ops->sendv(x, iov, iovcnt);
}

static ssize_t mig_xio_read(void *ctx, void *buf, size_t len)
{
	struct xport *x = ctx;
	int ret = x->ops->recv(x, buf, len);

	/* The transport reads all or nothing: an early end is an end. */
	if (ret == -EPIPE)
		return 0;
	return ret ? ret : (ssize_t)len;
}

static int mig_xio_readv(void *ctx, const struct iovec *iov, int iovcnt)
{
	return xport_recvv(ctx, iov, iovcnt);
}

void mig_xport_io(struct xport *x, struct stream_io *io)
{
	io->ctx = x;
	io->writev = mig_xio_writev;
	io->read = mig_xio_read;
	io->readv = mig_xio_readv;
}
