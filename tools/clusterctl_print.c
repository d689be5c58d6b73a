/* clusterctl's text output: what each answer prints without -o json. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cluster/cl_admit.h"
#include "cluster/cl_plan.h"
#include "cluster/cl_settings.h"
#include "cluster/cl_state.h"
#include "core/util.h"
#include "tools/clusterctl.h"

static const char *vm_state(const Ferry__Cluster__Vm *vm)
{
	if (vm->migration)
		return "migrating";
	return vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING ? "running" : "stopped";
}

static bool is_online(const Ferry__Cluster__Response *r, const char *host)
{
	for (size_t i = 0; i < r->n_online; i++)
		if (!strcmp(r->online[i], host))
			return true;
	return false;
}

static const Ferry__Cluster__HostLoad *load_of(const Ferry__Cluster__Response *r, const char *host)
{
	for (size_t i = 0; i < r->n_loads; i++)
		if (!strcmp(r->loads[i]->host, host))
			return r->loads[i];
	return NULL;
}

/* The live figures of vm from its host's agent, or NULL. */
static const Ferry__Cluster__VmLoad *vm_load_of(const Ferry__Cluster__Response *r,
						const Ferry__Cluster__Vm *vm)
{
	const Ferry__Cluster__HostLoad *l = *vm->host ? load_of(r, vm->host) : NULL;

	for (size_t i = 0; l && i < l->n_vms; i++)
		if (!strcmp(l->vms[i]->name, vm->name))
			return l->vms[i];
	return NULL;
}

/* Its vmon paused the guest on its own (a disk full or gone): why, else NULL. */
static const char *vm_paused_why(const Ferry__Cluster__Response *r, const Ferry__Cluster__Vm *vm)
{
	const Ferry__Cluster__VmLoad *v = vm_load_of(r, vm);

	return v && v->reason && *v->reason && strcmp(v->state, "waiting") &&
	       is_online(r, vm->host) ? v->reason : NULL;
}

/* Its agent starts it again later: its disk was in use, or out of reach. */
static const char *vm_waiting_why(const Ferry__Cluster__Response *r, const Ferry__Cluster__Vm *vm)
{
	const Ferry__Cluster__VmLoad *v = vm_load_of(r, vm);

	return v && !strcmp(v->state, "waiting") && !vm->migration && is_online(r, vm->host) ?
	       v->reason : NULL;
}

/* The operator paused it (vm pause): it stays paused until vm resume. */
static bool vm_held(const Ferry__Cluster__Response *r, const Ferry__Cluster__Vm *vm)
{
	const Ferry__Cluster__VmLoad *v = vm_load_of(r, vm);

	return v && v->held && is_online(r, vm->host);
}

static const char *host_mode(const Ferry__Cluster__Host *h)
{
	return h->witness ? "witness" :
	       h->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE ? "maintenance" :
	       "active";
}

/* How long a host has not saved the cluster state, in whole seconds. */
static unsigned long long unsaved_s(const Ferry__Cluster__HostLoad *l)
{
	uint64_t now = (uint64_t)time(NULL) * 1000;

	return now > l->state_unsaved_unix_ms ? (now - l->state_unsaved_unix_ms) / 1000 : 0;
}

static bool admit_up(const void *opaque, const char *host)
{
	return is_online(opaque, host);
}

#define ROOM_BUDGET_MS 1000   /* status's search for the room on each host */

/*
 * HA admission control as the agents judge it (cl_admit.h): a cluster that
 * would not survive, or how much it survives and the room left for new
 * VMs (as vSphere shows current against configured failover capacity).
 */
