/*
 * The control socket server: one thread, one client at a time. Requests are
 * small and fast; a slow or silent client is dropped after CTL_TIMEOUT_MS so
 * it cannot wedge the monitor's control path.
 */
#include "core/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/dirty_rate.h"
#include "core/autoresume.h"
#include "core/fence.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"

struct ctl_server {
	struct vm *vm;
	struct dirty_rate *rate;
	const struct ctl_ext *ext;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int wake[2];
	pthread_t thread;
};

static Ferry__Ctl__VmState ctl_state(enum vm_state s)
{
	switch (s) {
	case VM_CREATED: return FERRY__CTL__VM_STATE__VM_STATE_CREATED;
	case VM_RUNNING: return FERRY__CTL__VM_STATE__VM_STATE_RUNNING;
	case VM_PAUSED:  return FERRY__CTL__VM_STATE__VM_STATE_PAUSED;
	case VM_STOPPED: return FERRY__CTL__VM_STATE__VM_STATE_STOPPED;
	case VM_CRASHED: return FERRY__CTL__VM_STATE__VM_STATE_CRASHED;
	}
	return FERRY__CTL__VM_STATE__VM_STATE_UNKNOWN;
}

/* Response parts live here while the response is packed. */
struct ctl_scratch {
	Ferry__Ctl__Status status;
	Ferry__Ctl__Stats stats;
	Ferry__Ctl__DirtyStats dirty;
	Ferry__Ctl__VcpuStats vcpu[GABI_MAX_VCPUS];
	Ferry__Ctl__VcpuStats *vcpu_ptr[GABI_MAX_VCPUS];
	Ferry__Ctl__GuestValue val[GABI_REPORTS_MAX];
	Ferry__Ctl__GuestValue *val_ptr[GABI_REPORTS_MAX];
	struct vm_value values[GABI_REPORTS_MAX];
	struct vm_dev_stat dev[VM_DEV_STATS_MAX * VM_DEVS_MAX];
	Ferry__Ctl__GuestValue devv[VM_DEV_STATS_MAX * VM_DEVS_MAX];
	Ferry__Ctl__GuestValue *devv_ptr[VM_DEV_STATS_MAX * VM_DEVS_MAX];
	char reason[VM_ERR_LEN];
};

/* Per thread, so a test or fuzzer may call ctl_handle from anywhere. */
static __thread struct ctl_scratch ctl_tls;

static void ctl_fill_status(struct vm *vm, Ferry__Ctl__Status *st)
{
	ferry__ctl__status__init(st);
	st->name = vm->cfg.name;
	st->vcpus = vm->nr_vcpus;
	st->mem_bytes = vm->mem.size;
	st->cpu_model = vm->model_name;
	st->dirty_mode = (char *)dirty_mode_name(vm->dirty_mode);
	st->uptime_ns = vm->start_ns ? now_ns() - vm->start_ns : 0;
	st->guest = (char *)vm->cfg.guest_path;
	st->pid = (int32_t)getpid();
	pthread_mutex_lock(&vm->lock);
	st->state = ctl_state(vm->state);
	st->held = vm->user_paused;
	/* Arrived paused (a migration, a restore): not run here yet, and held so. */
	if (vm->state == VM_CREATED && (vm->user_paused || vm->pause_reason[0]))
		st->state = FERRY__CTL__VM_STATE__VM_STATE_PAUSED;
	snprintf(ctl_tls.reason, sizeof(ctl_tls.reason), "%s",
		 vm->state == VM_PAUSED || vm->state == VM_CREATED ? vm->pause_reason : vm->reason);
	pthread_mutex_unlock(&vm->lock);
	st->reason = ctl_tls.reason;
	if (vm->autoresume)
		st->auto_resume_s = autoresume_period_s(vm->autoresume);
	if (vm->fence) {
		st->fence_s = fence_period_s(vm->fence);
		st->fence_left_ms = fence_left_ms(vm->fence);
	}
}

static void ctl_fill_stats(struct vm *vm, struct dirty_rate *rate,
			   struct ctl_scratch *s)
{
	Ferry__Ctl__Stats *st = &s->stats;
	unsigned n;

	ferry__ctl__stats__init(st);
	ctl_fill_status(vm, &s->status);
	st->status = &s->status;

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		const struct vcpu_stats *vs = &vm->vcpus[i].stats;
		Ferry__Ctl__VcpuStats *o = &s->vcpu[i];

