/*
 * mig_job_set, what vmon ctl migrate-set reaches: which states take a
 * change, that a refusal changes nothing, and that what is not given
 * stays. A job in each state is made by hand; no migration runs.
 * And that a start after a finished job does not wait on that job's
 * thread while holding the lock the thread still needs; that a migrate
 * request with a bad handover file is refused before anything starts;
 * and how write_file_atomic, which writes that file, leaves a directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "migrate/mig_ctl.h"
#include "migrate/mig_live.h"

static struct vm vm;

static void job_in(struct mig_job *j, enum mig_job_state st, uint64_t ran_s)
{
	memset(j, 0, sizeof(*j));
	pthread_mutex_init(&j->lock, NULL);
	mig_params_defaults(&j->p);
	j->p.policy.bandwidth_mbps = 80;
	j->vm = &vm;
	j->prog.state = st;
	j->prog.start_ns = now_ns() - ran_s * 1000000000ull;
	snprintf(j->prog.destination, sizeof(j->prog.destination), "tcp:127.0.0.1:1");
}

static void test_set_states(void **state)
{
	static const enum mig_job_state none[] = {
		MIG_JOB_NONE, MIG_JOB_COMPLETED, MIG_JOB_FAILED, MIG_JOB_CANCELLED,
		MIG_JOB_PREDICTED,
	};
	struct mig_settings s = { .set_downtime = true, .downtime_ms = 500 };
	struct mig_job j;
	char err[MIG_ERR_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		job_in(&j, none[i], 1);
		assert_int_equal(mig_job_set(&j, &s, err), -ENOENT);
		assert_string_equal(err, "no migration in progress");
		assert_int_equal(j.p.policy.downtime_ms, MIG_DEFAULT_DOWNTIME_MS);
	}
	job_in(&j, MIG_JOB_SWITCHOVER, 1);
	assert_int_equal(mig_job_set(&j, &s, err), -EBUSY);
	assert_non_null(strstr(err, "in switchover"));
	assert_int_equal(j.p.policy.downtime_ms, MIG_DEFAULT_DOWNTIME_MS);
	assert_int_equal(j.prog.settings_changes, 0);
	job_in(&j, MIG_JOB_SETUP, 0);
	assert_int_equal(mig_job_set(&j, &s, err), 0);
	assert_int_equal(j.p.policy.downtime_ms, 500);
}

static void test_set_values(void **state)
{
	struct mig_settings s = { 0 };
	struct mig_job j;
	char err[MIG_ERR_LEN];

	(void)state;
	job_in(&j, MIG_JOB_PRECOPY, 5);
	/* A limit already passed is refused, with everything else asked. */
	s.set_timeout = true;
	s.timeout_s = 5;
	s.set_bandwidth = true;
	s.bandwidth_mbps = 0;
	assert_int_equal(mig_job_set(&j, &s, err), -EINVAL);
	assert_string_equal(err, "the migration has run for 5 s; a timeout of 5 s would end it "
			    "at once (migrate-cancel stops it)");
	assert_int_equal(j.p.policy.timeout_s, MIG_DEFAULT_TIMEOUT_S);
	assert_int_equal(j.p.policy.bandwidth_mbps, 80);
	/* One ahead is taken; the cap lifted; the rest stays. */
	s.timeout_s = 60;
	assert_int_equal(mig_job_set(&j, &s, err), 0);
	assert_int_equal(j.p.policy.timeout_s, 60);
	assert_int_equal(j.p.policy.bandwidth_mbps, 0);
	assert_int_equal(j.p.policy.downtime_ms, MIG_DEFAULT_DOWNTIME_MS);
	assert_int_equal(j.p.policy.timeout_action, MIG_TIMEOUT_ABORT);
	assert_true(j.p.policy.auto_converge);
	assert_int_equal(j.prog.settings_changes, 1);
	/* The same again changes nothing and is not counted. */
	assert_int_equal(mig_job_set(&j, &s, err), 0);
	assert_int_equal(j.prog.settings_changes, 1);
	memset(&s, 0, sizeof(s));
	s.set_timeout_action = true;
	s.timeout_action = MIG_TIMEOUT_FORCE;
	assert_int_equal(mig_job_set(&j, &s, err), 0);
	assert_int_equal(j.p.policy.timeout_action, MIG_TIMEOUT_FORCE);
	assert_int_equal(j.p.policy.timeout_s, 60);
	assert_int_equal(j.prog.settings_changes, 2);
}

