/*
 * The agent's vmon processes (cl_vmon.h).
 *
 * Every vmon, started here or adopted, is watched through a pidfd: the
 * agent's poll loop treats both alike, signals go through the pidfd so a
 * recycled pid is never hit, and a vmon this process did not start can
 * still be seen to end. Only children give an exit status (waitpid).
 *
 * vmon's stderr goes straight into RUN/NAME.log (no pipe, no thread): the
 * log survives the agent, and cl_vmon_incoming_port reads the lines this
 * run appended to it.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migrate/policy.h"
#include "cl_vmon.h"
#include "core/ctl.h"
#include "core/log.h"
#include "core/util.h"

extern char **environ;

#define VMON_ARGV_MAX 56
#define VMON_LOG_SCAN_MAX (256 * 1024)  /* bytes of one run's log we read */
/* How often a wait looks again: a migration's start waits on it. */
#define VMON_POLL_MS 2

struct cl_vmon {
	char *name;
	char *sock;
	char *log_path;
	off_t log_start;   /* where this run's lines begin in the log */
	pid_t pid;
	int pidfd;
	bool child;        /* ours to waitpid */
	bool ended;
	int status;        /* raw wait status, -1 unknown */
	char why[64];
	/* The agent's main loop and a worker waiting for the port both reap. */
	pthread_mutex_t reap_lock;
};

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static char *path_of(const char *dir, const char *name, const char *suffix)
{
	char *p = NULL;

	return asprintf(&p, "%s/%s%s", dir, name, suffix) < 0 ? NULL : p;
}

static struct cl_vmon *vmon_new(const char *run_dir, const char *name, const char *sock_suffix)
{
	struct cl_vmon *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->pidfd = -1;
	v->status = -1;
	pthread_mutex_init(&v->reap_lock, NULL);
	v->name = strdup(name);
	v->sock = path_of(run_dir, name, sock_suffix);
	v->log_path = path_of(run_dir, name, ".log");
	if (!v->name || !v->sock || !v->log_path) {
		cl_vmon_free(v);
		return NULL;
	}
	return v;
}

void cl_vmon_free(struct cl_vmon *v)
{
	if (!v)
		return;
	if (v->pidfd >= 0)
		close(v->pidfd);
	free(v->name);
	free(v->sock);
	free(v->log_path);
	pthread_mutex_destroy(&v->reap_lock);
	free(v);
}

pid_t cl_vmon_pid(const struct cl_vmon *v)
{
	return v->pid;
}

const char *cl_vmon_name(const struct cl_vmon *v)
{
	return v->name;
}

const char *cl_vmon_socket(const struct cl_vmon *v)
{
	return v->sock;
}

int cl_vmon_fd(const struct cl_vmon *v)
{
	return v->pidfd;
}

/* ---- starting ---- */

struct argv_buf {
	char *argv[VMON_ARGV_MAX];
	char num[5][24];   /* --mem, --vcpus, --incoming-timeout-s, --fence-s, --auto-resume-s */
	char *uri;
	int n;
};

static void arg_add(struct argv_buf *a, const char *s)
{
	if (a->n < VMON_ARGV_MAX - 1)
		a->argv[a->n++] = (char *)s;
}

static void arg_opt(struct argv_buf *a, const char *opt, const char *val)
{
	if (val && *val) {
		arg_add(a, opt);
		arg_add(a, val);
	}
}

/* vmon's command line; with --incoming, vmon takes the guest, vCPUs and
 * model from the source, and --mem only preallocates. */
