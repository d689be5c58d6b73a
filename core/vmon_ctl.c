/* vmon ctl: talk to a running vmon over its control socket. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/autoresume.h"
#include "core/ctl.h"
#include "core/util.h"
#include "core/vmon.h"

#define POLL_MS 100

struct ctl_cmd {
	const char *path;
	const char *name;
	bool json;
	bool wait;
	Ferry__Ctl__Request req;
	int timeout_ms;
};

static bool migration_done(const Ferry__Ctl__MigrationInfo *m)
{
	return m->state == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED ||
	       m->state == FERRY__CTL__MIG_STATE__MIG_STATE_FAILED ||
	       m->state == FERRY__CTL__MIG_STATE__MIG_STATE_CANCELLED ||
	       m->state == FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED ||
	       m->state == FERRY__CTL__MIG_STATE__MIG_STATE_NONE;
}

static void progress_line(const Ferry__Ctl__MigrationInfo *m)
{
	double pct = m->round_pages ? 100.0 * (double)m->round_sent / (double)m->round_pages : 0;

	fprintf(stderr, "\r\033[K%s round %u: %5.1f%% of %llu pages, %.0f MB/s, dirty %.0f pages/s, "
		"ETA %.1f s", m->phase, m->round, pct, (unsigned long long)m->round_pages,
		m->bandwidth_bps / 1e6, m->dirty_pages_per_s, m->eta_s);
}

static volatile sig_atomic_t interrupts;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupts++;
}

/* Ctrl-C on migrate --wait: ask the monitor to cancel; say what came of it. */
static void ctl_cancel(struct ctl_cmd *c)
{
	static Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Response *resp = NULL;
	char err[256];

	fprintf(stderr, "\nvmon: cancelling the migration (Ctrl-C again to stop waiting)\n");
	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_CANCEL;
	req.migrate_cancel = &empty;
	if (ctl_call(c->path, &req, CTL_TIMEOUT_MS, &resp, err, sizeof(err))) {
		fprintf(stderr, "vmon: error: migrate-cancel: %s\n", err);
		return;
	}
	if (resp->error)
		fprintf(stderr, "vmon: migrate-cancel: %s; waiting for the end\n", resp->message);
	ferry__ctl__response__free_unpacked(resp, NULL);
}

/*
 * migrate --wait: poll the source until the migration ends. A first
 * Ctrl-C cancels the migration and goes on waiting for its outcome (as
 * virsh migrate and clusterctl migrate do); a second one stops waiting,
 * the cancel standing.
 */
static int ctl_wait_migration(struct ctl_cmd *c)
{
	static Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Request req = FERRY__CTL__REQUEST__INIT;
	Ferry__Ctl__Response *last = NULL;
	struct sigaction sa = { .sa_handler = on_interrupt }, old;
	bool tty = isatty(STDERR_FILENO) && !c->json, asked = false;
	char err[256];
	int ret, status;

	req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_STATUS;
	req.migrate_status = &empty;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	interrupts = 0;
	sigaction(SIGINT, &sa, &old);
	for (;;) {
		Ferry__Ctl__Response *resp = NULL;

		usleep(POLL_MS * 1000);
		if (interrupts > 1) {
			fprintf(stderr, "\nvmon: stopped waiting; the cancel stands "
				"(vmon ctl %s migrate-status)\n", c->path);
			if (last)
				ferry__ctl__response__free_unpacked(last, NULL);
			sigaction(SIGINT, &old, NULL);
			return 130;
		}
		if (interrupts && !asked) {
			asked = true;
			ctl_cancel(c);
			/* A poll's time for a second Ctrl-C before the outcome is read. */
			continue;
		}
		ret = ctl_call(c->path, &req, CTL_TIMEOUT_MS, &resp, err, sizeof(err));
		if (ret) {
			if (tty)
				fputc('\n', stderr);
			fprintf(stderr, "vmon: error: migrate: lost the source monitor: %s\n", err);
			if (last)
				ferry__ctl__response__free_unpacked(last, NULL);
			return 1;
		}
		if (last)
			ferry__ctl__response__free_unpacked(last, NULL);
		last = resp;
		if (!resp->migration)
			continue;
		if (migration_done(resp->migration))
			break;
		if (tty)
			progress_line(resp->migration);
	}
	sigaction(SIGINT, &old, NULL);
	if (tty)
		fputc('\n', stderr);
	ctl_print(stdout, c->name, last, c->json);
	status = last->migration->state == FERRY__CTL__MIG_STATE__MIG_STATE_COMPLETED ||
		 last->migration->state == FERRY__CTL__MIG_STATE__MIG_STATE_PREDICTED ? 0 : 1;
	if (status && !c->json)
		fprintf(stderr, "vmon: error: migrate: %s\n", last->migration->message);
	ferry__ctl__response__free_unpacked(last, NULL);
	return status;
}

