/* clusterctl: drive a Ferry cluster through any of its agents. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cl_msg.h"
#include "cluster/cl_net.h"
#include "cluster/cl_pki.h"
#include "cluster/cl_plan.h"
#include "cluster/cl_settings.h"
#include "cluster/cl_state.h"
#include "core/util.h"
#include "tools/clusterctl.h"

static const char usage[] =
"Usage: clusterctl [--socket PATH | --connect HOST[:PORT] --tls-dir DIR] [-o json]\n"
"                  COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  status                        this node's view: quorum, members, hosts, VMs\n"
"  host list | host show HOST\n"
"  host mode HOST active|maintenance\n"
"  host remove HOST              forget a host that left for good: it must be\n"
"                                down, with no VM placed on it or migrating\n"
"  vm create NAME --guest IMAGE --mem SIZE [--vcpus N] [--args STR]\n"
"            [--cpu-model host|cluster|x86-64-v1..v4] [--disk SPEC]... [--ha]\n"
"            (default vcpus 1, model cluster: what every current host has;\n"
"            SPEC: a raw image PATH on shared storage, or\n"
"            nbd://HOST:PORT/EXPORT,lease=PATH, as vmon --disk;\n"
"            --ha: when its host leaves the cluster, its vmon there stops\n"
"            itself after ha-fence-s and the VM restarts (boots again) on\n"
"            another host 10 s later)\n"
"  vm start NAME [--host HOST]   (without --host: the online host that fits\n"
"                                 with the least guest memory placed on it)\n"
"  vm stop NAME | vm delete NAME | vm list | vm show NAME\n"
"  vm set NAME --ha on|off       HA for a stopped VM (it takes effect when the\n"
"                                VM starts: its vmon's fence is set then)\n"
"  migrate VM HOST [--downtime-ms N] [--bandwidth MBITS] [--dry-run] [--no-wait]\n"
"                                live-migrate VM to HOST: prechecked (CPU model,\n"
"                                memory, host state) before any page moves; a\n"
"                                progress line on a terminal, then the result.\n"
"                                --bandwidth: cap its stream at MBITS Mbit/s\n"
"                                (default: the cluster's migration-bandwidth-mbps,\n"
"                                none unless set), to spare a shared link.\n"
"                                --downtime-ms: default migration-downtime-ms\n"
"                                --dry-run: the precheck verdict and vmon's\n"
"                                prediction (time, downtime), nothing moves\n"
"  host maintenance HOST enter|exit [--force-stop] [--no-wait]\n"
"                                enter: no new VMs, and every VM leaves HOST\n"
"                                (planned: compatible hosts with room, rules,\n"
"                                cheapest first, bounded concurrency), with\n"
"                                progress and ETA; VMs that cannot leave are\n"
"                                named with the reason and the exit status is\n"
"                                1, unless --force-stop stops them\n"
"  balance status | recommend | apply | mode off|manual|automatic\n"
"                                the load balancer: its mode, its plan now,\n"
"                                or carry the plan out once\n"
"  rule add NAME --kind KIND --vms A,B[,..] [--hosts H1[,..]]\n"
"                                KIND: affinity, anti-affinity (hard, VMs),\n"
"                                host-must, host-must-not (hard), host-should,\n"
"                                host-should-not (soft; with --hosts)\n"
"  rule list | rule delete NAME\n"
"  config show                   the cluster-wide settings, set or default\n"
"  config set KEY VALUE [KEY VALUE]...\n"
"                                change settings for the whole cluster, all or\n"
"                                none (VALUE default: back to the default);\n"
"                                e.g. migration-bandwidth-mbps caps every\n"
"                                migration that names no --bandwidth\n"
"  events                        what the cluster did (the last 200 events)\n"
"  cpu baseline                  the cluster CPU model: features all hosts share\n"
"  cpu check VM HOST             can HOST run VM's CPU model? (exit 1 if not)\n"
"  cluster init [--dir DIR] [--name NAME]   create the cluster CA\n"
"  node add NAME ADDRESS [--dir DIR]        issue a node certificate\n"
"  node revoke NAME [--dir DIR]  refuse NAME's certificate cluster-wide\n"
"\n"
"Where to reach an agent: --socket PATH (or $FERRY_SOCKET; default\n"
"/var/lib/ferry/clusterd.sock; root only), or --connect HOST[:PORT] (or\n"
"$FERRY_CONNECT; port 7400) with mutual TLS from --tls-dir DIR (or\n"
"$FERRY_TLS_DIR: ca.pem, cert.pem, key.pem, e.g. the CA dir's admin/).\n"
"-o json prints every answer as one JSON object.\n"
"Exit status: 0 done, 1 refused or failed (the message says why), 2 bad usage.\n";

struct ctl {
	const char *socket;
	const char *connect;
	const char *tls_dir;
	bool json;
	struct xport *x;
};

__attribute__((format(printf, 1, 2)))
static int die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "clusterctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(clusterctl --help tells the commands)\n");
	return 2;
}

static int ctl_connect(struct ctl *c)
{
	char err[512], xerr[XPORT_ERR_LEN];
	struct xport_addr addr;
	struct xport_tls tls;
	char uri[300];
	int ret;

	if (c->x)
		return 0;
	if (c->connect) {
		snprintf(uri, sizeof(uri), "tcp:%s%s", c->connect,
			 strchr(c->connect, ':') ? "" : ":7400");
		if (xport_addr_parse(uri, &addr, xerr)) {
			fprintf(stderr, "clusterctl: --connect: %s\n", xerr);
			return 2;
		}
		if (!c->tls_dir) {
			fprintf(stderr, "clusterctl: --connect needs --tls-dir (or $FERRY_TLS_DIR)\n");
			return 2;
		}
		if (xport_tls_from_dir(c->tls_dir, &tls, xerr)) {
			fprintf(stderr, "clusterctl: --tls-dir: %s\n", xerr);
			return 2;
		}
		ret = cl_connect_tls(&addr, &tls, 10000, &c->x, err, sizeof(err));
	} else {
		ret = cl_connect_unix(c->socket, &c->x, err, sizeof(err));
	}
	if (ret) {
		fprintf(stderr, "clusterctl: %s\n", err);
		return 1;
	}
	return 0;
}

/* One request, one response; NULL after printing why. */
static Ferry__Cluster__Response *call(struct ctl *c, const Ferry__Cluster__Request *req,
				      int *status)
{
	Ferry__Cluster__Response *resp = NULL;
	char err[512];

	*status = ctl_connect(c);
	if (*status)
		return NULL;
	if (cl_call(c->x, req, CL_CALL_TIMEOUT_MS, &resp, err, sizeof(err))) {
		fprintf(stderr, "clusterctl: %s\n", err);
		*status = 1;
		return NULL;
	}
	return resp;
}

