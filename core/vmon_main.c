/* vmon: the per-VM monitor. `vmon run` runs one VM; `vmon ctl` steers one. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/autoresume.h"
#include "core/ctl.h"
#include "core/vmon.h"
#include "core/dirty_rate.h"
#include "core/fence.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"
#include "migrate/mig.h"
#include "migrate/mig_ctl.h"
#include "migrate/mig_live.h"
#include "migrate/mig_snapshot.h"
#include "migrate/mig_state.h"
#include "net/nic.h"
#include "storage/blk.h"



static const char vmon_usage[] =
"Usage: vmon run --guest FILE --mem SIZE [options]\n"
"       vmon run --restore FILE [options]\n"
"       vmon run --incoming tcp:HOST:PORT|rdma:HOST:PORT [--tls-dir DIR] [options]\n"
"       vmon ctl SOCKET status|pause|resume|stop|stats [-o json]\n"
"       vmon ctl SOCKET save FILE [--verify] [--stop] [-o json]\n"
"       vmon ctl SOCKET migrate tcp:HOST:PORT|rdma:HOST:PORT [options] |\n"
"                       migrate-status |\n"
"                       migrate-set [--downtime-ms N] [--bandwidth MBPS]\n"
"                                   [--timeout-s N] [--timeout-action A] |\n"
"                       migrate-cancel [-o json]\n"
"       vmon cpu [--cpuid-hide LIST]\n"
"       vmon --help | --version\n"
"\n"
"vmon is Ferry's per-VM monitor: one process runs one VM on KVM.\n"
"\n"
"vmon run: run a microguest (a static x86-64 ELF, see docs/guest-abi.md).\n"
"  --guest FILE          guest image to run (required unless --restore)\n"
"  --restore FILE        run the VM saved in FILE by vmon ctl save instead;\n"
"                        its memory size, vCPUs and CPU model come from FILE\n"
"  --incoming tcp:HOST:PORT  wait for a live migration on HOST:PORT (port 0:\n"
"                        any free port; the port is printed on stderr), check\n"
"                        the VM against this host, receive it, and run it once\n"
"                        the source commits. A refused VM exits with status 2,\n"
"                        a failed migration with 1: the guest never ran here.\n"
"                        rdma:HOST:PORT: the same over RDMA (librdmacm); HOST\n"
"                        is an address of an RDMA device's interface, and a\n"
"                        TCP connection to HOST:PORT stays open beside each\n"
"                        RDMA one (docs/migration-stream.md, \"Transports\")\n"
"  --tls-dir DIR         TLS 1.3 with mutual certificates from DIR (ca.pem,\n"
"                        cert.pem, key.pem); the source must use the same CA;\n"
"                        serials listed in DIR/revoked, if it exists, are\n"
"                        refused (read at every handshake)\n"
"  --incoming-timeout-s N  give up if no source connects within N seconds;\n"
"                        connections that fail before their HELLO (a port\n"
"                        scan, a wrong certificate) are logged and dropped,\n"
"                        and the wait goes on\n"
"                        With --incoming, --mem SIZE faults that much guest\n"
"                        RAM in at start-up, so the migration does not wait\n"
"                        for it (a VM of another size gets fresh RAM)\n"
"  --disk PATH | --disk nbd://HOST:PORT/EXPORT,lease=FILE  a disk for the guest\n"
"                        (repeatable, at most 8; the guest's disk 0, 1, ...): a\n"
"                        raw image file (a relative PATH is made absolute), or\n"
"                        an NBD export whose ownership is the lock on FILE (an\n"
"                        absolute path). Exactly one vmon may own a disk: a\n"
"                        disk in use elsewhere is refused (status 6, the holder\n"
"                        named); storage that cannot be reached, status 7. With\n"
"                        --incoming or --restore the disks come from the source\n"
"  --net bridge=BR[,mac=MAC]  a network interface for the guest (repeatable,\n"
"                        at most 4; the guest's NIC 0, 1, ...): a tap device\n"
"                        made a port of the Linux bridge BR. MAC defaults to\n"
"                        02:fe: and a hash of --name (random without --name).\n"
"                        A NIC follows its VM in a migration (the destination\n"
"                        needs a bridge BR), which then announces the MAC\n"
"                        (RARP) before the guest runs there. With --incoming\n"
"                        or --restore the NICs come from the source; vmon\n"
"                        needs CAP_NET_ADMIN\n"
"  --args STR            argument string for the guest, at most 1023 bytes\n"
"  --mem SIZE            guest RAM, a multiple of 2 MiB, 8M..128G, e.g. 64M, 1G\n"
"                        (required with --guest)\n"
"  --vcpus N             vCPUs, 1..32 (default 1), one thread each\n"
"  --cpu-model M         CPUID the guest sees: host, x86-64-v1, x86-64-v2,\n"
"                        x86-64-v3, x86-64-v4 (default host); a model the host\n"
"                        cannot supply is refused with the missing features\n"
"  --cpuid-hide LIST     pretend this host lacks these CPUID features\n"
"                        (comma-separated, for tests of mixed clusters)\n"
"  --control PATH        serve the control socket at PATH (see vmon ctl)\n"
"  --dirty-mode MODE     dirty-page tracking: ring, bitmap or auto (default\n"
"                        auto: the bitmap where KVM lets vmon re-protect pages\n"
"                        itself, else the KVM dirty ring)\n"
"  --dirty-sample-ms N   measure the guest's dirty rate every N ms for stats,\n"
"                        and map the pages a migration need not read; in\n"
"                        bitmap mode each look re-protects 1/64 of the pages,\n"
"                        in ring mode all the guest wrote (a busy guest then\n"
"                        pays a write fault on each, every interval);\n"
"                        0 turns tracking off until something needs it\n"
"                        (default 1000)\n"
"  --name NAME           VM name in messages and status (default vm)\n"
"  --hugepages           back guest RAM with 2 MiB huge pages\n"
"  --no-prealloc         do not fault guest RAM in before the guest starts\n"
"  --warm-ram            after faulting it in, touch guest RAM once from the\n"
"                        kernel and from user space: where first touch stays\n"
"                        slow (KVM on PVM), an incoming migration's pages then\n"
"                        land at full speed; costs start-up time (off)\n"
"  --auto-resume-s N     a VM a disk paused on its own (no room, storage gone)\n"
"                        is resumed without the operator: every N s vmon\n"
"                        looks whether the file system has room for the held\n"
"                        writes (gone or NBD storage: it tries), waiting twice\n"
"                        as long after each try; never a VM the operator\n"
"                        paused (default: off, vmon ctl resume does it;\n"
"                        vmon ctl auto-resume changes it while it runs)\n"
"  --fence-s N           stop the VM for good (exit status 5) when no keepalive\n"
"                        came over the control socket for N seconds; the\n"
"                        cluster agent sends them to an HA VM's vmon while\n"
"                        its host is in the quorate part of the cluster\n"
"  --log-level LEVEL     error, warning, info or debug (default warning)\n"
"  --log-syslog          log to syslog instead of stderr\n"
"  The guest console goes to standard output. SIGINT or SIGTERM stop the VM.\n"
"  Exit status: the guest's exit code (0..255) when it exits; 0 when the VM\n"
"  was stopped on request or migrated away; 2 bad usage or\n"
"  configuration; 3 the guest crashed (triple fault, unhandled exit: the\n"
"  message names the exit, the vCPU and the RIP); 4 a KVM or host failure;\n"
"  5 fenced (--fence-s); 6 a disk is in use: another process holds its lease\n"
"  (the message names it; it may be a fenced or stopping vmon on its way out);\n"
"  7 a disk's storage could not be reached at start-up (an NBD server that\n"
"  refused the connection, or gave none in 5 s). 6 and 7 are worth trying\n"
"  again later. A guest may exit with any code, these too.\n"
"\n"
"vmon ctl SOCKET COMMAND: talk to a running vmon.\n"
"  status                state, vCPUs, memory, CPU model, uptime, and why it\n"
"                        is paused when a disk went away\n"
"  pause | resume        stop all vCPUs outside the guest / let them run again\n"
"                        (resume reconnects a disk that went away first and\n"
"                        retries the requests held for it); a paused guest\n"
"                        stays paused through a migration (it lands paused,\n"
"                        or stays so here if the migration fails), a save\n"
"                        and a restore with --control: only resume runs it\n"
"  stop                  stop the VM for good; vmon exits with status 0\n"
"  keepalive             restart the --fence-s timer\n"
"  fence SECONDS         arm the fence as --fence-s would, or change its period\n"
"                        (the next deadline SECONDS from now); 0 disarms it\n"
"  auto-resume SECONDS   start --auto-resume-s's thread, or change its period\n"
"                        (the next look SECONDS from now); 0 stops it\n"
"  stats                 per-vCPU exits, the guest's published values, the\n"
"                        disks' counters and the measured dirty rate\n"
"  save FILE             pause the VM, write it to FILE (a migration stream,\n"
"                        docs/migration-stream.md) and resume it; FILE appears\n"
"                        only when complete. --verify adds a digest of all\n"
"                        guest RAM that a restore checks; --stop stops the VM\n"
"                        after saving instead of resuming it\n"
"  migrate tcp:HOST:PORT [options]  live-migrate the VM to a vmon started with\n"
"                        --incoming there; the VM stays here, running, if\n"
"                        anything fails before the destination acknowledges;\n"
"                        rdma:HOST:PORT to one started with --incoming rdma:\n"
"    --tls-dir DIR       TLS 1.3 with mutual certificates (as --tls-dir above;\n"
"                        not with rdma:)\n"
"    --downtime-ms N     downtime target of the stop-and-copy phase (30)\n"
"    --bandwidth MBPS    cap on the stream, megabits per second (no cap),\n"
"                        counted from the first page sent (a slow handshake\n"
"                        earns no burst); the switchover's few KiB of vCPU\n"
"                        and device state are not held back, to keep the\n"
"                        downtime short\n"
"    --timeout-s N       hard limit on the whole migration (300)\n"
"    --timeout-action abort|force  at the limit: abort (the VM stays here,\n"
"                        default) or force the stop-and-copy: the round in\n"
"                        progress stops and the guest pauses while the rest\n"
"                        goes, up to 3 times its forecast plus 10 s (past\n"
"                        that the VM stays here)\n"
"    --connections N     1..8 connections for page data (default 1: pages\n"
"                        share the control connection)\n"
"    --no-auto-converge  never throttle the vCPUs to make it converge\n"
"    --verify            compare a digest of all guest RAM on both sides,\n"
"                        taken while the guest is paused: a check for tests\n"
"                        that lengthens the downtime (about 50 ms for\n"
"                        256 MiB here)\n"
"    --dry-run           precheck, time the link (0.2 s) and the guest's\n"
"                        writes under full tracking (0.1 s), and predict the\n"
"                        rounds, total time and downtime; move nothing (the\n"
"                        destination then waits for the real migration)\n"
"    --wait              follow it (a progress line on a terminal) and print\n"
"                        the statistics; exit 0 only if it completed.\n"
"                        Ctrl-C cancels the migration and waits for the\n"
"                        outcome; a second Ctrl-C stops waiting (exit 130)\n"
"  migrate-status        the current or last migration and its statistics,\n"
"                        and the settings in force\n"
"  migrate-set           change a migration in progress, before its\n"
"                        switchover; what is not given stays as it is:\n"
"    --downtime-ms N     the downtime target, from the next round's decision\n"
"                        on (raise it to let a migration that does not\n"
"                        converge stop and copy)\n"
"    --bandwidth MBPS    the cap, at once; 0 lifts it. A new cap counts from\n"
"                        now: no burst for the time before, no wait for it\n"
"    --timeout-s N       the hard limit, from the migration's start (one\n"
"                        already passed is refused: use migrate-cancel)\n"
"    --timeout-action abort|force  what the limit does\n"
"  migrate-cancel        stop a migration in progress; the VM runs on here\n"
"  -o json               print one JSON object instead of text\n"
"  Exit status: 0 done; 1 the monitor refused or could not be reached; 2 bad\n"
"  usage.\n"
"\n"
"vmon cpu [--cpuid-hide LIST]: what this host's KVM offers a guest's CPUID,\n"
"  by the feature names --cpuid-hide and the models use (\"features: a,b,...\"),\n"
"  then one line per CPU model: \"model NAME: runs\" or \"model NAME: lacks\n"
"  a,b,...\". This is KVM's offer, not /proc/cpuinfo's list: KVM on PVM\n"
"  offers little past x86-64-v1. With --cpuid-hide, as vmon run would see\n"
"  it. Exit status 4 without KVM.\n";

void vmon_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vmon: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see vmon --help)\n", stderr);
	exit(VM_EXIT_USAGE);
}

struct vmon_run {
	struct vm_config cfg;
	const char *restore;
	const char *incoming;
	const char *tls_dir;
	uint64_t incoming_timeout_s;
	uint64_t fence_s;           /* --fence-s: 0 none */
	uint64_t auto_resume_s;     /* --auto-resume-s: 0 none */
	const char *control;
	bool name_given;
	uint64_t sample_ms;
	struct vm *vm;
	unsigned nr_disks;
	struct blk_spec disks[GABI_BLK_MAX_DISKS];
	unsigned nr_nics;
	struct nic_spec nics[GABI_NET_MAX_NICS];
};

