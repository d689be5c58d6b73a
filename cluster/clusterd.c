/* clusterd: Ferry's node agent (docs/cluster.md). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_inventory.h"
#include "cl_nic.h"
#include "clusterd.h"
#include "core/log.h"
#include "core/util.h"

static const char usage[] =
"Usage: clusterd --name NAME --address ADDR [options]\n"
"\n"
"clusterd is Ferry's node agent: one per host. It joins the cluster through\n"
"the local corosync (CPG and votequorum), keeps a copy of the replicated\n"
"cluster state, starts and watches this host's vmon processes, and carries\n"
"out migrations to and from this host. It serves clusterctl on a UNIX socket\n"
"(local root) and on mutual TLS.\n"
"\n"
"  --name NAME        this host's name in the cluster (as its certificate)\n"
"  --address ADDR     this host's address: TLS requests and incoming\n"
"                     migrations listen there\n"
"  --dir DIR          the agent's directory (default /var/lib/ferry):\n"
"                     DIR/tls/{ca,cert,key}.pem  this node's certificate\n"
"                     (clusterctl node add); DIR/state.pb  its copy of the\n"
"                     cluster state; DIR/run/  vmon sockets, consoles, logs;\n"
"                     DIR/clusterd.sock  the local socket\n"
"  --port N           TLS port for clusterctl and other agents (default 7400;\n"
"                     0: no TLS listener)\n"
"  --vmon PATH        the vmon program (default: vmon beside clusterd)\n"
"  --cluster NAME     the cluster's name, for a node that starts it (default\n"
"                     ferry); a node that joins takes the cluster's\n"
"  --balance-interval-s N  seconds between balancing rounds when the\n"
"                     cluster's balancer is automatic (default 60)\n"
"  --cpuid-hide LIST  pretend this host lacks these CPUID features (tests of\n"
"                     mixed clusters on one machine); every vmon gets it too\n"
"  --guest-mem SIZE   the memory this host offers its guests (default: all\n"
"                     of its RAM), the rest kept for the host itself; the\n"
"                     cluster places VMs and HA admission control counts\n"
"                     by it. More than the host's RAM is refused\n"
"  --witness          a node that runs no VMs and needs no KVM: its vote\n"
"                     settles quorum (a third vote for two hosts) and it\n"
"                     keeps a copy of the state and answers clusterctl\n"
"  --log-level LEVEL  error, warning, info or debug (default info)\n"
"  --log-syslog       log to syslog instead of stderr\n"
"  SIGTERM or SIGINT stop the agent; the VMs keep running and a restarted\n"
"  agent takes them over.\n"
"Exit status: 0 after a signal, 2 bad usage, 1 could not start.\n";

int agent_spawn_thread(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	int ret;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	if (ret)
		log_err("cannot start a thread: %s", strerror(-ret));
	return ret;
}

static int parse_args(struct agent *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "address", required_argument, NULL, 'a' },
		{ "dir", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "vmon", required_argument, NULL, 'v' },
		{ "cpuid-hide", required_argument, NULL, 'H' },
		{ "witness", no_argument, NULL, 'W' },
		{ "guest-mem", required_argument, NULL, 'M' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "balance-interval-s", required_argument, NULL, 'B' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-syslog", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	enum log_level level = LOGL_INFO;
	bool use_syslog = false;
	const char *dir = "/var/lib/ferry";

	snprintf(a->cluster, sizeof(a->cluster), "ferry");
	cl_plan_defaults(&a->plan_cfg);
	uint64_t port = CL_AGENT_PORT;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': snprintf(a->name, sizeof(a->name), "%s", optarg); break;
		case 'a': snprintf(a->address, sizeof(a->address), "%s", optarg); break;
		case 'd': dir = optarg; break;
		case 'p':
			if (parse_u64(optarg, 0, 65535, &port)) {
				fprintf(stderr, "clusterd: --port: not a port: %s\n", optarg);
				return 2;
			}
			break;
		case 'v': snprintf(a->vmon, sizeof(a->vmon), "%s", optarg); break;
		case 'H': snprintf(a->hide, sizeof(a->hide), "%s", optarg); break;
		case 'W': a->witness = true; break;
		case 'M':
			if (parse_size(optarg, &a->guest_mem) || !a->guest_mem) {
				fprintf(stderr, "clusterd: --guest-mem: not a size: %s\n", optarg);
				return 2;
			}
			break;
		case 'c': snprintf(a->cluster, sizeof(a->cluster), "%s", optarg); break;
		case 'B':
			if (parse_u64(optarg, 1, 86400, &a->plan_cfg.interval_s)) {
				fprintf(stderr, "clusterd: --balance-interval-s: not 1..86400: %s\n",
					optarg);
				return 2;
			}
			break;
		case 'l':
			if (log_level_parse(optarg, &level)) {
				fprintf(stderr, "clusterd: --log-level: unknown level %s\n", optarg);
				return 2;
			}
			break;
		case 's': use_syslog = true; break;
		case 'h': fputs(usage, stdout); exit(0);
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind != argc || !*a->name || !*a->address) {
		fprintf(stderr, "clusterd: %s\n%s", optind != argc ? "unexpected argument" :
			"--name and --address are required", usage);
		return 2;
	}
	if (!cl_name_valid(a->name)) {
		fprintf(stderr, "clusterd: --name: '%s' is not a valid host name\n", a->name);
		return 2;
	}
	log_init("clusterd", level, use_syslog);
	a->port = port;
	snprintf(a->dir, sizeof(a->dir), "%s", dir);
	snprintf(a->run_dir, sizeof(a->run_dir), "%s/run", dir);
	snprintf(a->state_path, sizeof(a->state_path), "%s/state.pb", dir);
	snprintf(a->sock_path, sizeof(a->sock_path), "%s/clusterd.sock", dir);
	snprintf(a->tls_dir, sizeof(a->tls_dir), "%s/tls", dir);
	if (!*a->vmon) {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		self[n > 0 ? n : 0] = 0;
		if (strrchr(self, '/'))
			*strrchr(self, '/') = 0;
		snprintf(a->vmon, sizeof(a->vmon), "%s/vmon", self);
	}
	return 0;
}

static int agent_setup(struct agent *a)
{
	char err[CL_ERR_LEN];
	int ret;

	if (mkdir(a->dir, 0700) && errno != EEXIST) {
		log_err("%s: %m", a->dir);
		return -errno;
	}
	if (mkdir(a->run_dir, 0700) && errno != EEXIST) {
		log_err("%s: %m", a->run_dir);
		return -errno;
	}
	if (access(a->vmon, X_OK)) {
		log_err("vmon program %s: %m (give --vmon PATH)", a->vmon);
		return -ENOENT;
	}
	ret = cl_state_load(a->state_path, &a->st, err, sizeof(err));
	if (ret == -ENOENT) {
		a->st = cl_state_new(a->cluster);
		ret = a->st ? 0 : -ENOMEM;
	} else if (!ret) {
		log_info("loaded the cluster state at seq %llu", (unsigned long long)a->st->seq);
	}
	if (ret) {
		/* A damaged copy is not guessed at: move it aside, start empty. */
		log_err("%s", err);
		return ret;
	}
	/* Not written: warned of and tried again as a state not saved is. */
	if (agent_publish_revoked(a, err, sizeof(err))) {
		log_err("%s: this node's vmons accept the certificates it lists until it "
			"is written", err);
		agent_unsaved(a, err);
	}
	ret = cl_inventory_probe(a->hide, a->witness, &a->inv, err, sizeof(err));
	if (ret) {
		log_err("inventory: %s", err);
		return ret;
	}
	if (a->guest_mem && !a->witness) {
		if (a->guest_mem > a->inv->mem_bytes) {
			log_err("--guest-mem: %llu MiB is more than this host's RAM (%llu MiB)",
				(unsigned long long)(a->guest_mem >> 20),
				(unsigned long long)(a->inv->mem_bytes >> 20));
			return -EINVAL;
		}
		a->inv->mem_bytes = a->guest_mem;
	}
	a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return a->wake_fd < 0 ? -errno : 0;
}