static void admission_print(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;
	unsigned k = st ? (unsigned)cl_setting_get(st, CL_SET_HA_HOST_FAILURES) : 0;
	uint64_t deadline;
	size_t shown = 0, skipped = 0;
	unsigned tol;
	char why[512], room[32];

	if (!k)
		return;
	if (cl_admit_ha(st, k, admit_up, r, NULL, 0, why, sizeof(why)) == -ENOSPC) {
		printf("warning: HA admission control (ha-host-failures %u): %s; VM starts are "
		       "refused until there is room\n", k, why);
		return;
	}
	tol = cl_admit_tolerates(st, admit_up, r);
	printf("HA admission control (ha-host-failures %u): holds; the HA VMs would restart "
	       "after losing any %u host%s\n", k, tol, tol == 1 ? "" : "s");
	/*
	 * A search of judgements per host: near its limit a cluster of 64
	 * hosts takes minutes for all (tests/bench/admit_bench), so the
	 * hosts past a second are left out, and said to be.
	 */
	printf("room for a new VM, keeping it:");
	deadline = now_ns() + ROOM_BUDGET_MS * 1000000ull;
	for (size_t i = 0; i < st->n_hosts; i++) {
		const Ferry__Cluster__Host *h = st->hosts[i];
		uint64_t m;

		if (h->witness)
			continue;
		if (now_ns() > deadline) {
			skipped++;
			continue;
		}
		m = cl_admit_room(st, k, admit_up, r, h->name);
		fmt_size(m, room, sizeof(room));
		printf("%s %s %s", shown++ ? "," : "", h->name, m ? room : "none");
	}
	if (skipped)
		printf("%s %zu more host(s) not judged (over %d ms; vm start judges each start)",
		       shown ? ";" : "", skipped, ROOM_BUDGET_MS);
	printf("\n");
}

void clusterctl_print_hosts(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;
	size_t online = 0, unsaved = 0;

	printf("%-12s %-7s %-12s %-15s %5s %10s %10s %6s %4s\n", "HOST", "STATUS", "MODE",
	       "ADDRESS", "CPUS", "MEM", "VM MEM", "LOAD", "VMS");
	for (size_t i = 0; st && i < st->n_hosts; i++) {
		const Ferry__Cluster__Host *h = st->hosts[i];
		const Ferry__Cluster__HostLoad *l = load_of(r, h->name);
		char mem[32] = "-", used[32];
		unsigned vms = 0;

		for (size_t k = 0; k < st->n_vms; k++)
			vms += !strcmp(st->vms[k]->host, h->name) &&
			       st->vms[k]->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
		if (h->inventory)
			fmt_size(h->inventory->mem_bytes, mem, sizeof(mem));
		fmt_size(l ? l->vm_mem_bytes : 0, used, sizeof(used));
		printf("%-12s %-7s %-12s %-15s %5u %10s %10s %6.2f %4u\n", h->name,
		       is_online(r, h->name) ? "online" : "down", host_mode(h), h->address,
		       h->inventory ? h->inventory->cpus : 0, mem, used, l ? l->cpu_load : 0.0, vms);
	}
	for (size_t i = 0; st && i < st->n_hosts; i++)
		online += is_online(r, st->hosts[i]->name);
	for (size_t i = 0; i < r->n_loads; i++) {
		const Ferry__Cluster__HostLoad *l = r->loads[i];

		if (!*l->state_unsaved)
			continue;
		if (is_online(r, l->host)) {
			unsaved++;
			printf("warning: %s has not saved the cluster state for %llu s (%s); it holds "
			       "it in memory, as the other hosts do: free its disk\n",
			       l->host, unsaved_s(l), l->state_unsaved);
		} else {
			printf("warning: %s, down now, had not saved the cluster state when last "
			       "heard from (%s)\n", l->host, l->state_unsaved);
		}
	}
	/* As the agents decide (agent_unsaved_most), from the same figures. */
	if (cl_state_unsaved_refuses(unsaved, online))
		printf("warning: %zu of the %zu online hosts cannot save the cluster state: changes "
		       "to VMs, settings and rules are refused until most can\n", unsaved, online);
	admission_print(r);
}