/* Print the outcome of a simple command; the exit status. */
static int finish(struct ctl *c, Ferry__Cluster__Response *r, void (*text)(const Ferry__Cluster__Response *))
{
	int status = r->error ? 1 : 0;

	if (c->json)
		cl_msg_json(stdout, &r->base);
	else if (r->error)
		fprintf(stderr, "clusterctl: %s\n", r->message);
	else if (text)
		text(r);
	CL_FREE(r);
	return status;
}

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

static const char *host_mode(const Ferry__Cluster__Host *h)
{
	return h->witness ? "witness" :
	       h->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE ? "maintenance" :
	       "active";
}

static void print_hosts(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;

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
}

static void print_vms(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__State *st = r->state;

	printf("%-16s %-10s %-12s %10s %5s %-10s %s\n", "VM", "STATE", "HOST", "MEM", "VCPUS",
	       "CPU MODEL", "NOTE");
	for (size_t i = 0; st && i < st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = st->vms[i];
		char mem[32], note[600] = "";

		fmt_size(vm->mem_bytes, mem, sizeof(mem));
		if (vm->migration)
			snprintf(note, sizeof(note), "%sto %s", vm->ha ? "ha; " : "",
				 vm->migration->destination);
		else
			snprintf(note, sizeof(note), "%s%s", vm->ha ? (*vm->last_error ? "ha; " : "ha")
				 : "", vm->last_error);
		printf("%-16s %-10s %-12s %10s %5u %-10s %s\n", vm->name, vm_state(vm),
		       *vm->host ? vm->host : "-", mem, vm->vcpus, vm->cpu_model, note);
	}
}

static void print_status(const Ferry__Cluster__Response *r)
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
	print_hosts(r);
	printf("\n");
	print_vms(r);
}