static int argv_build(struct argv_buf *a, const struct cl_vmon_spec *s, const char *sock)
{
	memset(a, 0, sizeof(*a));
	arg_add(a, s->vmon_path);
	arg_add(a, "run");
	arg_opt(a, "--name", s->name);
	snprintf(a->num[0], sizeof(a->num[0]), "%" PRIu64, s->mem_bytes);
	if (s->mem_bytes)
		arg_opt(a, "--mem", a->num[0]);
	if (s->incoming) {
		if (asprintf(&a->uri, "tcp:%s:0", s->listen_host) < 0) {
			a->uri = NULL;
			return -ENOMEM;
		}
		arg_opt(a, "--incoming", a->uri);
		arg_opt(a, "--tls-dir", s->tls_dir);
		snprintf(a->num[2], sizeof(a->num[2]), "%d", s->incoming_timeout_s);
		if (s->incoming_timeout_s > 0)
			arg_opt(a, "--incoming-timeout-s", a->num[2]);
	} else {
		arg_opt(a, "--guest", s->guest);
		snprintf(a->num[1], sizeof(a->num[1]), "%" PRIu32, s->vcpus ? s->vcpus : 1);
		arg_opt(a, "--vcpus", a->num[1]);
		arg_opt(a, "--cpu-model", s->cpu_model);
		arg_opt(a, "--args", s->args);
		for (size_t i = 0; i < s->n_disks; i++)
			arg_opt(a, "--disk", s->disks[i]);
		for (size_t i = 0; i < s->n_nets; i++)
			arg_opt(a, "--net", s->nets[i]);
	}
	snprintf(a->num[3], sizeof(a->num[3]), "%u", s->fence_s);
	if (s->fence_s)
		arg_opt(a, "--fence-s", a->num[3]);
	snprintf(a->num[4], sizeof(a->num[4]), "%u", s->auto_resume_s);
	if (s->auto_resume_s)
		arg_opt(a, "--auto-resume-s", a->num[4]);
	arg_opt(a, "--cpuid-hide", s->cpuid_hide);
	arg_opt(a, "--control", sock);
	a->argv[a->n] = NULL;
	return 0;
}

static int spawn_attrs(posix_spawnattr_t *at)
{
	sigset_t none, dfl;
	int rc;

	sigemptyset(&none);
	sigemptyset(&dfl);
	/* What the agent ignores or blocks must not carry over to vmon. */
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaddset(&dfl, sig);
	}
	rc = posix_spawnattr_init(at);
	if (rc)
		return -rc;
	rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
				      POSIX_SPAWN_SETSIGDEF);
	rc = rc ? rc : posix_spawnattr_setpgroup(at, 0);
	rc = rc ? rc : posix_spawnattr_setsigmask(at, &none);
	rc = rc ? rc : posix_spawnattr_setsigdefault(at, &dfl);
	if (rc)
		posix_spawnattr_destroy(at);
	return -rc;
}

static int spawn_files(posix_spawn_file_actions_t *fa, int console_fd, int log_fd)
{
	int rc = posix_spawn_file_actions_init(fa);

	if (rc)
		return -rc;
	rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
	rc = rc ? rc : posix_spawn_file_actions_adddup2(fa, console_fd, 1);
	rc = rc ? rc : posix_spawn_file_actions_adddup2(fa, log_fd, 2);
	if (rc)
		posix_spawn_file_actions_destroy(fa);
	return -rc;
}

/*
 * Best effort: without the file a restarted agent starts a second incoming
 * vmon, as it did before there was one (logged).
 */
static void incoming_pid_write(const struct cl_vmon_spec *spec, pid_t pid)
{
	char *path = path_of(spec->run_dir, spec->name, ".in.pid");
	char *tmp = path_of(spec->run_dir, spec->name, ".in.pid.tmp");
	FILE *f = tmp ? fopen(tmp, "we") : NULL;
	bool ok = false;

	if (f) {
		ok = fprintf(f, "%d %" PRIu64 "\n", (int)pid, spec->incoming_tag) > 0;
		ok = !fclose(f) && ok && path && !rename(tmp, path);
	}
	if (!ok)
		log_warn("%s: cannot record the incoming vmon's pid in %s: %m", spec->name,
			 path ? path : "RUN/NAME.in.pid");
	free(path);
	free(tmp);
}

