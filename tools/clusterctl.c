/* clusterctl: drive a Ferry cluster through any of its agents. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cl_msg.h"
#include "cluster/cl_net.h"
#include "cluster/cl_pki.h"
#include "cluster/cl_plan.h"
#include "cluster/cl_state.h"
#include "core/util.h"
#include "net/nic.h"
#include "tools/clusterctl.h"

static const char usage[] =
"Usage: clusterctl [--socket PATH | --connect HOST[:PORT] --tls-dir DIR] [-o json]\n"
"                  COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  status                        this node's view: quorum, members, hosts, VMs,\n"
"                                and a warning for each host that cannot save\n"
"                                the cluster state to its disk (while most\n"
"                                cannot, changes to VMs, settings and rules\n"
"                                are refused); with ha-host-failures set, the\n"
"                                host losses the HA VMs survive now and the\n"
"                                largest new VM each host can still take\n"
"  host list | host show HOST\n"
"  host mode HOST active|maintenance\n"
"  host remove HOST              forget a host that left for good: it must be\n"
"                                down, with no VM placed on it or migrating\n"
"  vm create NAME --guest IMAGE --mem SIZE [--vcpus N] [--args STR]\n"
"            [--cpu-model host|cluster|x86-64-v1..v4] [--disk SPEC]... [--ha]\n"
"            [--net bridge=BR[,mac=MAC]]... [--priority low|medium|high]\n"
"            (default vcpus 1, model cluster: what every current host has;\n"
"            SPEC: a raw image PATH on shared storage, or\n"
"            nbd://HOST:PORT/EXPORT,lease=PATH, as vmon --disk;\n"
"            --net: a NIC on the Linux bridge BR (at most 4), as vmon --net;\n"
"            the VM runs only on hosts that have BR, and the MAC, unless\n"
"            given, is derived from NAME and must be unique in the cluster;\n"
"            --ha: when its host leaves the cluster, its vmon there stops\n"
"            itself after ha-fence-s and the VM restarts (boots again) on\n"
"            another host 10 s later)\n"
"  vm start NAME [--host HOST]   (without --host: the online host that fits\n"
"                                 with the least guest memory placed on it)\n"
"  vm stop NAME | vm delete NAME | vm list | vm show NAME\n"
"  vm pause NAME | vm resume NAME\n"
"                                pause a VM: it stays paused (vm list says so),\n"
"                                migrations and evacuations included, until vm\n"
"                                resume; resume also runs again a VM its vmon\n"
"                                paused (a disk full or gone: vm list says why),\n"
"                                once there is room or the storage is back\n"
"  vm set NAME [--ha on|off] [--priority low|medium|high]\n"
"                                at any time, but not while VM migrates. HA on\n"
"                                for a running VM protects it once its host's\n"
"                                agent armed its vmon's fence (vm show says);\n"
"                                priority: when not every VM fits,\n"
"                                HA restarts and evacuations place the higher\n"
"                                first (default medium)\n"
"  migrate VM HOST [--downtime-ms N] [--bandwidth MBITS] [--dry-run] [--no-wait]\n"
"                                live-migrate VM to HOST: prechecked (CPU model,\n"
"                                memory, host state) before any page moves; a\n"
"                                progress line on a terminal, then the result.\n"
"                                Cancelled, the VM running on at its source, if\n"
"                                HOST leaves the cluster or goes into maintenance\n"
"                                before the switchover.\n"
"                                --bandwidth: cap its stream at MBITS Mbit/s\n"
"                                (default: the cluster's migration-bandwidth-mbps,\n"
"                                none unless set), to spare a shared link.\n"
"                                --downtime-ms: default migration-downtime-ms\n"
"                                --dry-run: the precheck verdict and vmon's\n"
"                                prediction (time, downtime), nothing moves\n"
"                                Ctrl-C while it waits cancels the migration\n"
"                                (a second Ctrl-C stops waiting)\n"
"  migrate-set VM [--downtime-ms N] [--bandwidth MBITS]\n"
"                                change VM's migration in flight, whoever began\n"
"                                it: a raised downtime target lets one that does\n"
"                                not converge stop and copy; a new cap (0: none)\n"
"                                holds from now. The source's vmon applies it\n"
"                                within a second, before the switchover only\n"
"  migrate-cancel VM [--no-wait] cancel VM's migration in flight, whoever began\n"
"                                it (an operator, the balancer, an evacuation):\n"
"                                VM runs on at its source; exit 1 if it had\n"
"                                already switched over. An evacuation leaves a\n"
"                                VM whose move was cancelled where it is\n"
"  host maintenance HOST enter|exit [--force-stop] [--no-wait]\n"
"                                enter: no new VMs (a migration on its way in\n"
"                                is cancelled), and every VM leaves HOST\n"
"                                (planned: compatible hosts with room, rules,\n"
"                                cheapest first, bounded concurrency), with\n"
"                                progress and ETA; VMs that cannot leave are\n"
"                                named with the reason and the exit status is\n"
"                                1, unless --force-stop stops them. Refused when\n"
"                                the evacuation would leave too little room for\n"
"                                HA restarts (config set ha-host-failures)\n"
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

__attribute__((format(printf, 1, 2)))
int clusterctl_die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "clusterctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(clusterctl --help tells the commands)\n");
	return 2;
}

static int ctl_connect(struct clusterctl *c)
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
Ferry__Cluster__Response *clusterctl_call(struct clusterctl *c,
					  const Ferry__Cluster__Request *req, int *status)
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
int clusterctl_finish(struct clusterctl *c, Ferry__Cluster__Response *r,
		      void (*text)(const Ferry__Cluster__Response *))
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

int clusterctl_simple(struct clusterctl *c, Ferry__Cluster__Request *req,
		      void (*text)(const Ferry__Cluster__Response *))
{
	int status;
	Ferry__Cluster__Response *r = clusterctl_call(c, req, &status);

	return r ? clusterctl_finish(c, r, text) : status;
}

static int cmd_host(struct clusterctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__HostModeReq mode = FERRY__CLUSTER__HOST_MODE_REQ__INIT;

	if (argc == 1 && !strcmp(argv[0], "list")) {
		CLUSTERCTL_REQ(host_list, HOST_LIST, &empty);
		return clusterctl_simple(c, &req, clusterctl_print_hosts);
	}
	if (argc == 2 && !strcmp(argv[0], "show")) {
		name.name = argv[1];
		CLUSTERCTL_REQ(host_show, HOST_SHOW, &name);
		return clusterctl_simple(c, &req, clusterctl_print_host);
	}
	if (argc == 2 && !strcmp(argv[0], "remove")) {
		name.name = argv[1];
		CLUSTERCTL_REQ(host_remove, HOST_REMOVE, &name);
		return clusterctl_simple(c, &req, clusterctl_print_nothing);
	}
	if (argc == 3 && !strcmp(argv[0], "mode")) {
		mode.host = argv[1];
		if (!strcmp(argv[2], "maintenance"))
			mode.mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
		else if (strcmp(argv[2], "active"))
			return clusterctl_die_usage("host mode: '%s' is not active or maintenance",
						    argv[2]);
		CLUSTERCTL_REQ(host_mode, HOST_MODE, &mode);
		return clusterctl_simple(c, &req, clusterctl_print_nothing);
	}
	if (argc >= 3 && !strcmp(argv[0], "maintenance")) {
		bool force = false, wait = true;

		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--force-stop"))
				force = true;
			else if (!strcmp(argv[i], "--no-wait"))
				wait = false;
			else
				return clusterctl_die_usage("host maintenance: unknown option '%s'",
							    argv[i]);
		}
		if (strcmp(argv[2], "enter") && strcmp(argv[2], "exit"))
			return clusterctl_die_usage("host maintenance: enter or exit, not '%s'",
						    argv[2]);
		return clusterctl_maintenance(c, argv[1], !strcmp(argv[2], "enter"), force, wait);
	}
	return clusterctl_die_usage("host: expected list, show HOST, mode HOST MODE, remove HOST "
				    "or maintenance HOST enter|exit");
}

static int priority_parse(const char *s, Ferry__Cluster__VmPriority *out)
{
	static const Ferry__Cluster__VmPriority all[] = {
		FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_LOW,
		FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM,
		FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH,
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(s, cl_priority_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

static int vm_create(struct clusterctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "guest", required_argument, NULL, 'g' },
		{ "args", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "cpu-model", required_argument, NULL, 'c' },
		{ "disk", required_argument, NULL, 'd' },
		{ "ha", no_argument, NULL, 'H' },
		{ "net", required_argument, NULL, 'n' },
		{ "priority", required_argument, NULL, 'p' },
		{ 0 },
	};
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Vm vm = FERRY__CLUSTER__VM__INIT;
	char *disks[8], *nets[GABI_NET_MAX_NICS];
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
				return clusterctl_die_usage("vm create: --mem: not a size: %s",
							    optarg);
			vm.mem_bytes = v;
			break;
		case 'v':
			if (parse_u64(optarg, 1, 32, &v))
				return clusterctl_die_usage("vm create: --vcpus: not 1..32: %s",
							    optarg);
			vm.vcpus = v;
			break;
		case 'c': vm.cpu_model = optarg; break;
		case 'H': vm.ha = true; break;
		case 'p':
			if (priority_parse(optarg, &vm.priority))
				return clusterctl_die_usage("vm create: --priority: not low, medium "
							    "or high: %s", optarg);
			break;
		case 'n': {
			struct nic_spec sp;
			char why[NIC_ERR_LEN];

			if (vm.n_nets == GABI_NET_MAX_NICS)
				return clusterctl_die_usage("vm create: at most %u NICs",
							    GABI_NET_MAX_NICS);
			if (nic_spec_parse(optarg, &sp, why, sizeof(why)))
				return clusterctl_die_usage("vm create: --net %s: %s", optarg, why);
			nets[vm.n_nets++] = optarg;
			vm.nets = nets;
			break;
		}
		case 'd':
			if (vm.n_disks == 8)
				return clusterctl_die_usage("vm create: at most 8 disks");
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
		default: return clusterctl_die_usage("vm create: bad option");
		}
	}
	if (optind + 1 != argc)
		return clusterctl_die_usage("vm create: expected one NAME");
	if (!vm.guest[0] || !vm.mem_bytes)
		return clusterctl_die_usage("vm create: --guest and --mem are required");
	vm.name = argv[optind];
	CLUSTERCTL_REQ(vm_create, VM_CREATE, &vm);
	status = clusterctl_simple(c, &req, clusterctl_print_nothing);
	for (size_t i = 0; i < vm.n_disks; i++)
		free(disks[i]);
	return status;
}

static int cmd_vm(struct clusterctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__Name name = FERRY__CLUSTER__NAME__INIT;
	Ferry__Cluster__VmStartReq start = FERRY__CLUSTER__VM_START_REQ__INIT;
	const char *verb = argc ? argv[0] : "";

	if (!strcmp(verb, "create"))
		return vm_create(c, argc, argv);
	if (!strcmp(verb, "list") && argc == 1) {
		CLUSTERCTL_REQ(vm_list, VM_LIST, &empty);
		return clusterctl_simple(c, &req, clusterctl_print_vms);
	}
	if (!strcmp(verb, "start") && (argc == 2 || (argc == 4 && !strcmp(argv[2], "--host")))) {
		start.name = argv[1];
		start.host = argc == 4 ? argv[3] : "";
		CLUSTERCTL_REQ(vm_start, VM_START, &start);
		return clusterctl_simple(c, &req, clusterctl_print_nothing);
	}
	if (!strcmp(verb, "set")) {
		Ferry__Cluster__CmdVmSet set = FERRY__CLUSTER__CMD_VM_SET__INIT;
		static const char set_usage[] = "vm set: expected NAME [--ha on|off] "
					    "[--priority low|medium|high]";

		if (argc < 4 || argc % 2)
			return clusterctl_die_usage(set_usage);
		set.name = argv[1];
		for (int i = 2; i < argc; i += 2) {
			if (!strcmp(argv[i], "--ha") && !set.set_ha &&
			    (!strcmp(argv[i + 1], "on") || !strcmp(argv[i + 1], "off"))) {
				set.set_ha = true;
				set.ha = !strcmp(argv[i + 1], "on");
			} else if (!strcmp(argv[i], "--priority") && !set.set_priority &&
				   !priority_parse(argv[i + 1], &set.priority)) {
				set.set_priority = true;
			} else {
				return clusterctl_die_usage(set_usage);
			}
		}
		CLUSTERCTL_REQ(vm_set, VM_SET, &set);
		return clusterctl_simple(c, &req, clusterctl_print_nothing);
	}
	if (argc != 2)
		return clusterctl_die_usage("vm: expected create, start, stop, delete, set, "
					    "pause, resume, list or show (with a NAME)");
	name.name = argv[1];
	if (!strcmp(verb, "stop"))
		CLUSTERCTL_REQ(vm_stop, VM_STOP, &name);
	else if (!strcmp(verb, "delete"))
		CLUSTERCTL_REQ(vm_delete, VM_DELETE, &name);
	else if (!strcmp(verb, "show"))
		CLUSTERCTL_REQ(vm_show, VM_SHOW, &name);
	else if (!strcmp(verb, "resume"))
		CLUSTERCTL_REQ(vm_resume, VM_RESUME, &name);
	else if (!strcmp(verb, "pause"))
		CLUSTERCTL_REQ(vm_pause, VM_PAUSE, &name);
	else
		return clusterctl_die_usage("vm: unknown command '%s'", verb);
	return clusterctl_simple(c, &req, req.cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_SHOW ?
				 clusterctl_print_vm :
				 req.cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_RESUME ||
				 req.cmd_case == FERRY__CLUSTER__REQUEST__CMD_VM_PAUSE ?
				 clusterctl_print_message : clusterctl_print_nothing);
}

static int cmd_config(struct clusterctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__CmdConfigSet set = FERRY__CLUSTER__CMD_CONFIG_SET__INIT;
	Ferry__Cluster__ConfigItem *items = NULL, **ptrs = NULL;
	Ferry__Cluster__Response *r;
	int status;

	if (argc == 1 && !strcmp(argv[0], "show")) {
		CLUSTERCTL_REQ(status, STATUS, &empty);
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
				status = clusterctl_die_usage("config set: %s: not a number above 0 or 'default': %s",
							      argv[1 + 2 * i], val);
				free(items);
				free(ptrs);
				return status;
			}
		}
		set.items = ptrs;
		CLUSTERCTL_REQ(config_set, CONFIG_SET, &set);
	} else {
		return clusterctl_die_usage("config: expected show, or set KEY VALUE [KEY VALUE]...");
	}
	r = clusterctl_call(c, &req, &status);
	free(items);
	free(ptrs);
	if (!r)
		return status;
	if (c->json && !r->error && r->state) {
		clusterctl_print_settings_json(r->state);
		CL_FREE(r);
		return 0;
	}
	return clusterctl_finish(c, r, clusterctl_print_settings);
}

static int cmd_balance(struct clusterctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__BalanceReq b = FERRY__CLUSTER__BALANCE_REQ__INIT;

	if (argc == 2 && !strcmp(argv[0], "mode")) {
		if (!strcmp(argv[1], "automatic"))
			b.mode = FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC;
		else if (!strcmp(argv[1], "manual"))
			b.mode = FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_MANUAL;
		else if (strcmp(argv[1], "off"))
			return clusterctl_die_usage("balance mode: off, manual or automatic, not '%s'",
						    argv[1]);
	} else if (argc != 1 || (strcmp(argv[0], "status") && strcmp(argv[0], "recommend") &&
				 strcmp(argv[0], "apply"))) {
		return clusterctl_die_usage("balance: expected status, recommend, apply or mode MODE");
	}
	b.action = argv[0];
	CLUSTERCTL_REQ(balance, BALANCE, &b);
	return clusterctl_simple(c, &req, clusterctl_print_plan);
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

static int cmd_rule(struct clusterctl *c, int argc, char **argv)
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
		CLUSTERCTL_REQ(rule_list, RULE_LIST, &empty);
		return clusterctl_simple(c, &req, clusterctl_print_rules);
	}
	if (argc == 2 && !strcmp(argv[0], "delete")) {
		name.name = argv[1];
		CLUSTERCTL_REQ(rule_delete, RULE_DELETE, &name);
		return clusterctl_simple(c, &req, clusterctl_print_nothing);
	}
	if (!argc || strcmp(argv[0], "add"))
		return clusterctl_die_usage("rule: expected add, list or delete");
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'k':
			if (cl_rule_kind_parse(optarg, &rule.kind))
				return clusterctl_die_usage("rule add: --kind: affinity, anti-affinity, host-must, "
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
			return clusterctl_die_usage("rule add: bad option");
		}
	}
	if (optind + 1 != argc || !kind || !rule.n_vms)
		return clusterctl_die_usage("rule add: expected NAME --kind KIND --vms A,B [--hosts H]");
	rule.name = argv[optind];
	CLUSTERCTL_REQ(rule_add, RULE_ADD, &rule);
	status = clusterctl_simple(c, &req, clusterctl_print_nothing);
	for (size_t i = 0; i < rule.n_vms; i++)
		free(rule.vms[i]);
	for (size_t i = 0; i < rule.n_hosts; i++)
		free(rule.hosts[i]);
	free(rule.vms);
	free(rule.hosts);
	return status;
}

static int cmd_cpu(struct clusterctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__Empty empty = FERRY__CLUSTER__EMPTY__INIT;
	Ferry__Cluster__CpuCheckReq chk = FERRY__CLUSTER__CPU_CHECK_REQ__INIT;
	Ferry__Cluster__Response *r;
	int status;

	if (argc == 1 && !strcmp(argv[0], "baseline")) {
		CLUSTERCTL_REQ(cpu_baseline, CPU_BASELINE, &empty);
		return clusterctl_simple(c, &req, clusterctl_print_baseline);
	}
	if (argc != 3 || strcmp(argv[0], "check"))
		return clusterctl_die_usage("cpu: expected baseline, or check VM HOST");
	chk.vm = argv[1];
	chk.host = argv[2];
	CLUSTERCTL_REQ(cpu_check, CPU_CHECK, &chk);
	r = clusterctl_call(c, &req, &status);
	if (!r)
		return status;
	if (r->error || c->json || !r->cpu)
		return clusterctl_finish(c, r, clusterctl_print_nothing);
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

static int cmd_node(struct clusterctl *c, int argc, char **argv)
{
	Ferry__Cluster__Request req = FERRY__CLUSTER__REQUEST__INIT;
	Ferry__Cluster__RevokeReq rv = FERRY__CLUSTER__REVOKE_REQ__INIT;
	char path[PATH_MAX], serial[80], err[512];
	const char *dir = "./ferry-ca";

	if (argc && !strcmp(argv[0], "add"))
		return clusterctl_node_add(argc, argv);
	if (argc < 2 || strcmp(argv[0], "revoke"))
		return clusterctl_die_usage("node: expected add NAME ADDRESS or revoke NAME");
	if (argc == 4 && !strcmp(argv[2], "--dir"))
		dir = argv[3];
	else if (argc != 2)
		return clusterctl_die_usage("node revoke: expected NAME [--dir DIR]");
	snprintf(path, sizeof(path), "%s/nodes/%s/cert.pem", dir, argv[1]);
	if (cl_pki_cert_serial(path, serial, sizeof(serial), err, sizeof(err))) {
		fprintf(stderr, "clusterctl: node revoke: %s\n", err);
		return 1;
	}
	rv.serial = serial;
	rv.name = argv[1];
	CLUSTERCTL_REQ(revoke, REVOKE, &rv);
	return clusterctl_simple(c, &req, clusterctl_print_nothing);
}

int main(int argc, char **argv)
{
	struct clusterctl c = {
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
			clusterctl_print_setting_keys();
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
				return clusterctl_die_usage("-o: json or text, not '%s'", fmt);
			c.json = !strcmp(fmt, "json");
		} else {
			args[n++] = argv[i];
		}
	}
	if (n < 2)
		return clusterctl_die_usage("no command given");
	if (!strcmp(args[1], "status") && n == 2) {
		CLUSTERCTL_REQ(status, STATUS, &empty);
		status = clusterctl_simple(&c, &req, clusterctl_print_status);
	} else if (!strcmp(args[1], "host")) {
		status = cmd_host(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "vm")) {
		status = cmd_vm(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "migrate")) {
		status = clusterctl_migrate(&c, n - 1, args + 1);
	} else if (!strcmp(args[1], "migrate-cancel")) {
		status = clusterctl_migrate_cancel(&c, n - 1, args + 1);
	} else if (!strcmp(args[1], "migrate-set")) {
		status = clusterctl_migrate_set(&c, n - 1, args + 1);
	} else if (!strcmp(args[1], "balance")) {
		status = cmd_balance(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "rule")) {
		status = cmd_rule(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "config")) {
		status = cmd_config(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "events") && n == 2) {
		CLUSTERCTL_REQ(events, EVENTS, &empty);
		status = clusterctl_simple(&c, &req, clusterctl_print_events);
	} else if (!strcmp(args[1], "cpu")) {
		status = cmd_cpu(&c, n - 2, args + 2);
	} else if (!strcmp(args[1], "cluster") && n >= 3 && !strcmp(args[2], "init")) {
		status = clusterctl_cluster_init(n - 2, args + 2);
	} else if (!strcmp(args[1], "node")) {
		status = cmd_node(&c, n - 2, args + 2);
	} else {
		status = clusterctl_die_usage("unknown command '%s'", args[1]);
	}
	xport_close(c.x);
	free(args);
	return status;
}