static void *vmon_signal_thread(void *arg)
{
	struct vm **vmp = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (!sigwait(&set, &sig)) {
		struct vm *vm = __atomic_load_n(vmp, __ATOMIC_ACQUIRE);
		char why[64];

		if (!vm) {
			/* Still waiting for an incoming VM: nothing ran, nothing to save. */
			fprintf(stderr, "vmon: stopped by signal %s before any VM arrived\n",
				strsignal(sig));
			_exit(1);
		}
		snprintf(why, sizeof(why), "stopped by signal %s", strsignal(sig));
		vm_stop(vm, why);
	}
	return NULL;
}

static void vmon_listening(void *ctx, uint16_t port)
{
	const char *host = ctx;

	fprintf(stderr, "vmon: incoming: listening on %s:%u\n", host, port);
	fflush(stderr);
}

/* What this monitor decides for a VM that arrives in a stream. */
static struct mig_load_opts vmon_load_opts(const struct vmon_run *r)
{
	struct mig_load_opts lo = {
		.dirty_mode = r->cfg.dirty_mode,
		.mem_flags = r->cfg.mem_flags,
		.console_fd = r->cfg.console_fd,
		.cpuid_hide = r->cfg.cpuid_hide,
		.name = r->name_given ? r->cfg.name : NULL,
	};