int cl_vmon_spawn(const struct cl_vmon_spec *spec, struct cl_vmon **out,
		  char *err, size_t err_len)
{
	const int oflags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
	struct argv_buf a = { 0 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	bool have_fa = false, have_at = false;
	int console_fd = -1, log_fd = -1, rc;
	struct cl_vmon *v;
	char *console;

	v = vmon_new(spec->run_dir, spec->name, spec->incoming ? ".in.sock" : ".sock");
	console = path_of(spec->run_dir, spec->name, ".console");
	if (!v || !console) {
		rc = -ENOMEM;
		snprintf(err, err_len, "out of memory");
		goto out;
	}
	console_fd = open(console, oflags, 0640);
	log_fd = open(v->log_path, oflags, 0640);
	if (console_fd < 0 || log_fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: %s", console_fd < 0 ? console : v->log_path,
			 strerror(errno));
		goto out;
	}
	v->log_start = lseek(log_fd, 0, SEEK_END);
	rc = argv_build(&a, spec, v->sock);
	rc = rc ? rc : spawn_files(&fa, console_fd, log_fd);
	have_fa = !rc;
	rc = rc ? rc : spawn_attrs(&at);
	have_at = !rc;
	if (rc) {
		snprintf(err, err_len, "preparing to start vmon: %s", strerror(-rc));
		goto out;
	}
	rc = -posix_spawn(&v->pid, spec->vmon_path, &fa, &at, a.argv, environ);
	if (rc) {
		snprintf(err, err_len, "cannot run %s: %s", spec->vmon_path, strerror(-rc));
		goto out;
	}
	v->child = true;
	/* Our unreaped child: its pid cannot be reused, so this cannot miss. */
	v->pidfd = sys_pidfd_open(v->pid);
	if (v->pidfd < 0) {
		rc = -errno;
		snprintf(err, err_len, "pidfd_open: %s", strerror(errno));
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
		goto out;
	}
	if (spec->incoming)
		incoming_pid_write(spec, v->pid);
	*out = v;
	v = NULL;
out:
	if (have_at)
		posix_spawnattr_destroy(&at);
	if (have_fa)
		posix_spawn_file_actions_destroy(&fa);
	if (console_fd >= 0)
		close(console_fd);
	if (log_fd >= 0)
		close(log_fd);
	free(a.uri);
	free(console);
	cl_vmon_free(v);
	return rc;
}

/* ---- adopting ---- */

static int status_pid(const char *sock, pid_t *pid, char *err, size_t err_len)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	int rc;

	req.cmd_case = FERRY__CTL__REQUEST__CMD_STATUS;
	req.status = &empty;
	rc = ctl_call(sock, &req, CTL_TIMEOUT_MS, &resp, err, err_len);
	if (rc)
		return rc;
	if (resp->error || !resp->status || resp->status->pid <= 0) {
		rc = resp->error ? resp->error : -EPROTO;
		snprintf(err, err_len, "%s: status: %s", sock,
			 resp->error ? resp->message : "no pid in the answer");
	} else {
		*pid = resp->status->pid;
	}
	ferry__ctl__response__free_unpacked(resp, NULL);
	return rc;
}

static int vmon_adopt(const char *run_dir, const char *name, const char *suffix,
		      struct cl_vmon **out, char *err, size_t err_len)
{
	struct cl_vmon *v = vmon_new(run_dir, name, suffix);
	pid_t again = 0;
	int rc;

	if (!v) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	rc = status_pid(v->sock, &v->pid, err, err_len);
	if (rc)
		goto out;
	v->pidfd = sys_pidfd_open(v->pid);
	if (v->pidfd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: pid %d: %s", v->sock, (int)v->pid,
			 errno == ESRCH ? "ended while being adopted" : strerror(errno));
		goto out;
	}
	/* The pid could have been recycled between the answer and the pidfd:
	 * a second answer with the same pid proves the pidfd is vmon's. */
	rc = status_pid(v->sock, &again, err, err_len);
	if (!rc && again != v->pid) {
		rc = -ESRCH;
		snprintf(err, err_len, "%s: pid changed from %d to %d while being adopted",
			 v->sock, (int)v->pid, (int)again);
	}
	if (rc)
		goto out;
	*out = v;
	v = NULL;
out:
	cl_vmon_free(v);
	return rc;
}

/* Does pid run vmon with "--control sock"? (/proc/PID/cmdline) */
static bool runs_vmon_on(pid_t pid, const char *sock)
{
	char path[64], buf[4096];
	bool control = false;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
		if (control && !strcmp(a, sock))
			return true;
		control = !strcmp(a, "--control");
	}
	return false;
}

int cl_vmon_adopt_incoming(const char *run_dir, const char *name, uint64_t tag,
			   struct cl_vmon **out, char *err, size_t err_len)
{
	struct cl_vmon *v = vmon_new(run_dir, name, ".in.sock");
	char *path = path_of(run_dir, name, ".in.pid");
	struct pollfd pf = { .fd = -1, .events = POLLIN };
	uint64_t file_tag = 0;
	FILE *f = NULL;
	int pid = 0, rc = -ENOENT;

