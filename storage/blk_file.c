/*
 * File backend: a raw image on a shared filesystem. pread/pwrite straight
 * between the image and guest RAM, fdatasync for a flush. The image fd is
 * also the lock fd: the OFD lock is on the image itself.
 */
#include "storage/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int file_open(struct blk_disk *d, char *err, size_t len)
{
	struct stat st;

	/*
	 * The path may have come off the network (a migration's precheck or
	 * device state): open nothing but a regular file, not even a device
	 * node; fstat below covers a swap between the two.
	 */
	if (!stat(d->spec.target, &st) && !S_ISREG(st.st_mode)) {
		snprintf(err, len, "disk %u: %.300s: not a regular file", d->index,
			 d->spec.target);
		return -EINVAL;
	}
	d->fd = open(d->spec.target, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		snprintf(err, len, "disk %u: %.300s: %s", d->index, d->spec.target,
			 strerror(errno));
		return -errno;
	}
	if (fstat(d->fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, len, "disk %u: %.300s: not a regular file", d->index,
			 d->spec.target);
		return -EINVAL;
	}
	d->size = (uint64_t)st.st_size & ~(uint64_t)(GABI_BLK_SECTOR - 1);
	d->lock_fd = d->fd;
	return 0;
}

static int file_pread(struct blk_disk *d, void *buf, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(d->fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n) /* the image shrank under us */
			return -EIO;
		buf = (char *)buf + n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_pwrite(struct blk_disk *d, const void *buf, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(d->fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EIO;
		buf = (const char *)buf + n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_try_nowait(struct blk_disk *d, const struct gabi_blk_req *q, void *buf)
{
	struct iovec iov = { .iov_base = buf, .iov_len = q->len };
	ssize_t n;

	if ((__atomic_load_n(&d->no_nowait, __ATOMIC_RELAXED) & (1u << q->op)) ||
	    q->op == GABI_BLK_FLUSH)
		return -EAGAIN;
	n = q->op == GABI_BLK_READ ?
	    preadv2(d->fd, &iov, 1, (off_t)q->offset, RWF_NOWAIT) :
	    pwritev2(d->fd, &iov, 1, (off_t)q->offset, RWF_NOWAIT);
	if (n == (ssize_t)q->len)
		return 0;
	/* ext4 here takes RWF_NOWAIT reads but not buffered writes. */
	if (n < 0 && errno == EOPNOTSUPP)
		__atomic_or_fetch(&d->no_nowait, 1u << q->op, __ATOMIC_RELAXED);
	/* Short or would block: an I/O thread does the whole request again. */
	return -EAGAIN;
}

static int file_flush(struct blk_disk *d)
{
	return fdatasync(d->fd) ? -errno : 0;
}

static bool file_gone(struct blk_disk *d, int err)
{
	/* A stale handle on a shared filesystem: the export went away. */
	return err == -ESTALE || err == -ENOTCONN;
}

static int file_reconnect(struct blk_disk *d, char *err, size_t len)
{
	return 0;
}

static void file_close(struct blk_disk *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	d->lock_fd = -1;
}

const struct blk_backend_ops blk_file_ops = {
	.name = "file",
	.poll_inline = true,
	.open = file_open,
	.probe = file_open,  /* it takes no lock and creates nothing */
	.pread = file_pread,
	.pwrite = file_pwrite,
	.flush = file_flush,
	.try_nowait = file_try_nowait,
	.gone = file_gone,
	.reconnect = file_reconnect,
	.close = file_close,
};