	return lo;
}

/* --incoming: wait for a source, check, receive; the VM runs on COMMIT. */
static int vmon_incoming(struct vmon_run *r, struct vm **vmp)
{
	struct mig_incoming_opts o = {
		.load = vmon_load_opts(r),
		.accept_timeout_ms = r->incoming_timeout_s ? (int)(r->incoming_timeout_s * 1000) : -1,
		.listening = vmon_listening,
	};
	struct guest_mem premade = { .memfd = -1 };
	struct mig_incoming_result res;
	char err[MIG_ERR_LEN], xerr[XPORT_ERR_LEN];
	struct vm *vm = NULL;
	int ret;

	if (xport_addr_parse(r->incoming, &o.addr, xerr))
		vmon_usage_error("--incoming: %s", xerr);
	if (r->tls_dir) {
		if (xport_tls_from_dir(r->tls_dir, &o.tls_cfg, xerr))
			vmon_usage_error("--tls-dir: %s", xerr);
		o.tls = true;
	}
	o.ctx = o.addr.host;
	/* With --mem, fault the RAM in now: the migration will not wait for it. */
	if (r->cfg.mem_size) {
		uint64_t t0 = now_ns();

		ret = mem_create(&premade, r->cfg.mem_size, r->cfg.mem_flags | MEM_PREALLOC);
		if (ret) {
			fprintf(stderr, "vmon: error: incoming: --mem %llu MiB: %s\n",
				(unsigned long long)(r->cfg.mem_size >> 20), strerror(-ret));
			return VM_EXIT_USAGE;
		}
		log_info("incoming: %llu MiB of guest RAM ready in %.0f ms (a first write to it "
			 "costs the kernel %lld ns a page more: a single connection's pages will come %s)",
			 (unsigned long long)(r->cfg.mem_size >> 20), (double)(now_ns() - t0) / 1e6,
			 (long long)premade.cold_write_ns,
			 mig_recv_buffered(&premade) ? "through a buffer" : "straight into it");
		o.load.premade = &premade;
	}
	ret = mig_incoming(&o, &vm, &res, err);
	mem_destroy(&premade); /* a no-op once the VM has taken it */
	if (ret && !vm) {
		fprintf(stderr, "vmon: error: %s\n", err);
		return ret == -ENOTSUP || ret == -ENOMEM ? VM_EXIT_USAGE : 1;
	}
	if (ret)
		fprintf(stderr, "vmon: warning: incoming: %s\n", err);
	else
		log_info("%s: arrived from %s: %llu pages (%llu zero, %llu torn and sent "
			 "again)%s, loaded in %.1f ms",
			 vm->cfg.name, res.source, (unsigned long long)res.load.pages,
			 (unsigned long long)res.load.zero_pages,
			 (unsigned long long)res.load.torn_pages,
			 res.load.verified ? ", RAM verified" : "",
			 (double)res.load.load_ns / 1e6);
	__atomic_store_n(vmp, vm, __ATOMIC_RELEASE);
	return 0;
}