	if (!v || !path) {
		snprintf(err, err_len, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	f = fopen(path, "re");
	if (!f || fscanf(f, "%d %" SCNu64, &pid, &file_tag) != 2 || pid <= 0 ||
	    file_tag != tag) {
		snprintf(err, err_len, "%s: no incoming vmon of this migration", path);
		goto out;
	}
	v->pid = pid;
	v->pidfd = sys_pidfd_open(v->pid);
	/* Read the command line while the pidfd holds the process: still
	 * running after the read, the line was its own, not a recycled pid's. */
	if (v->pidfd < 0 || !runs_vmon_on(v->pid, v->sock)) {
		snprintf(err, err_len, "%s: pid %d is no longer its vmon", path, pid);
		goto out;
	}
	pf.fd = v->pidfd;
	if (poll(&pf, 1, 0) != 0) {
		snprintf(err, err_len, "%s: pid %d ended while being adopted", path, pid);
		goto out;
	}
	rc = 0;
	*out = v;
	v = NULL;
out:
	if (f)
		fclose(f);
	free(path);
	cl_vmon_free(v);
	return rc;
}

int cl_vmon_adopt(const char *run_dir, const char *name, struct cl_vmon **out,
		  char *err, size_t err_len)
{
	/* A VM that came in by migration runs in the vmon started to receive
	 * it, which keeps its incoming socket. */
	int rc = vmon_adopt(run_dir, name, ".sock", out, err, err_len);

	if (rc)
		rc = vmon_adopt(run_dir, name, ".in.sock", out, err, err_len);
	return rc;
}

/* ---- watching ---- */

static void why_set(struct cl_vmon *v, int status)
{
	v->status = status;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		snprintf(v->why, sizeof(v->why), "crashed (status 3)");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 4)
		snprintf(v->why, sizeof(v->why), "KVM failure (status 4)");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 6)
		snprintf(v->why, sizeof(v->why), "could not take its disk, in use (status 6)");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 7)
		snprintf(v->why, sizeof(v->why), "could not reach its disk's storage (status 7)");
	else if (WIFEXITED(status))
		snprintf(v->why, sizeof(v->why), "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status) && sigabbrev_np(WTERMSIG(status)))
		snprintf(v->why, sizeof(v->why), "killed by SIG%s", sigabbrev_np(WTERMSIG(status)));
	else
		snprintf(v->why, sizeof(v->why), "killed by signal %d", WTERMSIG(status));
}

static bool pidfd_ended(int pidfd, int timeout_ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) > 0;
}

bool cl_vmon_reap(struct cl_vmon *v, int *status, char *why, size_t why_len)
{
	bool ended;
	int st;
	pid_t r;

	pthread_mutex_lock(&v->reap_lock);
	if (!v->ended && v->child) {
		do
			r = waitpid(v->pid, &st, WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r == v->pid) {
			why_set(v, st);
			v->ended = true;
		} else if (r < 0) {
			/* Collected elsewhere (a waitpid(-1) in the caller): the
			 * status is gone, but the end still shows on the pidfd. */
			v->child = false;
		}
	}
	if (!v->ended && !v->child && pidfd_ended(v->pidfd, 0)) {
		snprintf(v->why, sizeof(v->why), "ended");
		v->ended = true;
	}
	ended = v->ended;
	if (ended && status)
		*status = v->status;
	if (ended && why && why_len)
		snprintf(why, why_len, "%s", v->why);
	pthread_mutex_unlock(&v->reap_lock);
	return ended;
}

/* Wait until deadline_ns for the process to end; true when it did. */
static bool wait_end(struct cl_vmon *v, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = now_ns();
		int ms = now >= deadline_ns ? 0 : (int)MIN((deadline_ns - now) / 1000000 + 1,
							   (uint64_t)VMON_POLL_MS);

		if (cl_vmon_reap(v, NULL, NULL, 0))
			return true;
		if (!ms)
			return false;
		/* A zombie child keeps its pidfd readable: poll with a cap. */
		if (!pidfd_ended(v->pidfd, ms))
			continue;
		if (cl_vmon_reap(v, NULL, NULL, 0))
			return true;
		usleep(1000);
	}
}

int cl_vmon_stop(struct cl_vmon *v, int timeout_ms)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	uint64_t t0 = now_ns(), span = (uint64_t)MAX(timeout_ms, 3) * 1000000ull;
	char err[256];
	bool asked;

	if (cl_vmon_reap(v, NULL, NULL, 0))
		return 0;
	/* Half the time for an orderly stop, a quarter each for the signals. */
	req.cmd_case = FERRY__CTL__REQUEST__CMD_STOP;
	req.stop = &empty;
	/* No socket (an incoming vmon still waiting) or a refusal: signal at once. */
	asked = !cl_vmon_call(v, &req, (int)MAX(span / 2000000, 1), &resp, err, sizeof(err));
	if (asked) {
		asked = !resp->error;
		ferry__ctl__response__free_unpacked(resp, NULL);
	}
	if (wait_end(v, asked ? t0 + span / 2 : 0))
		return 0;
	sys_pidfd_signal(v->pidfd, SIGTERM);
	if (wait_end(v, t0 + span / 4 * 3))
		return 0;
	sys_pidfd_signal(v->pidfd, SIGKILL);
	return wait_end(v, t0 + span) ? 0 : -ETIMEDOUT;
}