static void print_host(const Ferry__Cluster__Response *r)
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
		printf("\n");
	}
	if (l) {
		printf("load:       %.2f per CPU\n", l->cpu_load);
		for (size_t i = 0; i < l->n_vms; i++)
			printf("  vm %-16s pid %-7d %5.1f %% CPU  %s\n", l->vms[i]->name,
			       l->vms[i]->pid, l->vms[i]->cpu_pct, l->vms[i]->state);
	}
}

static void print_vm(const Ferry__Cluster__Response *r)
{
	const Ferry__Cluster__Vm *vm = r->vm;
	const Ferry__Cluster__MigrationResult *m = vm->last_migration;
	char mem[32];

	fmt_size(vm->mem_bytes, mem, sizeof(mem));
	printf("vm:         %s\n", vm->name);
	printf("state:      %s%s%s\n", vm_state(vm), *vm->host ? " on " : "", vm->host);
	printf("guest:      %s %s\n", vm->guest, vm->args);
	printf("memory:     %s, %u vCPU(s), CPU model %s\n", mem, vm->vcpus, vm->cpu_model);
	for (size_t i = 0; i < vm->n_disks; i++)
		printf("disk %zu:     %s%s%s\n", i, vm->disks[i], *vm->host ? ", owned by " : "",
		       vm->host);
	printf("generation: %llu (restarts %u)\n", (unsigned long long)vm->generation,
	       vm->restarts);
	printf("ha:         %s\n", vm->ha ? "yes: restarted on another host when its host is lost"
				       : "no");
	if (*vm->last_error)
		printf("last:       %s\n", vm->last_error);
	if (vm->migration)
		printf("migrating:  %s -> %s (migration %llu)\n", vm->migration->source,
		       vm->migration->destination, (unsigned long long)vm->migration->id);
	if (m)
		printf("last migration: %s -> %s: %s\n", m->source, m->destination,
		       m->ok ? (m->dry_run ? "dry run passed" : "done") : m->error);
}

static void print_nothing(const Ferry__Cluster__Response *r)
{
}

static void print_baseline(const Ferry__Cluster__Response *r)
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

static void print_plan(const Ferry__Cluster__Response *r)
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

		printf("  %-16s %s -> %s  (%.0f ms, downtime %.1f ms, %.1f MB)\n", m->vm, m->from,
		       m->to, m->total_ms, m->downtime_ms, m->bytes / 1e6);
	}
}

static void print_rules(const Ferry__Cluster__Response *r)
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

static void print_events(const Ferry__Cluster__Response *r)
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

static void print_settings(const Ferry__Cluster__Response *r)
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
static void print_setting_keys(void)
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
static void print_settings_json(const Ferry__Cluster__State *st)
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

/* ---- commands ----------------------------------------------------------- */

#define REQ(field, kase, val) do {                                     \
	req.cmd_case = FERRY__CLUSTER__REQUEST__CMD_##kase;            \
	req.field = (val);                                             \
} while (0)

static int simple(struct ctl *c, Ferry__Cluster__Request *req,
		  void (*text)(const Ferry__Cluster__Response *))
{
	int status;
	Ferry__Cluster__Response *r = call(c, req, &status);

	return r ? finish(c, r, text) : status;
}

static int maintenance(struct ctl *c, const char *host, bool enter, bool force_stop,
		       bool wait);

static int cmd_host(struct ctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__HostModeReq mode = FERRY__CLUSTER__HOST_MODE_REQ__INIT;

	if (argc == 1 && !strcmp(argv[0], "list")) {
		REQ(host_list, HOST_LIST, &empty);
		return simple(c, &req, print_hosts);
	}
	if (argc == 2 && !strcmp(argv[0], "show")) {
		name.name = argv[1];
		REQ(host_show, HOST_SHOW, &name);
		return simple(c, &req, print_host);
	}
	if (argc == 2 && !strcmp(argv[0], "remove")) {
		name.name = argv[1];
		REQ(host_remove, HOST_REMOVE, &name);
		return simple(c, &req, print_nothing);
	}
	if (argc == 3 && !strcmp(argv[0], "mode")) {
		mode.host = argv[1];
		if (!strcmp(argv[2], "maintenance"))
			mode.mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
		else if (strcmp(argv[2], "active"))
			return die_usage("host mode: '%s' is not active or maintenance", argv[2]);
		REQ(host_mode, HOST_MODE, &mode);
		return simple(c, &req, print_nothing);
	}
	if (argc >= 3 && !strcmp(argv[0], "maintenance")) {
		bool force = false, wait = true;

		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--force-stop"))
				force = true;
			else if (!strcmp(argv[i], "--no-wait"))
				wait = false;
			else
				return die_usage("host maintenance: unknown option '%s'", argv[i]);
		}
		if (strcmp(argv[2], "enter") && strcmp(argv[2], "exit"))
			return die_usage("host maintenance: enter or exit, not '%s'", argv[2]);
		return maintenance(c, argv[1], !strcmp(argv[2], "enter"), force, wait);
	}
	return die_usage("host: expected list, show HOST, mode HOST MODE, remove HOST or "
			 "maintenance HOST enter|exit");
}

