/*
 * clusterctl's commands that follow what they start to its end: migrate,
 * migrate-cancel, host maintenance.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "tools/clusterctl.h"

static double mono_ms(void)
{
	return now_ns() / 1e6;
}

static void progress_line(const Ferry__Cluster__Response *r, const char *vm,
			  const char *host, double t0, bool cancelling)
{
	const Ferry__Cluster__MigProgress *p = r->progress;
	char cap[32] = "";

	if (!*host && r->vm && r->vm->migration)
		host = r->vm->migration->destination;
	if (p && p->bandwidth_cap_mbps)  /* it may change on the way (migrate-set) */
		snprintf(cap, sizeof(cap), " (cap %llu Mbit/s)",
			 (unsigned long long)p->bandwidth_cap_mbps);
	if (p)
		fprintf(stderr, "\r\033[Kmigrate %s -> %s: %-10s round %u %5.1f%%  %7.0f MB/s%s  "
			"dirty %6.0f pages/s  ETA %5.1f s  (%.1f s)%s", vm, host, p->state,
			p->round, p->percent, p->bandwidth_bps / 1e6, cap, p->dirty_pages_per_s,
			p->eta_s, (mono_ms() - t0) / 1e3, cancelling ? "  cancelling" : "");
	else
		fprintf(stderr, "\r\033[Kmigrate %s -> %s: %s  (%.1f s)", vm, host,
			cancelling ? "cancelling" : "preparing the destination",
			(mono_ms() - t0) / 1e3);
}

static int migrate_result(struct clusterctl *c, Ferry__Cluster__Response *r, double t0)
{
	const Ferry__Cluster__MigrationResult *m = r->vm->last_migration;
	double wall = mono_ms() - t0;

	if (c->json) {
		cl_msg_json(stdout, &r->base);
		return m->ok ? 0 : 1;
	}
	if (!m->ok) {
		fprintf(stderr, "clusterctl: %s\n", m->error);
		return 1;
	}
	if (m->dry_run) {
		printf("dry run: %s -> %s: precheck passed; %s\n", m->source, m->destination,
		       m->predicted_converges ? "it should converge" : "it would NOT converge");
		printf("prediction: total %.0f ms, downtime %.1f ms%s%s\n", m->predicted_total_ms,
		       m->predicted_downtime_ms, *m->prediction ? "; " : "", m->prediction);
		return 0;
	}
	if (*m->note) {
		/* Without the destination's answer the downtime was not measured. */
		printf("migrated %s from %s to %s in %.0f ms: vmon %.0f ms, %.1f MB in %u "
		       "round(s); orchestration %.0f ms\nnote: %s\n", r->vm->name, m->source,
		       m->destination, wall, m->total_ms, m->bytes / 1e6, m->rounds,
		       m->orchestration_ms, m->note);
		return 0;
	}
	printf("migrated %s from %s to %s in %.0f ms: vmon %.0f ms, downtime %.2f ms, "
	       "%.1f MB in %u round(s); orchestration %.0f ms\n", r->vm->name, m->source,
	       m->destination, wall, m->total_ms, m->downtime_ms, m->bytes / 1e6, m->rounds,
	       m->orchestration_ms);
	return 0;
}

/* migrate-cancel's verdict: 0 when the VM stayed where it was. */
static int cancel_result(struct clusterctl *c, Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__MigrationResult *m = r->vm->last_migration;

	if (c->json)
		cl_msg_json(stdout, &r->base);
	if (m->ok && !m->dry_run) {
		fprintf(stderr, "clusterctl: migrate-cancel: %s: too late: it had already switched "
			"over, and runs on %s now\n", r->vm->name, m->destination);
		return 1;
	}
	if (c->json)
		return 0;
	if (m->cancelled || m->dry_run)
		printf("cancelled: %s stays on %s (its migration to %s stopped after %u round(s), "
		       "%.1f MB sent)\n", r->vm->name, m->source, m->destination, m->rounds,
		       m->bytes / 1e6);
	else
		printf("%s stays on %s: its migration failed before the cancel took effect: %s\n",
		       r->vm->name, m->source, m->error);
	return 0;
}

static volatile sig_atomic_t interrupts;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupts++;
}