static int agent_serve(struct agent *a)
{
	struct cl_server_cfg cfg = { 0 };
	struct xport_addr addr = { 0 };
	struct xport_tls tls;
	char err[CL_ERR_LEN], xerr[XPORT_ERR_LEN];
	int ret;

	cfg.unix_path = a->sock_path;
	cfg.handler = agent_handle;
	cfg.revoked = agent_revoked;
	cfg.opaque = a;
	if (a->port) {
		if (xport_tls_from_dir(a->tls_dir, &tls, xerr)) {
			log_err("TLS: %s (create it with clusterctl node add, or --port 0)", xerr);
			return -ENOENT;
		}
		snprintf(addr.host, sizeof(addr.host), "%s", a->address);
		addr.port = a->port;
		cfg.tls_addr = &addr;
		cfg.tls = &tls;
	}
	ret = cl_server_start(&cfg, &a->srv, err, sizeof(err));
	if (ret)
		log_err("%s", err);
	return ret;
}

/* Our host entry, as the state should have it. */
static void agent_join(struct agent *a)
{
	const Ferry__Cluster__Host *h = cl_state_host(a->st, a->name);
	Ferry__Cluster__Host me = FERRY__CLUSTER__HOST__INIT;
	Ferry__Cluster__CmdHostJoin c = FERRY__CLUSTER__CMD_HOST_JOIN__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	Ferry__Cluster__Inventory *cur = h ? h->inventory : NULL;
	bool same;

	me.name = a->name;
	me.address = a->address;
	me.nodeid = a->nodeid;
	me.agent_port = a->port;
	me.agent_proto = CL_STATE_PROTO;
	me.witness = a->witness;
	me.inventory = a->inv;
	me.mode = h ? h->mode : FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE;
	same = h && cur && h->nodeid == me.nodeid && !strcmp(h->address, me.address) &&
	       h->agent_port == me.agent_port && h->agent_proto == me.agent_proto &&
	       h->witness == me.witness &&
	       ferry__cluster__inventory__get_packed_size(cur) ==
	       ferry__cluster__inventory__get_packed_size(a->inv);
	if (same) {
		uint8_t x[8192], y[8192];
		size_t n = ferry__cluster__inventory__get_packed_size(cur);

		if (n <= sizeof(x)) {
			ferry__cluster__inventory__pack(cur, x);
			ferry__cluster__inventory__pack(a->inv, y);
			same = !memcmp(x, y, n);
		}
	}
	/* Once per view at most: the proposal may still be on its way. */
	if (same || a->joined_seq)
		return;
	c.host = &me;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_JOIN;
	cmd.host_join = &c;
	if (!agent_propose_async(a, &cmd)) {
		a->joined_seq = a->st->seq + 1;
		log_info("joining the cluster as %s (node %u, %s%s)", a->name, a->nodeid, a->address,
			 a->witness ? ", a witness" : "");
	}
	/* No rule of ours can stop an older agent: only its upgrade can. */
	h = a->witness ? cl_state_host_below(a->st, CL_PROTO_2, a->name) : NULL;
	if (h)
		log_warn("the agent of %s predates witnesses: it would accept a VM placed on this "
			 "witness, and its copy of the state would then differ; upgrade it",
			 h->name);
}