		ferry__ctl__vcpu_stats__init(o);
		o->index = i;
		o->exits = __atomic_load_n(&vs->exits, __ATOMIC_RELAXED);
		o->exits_io = __atomic_load_n(&vs->exits_io, __ATOMIC_RELAXED);
		o->exits_hcall = __atomic_load_n(&vs->exits_hcall, __ATOMIC_RELAXED);
		o->exits_intr = __atomic_load_n(&vs->exits_intr, __ATOMIC_RELAXED);
		o->exits_ring_full = __atomic_load_n(&vs->exits_ring_full, __ATOMIC_RELAXED);
		o->exits_other = __atomic_load_n(&vs->exits_other, __ATOMIC_RELAXED);
		o->hcalls_console = __atomic_load_n(&vs->hcalls_console, __ATOMIC_RELAXED);
		o->hcalls_sleep = __atomic_load_n(&vs->hcalls_sleep, __ATOMIC_RELAXED);
		s->vcpu_ptr[i] = o;
	}
	st->n_vcpus = vm->nr_vcpus;
	st->vcpus = s->vcpu_ptr;

	n = vm_values(vm, s->values, GABI_REPORTS_MAX);
	for (unsigned i = 0; i < n; i++) {
		Ferry__Ctl__GuestValue *o = &s->val[i];

		ferry__ctl__guest_value__init(o);
		o->name = s->values[i].name;
		o->value = s->values[i].value;
		o->live = s->values[i].live_gpa != 0;
		s->val_ptr[i] = o;
	}
	st->n_values = n;
	st->values = s->val_ptr;
	n = vm_devs_stats(vm, s->dev, VM_DEV_STATS_MAX * VM_DEVS_MAX);
	for (unsigned i = 0; i < n; i++) {
		ferry__ctl__guest_value__init(&s->devv[i]);
		s->devv[i].name = s->dev[i].name;
		s->devv[i].value = s->dev[i].value;
		s->devv_ptr[i] = &s->devv[i];
	}
	st->n_devices = n;
	st->devices = s->devv_ptr;

	ferry__ctl__dirty_stats__init(&s->dirty);
	s->dirty.mode = (char *)dirty_mode_name(vm->dirty_mode);
	s->dirty.tracking = vm->dirty->tracking;
	s->dirty.harvests = vm->dirty->stats.harvests;
	s->dirty.samples = vm->dirty->stats.samples;
	s->dirty.monitor_pages = __atomic_load_n(&vm->dirty->stats.monitor_pages,
						 __ATOMIC_RELAXED);
	s->dirty.pages_per_s = rate ? dirty_rate_get(rate, &s->dirty.window_ns) : 0;
	st->dirty = &s->dirty;
}

static void ctl_error(Ferry__Ctl__Response *resp, int err, const char *what)
{
	static __thread char msg[256];

	resp->error = err;
	snprintf(msg, sizeof(msg), "%s: %s", what, strerror(-err));
	resp->message = msg;
}

/*
 * Only this thread and the end of vmon_run (after this server stopped)
 * touch vm->fence and vm->autoresume, so they may come and go here.
 */
static int ctl_fence(struct vm *vm, unsigned seconds)
{
	if (!seconds) {
		fence_stop(vm->fence);
		vm->fence = NULL;
		return 0;
	}
	if (vm->fence) {
		fence_set_period(vm->fence, seconds);
		return 0;
	}
	return fence_start(vm, seconds, &vm->fence);
}

static int ctl_autoresume(struct vm *vm, unsigned seconds)
{
	if (!seconds) {
		autoresume_stop(vm->autoresume);
		vm->autoresume = NULL;
		return 0;
	}
	if (vm->autoresume) {
		autoresume_set_period(vm->autoresume, seconds);
		return 0;
	}
	return autoresume_start(vm, seconds, &vm->autoresume);
}

