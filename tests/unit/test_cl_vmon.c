/*
 * The hard limit the cluster gives a migration (cl_vmon_mig_timeout_s):
 * vmon's default for a small VM, and room for four passes over a big one
 * under its cap, so that a big VM on a capped link is not aborted at
 * every attempt. Taking over an incoming vmon an earlier agent started
 * (cl_vmon_adopt_incoming): only the process its pid file names, for that
 * migration, while it still runs with that VM's incoming socket.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cl_vmon.h"
#include "migrate/policy.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void test_mig_timeout(void **state)
{
	(void)state;
	/* 64 MiB uncapped: 0.54 s a pass at the 1 Gbit/s floor, rounded up to 1 */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * MiB, 0), MIG_DEFAULT_TIMEOUT_S + 4);
	/* 64 GiB under a 1 Gbit/s cap: 550 s a pass; vmon's 300 s would abort it */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * GiB, 1000), 300 + 4 * 550);
	/* the same uncapped: the floor is 1 Gbit/s */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * GiB, 0), 300 + 4 * 550);
	/* 128 MiB at 10 Mbit/s (cluster_faults' mid): 108 s a pass */
	assert_int_equal(cl_vmon_mig_timeout_s(128 * MiB, 10), 300 + 4 * 108);
	/* a faster cap than the floor: shorter passes */
	assert_int_equal(cl_vmon_mig_timeout_s(64 * GiB, 10000), 300 + 4 * 55);
	/* 128 GiB at 1 Mbit/s: no overflow, about 12 days */
	assert_int_equal(cl_vmon_mig_timeout_s(128 * GiB, 1), 300 + 4 * 1099512ull);
}

/* A stand-in for vmon: a process whose command line has --control sock. */
static pid_t fake_vmon(const char *sock)
{
	pid_t pid = fork();

	if (pid == 0) {
		setpgid(0, 0);   /* the shell and its sleep go together */
		execl("/bin/sh", "sh", "-c", "sleep 30; :", "vmon", "--control", sock, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void pid_file(const char *dir, const char *name, long pid, unsigned long long tag)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.in.pid", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "%ld %llu\n", pid, tag);
	fclose(f);
}

static void test_adopt_incoming(void **state)
{
	char dir[] = "/tmp/ferry-cl-vmon-XXXXXX", sock[512], err[256];
	struct cl_vmon *v = NULL;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/vm1.in.sock", dir);
	pid = fake_vmon(sock);
	assert_true(pid > 0);
	usleep(200000);   /* past the exec */

	/* no file */
	assert_int_equal(cl_vmon_adopt_incoming(dir, "vm1", 7, &v, err, sizeof(err)), -ENOENT);
	/* another migration's */
	pid_file(dir, "vm1", pid, 6);
	assert_int_equal(cl_vmon_adopt_incoming(dir, "vm1", 7, &v, err, sizeof(err)), -ENOENT);
	/* this one's, but a process that is not vm2's incoming vmon */
	pid_file(dir, "vm2", pid, 7);
	assert_int_equal(cl_vmon_adopt_incoming(dir, "vm2", 7, &v, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no longer its vmon"));
	/* the one */
	pid_file(dir, "vm1", pid, 7);
	assert_int_equal(cl_vmon_adopt_incoming(dir, "vm1", 7, &v, err, sizeof(err)), 0);
	assert_int_equal(cl_vmon_pid(v), pid);
	assert_true(cl_vmon_fd(v) >= 0);
	cl_vmon_free(v);
	/* gone: its pid names nothing, or something else */
	kill(-pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(cl_vmon_adopt_incoming(dir, "vm1", 7, &v, err, sizeof(err)), -ENOENT);

	snprintf(sock, sizeof(sock), "rm -rf %s", dir);
	assert_int_equal(system(sock), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mig_timeout),
		cmocka_unit_test(test_adopt_incoming),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