static int vm_create(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "guest", required_argument, NULL, 'g' },
		{ "args", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "cpu-model", required_argument, NULL, 'c' },
		{ "disk", required_argument, NULL, 'd' },
		{ "ha", no_argument, NULL, 'H' },
		{ 0 },
	};
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Vm vm = FERRY__CLUSTER__VM__INIT;
	char *disks[8];
	int status;
	char guest[PATH_MAX];
	uint64_t v;
	int o;

	vm.cpu_model = "cluster";
	vm.vcpus = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'g':
			/* Every node must find it: make it absolute. */
			if (!realpath(optarg, guest)) {
				fprintf(stderr, "clusterctl: vm create: --guest %s: %s\n", optarg,
					strerror(errno));
				return 1;
			}
			vm.guest = guest;
			break;
		case 'a': vm.args = optarg; break;
		case 'm':
			if (parse_size(optarg, &v))
				return die_usage("vm create: --mem: not a size: %s", optarg);
			vm.mem_bytes = v;
			break;
		case 'v':
			if (parse_u64(optarg, 1, 32, &v))
				return die_usage("vm create: --vcpus: not 1..32: %s", optarg);
			vm.vcpus = v;
			break;
		case 'c': vm.cpu_model = optarg; break;
		case 'H': vm.ha = true; break;
		case 'd':
			if (vm.n_disks == 8)
				return die_usage("vm create: at most 8 disks");
			/* Every node must find a path disk: make it absolute. */
			if (strncmp(optarg, "nbd://", 6)) {
				char *abs = realpath(optarg, NULL);

				if (!abs) {
					fprintf(stderr, "clusterctl: vm create: --disk %s: %s\n",
						optarg, strerror(errno));
					return 1;
				}
				disks[vm.n_disks++] = abs;
			} else {
				disks[vm.n_disks++] = strdup(optarg);
			}
			vm.disks = disks;
			break;
		default: return die_usage("vm create: bad option");
		}
	}
	if (optind + 1 != argc)
		return die_usage("vm create: expected one NAME");
	if (!vm.guest[0] || !vm.mem_bytes)
		return die_usage("vm create: --guest and --mem are required");
	vm.name = argv[optind];
	REQ(vm_create, VM_CREATE, &vm);
	status = simple(c, &req, print_nothing);
	for (size_t i = 0; i < vm.n_disks; i++)
		free(disks[i]);
	return status;
}

static int cmd_vm(struct ctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__VmStartReq start = FERRY__CLUSTER__VM_START_REQ__INIT;
	const char *verb = argc ? argv[0] : "";

	if (!strcmp(verb, "create"))
		return vm_create(c, argc, argv);
	if (!strcmp(verb, "list") && argc == 1) {
		REQ(vm_list, VM_LIST, &empty);
		return simple(c, &req, print_vms);
	}
	if (!strcmp(verb, "start") && (argc == 2 || (argc == 4 && !strcmp(argv[2], "--host")))) {
		start.name = argv[1];
		start.host = argc == 4 ? argv[3] : "";
		REQ(vm_start, VM_START, &start);
		return simple(c, &req, print_nothing);
	}
	if (!strcmp(verb, "set")) {
		Ferry__Cluster__CmdVmSet set = FERRY__CLUSTER__CMD_VM_SET__INIT;

		if (argc != 4 || strcmp(argv[2], "--ha") ||
		    (strcmp(argv[3], "on") && strcmp(argv[3], "off")))
			return die_usage("vm set: expected NAME --ha on|off");
		set.name = argv[1];
		set.set_ha = true;
		set.ha = !strcmp(argv[3], "on");
		REQ(vm_set, VM_SET, &set);
		return simple(c, &req, print_nothing);
	}
	if (argc != 2)
		return die_usage("vm: expected create, start, stop, delete, set, list or show "
				 "(with a NAME)");
	name.name = argv[1];
	if (!strcmp(verb, "stop"))
		REQ(vm_stop, VM_STOP, &name);
	else if (!strcmp(verb, "delete"))
		REQ(vm_delete, VM_DELETE, &name);
	else if (!strcmp(verb, "show"))
		REQ(vm_show, VM_SHOW, &name);
	else
		return die_usage("vm: unknown command '%s'", verb);
	return simple(c, &req, req.cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_SHOW ?
		      print_vm : print_nothing);
}

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

