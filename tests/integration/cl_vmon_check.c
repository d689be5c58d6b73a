/*
 * cluster/cl_vmon.c against real vmon processes: a counter guest runs,
 * answers status and stops cleanly; a crashing guest reads as a crash; an
 * incoming vmon reports its port (and a refused one its error line); a vmon
 * left behind by a freed handle (an agent restart) is adopted and its end
 * seen through the pidfd.
 *
 * Needs /dev/kvm (exit 77 without), FERRY_BIN and FERRY_GUESTS.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cl_vmon.h"
#include "core/ctl.h"

#define SKIP 77

static int failures;
static char run_dir[] = "/tmp/cl_vmon_check.XXXXXX";
static char vmon_path[512], counter[512], crash[512];

__attribute__((format(printf, 2, 3)))
static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s: ", ok ? "ok" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	failures += !ok;
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static long console_lines(const char *name)
{
	char path[600], buf[4096];
	long lines = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.console", run_dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	close(fd);
	return lines;
}

static struct cl_vmon_spec guest_spec(const char *name, const char *guest, const char *args)
{
	struct cl_vmon_spec s = {
		.vmon_path = vmon_path, .run_dir = run_dir, .name = name,
		.guest = guest, .args = args, .mem_bytes = 16u << 20, .vcpus = 1,
		.cpu_model = "x86-64-v1",
	};

	return s;
}

/* The vmon's status over its socket, retried while the socket comes up. */
static Ferry__Ctl__Response *status_of(struct cl_vmon *v)
{
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	char err[256] = "";

	req.cmd_case = FERRY__CTL__REQUEST__CMD_STATUS;
	req.status = &empty;
	for (int i = 0; i < 250; i++) {
		if (!cl_vmon_call(v, &req, 2000, &resp, err, sizeof(err)))
			return resp;
		msleep(20);
	}
	printf("  status: %s\n", err);
	return NULL;
}