static int vmon_exit_for(int err)
{
	switch (-err) {
	case ENODEV:
	case ENOMEM:
	case EIO:
	case EMFILE:
		return VM_EXIT_INTERNAL;
	default:
		return VM_EXIT_USAGE;
	}
}

static void vmon_parse_run(int argc, char **argv, struct vmon_run *r)
{
	enum { O_GUEST = 256, O_RESTORE, O_INCOMING, O_TLSDIR, O_INTIMEOUT, O_ARGS, O_MEM, O_VCPUS, O_MODEL, O_HIDE, O_CONTROL,
	       O_DIRTY, O_SAMPLE, O_NAME, O_HUGE, O_NOPRE, O_WARM, O_LOG, O_SYSLOG, O_HELP,
	       O_DISK, O_FENCE, O_NET, O_AUTORES };
	static const struct option opts[] = {
		{ "guest", required_argument, NULL, O_GUEST },
		{ "restore", required_argument, NULL, O_RESTORE },
		{ "incoming", required_argument, NULL, O_INCOMING },
		{ "tls-dir", required_argument, NULL, O_TLSDIR },
		{ "incoming-timeout-s", required_argument, NULL, O_INTIMEOUT },
		{ "fence-s", required_argument, NULL, O_FENCE },
		{ "auto-resume-s", required_argument, NULL, O_AUTORES },
		{ "args", required_argument, NULL, O_ARGS },
		{ "mem", required_argument, NULL, O_MEM },
		{ "vcpus", required_argument, NULL, O_VCPUS },
		{ "cpu-model", required_argument, NULL, O_MODEL },
		{ "cpuid-hide", required_argument, NULL, O_HIDE },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "dirty-mode", required_argument, NULL, O_DIRTY },
		{ "dirty-sample-ms", required_argument, NULL, O_SAMPLE },
		{ "name", required_argument, NULL, O_NAME },
		{ "hugepages", no_argument, NULL, O_HUGE },
		{ "no-prealloc", no_argument, NULL, O_NOPRE },
		{ "warm-ram", no_argument, NULL, O_WARM },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "log-syslog", no_argument, NULL, O_SYSLOG },
		{ "help", no_argument, NULL, O_HELP },
		{ "disk", required_argument, NULL, O_DISK },
		{ "net", required_argument, NULL, O_NET },
		{ 0 },
	};
	enum log_level level = LOGL_WARN;
	bool use_syslog = false, have_mem = false, name_given = false;
	uint64_t v;
	int c;

	vm_config_init(&r->cfg);
	r->sample_ms = 1000;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_GUEST:
			r->cfg.guest_path = optarg;
			break;
		case O_RESTORE:
			r->restore = optarg;
			break;
		case O_INCOMING:
			r->incoming = optarg;
			break;
		case O_FENCE:
			if (parse_u64(optarg, 1, 86400, &r->fence_s))
				vmon_usage_error("--fence-s: '%s' is not a number of seconds "
						 "(1..86400)", optarg);
			break;
		case O_AUTORES:
			if (parse_u64(optarg, 1, AUTORESUME_MAX_PERIOD_S, &r->auto_resume_s))
				vmon_usage_error("--auto-resume-s: '%s' is not a number of seconds "
						 "(1..%d)", optarg, AUTORESUME_MAX_PERIOD_S);
			break;
		case O_TLSDIR:
			r->tls_dir = optarg;
			break;
		case O_INTIMEOUT:
			if (parse_u64(optarg, 1, 86400, &r->incoming_timeout_s))
				vmon_usage_error("--incoming-timeout-s: '%s' is not a number of "
						 "seconds (1..86400)", optarg);
			break;
		case O_ARGS:
			r->cfg.args = optarg;
			break;
		case O_MEM:
			if (parse_size(optarg, &r->cfg.mem_size))
				vmon_usage_error("--mem: '%s' is not a size (e.g. 64M, 1G)", optarg);
			have_mem = true;
			break;
		case O_VCPUS:
			if (parse_u64(optarg, 1, GABI_MAX_VCPUS, &v))
				vmon_usage_error("--vcpus: '%s' is not a number in 1..%u",
						 optarg, GABI_MAX_VCPUS);
			r->cfg.nr_vcpus = (unsigned)v;
			break;
		case O_MODEL:
			r->cfg.cpu_model = optarg;
			break;
		case O_HIDE: {
			char why[128];

			/* A bad name is bad input on any host, KVM or not. */
			if (cpuid_features_valid(optarg, why, sizeof(why)))
				vmon_usage_error("--cpuid-hide: %s", why);
			r->cfg.cpuid_hide = optarg;
			break;
		}
		case O_CONTROL:
			r->control = optarg;
			break;
		case O_DIRTY:
			if (dirty_mode_parse(optarg, &r->cfg.dirty_mode))
				vmon_usage_error("--dirty-mode: '%s' is not ring, bitmap or auto",
						 optarg);
			break;
		case O_SAMPLE:
			if (parse_u64(optarg, 0, 3600000, &r->sample_ms))
				vmon_usage_error("--dirty-sample-ms: '%s' is not a number of "
						 "milliseconds (0..3600000)", optarg);
			break;
		case O_NAME:
			if (!*optarg || strlen(optarg) >= VM_NAME_MAX)
				vmon_usage_error("--name: must be 1..%d characters", VM_NAME_MAX - 1);
			strcpy(r->cfg.name, optarg);
			name_given = true;
			break;
		case O_HUGE:
			r->cfg.mem_flags |= MEM_HUGEPAGES;
			break;
		case O_NOPRE:
			r->cfg.mem_flags &= ~MEM_PREALLOC;
			break;
		case O_WARM:
			r->cfg.mem_flags |= MEM_WARM;
			break;
		case O_LOG:
			if (log_level_parse(optarg, &level))
				vmon_usage_error("--log-level: '%s' is not error, warning, info "
						 "or debug", optarg);
			break;
		case O_SYSLOG:
			use_syslog = true;
			break;
		case O_HELP:
			fputs(vmon_usage, stdout);
			exit(0);
		case O_DISK: {
			char why[BLK_ERR_LEN], *abs = NULL;

			if (r->nr_disks >= GABI_BLK_MAX_DISKS)
				vmon_usage_error("--disk: at most %u disks", GABI_BLK_MAX_DISKS);
			/* The spec travels with the VM: a path is made absolute here. */
			if (strncmp(optarg, "nbd://", 6) && optarg[0] != '/') {
				abs = realpath(optarg, NULL);
				if (!abs)
					vmon_usage_error("--disk %s: %s", optarg, strerror(errno));
			}
			if (blk_spec_parse(abs ? abs : optarg, &r->disks[r->nr_disks], why,
					   sizeof(why)))
				vmon_usage_error("--disk: %s", why);
			free(abs);
			r->nr_disks++;
			break;
		}
		case O_NET: {
			char why[NIC_ERR_LEN];

			if (r->nr_nics >= GABI_NET_MAX_NICS)
				vmon_usage_error("--net: at most %u NICs", GABI_NET_MAX_NICS);
			if (nic_spec_parse(optarg, &r->nics[r->nr_nics], why, sizeof(why)))
				vmon_usage_error("--net %s: %s", optarg, why);
			r->nr_nics++;
			break;
		}
		default:
			/* getopt sets optopt to a long option's value when its
			 * argument is missing, to the character for an unknown
			 * short option, and to 0 for an unknown long one. */
			for (const struct option *o = opts; o->name; o++)
				if (optopt && o->val == optopt)
					vmon_usage_error("option --%s needs a value", o->name);
			vmon_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		vmon_usage_error("unexpected argument '%s'", argv[optind]);
	if (r->restore && r->incoming)
		vmon_usage_error("--restore and --incoming exclude each other");
	if (r->tls_dir && !r->incoming)
		vmon_usage_error("--tls-dir goes with --incoming (for vmon ctl migrate, give it there)");
	if (r->restore || r->incoming) {
		if (r->nr_nics)
			vmon_usage_error("%s takes the NICs from the %s; drop --net",
					 r->restore ? "--restore" : "--incoming",
					 r->restore ? "snapshot" : "source");
		if (r->nr_disks)
			vmon_usage_error("%s takes the disks from the %s; drop --disk",
					 r->restore ? "--restore" : "--incoming",
					 r->restore ? "snapshot" : "source");
		if (r->cfg.guest_path || (have_mem && r->restore) || r->cfg.nr_vcpus != 1 || r->cfg.args ||
		    strcmp(r->cfg.cpu_model, "host"))
			vmon_usage_error("%s takes the guest, memory, vCPUs, CPU model and "
					 "arguments from the %s; drop --guest,%s --vcpus, "
					 "--cpu-model and --args", r->restore ? "--restore" : "--incoming",
					 r->restore ? "snapshot" : "source",
					 r->restore ? " --mem," : "");
	} else {
		if (!r->cfg.guest_path)
			vmon_usage_error("vmon run needs --guest FILE (or --restore FILE)");
		if (!have_mem)
			vmon_usage_error("vmon run needs --mem SIZE");
	}
	/* A missing bridge is a usage error, found before any VM exists. */
	for (unsigned i = 0; i < r->nr_nics; i++) {
		char why[NIC_ERR_LEN];

		if (nic_bridge_check(r->nics[i].bridge, why, sizeof(why)))
			vmon_usage_error("--net bridge=%s: %s", r->nics[i].bridge, why);
	}
	r->name_given = name_given;
	log_init("vmon", level, use_syslog);
}

