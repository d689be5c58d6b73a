/*
 * The destination side of a live migration (vmon run --incoming):
 *
 *   accept -> HELLO -> precheck (capacity, CPU, version) -> VERDICT ->
 *   stream into a VM built at the handshake -> ACK -> COMMIT -> run
 *
 * The VM is built, and its RAM faulted in, while the source waits for the
 * VERDICT: pages land in memory that is ready. The guest runs here only
 * after COMMIT; any failure before that discards it without it ever having
 * executed an instruction here.
 */
#include "migrate/mig_live.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm_dev.h"
#include "migrate/mig_door.h"
#include "migrate/mig_lanes.h"
#include "migrate/mig_proto.h"

#define MIG_MEM_RESERVE (256ull << 20) /* what the host keeps for itself */

static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kb = 0;

	if (!f)
		return ~0ull;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb ? kb * 1024ull : ~0ull;
}

struct mig_refusals {
	Ferry__Mig__Refusal r[8];
	Ferry__Mig__Refusal *p[8];
	char msg[8][MIG_ERR_LEN];
	size_t n;
};

static void refuse(struct mig_refusals *rf, const char *cause, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void refuse(struct mig_refusals *rf, const char *cause, const char *fmt, ...)
{
	va_list ap;

	if (rf->n >= 8)
		return;
	va_start(ap, fmt);
	vsnprintf(rf->msg[rf->n], MIG_ERR_LEN, fmt, ap);
	va_end(ap);
	ferry__mig__refusal__init(&rf->r[rf->n]);
	rf->r[rf->n].phase = "precheck";
	rf->r[rf->n].cause = (char *)cause;
	rf->r[rf->n].message = rf->msg[rf->n];
	rf->p[rf->n] = &rf->r[rf->n];
	rf->n++;
}

/* Check the HELLO against this host and build the VM that will hold it. */
static int mig_precheck(const struct mig_incoming_opts *o, const Ferry__Mig__Hello *h,
			struct vm **vmp, struct mig_refusals *rf)
{
	struct cpuid_table cpuid;
	struct vm_config cfg;
	char host[128] = "this host", model[32], err[VM_ERR_LEN];
	uint64_t xcr0, avail = mem_available();
	int ret;

	gethostname(host, sizeof(host) - 1);
	if (h->min_version > STREAM_VERSION || h->max_version < STREAM_VERSION)
		refuse(rf, "version", "%s speaks stream version %u, the source %u..%u", host,
		       STREAM_VERSION, h->min_version, h->max_version);
	if (!h->nr_vcpus || h->nr_vcpus > GABI_MAX_VCPUS)
		refuse(rf, "vcpus", "%s runs at most %u vCPUs, the VM has %u", host,
		       GABI_MAX_VCPUS, h->nr_vcpus);
	if (h->mem_bytes + MIG_MEM_RESERVE > avail)
		refuse(rf, "memory", "%s has %llu MiB available, the VM needs %llu MiB",
		       host, (unsigned long long)(avail >> 20),
		       (unsigned long long)(h->mem_bytes >> 20));
	if (h->connections > MIG_CONN_MAX)
		refuse(rf, "connections", "%s takes 1..%u data connections, the source asked "
		       "for %u", host, MIG_CONN_MAX, h->connections);
	else if (h->connections > 1 && h->lane_token.len != MIG_LANE_TOKEN_LEN)
		refuse(rf, "connections", "the source asked for %u data connections without "
		       "a %u-byte token", h->connections, MIG_LANE_TOKEN_LEN);
	for (size_t i = 0; i < h->n_device_states; i++) {
		const Ferry__Mig__DeviceState *d = h->device_states[i];
		const struct vm_dev_type *t = d->name ? vm_dev_type_find(d->name) : NULL;

		err[0] = 0;
		if (!t)
			refuse(rf, "device", "%s has no device '%.64s'", host,
			       d->name ? d->name : "?");
		else if (t->precheck && t->precheck(d->version, d->data.data, d->data.len,
						      err, sizeof(err)))
			refuse(rf, t->what, "destination %s: %s", host, err);
	}
	if (!h->cpu_model) {
		refuse(rf, "cpu", "the source sent no CPU model");
		return -EINVAL;
	}
	err[0] = 0;
	ret = mig_unpack_cpu(h->cpu_model, &cpuid, &xcr0, model, sizeof(model), err);
	if (ret) {
		refuse(rf, "cpu", "%s", err);
		return ret;
	}
	if (rf->n)
		return -ENOTSUP;

	vm_config_init(&cfg);
	if (h->vm_name && *h->vm_name)
		snprintf(cfg.name, sizeof(cfg.name), "%s", h->vm_name);
	cfg.mem_size = h->mem_bytes;
	cfg.nr_vcpus = h->nr_vcpus;
	mig_load_opts_apply(&o->load, &cfg);
	/*
	 * A dry run borrows the RAM made ahead for the real migration (it goes
	 * back in mig_incoming), or maps RAM without faulting it in. Faulting a
	 * second copy in took 1.1-1.6 s a GiB here, and would refuse a VM that
	 * fits beside its premade RAM. The memory check above has counted it,
	 * and the mapping still reserves huge pages.
	 */
	cfg.premade = o->load.premade;
	if (h->dry_run)
		cfg.mem_flags &= ~(unsigned)(MEM_PREALLOC | MEM_WARM);
	/* Builds the VM and faults its RAM in: the pages will land in it. */
	ret = vm_create_incoming(&cfg, model, &cpuid, xcr0, vmp, err);
	if (ret == -ENOTSUP)
		refuse(rf, "cpu", "destination %s %s (VM %s)", host, err,
		       h->vm_name && *h->vm_name ? h->vm_name : "?");
	else if (ret)
		refuse(rf, ret == -ENOMEM ? "memory" : "setup", "destination %s: %s", host, err);
	/* Devices that are slow to make are made now, not in the downtime. */
	for (size_t i = 0; !ret && !h->dry_run && i < h->n_device_states; i++) {
		const Ferry__Mig__DeviceState *d = h->device_states[i];
		const struct vm_dev_type *t = vm_dev_type_find(d->name);

		err[0] = 0;
		if (t->prepare && t->prepare(*vmp, d->version, d->data.data, d->data.len, err,
					     sizeof(err)))
			refuse(rf, t->what, "destination %s: %s", host, err);
	}
	return ret;
}

/* FERRY_TEST_FAULT=NAME: a fault tests need on demand, where none can cause it from outside. */
static bool test_fault(const char *name)
{
	const char *f = getenv("FERRY_TEST_FAULT");

	return f && !strcmp(f, name);
}

static int mig_send_verdict(struct stream_writer *w, struct mig_refusals *rf,
			    unsigned connections)
{
	Ferry__Mig__Verdict v = FERRY__MIG__VERDICT__INIT;
	char host[128] = "";

	gethostname(host, sizeof(host) - 1);
	v.accept = rf->n == 0;
	v.version = STREAM_VERSION;
	v.n_refusals = rf->n;
	v.refusals = rf->p;
	v.host = host;
	v.live_version = MIG_LIVE_VERSION;
	v.connections = rf->n ? 0 : connections;
	v.hashed_pages = !rf->n;
	v.sync = !rf->n;
	/* FERRY_TEST_FAULT=no-keeps-paused: answer as a vmon from before it did. */
	v.keeps_paused = !rf->n && !test_fault("no-keeps-paused");
	return mig_send_msg(w, STREAM_REC_VERDICT, &v.base);
}

static void mig_send_ack(struct stream_writer *w, bool ok, const char *phase,
			 const char *msg, uint64_t load_ns)
{
	Ferry__Mig__Ack a = FERRY__MIG__ACK__INIT;

	a.ok = ok;
	a.phase = (char *)phase;
	a.message = (char *)msg;
	a.load_ns = load_ns;
	mig_send_msg(w, STREAM_REC_ACK, &a.base);
}

/*
 * FERRY_TEST_FAULT=lose-commit: behave as if the connection broke right
 * after our ACK, the one failure after which neither side may run the
 * guest on its own. Tests of whoever settles that (the cluster's agent)
 * need it on demand; the window is too short to hit from outside.
 */
static int commit_lost_on_purpose(char *why)
{
	if (!test_fault("lose-commit"))
		return 0;
	snprintf(why, MIG_ERR_LEN, "the connection broke (FERRY_TEST_FAULT=lose-commit)");
	return -ECONNRESET;
}

/* Per connection: what the next source starts afresh with. */
static void incoming_reset(struct xport **x, struct stream_writer *w,
			   struct stream_reader *hr, struct stream_reader *sr)
{
	xport_close(*x);
	*x = NULL;
	stream_writer_destroy(w);
	stream_reader_destroy(hr);
	stream_reader_destroy(sr);
	stream_writer_init(w, -1);
	stream_reader_init(hr, -1);
	stream_reader_init(sr, -1);
}

int mig_incoming(const struct mig_incoming_opts *o, struct vm **out,
		 struct mig_incoming_result *res, char *err)
{
	struct xport_listener *l = NULL;
	struct xport *x = NULL;
	struct stream_io io;
	struct stream_writer w;
	struct stream_reader hr, sr;
	struct mig_refusals rf = { .n = 0 };
	ProtobufCMessage *msg = NULL;
	Ferry__Mig__Resumed resumed = FERRY__MIG__RESUMED__INIT;
	struct vm *vm = NULL;
	struct mig_lanes_rx *lanes = NULL;
	struct mig_page_lanes lane_hooks;
	struct mig_load_opts lo = o->load;
	uint8_t token[MIG_LANE_TOKEN_LEN];
	unsigned conns = 1;
	char xerr[XPORT_ERR_LEN], why[MIG_ERR_LEN];
	uint64_t deadline_ns = o->accept_timeout_ms < 0 ? 0 :
		now_ns() + (uint64_t)o->accept_timeout_ms * 1000000ull;
	struct mig_door_drops drops = { .n = 0 };
	struct mig_door_guest guest;
	bool dry_run = false, lent = false;
	int ret;

	memset(res, 0, sizeof(*res));
	*out = NULL;
	stream_writer_init(&w, -1);
	stream_reader_init(&hr, -1);
	stream_reader_init(&sr, -1);

	ret = xport_listen(&o->addr, o->tls ? &o->tls_cfg : NULL, &l, xerr);
	if (ret) {
		snprintf(err, MIG_ERR_LEN, "incoming: listen on %s:%u: %s", o->addr.host,
			 o->addr.port, xerr);
		goto out;
	}
	if (o->listening)
		o->listening(o->ctx, xport_listener_port(l));
again:
	/* Strays are the door's business: it returns with a HELLO or not at all. */
	ret = mig_door_wait(l, deadline_ns, o->first_bytes_ms > 0 ? o->first_bytes_ms :
			    MIG_FIRST_BYTES_MS, &drops, &guest, xerr, sizeof(xerr));
	if (ret) {
		/* The whole wait, not what was left of it after a drop. */
		if (ret == -ETIMEDOUT)
			snprintf(xerr, sizeof(xerr), "no source connected within %d ms",
				 o->accept_timeout_ms);
		if (drops.n)
			snprintf(err, MIG_ERR_LEN, "incoming: %.200s; %u connection%s dropped "
				 "before a HELLO, the last: %.200s", xerr, drops.n,
				 drops.n > 1 ? "s were" : " was", drops.last);
		else
			snprintf(err, MIG_ERR_LEN, "incoming: %s", xerr);
		goto out;
	}
	x = guest.x;
	msg = &guest.hello->base;
	snprintf(res->source, sizeof(res->source), "%s", x->peer);
	mig_xport_io(x, &io);
	stream_reader_destroy(&hr);
	hr = guest.hr;
	w.io = &io;
	hr.io = &io;
	sr.io = &io;

	xport_set_timeout(x, MIG_IO_TIMEOUT_MS);
	lent = o->load.premade && o->load.premade->base;
	ret = mig_precheck(o, (Ferry__Mig__Hello *)msg, &vm, &rf);
	dry_run = ((Ferry__Mig__Hello *)msg)->dry_run;
	conns = ((Ferry__Mig__Hello *)msg)->connections ? ((Ferry__Mig__Hello *)msg)->connections : 1;
	if (conns > 1 && !rf.n)
		memcpy(token, ((Ferry__Mig__Hello *)msg)->lane_token.data, sizeof(token));
	protobuf_c_message_free_unpacked(msg, NULL);
	msg = NULL;
	if (mig_send_verdict(&w, &rf, conns) && !ret)
		ret = -EPIPE;
	if (ret || rf.n) {
		snprintf(err, MIG_ERR_LEN, "precheck: refused the VM from %s: %.300s%s", x->peer,
			 rf.n ? rf.msg[0] : strerror(-ret), rf.n > 1 ? " (and more)" : "");
		if (!ret)
			ret = -ENOTSUP;
		goto out;
	}

	/* A dry run: the source measures the link, then says goodbye. */
	if (dry_run) {
		const void *body;
		uint64_t len;
		uint32_t type;

		do
			ret = stream_read_frame(&hr, &type, &body, &len);
		while (!ret && type == STREAM_REC_PROBE);
		log_info("incoming: dry run from %s finished; waiting for the next source",
			 x->peer);
		if (lent && !o->load.premade->base) {
			*o->load.premade = vm->mem;
			memset(&vm->mem, 0, sizeof(vm->mem));
			vm->mem.memfd = -1;
		}
		/* Same listener, fresh everything else. */
		vm_destroy(vm);
		vm = NULL;
		incoming_reset(&x, &w, &hr, &sr);
		memset(res, 0, sizeof(*res));
		rf.n = 0;
		dry_run = false;
		goto again;
	}

	/* Live protocol 2: the data connections join on the same listener. */
	if (conns > 1) {
		ret = mig_lanes_rx_accept(l, x, conns, token, MIG_HANDSHAKE_TIMEOUT_MS,
					  &lanes, why);
		if (!ret)
			ret = mig_lanes_rx_start(lanes, vm, &lane_hooks, why);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "handshake: from %s: %.300s", x->peer, why);
			mig_send_abort(&w, "handshake", why);
			goto out;
		}
		lo.lanes = &lane_hooks;
	}

	/* The stream: every page, then the state, then END. */
	lo.reply = &w;
	ret = mig_load_stream(&sr, &lo, &vm, &res->load, why);
	if (ret && mig_lanes_rx_error(lanes) && !strstr(why, mig_lanes_rx_error(lanes))) {
		/* The source may have given up because a data connection broke. */
		size_t used = strlen(why);

		snprintf(why + used, MIG_ERR_LEN - used, " (%.200s)", mig_lanes_rx_error(lanes));
	}
	mig_lanes_rx_close(lanes);
	lanes = NULL;
	if (ret) {
		/* The record that failed tells the phase: state belongs to switchover. */
		const char *phase = sr.order.phase >= STREAM_PH_VCPUS ||
			sr.type == STREAM_REC_VCPU_STATE || sr.type == STREAM_REC_CLOCK ||
			sr.type == STREAM_REC_DEVICE_STATE || sr.type == STREAM_REC_END ?
			"switchover" : "precopy";

		snprintf(err, MIG_ERR_LEN, "%s: from %s: %.300s", phase, x->peer, why);
		if (ret != -ECONNABORTED)
			mig_send_ack(&w, false, phase, why, 0);
		goto out;
	}
	mig_send_ack(&w, true, "switchover", "", res->load.load_ns);

	/* The source gives the guest up only now; we run it only on COMMIT. */
	xport_set_timeout(x, MIG_COMMIT_WAIT_MS);
	ret = commit_lost_on_purpose(why);
	if (!ret)
		ret = mig_recv_msg(&hr, STREAM_REC_COMMIT, NULL, &msg, why);
	if (ret) {
		snprintf(err, MIG_ERR_LEN, "awaiting commit: %.300s; the guest is loaded but "
			 "not started here", why);
		/* The VM is complete: hand it over paused, for the operator. */
		*out = vm;
		vm = NULL;
		goto out;
	}
	if (vm_held(vm, why, MIG_ERR_LEN)) {
		/*
		 * Paused at the source by the operator or a device: it stays
		 * paused, but the disks are ours from now on (the source let
		 * them go), so no one else takes them meanwhile.
		 */
		if (vm_take_devs(vm, why, MIG_ERR_LEN)) {
			log_err("%s: arrived paused, and cannot take its disks: %s", vm->cfg.name,
				why);
		} else {
			log_warn("%s: arrived paused, and stays paused (%s): vmon ctl resume runs it",
				 vm->cfg.name, why);
		}
		resumed.kept_paused = true;
	} else {
		ret = vm_start(vm);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "cannot start the guest: %s", strerror(-ret));
			goto out;
		}
	}
	resumed.realtime_ns = realtime_ns();
	mig_send_msg(&w, STREAM_REC_RESUMED, &resumed.base);
	*out = vm;
	vm = NULL;
	ret = 0;
	goto out;

out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	mig_lanes_rx_close(lanes);
	if (vm)
		vm_destroy(vm);
	xport_close(x);
	xport_listener_close(l);
	stream_writer_destroy(&w);
	stream_reader_destroy(&hr);
	stream_reader_destroy(&sr);
	return ret;
}