static bool ended_within(struct cl_vmon *v, int ms)
{
	struct pollfd p = { .fd = cl_vmon_fd(v), .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

static void test_run_and_stop(void)
{
	struct cl_vmon_spec s = guest_spec("c1", counter, "n=0 interval_ms=20");
	Ferry__Ctl__Response *resp;
	struct cl_vmon *v = NULL;
	char err[256] = "", why[64] = "";
	long lines = 0;
	int st = -2;

	check(cl_vmon_spawn(&s, &v, err, sizeof(err)) == 0, "spawn counter %s", err);
	if (!v)
		return;
	check(getpgid(cl_vmon_pid(v)) == cl_vmon_pid(v), "vmon leads its own process group");
	for (int i = 0; i < 250 && (lines = console_lines("c1")) < 5; i++)
		msleep(20);
	check(lines >= 5, "the console grows (%ld lines)", lines);
	resp = status_of(v);
	check(resp && resp->status && resp->status->state == FERRY__CTL__VM_STATE__VM_STATE_RUNNING,
	      "status says running");
	check(resp && resp->status && resp->status->pid == cl_vmon_pid(v), "status pid is vmon's");
	check(resp && resp->status && !strcmp(resp->status->cpu_model, "x86-64-v1"),
	      "the model reached vmon");
	if (resp)
		ferry__ctl__response__free_unpacked(resp, NULL);
	check(!cl_vmon_reap(v, &st, why, sizeof(why)), "a running vmon is not reaped");
	check(cl_vmon_stop(v, 5000) == 0, "stop");
	check(cl_vmon_reap(v, &st, why, sizeof(why)), "stopped vmon reaped");
	check(!strcmp(why, "exited with status 0") && WIFEXITED(st) && !WEXITSTATUS(st),
	      "why: '%s'", why);
	cl_vmon_free(v);
}

static void test_crash(void)
{
	struct cl_vmon_spec s = guest_spec("crash", crash, "mode=ud");
	struct cl_vmon *v = NULL;
	char err[256] = "", why[64] = "";
	int st = -2;

	check(cl_vmon_spawn(&s, &v, err, sizeof(err)) == 0, "spawn crash %s", err);
	if (!v)
		return;
	check(ended_within(v, 10000), "the crash shows on the pidfd");
	check(cl_vmon_reap(v, &st, why, sizeof(why)), "crashed vmon reaped");
	check(!strcmp(why, "crashed (status 3)"), "why: '%s'", why);
	cl_vmon_free(v);
}

static void test_killed(void)
{
	struct cl_vmon_spec s = guest_spec("k1", counter, "n=0");
	struct cl_vmon *v = NULL;
	char err[256] = "", why[64] = "";

	check(cl_vmon_spawn(&s, &v, err, sizeof(err)) == 0, "spawn to kill %s", err);
	if (!v)
		return;
	kill(cl_vmon_pid(v), SIGKILL);
	check(ended_within(v, 5000), "the kill shows on the pidfd");
	check(cl_vmon_reap(v, NULL, why, sizeof(why)) && !strcmp(why, "killed by SIGKILL"),
	      "why: '%s'", why);
	cl_vmon_free(v);
}

static void test_incoming(void)
{
	struct cl_vmon_spec s = {
		.vmon_path = vmon_path, .run_dir = run_dir, .name = "in1",
		.mem_bytes = 16u << 20, .incoming = true, .listen_host = "127.0.0.1",
		.incoming_timeout_s = 30,
	};
	struct cl_vmon *v = NULL;
	char err[256] = "", why[64] = "";
	uint16_t port = 0;
	int rc;

	check(cl_vmon_spawn(&s, &v, err, sizeof(err)) == 0, "spawn incoming %s", err);
	if (!v)
		return;
	check(strstr(cl_vmon_socket(v), "in1.in.sock") != NULL, "incoming socket %s",
	      cl_vmon_socket(v));
	rc = cl_vmon_incoming_port(v, 5000, &port, err, sizeof(err));
	check(rc == 0 && port > 0, "incoming port %u %s", port, err);
	check(cl_vmon_stop(v, 3000) == 0, "stop incoming");
	check(cl_vmon_reap(v, NULL, why, sizeof(why)), "incoming reaped: %s", why);
	cl_vmon_free(v);

	/* A refusal before listening comes back with vmon's own words. */
	s.name = "in2";
	s.listen_host = "no.such.host.invalid";
	v = NULL;
	check(cl_vmon_spawn(&s, &v, err, sizeof(err)) == 0, "spawn bad incoming %s", err);
	if (!v)
		return;
	rc = cl_vmon_incoming_port(v, 5000, &port, err, sizeof(err));
	check(rc < 0 && rc != -ETIMEDOUT && strstr(err, "vmon"), "bad incoming: %d %s", rc, err);
	cl_vmon_stop(v, 2000);
	cl_vmon_free(v);
}

static void test_adopt(void)
{
	struct cl_vmon_spec s = guest_spec("a1", counter, "n=0 interval_ms=50");
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Response *resp = NULL;
	struct cl_vmon *v = NULL, *a = NULL;
	char err[256] = "", why[64] = "";
	bool reaped;
	pid_t pid;
	int st = -2;

	check(cl_vmon_spawn(&s, &v, err, sizeof(err)) == 0, "spawn for adoption %s", err);
	if (!v)
		return;
	pid = cl_vmon_pid(v);
	resp = status_of(v);
	if (resp)
		ferry__ctl__response__free_unpacked(resp, NULL);
	cl_vmon_free(v);   /* the agent goes away, the vmon stays */
	check(cl_vmon_adopt(run_dir, "a1", &a, err, sizeof(err)) == 0, "adopt %s", err);
	if (!a) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return;
	}
	check(cl_vmon_pid(a) == pid, "adopted pid %d is the spawned %d", cl_vmon_pid(a), pid);
	check(!cl_vmon_reap(a, NULL, NULL, 0) && !ended_within(a, 100), "adopted one runs");
	req.cmd_case = FERRY__CTL__REQUEST__CMD_STOP;
	req.stop = &empty;
	check(cl_vmon_call(a, &req, 3000, &resp, err, sizeof(err)) == 0, "stop by ctl %s", err);
	if (resp)
		ferry__ctl__response__free_unpacked(resp, NULL);
	check(ended_within(a, 5000), "its end shows on the pidfd");
	reaped = cl_vmon_reap(a, &st, why, sizeof(why));
	check(reaped && !strcmp(why, "ended") && st == -1, "adopted why '%s', status %d", why, st);
	cl_vmon_free(a);
	waitpid(pid, NULL, 0);   /* this test process is still its parent */
	check(cl_vmon_adopt(run_dir, "a1", &a, err, sizeof(err)) < 0, "nothing to adopt: %s", err);
}

int main(void)
{
	const char *bin = getenv("FERRY_BIN"), *guests = getenv("FERRY_GUESTS");
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	char cmd[600];

	if (fd < 0) {
		fprintf(stderr, "SKIP: cl_vmon_check: /dev/kvm: %s: needs KVM\n", strerror(errno));
		return SKIP;
	}
	close(fd);
	if (!bin || !guests) {
		fprintf(stderr, "cl_vmon_check: FERRY_BIN and FERRY_GUESTS must be set\n");
		return 2;
	}
	snprintf(vmon_path, sizeof(vmon_path), "%s/vmon", bin);
	snprintf(counter, sizeof(counter), "%s/counter", guests);
	snprintf(crash, sizeof(crash), "%s/crash", guests);
	if (!mkdtemp(run_dir)) {
		perror("mkdtemp");
		return 2;
	}
	test_run_and_stop();
	test_crash();
	test_killed();
	test_incoming();
	test_adopt();
	if (failures)
		printf("%d failures; files kept in %s\n", failures, run_dir);
	else {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run_dir);
		if (system(cmd))
			printf("could not remove %s\n", run_dir);
	}
	return failures ? 1 : 0;
}
