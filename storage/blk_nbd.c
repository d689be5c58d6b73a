/*
 * NBD backend through libnbd (no kernel NBD client here). Ownership is an
 * OFD lock on the lease file named in the spec: the NBD protocol has no
 * locking of its own. A dead connection marks the disk gone; reconnect
 * makes a fresh handle, since a libnbd handle cannot connect twice.
 */
#include "storage/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

static int nbd_err(void)
{
	int e = nbd_get_errno();

	return e ? -e : -EIO;
}

/* Whether h's TCP connection is up (libnbd's state moves on before it is). */
static bool nbd_tcp_up(struct nbd_handle *h)
{
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int fd = nbd_aio_get_fd(h);

	return fd >= 0 && !getpeername(fd, (struct sockaddr *)&peer, &plen);
}

/*
 * libnbd's synchronous connect waits as long as TCP does (minutes, for a
 * server whose host is off, which keeps a start or a resume from saying
 * so): wait connect_wait_ms for the TCP connection, then for the NBD
 * handshake as long as it takes (a server that takes one client at a time
 * answers once the one before has gone).
 */
static int nbd_connect_wait(struct nbd_handle *h, const char *uri)
{
	uint64_t deadline = now_ns() + blk_defaults.connect_wait_ms * 1000000ull;
	bool up = false;

	if (nbd_aio_connect_uri(h, uri) == -1)
		return nbd_err();
	while (nbd_aio_is_connecting(h) == 1) {
		int wait_ms = -1;

		if (!up && !(up = nbd_tcp_up(h))) {
			uint64_t t = now_ns();

			if (t >= deadline)
				return -ETIMEDOUT;
			wait_ms = (int)((deadline - t + 999999) / 1000000);
			wait_ms = wait_ms > 100 ? 100 : wait_ms;
		}
		if (nbd_poll(h, wait_ms) == -1)
			return nbd_err();
	}
	return nbd_aio_is_ready(h) == 1 ? 0 : nbd_err();
}

/*
 * A server whose host went off (or a network cut away) leaves a request
 * hanging for TCP's retransmissions, about 15 minutes, with the guest's
 * I/O stuck and nobody told. Once the kernel has waited ack_wait_ms for
 * an acknowledgement it ends the connection: the request fails, the disk
 * is gone and the VM pauses with the reason, and a resume reconnects.
 * Keepalive probes from 5 s of silence on cover a request already
 * acknowledged whose answer never comes (nothing of ours unacknowledged,
 * so the user timeout alone never fires: a CI run found that window);
 * the user timeout bounds the probes too. A live server's kernel answers
 * the probes, so a slow answer is no failure. Not for a Unix socket
 * (nbd+unix://), which has no such wait.
 */