static int vmon_run(int argc, char **argv)
{
	struct vmon_run r = { 0 };
	struct mig_ctl mc;
	struct ctl_server *ctl = NULL;
	struct dirty_rate rate;
	char err[VM_ERR_LEN];
	pthread_t sig_thread;
	sigset_t set;
	int ret, status;
	bool mig_busy;

	vmon_parse_run(argc, argv, &r);
	vm_dev_type_register(&blk_dev_type);
	vm_dev_type_register(&nic_dev_type);

	/* Only the signal thread takes these; vCPU threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_create(&sig_thread, NULL, vmon_signal_thread, &r.vm);

	if (r.incoming) {
		ret = vmon_incoming(&r, &r.vm);
		if (ret)
			return ret;
		r.cfg = r.vm->cfg;
	} else if (r.restore) {
		struct mig_load_opts lo = vmon_load_opts(&r);
		struct mig_load_result res;
		char lerr[MIG_ERR_LEN];

		ret = mig_snapshot_open(r.restore, &lo, &r.vm, &res, lerr);
		if (ret) {
			fprintf(stderr, "vmon: error: restore %s: %s\n", r.restore, lerr);
			return vmon_exit_for(ret);
		}
		log_info("%s: restored from %s: %llu pages (%llu zero)%s", r.vm->cfg.name,
			 r.restore, (unsigned long long)res.pages,
			 (unsigned long long)res.zero_pages, res.verified ? ", RAM verified" : "");
		r.cfg = r.vm->cfg;
	} else {
		struct vm *vm;

		ret = vm_create(&r.cfg, &vm, err);
		if (ret) {
			fprintf(stderr, "vmon: error: %s: %s\n", r.cfg.name, err);
			return vmon_exit_for(ret);
		}
		ret = blk_dev_create(vm, r.disks, r.nr_disks, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "vmon: error: %s: %s\n", r.cfg.name, err);
			vm_destroy(vm);
			/* A server down or a network away may be back in a moment. */
			return blk_unreachable(ret) ? VM_EXIT_DISK_GONE : VM_EXIT_USAGE;
		}
		/*
		 * Every unnamed vmon is "vm": a MAC derived from that would be
		 * the same for all of them, on the same bridge.
		 */
		for (unsigned i = 0; !ret && !r.name_given && i < r.nr_nics; i++)
			if (!r.nics[i].mac_set && !(ret = nic_mac_random(r.nics[i].mac)))
				r.nics[i].mac_set = 1;
		if (!ret)
			ret = nic_dev_create(vm, r.nics, r.nr_nics, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "vmon: error: %s: %s\n", r.cfg.name, err);
			vm_destroy(vm);
			return VM_EXIT_USAGE;
		}
		__atomic_store_n(&r.vm, vm, __ATOMIC_RELEASE);
	}
	/* Own the disks before anything runs: one writer per disk, or none. */
	if (!r.incoming) {
		ret = vm_devs_acquire(r.vm, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "vmon: error: %s: %s\n", r.cfg.name, err);
			vm_destroy(r.vm);
			/* Held by another owner: it may be on its way out (a fence). */
			return ret == -EBUSY ? VM_EXIT_DISK_BUSY : VM_EXIT_USAGE;
		}
	}
	if (r.fence_s) {
		ret = fence_start(r.vm, (unsigned)r.fence_s, &r.vm->fence);
		if (ret) {
			fprintf(stderr, "vmon: error: %s: --fence-s: %s\n", r.cfg.name, strerror(-ret));
			vm_stop(r.vm, "no fence timer");
			vm_wait(r.vm);
			vm_destroy(r.vm);
			return VM_EXIT_INTERNAL;
		}
	}
	/* Before the control socket opens: vmon ctl auto-resume changes it. */
	if (r.auto_resume_s &&
	    (ret = autoresume_start(r.vm, (unsigned)r.auto_resume_s, &r.vm->autoresume)))
		log_warn("%s: --auto-resume-s: no thread (%s): a paused VM waits for vmon ctl "
			 "resume", r.cfg.name, strerror(-ret));
	dirty_rate_init(&rate);
	mig_ctl_init(&mc, &rate, r.sample_ms);
	if (r.control) {
		ret = ctl_server_start(&ctl, r.control, r.vm, &rate, &mc.ext);
		if (ret) {
			fprintf(stderr, "vmon: error: %s: control socket %s: %s\n",
				r.cfg.name, r.control,
				ret == -EADDRINUSE ? "in use by a running monitor" :
				ret == -EEXIST ? "exists and is not a socket" : strerror(-ret));
			vm_stop(r.vm, "control socket unavailable");
			vm_wait(r.vm);
			autoresume_stop(r.vm->autoresume);
			fence_stop(r.vm->fence);
			vm_destroy(r.vm);
			return VM_EXIT_USAGE;
		}
	}
	if (r.sample_ms) {
		ret = dirty_rate_start(&rate, r.vm, r.sample_ms);
		if (ret)
			log_warn("%s: dirty-rate sampling unavailable: %s", r.cfg.name,
				 strerror(-ret));
	}

	/*
	 * A guest saved or migrated while paused (by the operator, or a full
	 * disk) stays paused for vmon ctl resume; without a control socket
	 * nothing could resume it, so it runs. An incoming VM is running
	 * already otherwise (or awaits its commit).
	 */
	if (vm_get_state(r.vm) == VM_CREATED && vm_held(r.vm, err, sizeof(err))) {
		if (r.control) {
			log_warn("%s: paused as it was (%s): vmon ctl resume runs it", r.cfg.name,
				 err);
		} else {
			log_warn("%s: it was paused (%s), and without --control nothing could "
				 "resume it: it runs", r.cfg.name, err);
			ret = vm_resume(r.vm);
			if (ret)
				fprintf(stderr, "vmon: error: %s: cannot resume: %s\n", r.cfg.name,
					strerror(-ret));
		}
	} else if (!r.incoming) {
		ret = vm_start(r.vm);
		if (ret)
			fprintf(stderr, "vmon: error: %s: cannot start: %s\n", r.cfg.name,
				strerror(-ret));
	}
	status = vm_wait(r.vm);
	/* The guest ended with a migration under way: it ends now, and says why. */
	mig_busy = mig_ctl_running(&mc);
	if (mig_busy)
		mig_job_guest_ended(&mc.job);

	if (r.vm->state == VM_CRASHED)
		fprintf(stderr, "vmon: %s: %s\n", r.cfg.name, r.vm->reason);
	else
		log_info("%s: %s", r.cfg.name, r.vm->reason);

	/*
	 * Migrated away, or the guest died during a migration: let a waiting
	 * client (migrate --wait) read the result, then go; at once if told to
	 * stop meanwhile (an agent that took this vmon over from a dead one
	 * stops it, and would otherwise have to kill it, socket left behind).
	 */
	mig_job_join(&mc.job);
	for (int i = 0; i < 50 && r.control && (mig_ctl_migrated(&mc) || mig_busy) &&
	     !__atomic_load_n(&mc.final_seen, __ATOMIC_ACQUIRE) &&
	     !__atomic_load_n(&r.vm->exit_asked, __ATOMIC_ACQUIRE); i++)
		usleep(100000);

	pthread_cancel(sig_thread);
	pthread_join(sig_thread, NULL);
	dirty_rate_stop(&rate);
	ctl_server_stop(ctl);
	autoresume_stop(r.vm->autoresume);
	r.vm->autoresume = NULL;
	fence_stop(r.vm->fence);
	r.vm->fence = NULL;
	dirty_rate_destroy(&rate);
	mig_ctl_destroy(&mc);
	vm_destroy(r.vm);
	fflush(stdout);
	return status;
}

int main(int argc, char **argv)
{
	/*
	 * A control client that gives up (its timeout, a killed agent) and
	 * closes before our answer must cost that answer, not the guest: the
	 * default action of SIGPIPE ended vmon, and the VM with it.
	 */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		vmon_usage_error("missing command");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(vmon_usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("vmon (Ferry) %s\n", VMON_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return vmon_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return vmon_ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cpu"))
		return vmon_cpu_main(argc - 1, argv + 1);
	vmon_usage_error("unknown command '%s'", argv[1]);
}
