/*
 * Disk ownership: an OFD write lock (F_OFD_SETLK) over the whole image
 * (file backend) or the whole lease file beside an NBD export. OFD locks,
 * unlike POSIX locks, belong to the open file description, not to the
 * process: another thread's close() of the same file elsewhere in vmon
 * cannot drop it, and it dies with the process, so a killed vmon never
 * leaves a disk writable by two. F_OFD_GETLK reports no pid for OFD locks,
 * so the holder is found in /proc (same host) or read from the lease file,
 * where the owner writes its host name and pid.
 */
#include "storage/blk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

static int lease_lock(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };

	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/* A local process whose fd holds an OFD lock on dev:ino, from /proc/PID/fdinfo. */
static pid_t lease_find_local(const struct stat *st)
{
	char want[64], path[300], line[256];
	struct dirent *p, *f;
	DIR *procs, *fds;
	pid_t found = 0;

	snprintf(want, sizeof(want), " %02x:%02x:%llu ", major(st->st_dev),
		 minor(st->st_dev), (unsigned long long)st->st_ino);
	procs = opendir("/proc");
	while (procs && !found && (p = readdir(procs))) {
		if (p->d_name[0] < '1' || p->d_name[0] > '9' || atoi(p->d_name) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fdinfo", p->d_name);
		fds = opendir(path);
		while (fds && !found && (f = readdir(fds))) {
			FILE *fp;

			if (f->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/fdinfo/%s", p->d_name, f->d_name);
			fp = fopen(path, "r");
			while (fp && fgets(line, sizeof(line), fp))
				if (!strncmp(line, "lock:", 5) && strstr(line, "OFDLCK") &&
				    strstr(line, want))
					found = atoi(p->d_name);
			if (fp)
				fclose(fp);
		}
		if (fds)
			closedir(fds);
	}
	if (procs)
		closedir(procs);
	return found;
}

void blk_lease_holder(int fd, const char *path, char *out, size_t len)
{
	char note[200] = "", comm[64] = "?", cpath[64];
	struct stat st;
	pid_t pid = 0;
	ssize_t n;
	FILE *fp;

	if (!fstat(fd, &st))
		pid = lease_find_local(&st);
	if (pid) {
		snprintf(cpath, sizeof(cpath), "/proc/%d/comm", (int)pid);
		fp = fopen(cpath, "r");
		if (fp && fgets(comm, sizeof(comm), fp))
			comm[strcspn(comm, "\n")] = 0;
		if (fp)
			fclose(fp);
	}
	/* A lease file names its owner in its contents (the host may be another). */
	n = path ? pread(fd, note, sizeof(note) - 1, 0) : 0;
	if (n > 0) {
		note[n] = 0;
		note[strcspn(note, "\n")] = 0;
	} else {
		note[0] = 0;
	}
	if (pid && note[0])
		snprintf(out, len, "pid %d (%s) on this host; lease says: %s", (int)pid, comm, note);
	else if (pid)
		snprintf(out, len, "pid %d (%s) on this host", (int)pid, comm);
	else if (note[0])
		snprintf(out, len, "%s", note);
	else
		snprintf(out, len, "another process (not on this host, or not visible)");
}

int blk_lease_acquire(struct blk_disk *d, char *err, size_t len)
{
	char host[128] = "?", note[256], holder[300];
	int ret;

	if (d->owned)
		return 0;
	ret = lease_lock(d->lock_fd, F_WRLCK);
	if (ret == -EAGAIN || ret == -EACCES) {
		blk_lease_holder(d->lock_fd, d->spec.lease[0] ? d->spec.lease : NULL,
				 holder, sizeof(holder));
		snprintf(err, len, "disk %u (%.200s) is in use: held by %s", d->index,
			 d->spec.spec, holder);
		return -EBUSY;
	}
	if (ret) {
		snprintf(err, len, "disk %u (%.200s): lock: %s", d->index, d->spec.spec,
			 strerror(-ret));
		return ret;
	}
	if (d->spec.lease[0]) {
		gethostname(host, sizeof(host) - 1);
		snprintf(note, sizeof(note), "host %s pid %d disk %.150s\n", host, (int)getpid(),
			 d->spec.target);
		/* Informational only: the lock is the lease. */
		if (ftruncate(d->lock_fd, 0) || pwrite(d->lock_fd, note, strlen(note), 0) < 0)
			log_warn("disk %u: lease file %s: cannot note the owner: %s", d->index,
				 d->spec.lease, strerror(errno));
	}
	__atomic_store_n(&d->owned, true, __ATOMIC_RELEASE);
	return 0;
}

void blk_lease_release(struct blk_disk *d)
{
	if (!d->owned)
		return;
	if (lease_lock(d->lock_fd, F_UNLCK))
		log_err("disk %u: unlock: %s", d->index, strerror(errno));
	__atomic_store_n(&d->owned, false, __ATOMIC_RELEASE);
}