static int migrate_result(struct ctl *c, Ferry__Cluster__Response *r, double t0)
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

static int cmd_migrate(struct ctl *c, int argc, char **argv)
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
				return die_usage("migrate: --downtime-ms: not 1..60000: %s", optarg);
			m.downtime_ms = v;
			break;
		case 'b':
			if (parse_u64(optarg, 1, 10000000, &v))
				return die_usage("migrate: --bandwidth: not 1..10000000 Mbit/s: %s",
						 optarg);
			m.bandwidth_mbps = v;
			break;
		case 'n': m.dry_run = true; break;
		case 'w': wait = false; break;
		default: return die_usage("migrate: bad option");
		}
	}
	if (optind + 2 != argc)
		return die_usage("migrate: expected VM HOST");
	m.vm = argv[optind];
	m.host = argv[optind + 1];
	REQ(migrate, MIGRATE, &m);
	r = call(c, &req, &status);
	if (!r)
		return status;
	if (r->error || !wait)
		return finish(c, r, print_nothing);
	id = r->migration_id;
	CL_FREE(r);
	name.name = m.vm;
	req = (Ferry__Cluster__Request)FERRY__CLUSTER__REQUEST__INIT;
	REQ(migrate_status, MIGRATE_STATUS, &name);
	for (;;) {
		const struct timespec pause = { 0, 1000000 };

		r = call(c, &req, &status);
		if (!r)
			return status;
		if (r->error)
			return finish(c, r, print_nothing);
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

static int cmd_config(struct ctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__CmdConfigSet set = FERRY__CLUSTER__CMD_CONFIG_SET__INIT;
	Ferry__Cluster__ConfigItem *items = NULL, **ptrs = NULL;
	Ferry__Cluster__Response *r;
	int status;

	if (argc == 1 && !strcmp(argv[0], "show")) {
		REQ(status, STATUS, &empty);
	} else if (argc >= 3 && argc % 2 == 1 && !strcmp(argv[0], "set")) {
		set.n_items = (argc - 1) / 2;
		items = calloc(set.n_items, sizeof(*items));
		ptrs = calloc(set.n_items, sizeof(*ptrs));
		if (!items || !ptrs) {
			free(items);
			free(ptrs);
			return 1;
		}
		for (size_t i = 0; i < set.n_items; i++) {
			const char *val = argv[2 + 2 * i];

			ferry__cluster__config_item__init(&items[i]);
			items[i].key = argv[1 + 2 * i];
			ptrs[i] = &items[i];
			if (strcmp(val, "default") &&
			    parse_u64(val, 1, UINT64_MAX, &items[i].value)) {
				status = die_usage("config set: %s: not a number above 0 or 'default': %s",
						   argv[1 + 2 * i], val);
				free(items);
				free(ptrs);
				return status;
			}
		}
		set.items = ptrs;
		REQ(config_set, CONFIG_SET, &set);
	} else {
		return die_usage("config: expected show, or set KEY VALUE [KEY VALUE]...");
	}
	r = call(c, &req, &status);
	free(items);
	free(ptrs);
	if (!r)
		return status;
	if (c->json && !r->error && r->state) {
		print_settings_json(r->state);
		CL_FREE(r);
		return 0;
	}
	return finish(c, r, print_settings);
}

static int cmd_balance(struct ctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__BalanceReq b = FERRY__CLUSTER__BALANCE_REQ__INIT;

	if (argc == 2 && !strcmp(argv[0], "mode")) {
		if (!strcmp(argv[1], "automatic"))
			b.mode = FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC;
		else if (!strcmp(argv[1], "manual"))
			b.mode = FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_MANUAL;
		else if (strcmp(argv[1], "off"))
			return die_usage("balance mode: off, manual or automatic, not '%s'", argv[1]);
	} else if (argc != 1 || (strcmp(argv[0], "status") && strcmp(argv[0], "recommend") &&
				 strcmp(argv[0], "apply"))) {
		return die_usage("balance: expected status, recommend, apply or mode MODE");
	}
	b.action = argv[0];
	REQ(balance, BALANCE, &b);
	return simple(c, &req, print_plan);
}

/* "a,b,c" into a repeated field. */
static int split_list(const char *list, char ***v, size_t *n)
{
	char *copy = strdup(list), *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (cl_strv_add(v, n, t)) {
			free(copy);
			return -ENOMEM;
		}
	free(copy);
	return 0;
}

static int cmd_rule(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kind", required_argument, NULL, 'k' },
		{ "vms", required_argument, NULL, 'v' },
		{ "hosts", required_argument, NULL, 'H' },
		{ 0 },
	};
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__Rule rule = FERRY__CLUSTER__RULE__INIT;
	bool kind = false;
	int o, status;

	if (argc == 1 && !strcmp(argv[0], "list")) {
		REQ(rule_list, RULE_LIST, &empty);
		return simple(c, &req, print_rules);
	}
	if (argc == 2 && !strcmp(argv[0], "delete")) {
		name.name = argv[1];
		REQ(rule_delete, RULE_DELETE, &name);
		return simple(c, &req, print_nothing);
	}
	if (!argc || strcmp(argv[0], "add"))
		return die_usage("rule: expected add, list or delete");
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'k':
			if (cl_rule_kind_parse(optarg, &rule.kind))
				return die_usage("rule add: --kind: affinity, anti-affinity, host-must, "
						 "host-must-not, host-should or host-should-not, not '%s'",
						 optarg);
			kind = true;
			break;
		case 'v':
			if (split_list(optarg, &rule.vms, &rule.n_vms))
				return 1;
			break;
		case 'H':
			if (split_list(optarg, &rule.hosts, &rule.n_hosts))
				return 1;
			break;
		default:
			return die_usage("rule add: bad option");
		}
	}
	if (optind + 1 != argc || !kind || !rule.n_vms)
		return die_usage("rule add: expected NAME --kind KIND --vms A,B [--hosts H]");
	rule.name = argv[optind];
	REQ(rule_add, RULE_ADD, &rule);
	status = simple(c, &req, print_nothing);
	for (size_t i = 0; i < rule.n_vms; i++)
		free(rule.vms[i]);
	for (size_t i = 0; i < rule.n_hosts; i++)
		free(rule.hosts[i]);
	free(rule.vms);
	free(rule.hosts);
	return status;
}