static void print_cancel_asked(const Ferry__Cluster__Response *r)
{
	if (r->vm && r->vm->migration)
		printf("cancel of %s's migration to %s asked\n", r->vm->name,
		       r->vm->migration->destination);
}

/*
 * Ask the cluster to cancel vm's migration; its id, or 0 with the error
 * printed. With keep, the answer is the caller's to finish.
 */
static uint64_t cancel_ask(struct clusterctl *c, const char *vm, int *status,
			   Ferry__Cluster__Response **keep)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__Response *r;
	uint64_t id = 0;

	name.name = (char *)vm;
	CLUSTERCTL_REQ(migrate_cancel, MIGRATE_CANCEL, &name);
	r = clusterctl_call(c, &req, status);
	if (!r)
		return 0;
	if (r->error) {
		*status = clusterctl_finish(c, r, clusterctl_print_nothing);
		return 0;
	}
	id = r->migration_id;
	if (keep)
		*keep = r;
	else
		CL_FREE(r);
	return id;
}

/*
 * Poll vm until migration id has ended and print how. A first Ctrl-C asks
 * the cluster to cancel it and goes on waiting for the outcome (as virsh
 * does); a second one (the first, for migrate-cancel) stops waiting, the
 * cancel standing.
 */
static int migrate_follow(struct clusterctl *c, const char *vm, const char *host, uint64_t id,
			  double t0, bool cancelling)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	struct sigaction sa = { .sa_handler = on_interrupt, .sa_flags = SA_RESTART }, old;
	bool tty = isatty(2) && !c->json, asked = cancelling;
	Ferry__Cluster__Response *r;
	int status;

	name.name = (char *)vm;
	CLUSTERCTL_REQ(migrate_status, MIGRATE_STATUS, &name);
	sigemptyset(&sa.sa_mask);
	interrupts = 0;
	sigaction(SIGINT, &sa, &old);
	for (;;) {
		const struct timespec pause = { 0, 1000000 };

		if (interrupts > 1 || (interrupts && cancelling)) {
			fprintf(stderr, "\nclusterctl: stopped waiting; the cancel stands "
				"(clusterctl vm show %s)\n", vm);
			status = 130;
			break;
		}
		if (interrupts && !asked) {
			asked = true;
			fprintf(stderr, "\nclusterctl: cancelling the migration of %s (Ctrl-C again "
				"to stop waiting)\n", vm);
			if (!cancel_ask(c, vm, &status, NULL))
				fprintf(stderr, "clusterctl: waiting for the migration to end\n");
		}
		r = clusterctl_call(c, &req, &status);
		if (!r)
			break;
		if (r->error) {
			status = clusterctl_finish(c, r, clusterctl_print_nothing);
			break;
		}
		if (r->vm && (!r->vm->migration || r->vm->migration->id != id) &&
		    r->vm->last_migration && r->vm->last_migration->id == id) {
			if (tty)
				fprintf(stderr, "\r\033[K");
			status = cancelling ? cancel_result(c, r) : migrate_result(c, r, t0);
			CL_FREE(r);
			break;
		}
		if (r->vm && !r->vm->migration && (!r->vm->last_migration ||
						   r->vm->last_migration->id != id)) {
			fprintf(stderr, "clusterctl: migrate: %s: the migration vanished from "
				"the state (superseded?)\n", vm);
			CL_FREE(r);
			status = 1;
			break;
		}
		if (tty)
			progress_line(r, vm, host, t0, asked);
		CL_FREE(r);
		nanosleep(&pause, NULL);
	}
	sigaction(SIGINT, &old, NULL);
	return status;
}