void ctl_handle(struct vm *vm, struct dirty_rate *rate, const struct ctl_ext *ext,
		const Ferry__Ctl__Request *req, Ferry__Ctl__Response *resp)
{
	struct ctl_scratch *s = &ctl_tls;
	int ret;

	ferry__ctl__response__init(resp);
	switch (req->cmd_case) {
	case FERRY__CTL__REQUEST__CMD_STATUS:
		ctl_fill_status(vm, &s->status);
		resp->status = &s->status;
		break;
	case FERRY__CTL__REQUEST__CMD_STATS:
		ctl_fill_stats(vm, rate, s);
		resp->stats = &s->stats;
		break;
	case FERRY__CTL__REQUEST__CMD_PAUSE:
		ret = vm_pause_user(vm);
		if (ret)
			ctl_error(resp, ret, vm_state_name(vm_get_state(vm)));
		break;
	case FERRY__CTL__REQUEST__CMD_RESUME:
		ret = vm_resume(vm);
		if (ret == -EBUSY)
			ctl_error(resp, ret, "paused for a migration's switchover or a snapshot "
				  "being written; it runs again when that ends, unless it was "
				  "paused before");
		else if (ret)
			ctl_error(resp, ret, vm_state_name(vm_get_state(vm)));
		break;
	case FERRY__CTL__REQUEST__CMD_STOP:
		vm_stop(vm, "stopped by control request");
		break;
	case FERRY__CTL__REQUEST__CMD_KEEPALIVE:
		if (vm->fence)
			fence_renew(vm->fence);
		else
			ctl_error(resp, -ENOTSUP, "keepalive: this vmon runs without --fence-s");
		break;
	case FERRY__CTL__REQUEST__CMD_FENCE:
		ret = ctl_fence(vm, req->fence->seconds);
		if (ret)
			ctl_error(resp, ret, "fence: cannot start its timer");
		break;
	case FERRY__CTL__REQUEST__CMD_AUTO_RESUME:
		if (req->auto_resume->seconds > AUTORESUME_MAX_PERIOD_S) {
			char what[48];

			snprintf(what, sizeof(what), "auto-resume: at most %d s",
				 AUTORESUME_MAX_PERIOD_S);
			ctl_error(resp, -EINVAL, what);
			break;
		}
		ret = ctl_autoresume(vm, req->auto_resume->seconds);
		if (ret)
			ctl_error(resp, ret, "auto-resume: cannot start its thread");
		break;
	default:
		if (!ext || !ext->handle(ext->opaque, vm, req, resp))
			ctl_error(resp, -EOPNOTSUPP, "unknown request");
		break;
	}
	if (!resp->status && req->cmd_case != FERRY__CTL__REQUEST__CMD_STATS) {
		ctl_fill_status(vm, &s->status);
		resp->status = &s->status;
	}
}

static void ctl_serve_client(struct ctl_server *srv, int fd)
{
	struct timeval tv = { .tv_sec = CTL_TIMEOUT_MS / 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (;;) {
		Ferry__Ctl__Response resp;
		Ferry__Ctl__Request *req;
		struct pollfd pf[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = srv->wake[0], .events = POLLIN },
		};
		uint8_t *buf;
		size_t len;
		int ret;

		/* An idle client must not hold up the monitor's shutdown. */
		ret = poll(pf, 2, CTL_TIMEOUT_MS);
		if (ret <= 0 || pf[1].revents)
			return;
		ret = ctl_recv(fd, &buf, &len);
		if (ret == -EPIPE)
			return;
		if (ret) {
			log_warn("control: dropping client: %s", strerror(-ret));
			return;
		}
		req = ferry__ctl__request__unpack(NULL, len, buf);
		free(buf);
		if (!req) {
			/* A malformed message gets an answer, then the door. */
			ferry__ctl__response__init(&resp);
			resp.error = -EBADMSG;
			resp.message = "malformed request";
			ctl_send(fd, &resp.base);
			return;
		}
		ctl_handle(srv->vm, srv->rate, srv->ext, req, &resp);
		ret = ctl_send(fd, &resp.base);
		ferry__ctl__request__free_unpacked(req, NULL);
		if (ret)
			return;
	}
}

static void *ctl_thread(void *arg)
{
	struct ctl_server *srv = arg;

	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = srv->listen_fd, .events = POLLIN },
			{ .fd = srv->wake[0], .events = POLLIN },
		};
		int fd;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		ctl_serve_client(srv, fd);
		close(fd);
	}
	return NULL;
}

/* A socket file left by a dead monitor may go; a live monitor's may not. */
static int ctl_claim_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (!ret)
		return -EADDRINUSE;
	return unlink(path) ? -errno : 0;
}

int ctl_server_start(struct ctl_server **out, const char *path, struct vm *vm,
		     struct dirty_rate *rate, const struct ctl_ext *ext)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl_server *srv;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->vm = vm;
	srv->rate = rate;
	srv->ext = ext;
	srv->listen_fd = srv->wake[0] = srv->wake[1] = -1;
	strcpy(srv->path, path);
	strcpy(sa.sun_path, path);

	ret = ctl_claim_path(path);
	if (ret)
		goto fail;
	srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv->listen_fd < 0 || pipe2(srv->wake, O_CLOEXEC)) {
		ret = -errno;
		goto fail;
	}
	/* Only the owner (root, or the user running vmon) may steer the VM. */
	{
		mode_t old = umask(0077);

		ret = bind(srv->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
		umask(old);
	}
	if (ret || listen(srv->listen_fd, 8)) {
		ret = -errno;
		goto fail;
	}
	ret = -pthread_create(&srv->thread, NULL, ctl_thread, srv);
	if (ret) {
		unlink(path);
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	if (srv->wake[0] >= 0) {
		close(srv->wake[0]);
		close(srv->wake[1]);
	}
	free(srv);
	return ret;
}

void ctl_server_stop(struct ctl_server *srv)
{
	if (!srv)
		return;
	(void)!write(srv->wake[1], "x", 1);
	pthread_join(srv->thread, NULL);
	close(srv->listen_fd);
	close(srv->wake[0]);
	close(srv->wake[1]);
	unlink(srv->path);
	free(srv);
}