static int vm_stop_one(struct ctl *c, const char *vm)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;

	name.name = (char *)vm;
	REQ(vm_stop, VM_STOP, &name);
	return simple(c, &req, print_nothing);
}

#define EVACUATE_STALL_S 60

/*
 * Enter maintenance and follow the evacuation until HOST is empty, or
 * until only VMs that cannot leave are left (and nothing moves).
 */
static int maintenance(struct ctl *c, const char *host, bool enter, bool force_stop, bool wait)
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
	REQ(maintenance, MAINTENANCE, &m);
	status = simple(c, &req, print_nothing);
	if (status || !enter || !wait)
		return status;
	name.name = (char *)host;
	req = (Ferry__Cluster__Request)FERRY__CLUSTER__REQUEST__INIT;
	REQ(evacuation, EVACUATION, &name);
	for (;;) {
		const struct timespec pause = { 0, 200000000 };
		const Ferry__Cluster__PlanInfo *p;

		r = call(c, &req, &status);
		if (!r)
			return status;
		if (r->error || !r->plan)
			return finish(c, r, print_nothing);
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

static int cmd_cpu(struct ctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__CpuCheckReq chk = FERRY__CLUSTER__CPU_CHECK_REQ__INIT;
	Ferry__Cluster__Response *r;
	int status;

	if (argc == 1 && !strcmp(argv[0], "baseline")) {
		REQ(cpu_baseline, CPU_BASELINE, &empty);
		return simple(c, &req, print_baseline);
	}
	if (argc != 3 || strcmp(argv[0], "check"))
		return die_usage("cpu: expected baseline, or check VM HOST");
	chk.vm = argv[1];
	chk.host = argv[2];
	REQ(cpu_check, CPU_CHECK, &chk);
	r = call(c, &req, &status);
	if (!r)
		return status;
	if (r->error || c->json || !r->cpu)
		return finish(c, r, print_nothing);
	if (r->cpu->compatible) {
		printf("yes: %s can run %s (CPU model %s)\n", chk.host, chk.vm, r->cpu->model);
	} else {
		printf("no: %s lacks", chk.host);
		for (size_t i = 0; i < r->cpu->n_missing; i++)
			printf("%s %s", i ? "," : "", r->cpu->missing[i]);
		printf(" required by %s's model %s\n", chk.vm, r->cpu->model);
		status = 1;
	}
	CL_FREE(r);
	return status;
}

static int cmd_node(struct ctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__RevokeReq rv = FERRY__CLUSTER__REVOKE_REQ__INIT;
	char path[PATH_MAX], serial[80], err[512];
	const char *dir = "./ferry-ca";

	if (argc && !strcmp(argv[0], "add"))
		return clusterctl_node_add(argc, argv);
	if (argc < 2 || strcmp(argv[0], "revoke"))
		return die_usage("node: expected add NAME ADDRESS or revoke NAME");
	if (argc == 4 && !strcmp(argv[2], "--dir"))
		dir = argv[3];
	else if (argc != 2)
		return die_usage("node revoke: expected NAME [--dir DIR]");
	snprintf(path, sizeof(path), "%s/nodes/%s/cert.pem", dir, argv[1]);
	if (cl_pki_cert_serial(path, serial, sizeof(serial), err, sizeof(err))) {
		fprintf(stderr, "clusterctl: node revoke: %s\n", err);
		return 1;
	}
	rv.serial = serial;
	rv.name = argv[1];
	REQ(revoke, REVOKE, &rv);
	return simple(c, &req, print_nothing);
}

int main(int argc, char **argv)
{
	struct ctl c = {
		.socket = getenv("FERRY_SOCKET"),
		.connect = getenv("FERRY_CONNECT"),
		.tls_dir = getenv("FERRY_TLS_DIR"),
	};
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	char **args = calloc(argc + 1, sizeof(*args));
	int n = 0, status;

	if (!args)
		return 1;
	if (!c.socket)
		c.socket = "/var/lib/ferry/clusterd.sock";
	/* Global options may stand anywhere; the rest belongs to the command. */
	args[n++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		bool has = i + 1 < argc;

		if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
			fputs(usage, stdout);
			print_setting_keys();
			return 0;
		} else if (!strcmp(o, "--socket") && has) {
			c.socket = argv[++i];
			c.connect = NULL;
		} else if (!strcmp(o, "--connect") && has) {
			c.connect = argv[++i];
		} else if (!strcmp(o, "--tls-dir") && has) {
			c.tls_dir = argv[++i];
		} else if ((!strcmp(o, "-o") || !strcmp(o, "--output")) && has) {
			const char *fmt = argv[++i];

			if (strcmp(fmt, "json") && strcmp(fmt, "text"))
				return die_usage("-o: json or text, not '%s'", fmt);
			c.json = !strcmp(fmt, "json");
		} else {
			args[n++] = argv[i];
		}
	}
	if (n < 2)
		return die_usage("no command given");
	if (!strcmp(args[1], "status") && n == 2) {
		REQ(status, STATUS, &empty);
		status = simple(&c, &req, print_status);
	} else if (!strcmp(args[1], "host")) {
		status = cmd_host(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "vm")) {
		status = cmd_vm(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "migrate")) {
		status = cmd_migrate(&c, n - 1, args + 1);
	} else if (!strcmp(args[1], "balance")) {
		status = cmd_balance(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "rule")) {
		status = cmd_rule(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "config")) {
		status = cmd_config(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "events") && n == 2) {
		REQ(events, EVENTS, &empty);
		status = simple(&c, &req, print_events);
	} else if (!strcmp(args[1], "cpu")) {
		status = cmd_cpu(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "cluster") && n >= 3 && !strcmp(args[2], "init")) {
		status = clusterctl_cluster_init(n - 2, args + 2);
	} else if (!strcmp(args[1], "node")) {
		status = cmd_node(&c, n - 2, args + 2);
	} else {
		status = die_usage("unknown command '%s'", args[1]);
	}
	xport_close(c.x);
	free(args);
	return status;
}