void clusterctl_print_vms(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;

	printf("%-16s %-10s %-12s %10s %5s %-10s %s\n", "VM", "STATE", "HOST", "MEM", "VCPUS",
	       "CPU MODEL", "NOTE");
	for (size_t i = 0; st && i < st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = st->vms[i];
		const char *paused = vm->migration ? NULL : vm_paused_why(r, vm),
			   *waiting = vm_waiting_why(r, vm);
		char mem[32], note[600] = "";

		if (!paused && !vm->migration && vm_held(r, vm))
			paused = "paused by the operator: vm resume runs it";

		fmt_size(vm->mem_bytes, mem, sizeof(mem));
		if (vm->migration)
			snprintf(note, sizeof(note), "%sto %s%s", vm->ha ? "ha; " : "",
				 vm->migration->destination,
				 vm->migration->cancel ? " (cancelling)" : "");
		else if (paused || waiting)
			snprintf(note, sizeof(note), "%s%s", vm->ha ? "ha; " : "",
				 paused ? paused : waiting);
		else
			snprintf(note, sizeof(note), "%s%s", vm->ha ? (*vm->last_error ? "ha; " : "ha")
				 : "", vm->last_error);
		printf("%-16s %-10s %-12s %10s %5u %-10s %s\n", vm->name,
		       paused ? "paused" : waiting ? "waiting" : vm_state(vm),
		       *vm->host ? vm->host : "-", mem, vm->vcpus, vm->cpu_model, note);
	}
}

void clusterctl_print_status(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__NodeStatus *n = r->node;

	if (n) {
		printf("cluster %s, state seq %llu; this node: %s (corosync node %u)\n",
		       r->state ? r->state->cluster_name : "?",
		       r->state ? (unsigned long long)r->state->seq : 0ull, n->name, n->nodeid);
		printf("quorum: %s (%u of %u votes, %u needed); synced: %s\n",
		       n->quorate ? "yes" : "NO: changes are refused", n->votes,
		       n->expected_votes, n->quorum, n->synced ? "yes" : "no");
		printf("members:");
		for (size_t i = 0; i < n->n_members; i++)
			printf(" %s", n->members[i]);
		printf("\n\n");
	}
	clusterctl_print_hosts(r);
	printf("\n");
	clusterctl_print_vms(r);
}

void clusterctl_print_host(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__Host *h = r->host;
	const Ferry__Cluster__Inventory *inv = h->inventory;
	const Ferry__Cluster__HostLoad *l = load_of(r, h->name);
	char mem[32] = "-";

	if (inv)
		fmt_size(inv->mem_bytes, mem, sizeof(mem));
	printf("host:       %s (%s)\n", h->name, is_online(r, h->name) ? "online" : "down");
	printf("address:    %s, agent port %u, corosync node %u\n", h->address,
	       h->agent_port, h->nodeid);
	printf("mode:       %s%s\n", host_mode(h), h->witness ? " (runs no VMs)" : "");
	printf("agent:      applies protocol %u%s\n", h->agent_proto,
	       h->agent_proto < CL_STATE_PROTO ? " (older than this clusterctl's)" : "");
	if (inv) {
		printf("cpus:       %u, TSC %llu kHz, memory %s, kernel %s\n", inv->cpus,
		       (unsigned long long)inv->tsc_khz, mem, inv->kernel);
		printf("features:  ");
		for (size_t i = 0; i < inv->n_cpu_features; i++)
			printf(" %s", inv->cpu_features[i]);
		printf("\nbridges:   ");
		for (size_t i = 0; i < inv->n_bridges; i++)
			printf(" %s", inv->bridges[i]);
		printf("%s\n", inv->n_bridges ? "" : " none (no VM with a NIC can run here)");
	}
	if (l && *l->state_unsaved)
		printf("state:      NOT SAVED for %llu s: %s\n", unsaved_s(l), l->state_unsaved);
	if (l) {
		printf("load:       %.2f per CPU\n", l->cpu_load);
		for (size_t i = 0; i < l->n_vms; i++)
			printf("  vm %-16s pid %-7d %5.1f %% CPU  %s\n", l->vms[i]->name,
			       l->vms[i]->pid, l->vms[i]->cpu_pct, l->vms[i]->state);
	}
}