/* The monitor's working directory is not ours: hand it absolute paths. */
static char *absolute(const char *path)
{
	char cwd[4096], *out;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return (char *)path;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return (char *)path;
	return out;
}

static uint64_t opt_u64(const char *opt, const char *v, uint64_t max)
{
	uint64_t x;

	if (!v)
		vmon_usage_error("%s needs a value", opt);
	if (parse_u64(v, 0, max, &x))
		vmon_usage_error("%s: '%s' is not a number in 0..%llu", opt, v,
				 (unsigned long long)max);
	return x;
}

/*
 * The options migrate and migrate-set share, into migrate-set's message
 * (it holds them all): true when a is one of them, its value v taken.
 */
static bool parse_policy_opt(const char *a, const char *v, Ferry__Ctl__MigrateSet *ms)
{
	if (!strcmp(a, "--downtime-ms")) {
		ms->set_downtime = true;
		ms->downtime_ms = opt_u64(a, v, 3600000);
		if (!ms->downtime_ms)
			vmon_usage_error("--downtime-ms must be at least 1");
	} else if (!strcmp(a, "--bandwidth")) {
		ms->set_bandwidth = true;
		ms->bandwidth_mbps = opt_u64(a, v, 10000000);
	} else if (!strcmp(a, "--timeout-s")) {
		ms->set_timeout = true;
		ms->timeout_s = opt_u64(a, v, 86400);
	} else if (!strcmp(a, "--timeout-action")) {
		if (!v || (strcmp(v, "abort") && strcmp(v, "force")))
			vmon_usage_error("--timeout-action is abort or force");
		ms->set_timeout_action = true;
		ms->timeout_force = !strcmp(v, "force");
	} else {
		return false;
	}
	return true;
}

/* -o json|text: true when a is it, its value v taken. */
static bool parse_output_opt(struct ctl_cmd *c, const char *a, const char *v)
{
	if (strcmp(a, "-o") || !v)
		return false;
	if (strcmp(v, "json") && strcmp(v, "text"))
		vmon_usage_error("-o: '%s' is not json or text", v);
	c->json = !strcmp(v, "json");
	return true;
}

static void parse_migrate(struct ctl_cmd *c, int argc, char **argv, Ferry__Ctl__Migrate *mg)
{
	Ferry__Ctl__MigrateSet pol = FERRY__CTL__MIGRATE_SET__INIT;

	if (argc < 4 || argv[3][0] == '-')
		vmon_usage_error("ctl migrate needs a destination tcp:HOST:PORT or rdma:HOST:PORT");
	mg->uri = argv[3];
	for (int i = 4; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (parse_policy_opt(a, v, &pol) || parse_output_opt(c, a, v)) {
			i++;
		} else if (!strcmp(a, "--tls-dir")) {
			if (!v)
				vmon_usage_error("--tls-dir needs a directory");
			mg->tls_dir = absolute(v);
			i++;
		} else if (!strcmp(a, "--connections")) {
			mg->connections = (uint32_t)opt_u64(a, v, 8);
			i++;
		} else if (!strcmp(a, "--dry-run")) {
			mg->dry_run = true;
		} else if (!strcmp(a, "--verify")) {
			mg->verify = true;
		} else if (!strcmp(a, "--no-auto-converge")) {
			mg->no_auto_converge = true;
		} else if (!strcmp(a, "--wait")) {
			c->wait = true;
		} else {
			vmon_usage_error("migrate: unexpected argument '%s'", a);
		}
	}
	/* Not given: 0, vmon's default (a timeout of 0 too). */
	mg->downtime_ms = pol.downtime_ms;
	mg->bandwidth_mbps = pol.bandwidth_mbps;
	mg->timeout_s = pol.timeout_s;
	mg->timeout_force = pol.timeout_force;
	if (mg->dry_run)
		c->wait = true;
}

/* migrate-set: the options migrate takes that can change while it runs. */
static void parse_migrate_set(struct ctl_cmd *c, int argc, char **argv,
			      Ferry__Ctl__MigrateSet *ms)
{
	/* Every option takes a value. */
	for (int i = 3; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!parse_policy_opt(a, v, ms) && !parse_output_opt(c, a, v))
			vmon_usage_error("migrate-set: unexpected argument '%s'", a);
	}
	if (ms->set_timeout && !ms->timeout_s)
		vmon_usage_error("--timeout-s must be at least 1");
	if (!ms->set_downtime && !ms->set_bandwidth && !ms->set_timeout && !ms->set_timeout_action)
		vmon_usage_error("migrate-set needs at least one of --downtime-ms, --bandwidth, "
				 "--timeout-s, --timeout-action");
}