int clusterctl_migrate(struct clusterctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "no-wait", no_argument, NULL, 'w' },
		{ 0 },
	};
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__MigrateReq m = FERRY__CLUSTER__MIGRATE_REQ__INIT;
	Ferry__Cluster__Response *r;
	bool wait = true;
	double t0 = mono_ms();
	uint64_t id, v;
	int o, status;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			if (parse_u64(optarg, 1, 60000, &v))
				return clusterctl_die_usage("migrate: --downtime-ms: not 1..60000: %s",
							    optarg);
			m.downtime_ms = v;
			break;
		case 'b':
			if (parse_u64(optarg, 1, 10000000, &v))
				return clusterctl_die_usage("migrate: --bandwidth: not 1..10000000 Mbit/s: %s",
							    optarg);
			m.bandwidth_mbps = v;
			break;
		case 'n': m.dry_run = true; break;
		case 'w': wait = false; break;
		default: return clusterctl_die_usage("migrate: bad option");
		}
	}
	if (optind + 2 != argc)
		return clusterctl_die_usage("migrate: expected VM HOST");
	m.vm = argv[optind];
	m.host = argv[optind + 1];
	CLUSTERCTL_REQ(migrate, MIGRATE, &m);
	r = clusterctl_call(c, &req, &status);
	if (!r)
		return status;
	if (r->error || !wait)
		return clusterctl_finish(c, r, clusterctl_print_nothing);
	id = r->migration_id;
	CL_FREE(r);
	return migrate_follow(c, m.vm, m.host, id, t0, false);
}

int clusterctl_migrate_cancel(struct clusterctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-wait", no_argument, NULL, 'w' },
		{ 0 },
	};
	Ferry__Cluster__Response *r = NULL;
	bool wait = true;
	uint64_t id;
	int o, status = 1;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'w')
			return clusterctl_die_usage("migrate-cancel: bad option");
		wait = false;
	}
	if (optind + 1 != argc)
		return clusterctl_die_usage("migrate-cancel: expected VM");
	id = cancel_ask(c, argv[optind], &status, &r);
	if (!id)
		return status;
	if (!wait)
		return clusterctl_finish(c, r, print_cancel_asked);
	CL_FREE(r);
	return migrate_follow(c, argv[optind], "", id, mono_ms(), true);
}

static void print_set(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__Migration *m = r->vm ? r->vm->migration : NULL;
	char dt[32] = "vmon's default", cap[32];

	if (!m)
		return;
	if (m->downtime_ms)
		snprintf(dt, sizeof(dt), "%llu ms", (unsigned long long)m->downtime_ms);
	fmt_cap_mbps(m->bandwidth_mbps, cap, sizeof(cap));
	printf("%s's migration to %s: downtime target %s, bandwidth cap %s; the source "
	       "applies it now (\"vm show %s\" shows what it has in force)\n",
	       r->vm->name, m->destination, dt, cap, r->vm->name);
}

int clusterctl_migrate_set(struct clusterctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ 0 },
	};
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__CmdMigSet s = FERRY__CLUSTER__CMD_MIG_SET__INIT;
	uint64_t v;
	int o;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			if (parse_u64(optarg, 1, 60000, &v))
				return clusterctl_die_usage("migrate-set: --downtime-ms: not "
							    "1..60000: %s", optarg);
			s.set_downtime = true;
			s.downtime_ms = v;
			break;
		case 'b':
			if (parse_u64(optarg, 0, 10000000, &v))
				return clusterctl_die_usage("migrate-set: --bandwidth: not "
							    "0..10000000 Mbit/s: %s", optarg);
			s.set_bandwidth = true;
			s.bandwidth_mbps = v;
			break;
		default:
			return clusterctl_die_usage("migrate-set: bad option");
		}
	}
	if (optind + 1 != argc)
		return clusterctl_die_usage("migrate-set: expected VM");
	if (!s.set_downtime && !s.set_bandwidth)
		return clusterctl_die_usage("migrate-set: nothing to change (--downtime-ms, "
					    "--bandwidth)");
	s.vm = argv[optind];
	CLUSTERCTL_REQ(migrate_set, MIGRATE_SET, &s);
	return clusterctl_simple(c, &req, print_set);
}

static int vm_stop_one(struct clusterctl *c, const char *vm)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;

	name.name = (char *)vm;
	CLUSTERCTL_REQ(vm_stop, VM_STOP, &name);
	return clusterctl_simple(c, &req, clusterctl_print_nothing);
}

#define EVACUATE_STALL_S 60

/*
 * Say once per VM that the plan sends it over the CPU cap (no host has room
 * under it), or where HA's room is lost (no host keeps it): the operator
 * should know the host it lands on is contended, or the cluster exposed.
 * said: "\nvm1\nvm2\n..." of those said so far.
 */