void clusterctl_print_vm(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__Vm *vm = r->vm;
	const Ferry__Cluster__MigrationResult *m = vm->last_migration;
	const char *paused = vm_paused_why(r, vm);
	char mem[32];

	fmt_size(vm->mem_bytes, mem, sizeof(mem));
	printf("vm:         %s\n", vm->name);
	printf("state:      %s%s%s\n", vm_state(vm), *vm->host ? " on " : "", vm->host);
	if (paused)
		printf("paused:     by its vmon: %s\n", paused);
	if (vm_waiting_why(r, vm))
		printf("waiting:    not running: %s\n", vm_waiting_why(r, vm));
	if (vm_held(r, vm))
		printf("paused:     by the operator (vm pause): vm resume runs it\n");
	printf("guest:      %s %s\n", vm->guest, vm->args);
	printf("memory:     %s, %u vCPU(s), CPU model %s\n", mem, vm->vcpus, vm->cpu_model);
	for (size_t i = 0; i < vm->n_disks; i++)
		printf("disk %zu:     %s%s%s\n", i, vm->disks[i], *vm->host ? ", owned by " : "",
		       vm->host);
	for (size_t i = 0; i < vm->n_nets; i++)
		printf("net %zu:      %s\n", i, vm->nets[i]);
	printf("generation: %llu (restarts %u", (unsigned long long)vm->generation, vm->restarts);
	if (vm->n_crashes_unix_ms) {
		uint64_t now = (uint64_t)time(NULL) * 1000,
			 last = vm->crashes_unix_ms[vm->n_crashes_unix_ms - 1];

		/* The list is trimmed at each crash: it may hold some that no longer count. */
		printf("; guest crashes kept: %zu, the last %llu s ago", vm->n_crashes_unix_ms,
		       (unsigned long long)(now > last ? (now - last) / 1000 : 0));
	}
	printf(")\n");
	printf("ha:         %s\n", !vm->ha ? "no" : vm->ha_unarmed ?
	       "yes, not armed yet: its host's agent arms its vmon's fence, then it is "
	       "restarted on another host when its host is lost" :
	       "yes: restarted on another host when its host is lost");
	printf("priority:   %s\n", cl_priority_name(vm->priority) ? cl_priority_name(vm->priority)
								: "unknown");
	if (*vm->last_error)
		printf("last:       %s\n", vm->last_error);
	if (vm->migration)
		printf("migrating:  %s -> %s (migration %llu)%s\n", vm->migration->source,
		       vm->migration->destination, (unsigned long long)vm->migration->id,
		       vm->migration->cancel ? ", cancelling" : "");
	if (vm->migration && r->progress) {
		const Ferry__Cluster__MigProgress *p = r->progress;
		char cap[32];

		printf("progress:   %s, round %u, %.1f%%, %.1f MB sent, %.0f MB/s; at the "
		       "source: downtime target %llu ms, bandwidth cap %s\n", p->state, p->round,
		       p->percent, p->bytes / 1e6, p->bandwidth_bps / 1e6,
		       (unsigned long long)p->downtime_target_ms,
		       fmt_cap_mbps(p->bandwidth_cap_mbps, cap, sizeof(cap)));
	}
	if (m)
		printf("last migration: %s -> %s: %s%s%s%s\n", m->source, m->destination,
		       m->cancelled ? "cancelled: " : "",
		       m->ok ? (m->dry_run ? "dry run passed" : "done") : m->error,
		       *m->note ? "; " : "", m->note);
}

void clusterctl_print_nothing(const Ferry__Cluster__Response *r)
{
}

void clusterctl_print_message(const Ferry__Cluster__Response *r)
{
	if (r->message && *r->message)
		printf("%s\n", r->message);
}

void clusterctl_print_baseline(const Ferry__Cluster__Response *r)
{
	printf("cluster CPU model (%zu features every host has):\n", r->cpu->n_features);
	for (size_t i = 0; i < r->cpu->n_features; i++)
		printf("%s%s", r->cpu->features[i], i + 1 < r->cpu->n_features ? " " : "\n");
}

static const char *mode_name(Ferry__Cluster__BalanceMode m)
{
	return m == FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC ? "automatic" :
	       m == FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_MANUAL ? "manual" : "off";
}