int cl_vmon_call(struct cl_vmon *v, const Ferry__Ctl__Request *req, int timeout_ms,
		 Ferry__Ctl__Response **resp, char *err, size_t err_len)
{
	return ctl_call(v->sock, req, timeout_ms, resp, err, err_len);
}

/* ---- incoming ---- */

/*
 * This run's part of the log, NUL-terminated, or NULL. The log is vmon's
 * stderr file, so a line may be caught half-written: only lines ending in
 * a newline count.
 */
static char *log_read(const struct cl_vmon *v)
{
	char *buf = malloc(VMON_LOG_SCAN_MAX + 1);
	ssize_t n = -1;
	int fd;

	if (!buf)
		return NULL;
	fd = open(v->log_path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = pread(fd, buf, VMON_LOG_SCAN_MAX, v->log_start);
		close(fd);
	}
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The port of a complete "listening on HOST:PORT" line in log, or 0. */
static uint16_t log_port(const char *log)
{
	static const char key[] = "vmon: incoming: listening on ";
	const char *p = strstr(log, key), *eol, *colon;
	unsigned long port;

	if (!p || !(eol = strchr(p, '\n')))
		return 0;
	colon = memrchr(p, ':', (size_t)(eol - p));
	if (!colon || colon < p + sizeof(key) - 1)
		return 0;
	port = strtoul(colon + 1, NULL, 10);
	return port > 0 && port <= 65535 ? (uint16_t)port : 0;
}

/* vmon's last "vmon: error" line, else its last line: why it gave up. */
static void log_reason(const char *log, char *out, size_t len)
{
	const char *best = NULL, *last = NULL, *p = log;

	while (*p) {
		const char *eol = strchrnul(p, '\n');

		if (eol > p) {
			last = p;
			if (!strncmp(p, "vmon: error", 11))
				best = p;
		}
		p = *eol ? eol + 1 : eol;
	}
	p = best ? best : last;
	if (!p)
		snprintf(out, len, "no message");
	else
		snprintf(out, len, "%.*s", (int)(strchrnul(p, '\n') - p), p);
}

int cl_vmon_incoming_port(struct cl_vmon *v, int timeout_ms, uint16_t *port,
			  char *err, size_t err_len)
{
	uint64_t deadline = now_ns() + (uint64_t)MAX(timeout_ms, 0) * 1000000ull;
	char reason[200];
	char *log;
	bool ended;

	for (;;) {
		/* Reap first, read after: an exited vmon has written all it will. */
		ended = cl_vmon_reap(v, NULL, NULL, 0);
		log = log_read(v);
		*port = log ? log_port(log) : 0;
		if (*port) {
			free(log);
			return 0;
		}
		if (ended) {
			log_reason(log ? log : "", reason, sizeof(reason));
			snprintf(err, err_len, "vmon %s %s before listening: %s", v->name,
				 v->why, reason);
			free(log);
			return -ECHILD;
		}
		free(log);
		if (now_ns() >= deadline) {
			snprintf(err, err_len, "vmon %s: not listening after %d ms (see %s)",
				 v->name, timeout_ms, v->log_path);
			return -ETIMEDOUT;
		}
		pidfd_ended(v->pidfd, (int)MIN((deadline - now_ns()) / 1000000 + 1,
					       (uint64_t)VMON_POLL_MS));
	}
}

uint64_t cl_vmon_mig_timeout_s(uint64_t mem_bytes, uint64_t cap_mbps)
{
	uint64_t mbps = cap_mbps ? cap_mbps : CL_MIG_TIMEOUT_FLOOR_MBPS;
	/* one pass, rounded up: bits / (Mbit/s * 1e6) */
	uint64_t pass_s = (mem_bytes * 8 + mbps * 1000000 - 1) / (mbps * 1000000);

	return MIG_DEFAULT_TIMEOUT_S + CL_MIG_TIMEOUT_PASSES * pass_s;
}