static void nbd_ack_wait(struct blk_disk *d)
{
	const struct { int level, name, value; const char *what; } opts[] = {
		{ IPPROTO_TCP, TCP_USER_TIMEOUT, (int)blk_defaults.ack_wait_ms, "TCP_USER_TIMEOUT" },
		{ SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE" },
		{ IPPROTO_TCP, TCP_KEEPIDLE, 5, "TCP_KEEPIDLE" },
		{ IPPROTO_TCP, TCP_KEEPINTVL, 5, "TCP_KEEPINTVL" },
	};
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);

	if (d->nbd_fd < 0 || getsockname(d->nbd_fd, (struct sockaddr *)&sa, &len) ||
	    (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
		return;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (setsockopt(d->nbd_fd, opts[i].level, opts[i].name, &opts[i].value,
			       sizeof(opts[i].value)))
			log_warn("disk %u: %s: %s", d->index, opts[i].what, strerror(errno));
}

static int nbd_connect_disk(struct blk_disk *d, char *err, size_t len)
{
	struct nbd_handle *h = nbd_create();
	int64_t size;
	int ret;

	if (!h) {
		snprintf(err, len, "disk %u: libnbd: %s", d->index, nbd_get_error());
		return -ENOMEM;
	}
	ret = nbd_connect_wait(h, d->spec.target);
	if (ret) {
		if (ret == -ETIMEDOUT)
			snprintf(err, len, "disk %u: %.200s: no connection in %u ms", d->index,
				 d->spec.target, blk_defaults.connect_wait_ms);
		else
			snprintf(err, len, "disk %u: %.200s: %s", d->index, d->spec.target,
				 nbd_get_error() ? nbd_get_error() : strerror(-ret));
		nbd_close(h);
		return ret;
	}
	size = nbd_get_size(h);
	if (size < 0) {
		snprintf(err, len, "disk %u: %.200s: size: %s", d->index, d->spec.target,
			 nbd_get_error());
		nbd_close(h);
		return -EIO;
	}
	if (d->size && (uint64_t)size < d->size) {
		snprintf(err, len, "disk %u: %.200s shrank to %lld bytes", d->index,
			 d->spec.target, (long long)size);
		nbd_close(h);
		return -EIO;
	}
	if (!d->size)
		d->size = (uint64_t)size & ~(uint64_t)(GABI_BLK_SECTOR - 1);
	d->nbd = h;
	__atomic_store_n(&d->nbd_fd, nbd_aio_get_fd(h), __ATOMIC_RELEASE);
	nbd_ack_wait(d);
	return 0;
}

static int nbd_open_disk(struct blk_disk *d, char *err, size_t len)
{
	d->lock_fd = open(d->spec.lease, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (d->lock_fd < 0) {
		snprintf(err, len, "disk %u: lease file %.300s: %s", d->index, d->spec.lease,
			 strerror(errno));
		return -errno;
	}
	return nbd_connect_disk(d, err, len);
}

/*
 * The precheck's look at the export: the lease file must already exist
 * (the source made it, so a missing one means storage that is not shared
 * with this host) and the server must answer with the export's size. Its
 * own connection, asynchronous so that it gives up in time: a server that
 * takes one client at a time (qemu-nbd's default) keeps this one waiting
 * for the source's to end, which is no reason to refuse.
 */
static int nbd_probe_disk(struct blk_disk *d, char *err, size_t len)
{
	struct nbd_handle *h;
	uint64_t deadline;
	int ret = 0;

	d->lock_fd = open(d->spec.lease, O_RDWR | O_CLOEXEC);
	if (d->lock_fd < 0) {
		ret = -errno;
		snprintf(err, len, "disk %u: lease file %.300s: %s%s", d->index, d->spec.lease,
			 strerror(errno), errno == ENOENT ?
			 " (the source has it: is this host's storage shared with it?)" : "");
		return ret;
	}
	h = nbd_create();
	if (!h) {
		snprintf(err, len, "disk %u: libnbd: %s", d->index, nbd_get_error());
		return -ENOMEM;
	}
	d->nbd = h;
	if (nbd_aio_connect_uri(h, d->spec.target) == -1)
		goto dead;
	deadline = now_ns() + blk_defaults.probe_wait_ms * 1000000ull;
	while (nbd_aio_is_connecting(h) == 1) {
		uint64_t t = now_ns();

		if (t >= deadline)
			break;
		if (nbd_poll(h, (int)((deadline - t + 999999) / 1000000)) == -1)
			goto dead;
	}
	if (nbd_aio_is_ready(h) == 1) {
		int64_t size = nbd_get_size(h);

		if (size < 0)
			goto dead;
		d->size = (uint64_t)size & ~(uint64_t)(GABI_BLK_SECTOR - 1);
		return 0;
	}
	if (nbd_aio_is_connecting(h) == 1) {
		/* The TCP connection is up: the server is there but busy. */
		if (nbd_tcp_up(h))
			return -EINPROGRESS;
		snprintf(err, len, "disk %u: %.200s: no answer in %u ms", d->index,
			 d->spec.target, blk_defaults.probe_wait_ms);
		return -ETIMEDOUT;
	}
dead:
	ret = nbd_err();
	snprintf(err, len, "disk %u: %.200s: %s", d->index, d->spec.target,
		 nbd_get_error() ? nbd_get_error() : "the connection failed");
	return ret;
}

static int nbd_read(struct blk_disk *d, void *buf, uint64_t len, uint64_t off)
{
	return nbd_pread(d->nbd, buf, len, off, 0) == -1 ? nbd_err() : 0;
}

static int nbd_write(struct blk_disk *d, const void *buf, uint64_t len, uint64_t off)
{
	return nbd_pwrite(d->nbd, buf, len, off, 0) == -1 ? nbd_err() : 0;
}

static int nbd_flush_disk(struct blk_disk *d)
{
	return nbd_flush(d->nbd, 0) == -1 ? nbd_err() : 0;
}

static bool nbd_gone(struct blk_disk *d, int err)
{
	/* A request the server failed leaves the connection up; a dead server does not. */
	return !d->nbd || nbd_aio_is_dead(d->nbd) == 1 || nbd_aio_is_closed(d->nbd) == 1 ||
	       err == -ENOTCONN || err == -ECONNRESET || err == -EPIPE || err == -ESHUTDOWN;
}

/*
 * Another thread may be inside a synchronous libnbd call on the handle
 * (which holds the handle's lock): work on the socket itself. shutdown
 * wakes that call, which fails as on a dead connection; SO_LINGER 0 makes
 * the close in nbd_close_disk a reset that drops whatever the kernel still
 * holds to send, instead of sending it once the network is back.
 */
static void nbd_abort(struct blk_disk *d)
{
	int fd = __atomic_load_n(&d->nbd_fd, __ATOMIC_ACQUIRE);
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)))
		log_warn("disk %u: SO_LINGER: %s", d->index, strerror(errno));
	shutdown(fd, SHUT_RDWR);
}

static int nbd_reconnect(struct blk_disk *d, char *err, size_t len)
{
	__atomic_store_n(&d->nbd_fd, -1, __ATOMIC_RELEASE);
	if (d->nbd)
		nbd_close(d->nbd);
	d->nbd = NULL;
	return nbd_connect_disk(d, err, len);
}

static void nbd_close_disk(struct blk_disk *d)
{
	__atomic_store_n(&d->nbd_fd, -1, __ATOMIC_RELEASE);
	if (d->nbd) {
		nbd_shutdown(d->nbd, 0);
		nbd_close(d->nbd);
	}
	d->nbd = NULL;
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	d->lock_fd = -1;
}

const struct blk_backend_ops blk_nbd_ops = {
	.name = "nbd",
	.open = nbd_open_disk,
	.probe = nbd_probe_disk,
	.pread = nbd_read,
	.pwrite = nbd_write,
	.flush = nbd_flush_disk,
	.gone = nbd_gone,
	.reconnect = nbd_reconnect,
	.abort = nbd_abort,
	.close = nbd_close_disk,
};