void clusterctl_print_plan(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__PlanInfo *p = r->plan;

	if (!p)
		return;
	printf("balancer: %s, every %llu s, run by %s; %u migration(s) in flight\n",
	       mode_name(p->mode), (unsigned long long)p->interval_s,
	       *p->leader ? p->leader : "nobody (no quorum?)", p->in_flight);
	if (!p->n_moves && !p->n_stuck && p->imbalance_before == 0 && p->imbalance_after == 0)
		return;
	printf("imbalance %.3f -> %.3f with %zu move(s)\n", p->imbalance_before,
	       p->imbalance_after, p->n_moves);
	for (size_t i = 0; i < p->n_moves; i++) {
		const Ferry__Cluster__PlanMove *m = p->moves[i];

		printf("  %-16s %s -> %s  (%.0f ms, downtime %.1f ms, %.1f MB)", m->vm, m->from,
		       m->to, m->total_ms, m->downtime_ms, m->bytes / 1e6);
		if (m->cpu_over_pct > 0)
			printf("  over the CPU cap: %s at %.0f %% of its CPUs", m->to,
			       m->cpu_over_pct);
		if (m->room_lost)
			printf("  HA room lost: no host that takes it keeps room for "
			       "ha-host-failures");
		putchar('\n');
	}
}

void clusterctl_print_rules(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;

	printf("%-16s %-16s %-30s %s\n", "RULE", "KIND", "VMS", "HOSTS");
	for (size_t i = 0; st && i < st->n_rules; i++) {
		const Ferry__Cluster__Rule *rule = st->rules[i];
		char vms[512] = "", hosts[512] = "";
		size_t u = 0;

		for (size_t k = 0; k < rule->n_vms; k++)
			u += snprintf(vms + u, u < sizeof(vms) ? sizeof(vms) - u : 0, "%s%s",
				      k ? "," : "", rule->vms[k]);
		u = 0;
		for (size_t k = 0; k < rule->n_hosts; k++)
			u += snprintf(hosts + u, u < sizeof(hosts) ? sizeof(hosts) - u : 0, "%s%s",
				      k ? "," : "", rule->hosts[k]);
		printf("%-16s %-16s %-30s %s\n", rule->name, cl_rule_kind_name(rule->kind), vms,
		       *hosts ? hosts : "-");
	}
}

void clusterctl_print_events(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;

	for (size_t i = 0; st && i < st->n_events; i++) {
		const Ferry__Cluster__Event *e = st->events[i];
		time_t t = e->unix_ms / 1000;
		struct tm tm;
		char when[32];

		localtime_r(&t, &tm);
		strftime(when, sizeof(when), "%F %T", &tm);
		printf("%s.%03llu  #%-5llu %s\n", when, (unsigned long long)(e->unix_ms % 1000),
		       (unsigned long long)e->seq, e->text);
	}
}

void clusterctl_print_settings(const Ferry__Cluster__Response *r)
{
	char v[64];

	for (size_t i = 0; r->state && i < cl_settings_n; i++) {
		const struct cl_setting *k = &cl_settings[i];

		printf("%-26s %-16s %s\n    %s\n", k->key,
		       cl_setting_fmt(k, cl_setting_value(r->state, k), v, sizeof(v)),
		       cl_setting_raw(r->state, k) ? "(set)" : "(default)", k->help);
	}
}

/* --help: the keys from the table itself, so the text cannot drift. */
void clusterctl_print_setting_keys(void)
{
	printf("\nSettings (config set KEY VALUE; VALUE default restores the default):\n");
	for (size_t i = 0; i < cl_settings_n; i++) {
		const struct cl_setting *k = &cl_settings[i];

		printf("  %-26s %llu..%llu%s%s, default %s", k->key, (unsigned long long)k->min,
		       (unsigned long long)k->max, *k->unit ? " " : "", k->unit,
		       k->def ? "" : "none");
		if (k->def)
			printf("%llu", (unsigned long long)k->def);
		printf("\n      %s\n", k->help);
	}
}

/* Effective values rather than the raw message, where 0 means "default". */
void clusterctl_print_settings_json(const Ferry__Cluster__State *st)
{
	printf("{\"settings\":[");
	for (size_t i = 0; i < cl_settings_n; i++) {
		const struct cl_setting *k = &cl_settings[i];

		printf("%s{\"key\":\"%s\",\"value\":%llu,\"default\":%llu,\"set\":%s,"
		       "\"unit\":\"%s\"}", i ? "," : "", k->key,
		       (unsigned long long)cl_setting_value(st, k), (unsigned long long)k->def,
		       cl_setting_raw(st, k) ? "true" : "false", k->unit);
	}
	printf("]}\n");
}
