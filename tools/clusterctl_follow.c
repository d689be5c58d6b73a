/* clusterctl's commands that follow what they start to its end: migrate, host maintenance. */
#include <getopt.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "tools/clusterctl.h"

static double mono_ms(void)
{
	return now_ns() / 1e6;
}

static void progress_line(const Ferry__Cluster__Response *r, const char *vm,
			  const char *host, double t0)
{
	const Ferry__Cluster__MigProgress *p = r->progress;

	if (p)
		fprintf(stderr, "\r\033[Kmigrate %s -> %s: %-10s round %u %5.1f%%  %7.0f MB/s  "
			"dirty %6.0f pages/s  ETA %5.1f s  (%.1f s)", vm, host, p->state,
			p->round, p->percent, p->bandwidth_bps / 1e6, p->dirty_pages_per_s,
			p->eta_s, (mono_ms() - t0) / 1e3);
	else
		fprintf(stderr, "\r\033[Kmigrate %s -> %s: preparing the destination  (%.1f s)",
			vm, host, (mono_ms() - t0) / 1e3);
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
	printf("migrated %s from %s to %s in %.0f ms: vmon %.0f ms, downtime %.2f ms, "
	       "%.1f MB in %u round(s); orchestration %.0f ms\n", r->vm->name, m->source,
	       m->destination, wall, m->total_ms, m->downtime_ms, m->bytes / 1e6, m->rounds,
	       m->orchestration_ms);
	return 0;
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
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__Response *r;
	bool wait = true, tty = isatty(2) && !c->json;
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
	name.name = m.vm;
	req = (Ferry__Cluster__Request)FERRY__CLUSTER__REQUEST__INIT;
	CLUSTERCTL_REQ(migrate_status, MIGRATE_STATUS, &name);
	for (;;) {
		const struct timespec pause = { 0, 1000000 };

		r = clusterctl_call(c, &req, &status);
		if (!r)
			return status;
		if (r->error)
			return clusterctl_finish(c, r, clusterctl_print_nothing);
		if (r->vm && (!r->vm->migration || r->vm->migration->id != id) &&
		    r->vm->last_migration && r->vm->last_migration->id == id) {
			if (tty)
				fprintf(stderr, "\r\033[K");
			status = migrate_result(c, r, t0);
			CL_FREE(r);
			return status;
		}
		if (r->vm && !r->vm->migration && (!r->vm->last_migration ||
						   r->vm->last_migration->id != id)) {
			fprintf(stderr, "clusterctl: migrate: %s: the migration vanished from "
				"the state (superseded?)\n", m.vm);
			CL_FREE(r);
			return 1;
		}
		if (tty)
			progress_line(r, m.vm, m.host, t0);
		CL_FREE(r);
		nanosleep(&pause, NULL);
	}
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
	uint32_t start_remaining = 0, last_remaining = UINT32_MAX;
	int status, quiet = 0;

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
		if (!start_remaining)
			start_remaining = p->remaining;
		if (p->remaining != last_remaining) {
			/* Not a terminal: a line per change instead of a live one. */
			if (!tty && !c->json)
				fprintf(stderr, "evacuating %s: %u VM(s) left, %u in flight, "
					"ETA %.1f s\n", host, p->remaining, p->in_flight,
					p->eta_ms / 1e3);
			last_remaining = p->remaining;
			moved_at = mono_ms();
		}
		if (tty)
			fprintf(stderr, "\r\033[Kevacuating %s: %u of %u VM(s) gone, %u in flight, "
				"%zu to start, ETA %.1f s  (%.1f s)", host,
				start_remaining - p->remaining, start_remaining, p->in_flight,
				p->n_moves, p->eta_ms / 1e3, (mono_ms() - t0) / 1e3);
		/* Done, or stuck: only unmovable VMs left, twice in a row. */
		quiet = !p->in_flight && !p->n_moves ? quiet + 1 : 0;
		if (!p->remaining || quiet >= 3 ||
		    mono_ms() - moved_at > EVACUATE_STALL_S * 1000.0)
			break;
		CL_FREE(r);
		nanosleep(&pause, NULL);
	}
	if (tty)
		fprintf(stderr, "\r\033[K");
	if (c->json) {
		cl_msg_json(stdout, &r->base);
	} else if (!r->plan->remaining) {
		printf("%s is empty and in maintenance: %u VM(s) moved in %.1f s\n", host,
		       start_remaining, (mono_ms() - t0) / 1e3);
	} else {
		printf("%s is in maintenance but not empty: %u VM(s) could not leave\n", host,
		       r->plan->remaining);
		for (size_t i = 0; i < r->plan->n_stuck; i++)
			printf("  %s: %s\n", r->plan->stuck[i]->vm, r->plan->stuck[i]->reason);
		if (!r->plan->n_stuck)
			printf("  the evacuation made no progress for %d s\n", EVACUATE_STALL_S);
	}
	status = r->plan->remaining ? 1 : 0;
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