static void corosync_connect(struct agent *a)
{
	static uint64_t last_try, last_warn;
	char err[CL_ERR_LEN];

	if (a->cpg || now_ns() - last_try < 1000000000ull)
		return;
	last_try = now_ns();
	if (cl_cpg_open(&a->cpg, &agent_cpg_ops, a, err, sizeof(err))) {
		a->cpg = NULL;
		if (now_ns() - last_warn > 30000000000ull) {
			log_warn("%s; retrying every second", err);
			last_warn = now_ns();
		}
		return;
	}
	a->nodeid = cl_cpg_nodeid(a->cpg);
	a->quorate = false;
	{
		struct cl_quorum_info q;

		if (!cl_cpg_quorum(a->cpg, &q))
			a->quorate = q.quorate;
	}
	log_info("connected to corosync as node %u", a->nodeid);
}

static void corosync_lost(struct agent *a)
{
	log_warn("lost corosync: refusing changes until it is back");
	cl_cpg_close(a->cpg);
	a->cpg = NULL;
	a->quorate = false;
	a->n_nodes = 0;
	memset(&a->sync, 0, sizeof(a->sync));
	pthread_cond_broadcast(&a->cond);
}

#define POLL_MAX 256

static void agent_loop(struct agent *a, int sig_fd)
{
	uint64_t last_load = 0, last_keepalive = 0;

	pthread_mutex_lock(&a->lock);
	while (!a->quit) {
		struct pollfd pfd[POLL_MAX];
		struct local_vm *who[POLL_MAX];
		int cfd[2] = { -1, -1 };
		nfds_t n = 0;

		corosync_connect(a);
		if (a->cpg)
			cl_cpg_fds(a->cpg, cfd);
		pfd[n++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = a->wake_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = cfd[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = cfd[1], .events = POLLIN };
		for (struct local_vm *lv = a->vms; lv && n < POLL_MAX; lv = lv->next) {
			if (lv->ended)
				continue;
			who[n] = lv;
			pfd[n++] = (struct pollfd){ .fd = cl_vmon_fd(lv->v), .events = POLLIN };
		}
		pthread_mutex_unlock(&a->lock);
		poll(pfd, n, CL_TICK_MS);
		pthread_mutex_lock(&a->lock);

		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGCHLD) {
				log_info("signal %d: stopping (the VMs keep running)", si.ssi_signo);
				a->quit = 1;
				break;
			}
		}
		if (pfd[1].revents) {
			uint64_t v;

			if (read(a->wake_fd, &v, sizeof(v)) < 0)
				log_debug("wake: %m");
		}
		for (int i = 2; i < 4; i++)
			if (a->cpg && pfd[i].fd >= 0 && pfd[i].revents &&
			    cl_cpg_dispatch(a->cpg, i - 2)) {
				corosync_lost(a);
				break;
			}
		/* The list may have changed under the dispatch: look entries up again. */
		for (nfds_t i = 4; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			for (struct local_vm *lv = a->vms; lv; lv = lv->next)
				if (lv == who[i] && !lv->ended)
					agent_vm_ended(a, lv);
		}
		if (a->cpg && a->sync.synced && a->quorate)
			agent_join(a);
		agent_reconcile(a);
		agent_plan_tick(a);
		agent_ha_tick(a);
		if (a->cpg && a->sync.synced && a->quorate &&
		    now_ns() - last_keepalive >= CL_KEEPALIVE_MS * 1000000ull) {
			agent_keepalive(a);
			last_keepalive = now_ns();
		}
		if (a->cpg && a->sync.synced && now_ns() - last_load > CL_LOAD_PERIOD_MS * 1000000ull) {
			agent_send_load(a);
			last_load = now_ns();
			/* A bridge added or removed: join again, with the new list. */
			if (!a->witness && cl_nic_bridges_refresh(a->inv)) {
				log_info("inventory: the host's bridges changed");
				a->joined_seq = 0;
			}
		}
	}
	pthread_mutex_unlock(&a->lock);
}

int main(int argc, char **argv)
{
	static struct agent agent = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	struct agent *a = &agent;
	sigset_t mask;
	int sig_fd, ret;

	ret = parse_args(a, argc, argv);
	if (ret)
		return ret;
	/* vmons are reaped through their pidfds; SIGPIPE is a write error. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0 || agent_setup(a) || agent_serve(a))
		return 1;
	a->plan_memo = cl_plan_memo_new();
	agent_adopt(a);
	log_info("%s ready: %s, state seq %llu, vmon %s", a->name, a->sock_path,
		 (unsigned long long)a->st->seq, a->vmon);
	agent_loop(a, sig_fd);
	cl_server_stop(a->srv);
	pthread_mutex_lock(&a->lock);
	cl_cpg_close(a->cpg);
	a->cpg = NULL;
	pthread_mutex_unlock(&a->lock);
	return 0;
}