int vmon_ctl_main(int argc, char **argv)
{
	static Ferry__Ctl__Empty empty = FERRY__CTL__EMPTY__INIT;
	Ferry__Ctl__Save save = FERRY__CTL__SAVE__INIT;
	Ferry__Ctl__Migrate mg = FERRY__CTL__MIGRATE__INIT;
	Ferry__Ctl__Fence fence = FERRY__CTL__FENCE__INIT;
	Ferry__Ctl__AutoResume autores = FERRY__CTL__AUTO_RESUME__INIT;
	Ferry__Ctl__MigrateSet mset = FERRY__CTL__MIGRATE_SET__INIT;
	Ferry__Ctl__Response *resp = NULL;
	uint64_t fence_s, autores_s;
	struct ctl_cmd c = { .timeout_ms = CTL_TIMEOUT_MS };
	int first_opt = 3, ret;
	char err[256];

	ferry__ctl__request__init(&c.req);
	if (argc < 3)
		vmon_usage_error("vmon ctl needs SOCKET and a command");
	c.path = argv[1];
	c.name = argv[2];

	if (!strcmp(c.name, "migrate")) {
		parse_migrate(&c, argc, argv, &mg);
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE;
		c.req.migrate = &mg;
		first_opt = argc;
	} else if (!strcmp(c.name, "save")) {
		if (argc < 4 || argv[3][0] == '-')
			vmon_usage_error("ctl save needs a FILE");
		save.path = absolute(argv[3]);
		first_opt = 4;
		c.timeout_ms = 3600 * 1000;
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_SAVE;
		c.req.save = &save;
	} else if (!strcmp(c.name, "status")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_STATUS;
		c.req.status = &empty;
	} else if (!strcmp(c.name, "pause")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_PAUSE;
		c.req.pause = &empty;
	} else if (!strcmp(c.name, "resume")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_RESUME;
		c.req.resume = &empty;
	} else if (!strcmp(c.name, "stop")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_STOP;
		c.req.stop = &empty;
	} else if (!strcmp(c.name, "stats")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_STATS;
		c.req.stats = &empty;
	} else if (!strcmp(c.name, "migrate-status")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_STATUS;
		c.req.migrate_status = &empty;
	} else if (!strcmp(c.name, "migrate-set")) {
		parse_migrate_set(&c, argc, argv, &mset);
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_SET;
		c.req.migrate_set = &mset;
		first_opt = argc;
	} else if (!strcmp(c.name, "migrate-cancel")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_MIGRATE_CANCEL;
		c.req.migrate_cancel = &empty;
	} else if (!strcmp(c.name, "keepalive")) {
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_KEEPALIVE;
		c.req.keepalive = &empty;
	} else if (!strcmp(c.name, "fence")) {
		if (argc < 4 || parse_u64(argv[3], 0, 86400, &fence_s))
			vmon_usage_error("ctl fence needs SECONDS (0..86400; 0 disarms)");
		fence.seconds = (uint32_t)fence_s;
		first_opt = 4;
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_FENCE;
		c.req.fence = &fence;
	} else if (!strcmp(c.name, "auto-resume")) {
		if (argc < 4 || parse_u64(argv[3], 0, AUTORESUME_MAX_PERIOD_S, &autores_s))
			vmon_usage_error("ctl auto-resume needs SECONDS (0..%d; 0 stops it)",
					 AUTORESUME_MAX_PERIOD_S);
		autores.seconds = (uint32_t)autores_s;
		first_opt = 4;
		c.req.cmd_case = FERRY__CTL__REQUEST__CMD_AUTO_RESUME;
		c.req.auto_resume = &autores;
	} else {
		vmon_usage_error("unknown ctl command '%s' (status, pause, resume, stop, stats, save, "
				 "migrate, migrate-status, migrate-set, migrate-cancel, keepalive, fence, "
				 "auto-resume)", c.name);
	}
	for (int i = first_opt; i < argc; i++) {
		if (!strcmp(c.name, "save") && !strcmp(argv[i], "--verify")) {
			save.verify = true;
		} else if (!strcmp(c.name, "save") && !strcmp(argv[i], "--stop")) {
			save.stop = true;
		} else if (parse_output_opt(&c, argv[i], i + 1 < argc ? argv[i + 1] : NULL)) {
			i++;
		} else {
			vmon_usage_error("unexpected argument '%s'", argv[i]);
		}
	}

	ret = ctl_call(c.path, &c.req, c.timeout_ms, &resp, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "vmon: error: ctl %s: %s\n", c.name, err);
		return 1;
	}
	if (resp->error) {
		if (c.json)
			ctl_print(stdout, c.name, resp, true);
		fprintf(stderr, "vmon: error: %s: %s\n", c.name, resp->message);
		ferry__ctl__response__free_unpacked(resp, NULL);
		return 1;
	}
	if (c.wait) {
		ferry__ctl__response__free_unpacked(resp, NULL);
		return ctl_wait_migration(&c);
	}
	ctl_print(stdout, c.name, resp, c.json);
	ferry__ctl__response__free_unpacked(resp, NULL);
	return 0;
}
