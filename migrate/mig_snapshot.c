/*
 * Snapshots: the migration stream written to a file. The file appears
 * under its name only once it is complete and on disk (written to a
 * temporary name, fsynced, renamed), so a crash or a full disk never leaves
 * a half snapshot that looks whole.
 */
#include "migrate/mig_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "migrate/mig.h"
#include "migrate/mig_state.h"

static void fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (!copy)
		return;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

int mig_snapshot_save(struct vm *vm, const char *path, bool verify, bool stop,
		      struct mig_snapshot_result *res, char *err)
{
	char tmp[4096];
	struct stream_writer w;
	bool paused = false;
	uint64_t t0;
	int fd, ret;

	memset(res, 0, sizeof(*res));
	if (snprintf(tmp, sizeof(tmp), "%s.partial-%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, MIG_ERR_LEN, "path too long");
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, MIG_ERR_LEN, "%.300s: %s", tmp, strerror(errno));
		return ret;
	}
	t0 = now_ns();
	/*
	 * A pause of our own even where the VM is paused already: while it is
	 * in force nothing else (vmon ctl resume, --auto-resume-s) runs the
	 * guest under the save. Ending it leaves a held VM paused.
	 */
	if (vm_get_state(vm) != VM_RUNNING && vm_get_state(vm) != VM_PAUSED) {
		ret = -EINVAL;
		snprintf(err, MIG_ERR_LEN, "the VM is %s", vm_state_name(vm_get_state(vm)));
		goto fail;
	}
	ret = vm_pause(vm);
	if (ret) {
		snprintf(err, MIG_ERR_LEN, "cannot pause the VM: %s", strerror(-ret));
		goto fail;
	}
	paused = true;
	stream_writer_init(&w, fd);
	ret = mig_save_snapshot(vm, &w, verify, err);
	res->bytes = w.off;
	res->pages = w.pages;
	res->zero_pages = w.zero_pages;
	stream_writer_destroy(&w);
	if (!ret && fsync(fd)) {
		ret = -errno;
		snprintf(err, MIG_ERR_LEN, "fsync %.300s: %s", tmp, strerror(errno));
	}
	if (close(fd) && !ret) {
		ret = -errno;
		snprintf(err, MIG_ERR_LEN, "close %.300s: %s", tmp, strerror(errno));
	}
	fd = -1;
	if (!ret && rename(tmp, path)) {
		ret = -errno;
		snprintf(err, MIG_ERR_LEN, "rename to %.300s: %s", path, strerror(errno));
	}
	if (!ret)
		fsync_dir_of(path);
fail:
	if (fd >= 0)
		close(fd);
	if (ret)
		unlink(tmp);
	/* A failed save changes nothing: a running VM runs on, a paused one stays. */
	if (!ret && stop)
		vm_stop(vm, "stopped after saving a snapshot");
	else if (paused)
		vm_resume_own(vm);
	res->duration_ns = now_ns() - t0;
	return ret;
}

int mig_snapshot_open(const char *path, const struct mig_load_opts *o, struct vm **out,
		      struct mig_load_result *res, char *err)
{
	struct stream_reader r;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, MIG_ERR_LEN, "%.300s: %s", path, strerror(errno));
		return ret;
	}
	stream_reader_init(&r, fd);
	*out = NULL;
	ret = mig_load_stream(&r, o, out, res, err);
	stream_reader_destroy(&r);
	close(fd);
	return ret;
}