static void say_placement(const Ferry__Cluster__PlanInfo *p, const char *host, bool tty,
			 char *said, size_t len)
{
	for (size_t i = 0; i < p->n_moves; i++) {
		const Ferry__Cluster__PlanMove *m = p->moves[i];
		char key[256];
		size_t n = strlen(said);

		if ((m->cpu_over_pct <= 0 && !m->room_lost) || strlen(m->vm) + 3 > sizeof(key))
			continue;
		snprintf(key, sizeof(key), "\n%s\n", m->vm);
		if (strstr(said, key) || n + strlen(key) >= len)
			continue;
		snprintf(said + n, len - n, "%s", n ? key + 1 : key);
		if (m->cpu_over_pct > 0)
			fprintf(stderr, "%sevacuating %s: %s goes to %s over the CPU cap, which %s "
				"takes to %.0f %% of its CPUs: no host has room under it\n",
				tty ? "\r\033[K" : "", host, m->vm, m->to, m->to,
				m->cpu_over_pct);
		if (m->room_lost)
			fprintf(stderr, "%sevacuating %s: %s goes to %s, which loses HA's room to "
				"restart the VMs of ha-host-failures lost hosts: no host that takes "
				"it keeps it\n", tty ? "\r\033[K" : "", host, m->vm, m->to);
	}
}

/* Failures seen on the follow's first look: they predate it. */
struct old_failures {
	uint64_t id[64];
	size_t n;
};

/*
 * Say each new reason a VM's move from the host failed, once: the
 * evacuation tries it again (every second, so the same reason is said
 * once), and the operator sees why it has not left yet. said:
 * "\nvm\terror\n..." of those said so far.
 */
static void say_failed(const Ferry__Cluster__PlanInfo *p, const char *host, bool tty,
		       struct old_failures *old, bool first, char *said, size_t len)
{
	for (size_t i = 0; i < p->n_failed; i++) {
		const Ferry__Cluster__PlanFailed *f = p->failed[i];
		char key[1200];
		size_t n = strlen(said);
		bool seen = false;

		if (first) {
			if (old->n < sizeof(old->id) / sizeof(old->id[0]))
				old->id[old->n++] = f->id;
			continue;
		}
		for (size_t k = 0; k < old->n; k++)
			seen |= old->id[k] == f->id;
		if (seen || strlen(f->vm) + strlen(f->error) + 4 > sizeof(key))
			continue;
		snprintf(key, sizeof(key), "\n%s\t%s\n", f->vm, f->error);
		if (strstr(said, key) || n + strlen(key) >= len)
			continue;
		snprintf(said + n, len - n, "%s", n ? key + 1 : key);
		fprintf(stderr, "%sevacuating %s: %s's move to %s failed; trying again: %s\n",
			tty ? "\r\033[K" : "", host, f->vm, f->to, f->error);
	}
}

/* The VMs left whose last move failed, and why (after the stuck ones). */
static void print_failed(const Ferry__Cluster__PlanInfo *p)
{
	for (size_t i = 0; i < p->n_failed; i++) {
		bool stuck = false;

		for (size_t k = 0; k < p->n_stuck; k++)
			stuck |= !strcmp(p->stuck[k]->vm, p->failed[i]->vm);
		if (!stuck)
			printf("  %s: its last move, to %s, failed: %s\n", p->failed[i]->vm,
			       p->failed[i]->to, p->failed[i]->error);
	}
}

/*
 * Enter maintenance and follow the evacuation until HOST is empty, or
 * until only VMs that cannot leave are left (and nothing moves).
 */