/*
 * Stands in for a job thread that has reported its end and now joins its
 * watchdog, which takes the job's lock once more before it returns.
 */
static void *late_locker(void *arg)
{
	struct mig_job *j = arg;

	usleep(100000);
	pthread_mutex_lock(&j->lock);
	j->nr_lane_fds = 7;
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static void test_start_joins_unlocked(void **state)
{
	struct mig_params p;
	struct mig_job j;
	char err[MIG_ERR_LEN];

	(void)state;
	job_in(&j, MIG_JOB_COMPLETED, 1);
	assert_int_equal(pthread_create(&j.thread, NULL, late_locker, &j), 0);
	j.thread_live = true;
	mig_params_defaults(&p);
	/* A deadlock would hang here; the alarm turns it into a failure. */
	alarm(10);
	assert_int_equal(mig_job_start(&j, &vm, NULL, 0, &p, err), -EALREADY);
	alarm(0);
	assert_false(j.thread_live);
	assert_int_equal(j.nr_lane_fds, 7);
	assert_non_null(strstr(err, "already been migrated"));

	/* A job still running keeps its thread: refused, nothing joined. */
	job_in(&j, MIG_JOB_PRECOPY, 1);
	assert_int_equal(pthread_create(&j.thread, NULL, late_locker, &j), 0);
	j.thread_live = true;
	assert_int_equal(mig_job_start(&j, &vm, NULL, 0, &p, err), -EBUSY);
	assert_true(j.thread_live);
	pthread_join(j.thread, NULL);
	assert_int_equal(j.nr_lane_fds, 7);

	/* vmon's exit joins the same way: the lock dropped, and only once. */
	job_in(&j, MIG_JOB_COMPLETED, 1);
	assert_int_equal(pthread_create(&j.thread, NULL, late_locker, &j), 0);
	j.thread_live = true;
	alarm(10);
	mig_job_join(&j);
	alarm(0);
	assert_false(j.thread_live);
	assert_int_equal(j.nr_lane_fds, 7);
	mig_job_join(&j);
}

/* Refused with a clear message, and no job begun: nothing to join, no state. */
static void test_handover_refused(void **state)
{
	static const struct { const char *file, *tag; } bad[] = {
		{ "relative/vm1.handover", "7" },
		{ "/run/vm1.handover", NULL },
		{ "/run/vm1.handover", "" },
		{ "/run/vm1.handover", "7 8" },
		{ "/run/vm1.handover", "7\n" },
	};
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Migrate mg = FERRY__CTL__MIGRATE__INIT;
	struct mig_ctl c;

	(void)state;
	mig_ctl_init(&c, NULL, 0);
	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE;
	req.migrate = &mg;
	mg.uri = "tcp:127.0.0.1:1";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Ferry__Ctl__Response resp = FERRY__CTL__RESPONSE__INIT;

		mg.handover_file = (char *)bad[i].file;
		mg.handover_tag = (char *)bad[i].tag;
		assert_true(c.ext.handle(c.ext.opaque, &vm, &req, &resp));
		assert_int_equal(resp.error, -EINVAL);
		assert_non_null(strstr(resp.message, "handover file must be an absolute path"));
		assert_int_equal(c.job.prog.state, MIG_JOB_NONE);
		assert_false(c.job.thread_live);
	}
}

static void test_write_file_atomic(void **state)
{
	char dir[] = "/tmp/ferry-test-atomic.XXXXXX", path[128], tmp[160], buf[64];
	int fd;
	ssize_t n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm1.handover", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(write_file_atomic(path, "7 tcp:a:1\n", 10), 0);
	/* A second write replaces the first whole. */
	assert_int_equal(write_file_atomic(path, "8 tcp:b:2\n", 10), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	assert_int_equal(n, 10);
	assert_memory_equal(buf, "8 tcp:b:2\n", 10);
	assert_int_equal(access(tmp, F_OK), -1);
	/* No such directory: an error, and nothing made. */
	snprintf(path, sizeof(path), "%s/gone/vm1.handover", dir);
	assert_int_equal(write_file_atomic(path, "x", 1), -ENOENT);
	snprintf(path, sizeof(path), "%s/vm1.handover", dir);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_states),
		cmocka_unit_test(test_set_values),
		cmocka_unit_test(test_start_joins_unlocked),
		cmocka_unit_test(test_handover_refused),
		cmocka_unit_test(test_write_file_atomic),
	};

	snprintf(vm.cfg.name, sizeof(vm.cfg.name), "vm1");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