int clusterctl_maintenance(struct clusterctl *c, const char *host, bool enter, bool force_stop,
			   bool wait)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__MaintenanceReq m = FERRY__CLUSTER__MAINTENANCE_REQ__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__Response *r;
	bool tty = isatty(2) && !c->json;
	double t0 = mono_ms(), moved_at = mono_ms();
	uint32_t start_remaining = 0, last_remaining = UINT32_MAX, last_incoming = 0;
	char said[1024] = "", failed[16384] = "", coming[48] = "";
	int status, quiet = 0;
	bool empty = false, left = false, gone = false, first = true;
	struct old_failures old = { .n = 0 };

	m.host = (char *)host;
	m.enter = enter;
	CLUSTERCTL_REQ(maintenance, MAINTENANCE, &m);
	status = clusterctl_simple(c, &req, clusterctl_print_nothing);
	if (status || !enter || !wait)
		return status;
	name.name = (char *)host;
	req = (Ferry__Cluster__Request)FERRY__CLUSTER__REQUEST__INIT;
	CLUSTERCTL_REQ(evacuation, EVACUATION, &name);
	for (;;) {
		const struct timespec pause = { 0, 200000000 };
		const Ferry__Cluster__PlanInfo *p;

		r = clusterctl_call(c, &req, &status);
		if (!r)
			return status;
		if (r->error || !r->plan)
			return clusterctl_finish(c, r, clusterctl_print_nothing);
		p = r->plan;
		/* One that was on its way in may land, and is then one to move. */
		if (p->remaining > start_remaining)
			start_remaining = p->remaining;
		if (p->incoming)
			snprintf(coming, sizeof(coming), ", %u on its way in", p->incoming);
		else
			coming[0] = 0;
		if (!c->json) {
			say_placement(p, host, tty, said, sizeof(said));
			say_failed(p, host, tty, &old, first, failed, sizeof(failed));
		}
		first = false;
		if (p->remaining != last_remaining || p->incoming != last_incoming) {
			/* Not a terminal: a line per change instead of a live one. */
			if (!tty && !c->json)
				fprintf(stderr, "evacuating %s: %u VM(s) left, %u in flight%s, "
					"ETA %.1f s\n", host, p->remaining, p->in_flight, coming,
					p->eta_ms / 1e3);
			last_remaining = p->remaining;
			last_incoming = p->incoming;
			moved_at = mono_ms();
		}
		if (tty)
			fprintf(stderr, "\r\033[Kevacuating %s: %u of %u VM(s) gone, %u in flight%s, "
				"%zu to start, ETA %.1f s  (%.1f s)", host,
				start_remaining - p->remaining, start_remaining, p->in_flight,
				coming, p->n_moves, p->eta_ms / 1e3, (mono_ms() - t0) / 1e3);
		/* Done, or stuck: only unmovable VMs left, twice in a row. */
		quiet = !p->in_flight && !p->n_moves && !p->incoming ? quiet + 1 : 0;
		empty = !p->remaining && !p->incoming;
		/* host maintenance exit, asked meanwhile, ends the evacuation. */
		left = !empty && r->host &&
		       r->host->mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
		gone = !empty && p->host_down;
		if (empty || quiet >= 3 || left || gone ||
		    mono_ms() - moved_at > EVACUATE_STALL_S * 1000.0)
			break;
		CL_FREE(r);
		nanosleep(&pause, NULL);
	}
	if (tty)
		fprintf(stderr, "\r\033[K");
	if (c->json) {
		cl_msg_json(stdout, &r->base);
	} else if (gone) {
		printf("%s left the cluster before it was empty: %u VM(s) still placed on it; "
		       "its HA VMs restart elsewhere after ha-fence-s, and the evacuation goes on "
		       "once it is back\n", host, r->plan->remaining);
	} else if (left) {
		printf("%s left maintenance (host maintenance exit) before it was empty: %u "
		       "VM(s) still on it%s\n", host, r->plan->remaining, coming);
	} else if (empty) {
		printf("%s is empty and in maintenance: %u VM(s) moved in %.1f s\n", host,
		       start_remaining, (mono_ms() - t0) / 1e3);
	} else {
		printf("%s is in maintenance but not empty: %u VM(s) could not leave%s\n", host,
		       r->plan->remaining, coming);
		for (size_t i = 0; i < r->plan->n_stuck; i++)
			printf("  %s: %s\n", r->plan->stuck[i]->vm, r->plan->stuck[i]->reason);
		print_failed(r->plan);
		if (!r->plan->n_stuck)
			printf("  the evacuation made no progress for %d s\n", EVACUATE_STALL_S);
	}
	status = !empty ? 1 : 0;
	if (left || gone)
		force_stop = false;   /* taken back by the operator, or not there to stop on */
	if (status && force_stop) {
		status = 0;
		for (size_t i = 0; i < r->plan->n_stuck; i++) {
			if (!c->json)
				printf("  stopping %s (--force-stop)\n", r->plan->stuck[i]->vm);
			status |= vm_stop_one(c, r->plan->stuck[i]->vm);
		}
	}
	CL_FREE(r);
	return status;
}
