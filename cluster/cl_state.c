/* The replicated cluster state and the commands that change it. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_admit.h"
#include "cl_cpu.h"
#include "cl_plan.h"
#include "cl_msg.h"
#include "cl_nic.h"
#include "cl_state.h"
#include "cl_settings.h"
#include "core/util.h"

#define MEM_MIN_BYTES (8ull << 20)

/* A start, or a recovery on another host: the guest's crashes count again from none. */
static void vm_crashes_forget(Ferry__Cluster__Vm *vm)
{
	free(vm->crashes_unix_ms);
	vm->crashes_unix_ms = NULL;
	vm->n_crashes_unix_ms = 0;
	vm->restarts = 0;
}

/* Take message p out of the state's array v of n (p is in it), keeping the order, and free it. */
#define REMOVE_FREE(v, n, p) do {                                              \
	size_t _i = 0;                                                        \
	while ((v)[_i] != (p))                                                \
		_i++;                                                         \
	memmove(&(v)[_i], &(v)[_i + 1], ((n) - _i - 1) * sizeof(*(v)));      \
	(n)--;                                                                \
	CL_FREE(p);                                                           \
} while (0)
#define MEM_MAX_BYTES (128ull << 30)
#define VCPUS_MAX 32

Ferry__Cluster__State *cl_state_new(const char *cluster_name)
{
	Ferry__Cluster__State *st = CL_NEW(Ferry__Cluster__State, ferry__cluster__state__init);

	if (st)
		st->cluster_name = cl_strdup(cluster_name);
	return st;
}

int cl_state_load(const char *path, Ferry__Cluster__State **out, char *err, size_t err_len)
{
	struct stat sb;
	uint8_t *buf = NULL;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, err_len, "state %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &sb) || sb.st_size > (64 << 20)) {
		ret = -EFBIG;
		snprintf(err, err_len, "state %s: unreadable or too large", path);
		goto out;
	}
	buf = malloc(sb.st_size ? sb.st_size : 1);
	ret = buf ? read_full(fd, buf, sb.st_size) : -ENOMEM;
	if (ret) {
		snprintf(err, err_len, "state %s: read: %s", path, strerror(-ret));
		goto out;
	}
	*out = ferry__cluster__state__unpack(NULL, sb.st_size, buf);
	if (!*out) {
		ret = -EBADMSG;
		snprintf(err, err_len, "state %s: not a cluster state (corrupt?)", path);
	}
out:
	free(buf);
	close(fd);
	return ret;
}

int cl_state_save(const char *path, const Ferry__Cluster__State *st, char *err, size_t err_len)
{
	size_t len = ferry__cluster__state__get_packed_size(st);
	uint8_t *buf = malloc(len ? len : 1);
	int ret;

	if (!buf)
		return -ENOMEM;
	ferry__cluster__state__pack(st, buf);
	ret = write_file_atomic(path, buf, len);
	if (ret)
		snprintf(err, err_len, "state %s: write: %s", path, strerror(-ret));
	free(buf);
	return ret;
}

int cl_state_write_revoked(const Ferry__Cluster__State *st, const char *path, char *err,
			   size_t err_len)
{
	static const char head[] = "# Written by clusterd from the cluster state: the "
				   "certificate serials revoked\n# cluster-wide "
				   "(clusterctl node revoke). vmon refuses them.\n";
	size_t cap = sizeof(head), len;
	char *buf;
	int ret;

	for (size_t i = 0; i < st->n_revoked; i++)
		cap += strlen(st->revoked[i]) + 1;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	len = (size_t)snprintf(buf, cap, "%s", head);
	for (size_t i = 0; i < st->n_revoked; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s\n", st->revoked[i]);
	ret = write_file_atomic(path, buf, len);
	if (ret)
		snprintf(err, err_len, "revocation list %s: write: %s", path, strerror(-ret));
	free(buf);
	return ret;
}

Ferry__Cluster__Vm *cl_state_vm(const Ferry__Cluster__State *st, const char *name)
{
	for (size_t i = 0; i < st->n_vms; i++)
		if (!strcmp(st->vms[i]->name, name))
			return st->vms[i];
	return NULL;
}

Ferry__Cluster__Host *cl_state_host(const Ferry__Cluster__State *st, const char *name)
{
	for (size_t i = 0; i < st->n_hosts; i++)
		if (!strcmp(st->hosts[i]->name, name))
			return st->hosts[i];
	return NULL;
}

Ferry__Cluster__Host *cl_state_host_by_nodeid(const Ferry__Cluster__State *st, uint32_t nodeid)
{
	for (size_t i = 0; i < st->n_hosts; i++)
		if (st->hosts[i]->nodeid == nodeid)
			return st->hosts[i];
	return NULL;
}

bool cl_state_unsaved_refuses(size_t unsaved, size_t online)
{
	return unsaved && unsaved * 2 > online;
}

uint64_t cl_state_host_mem_used(const Ferry__Cluster__State *st, const char *host)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = st->vms[i];
		bool here = vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
			    !strcmp(vm->host, host);

		if (vm->migration && !strcmp(vm->migration->destination, host))
			here = true;
		if (here)
			sum += vm->mem_bytes;
	}
	return sum;
}

const Ferry__Cluster__Vm *cl_state_ha_running(const Ferry__Cluster__State *st, const char *host)
{
	for (size_t i = 0; i < st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = st->vms[i];

		if (vm->ha && vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING &&
		    (!host || !strcmp(vm->host, host)))
			return vm;
	}
	return NULL;
}

bool cl_state_revoked(const Ferry__Cluster__State *st, const char *serial)
{
	for (size_t i = 0; i < st->n_revoked; i++)
		if (!strcasecmp(st->revoked[i], serial))
			return true;
	return false;
}

bool cl_model_known(const char *model)
{
	static const char *const models[] = {
		"host", "cluster", "x86-64-v1", "x86-64-v2", "x86-64-v3", "x86-64-v4",
	};

	for (size_t i = 0; i < ARRAY_SIZE(models); i++)
		if (!strcmp(model, models[i]))
			return true;
	return false;
}

__attribute__((format(printf, 4, 5)))
static int refuse(int ret, char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	return ret;
}

int cl_state_host_fits(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		     const char *what, const char *name, char *err, size_t err_len)
{
	const Ferry__Cluster__Host *h = cl_state_host(st, name);
	char missing[CL_ERR_LEN], bridge[IFNAMSIZ];
	uint64_t used;
	int ret, nic;

	if (!h)
		return refuse(-ENOENT, err, err_len, "%s: %s: no such host %s", what,
			      vm->name, name);
	if (h->witness)
		return refuse(-EPERM, err, err_len, "%s: %s: host %s is a witness: it runs no VMs",
			      what, vm->name, name);
	if (h->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE)
		return refuse(-EBUSY, err, err_len,
			      "%s: %s: host %s is in maintenance mode", what, vm->name, name);
	/* Its agent would not make the vmon fence itself: a recovery could run it twice. */
	if (vm->ha && h->agent_proto < CL_PROTO_3)
		return refuse(-EPROTO, err, err_len, "%s: %s: the agent of %s predates HA and "
			      "could not fence an HA VM; upgrade it first", what, vm->name, name);
	if (vm->n_nets && h->agent_proto < CL_PROTO_4)
		return refuse(-EPROTO, err, err_len, "%s: %s: the agent of %s predates NICs and "
			      "would start the VM without them; upgrade it first", what, vm->name,
			      name);
	nic = cl_nic_missing_bridge(vm, h, bridge);
	if (nic >= 0)
		return refuse(-ENODEV, err, err_len, "%s: %s: %s has no bridge %s for net%d",
			      what, vm->name, name, bridge, nic);
	ret = cl_cpu_check(st, vm, h, missing, sizeof(missing));
	if (ret == -ENOTSUP)
		return refuse(ret, err, err_len, "%s: %s: %s lacks %s required by model %s",
			      what, vm->name, name, missing, vm->cpu_model);
	if (ret)
		return refuse(ret, err, err_len, "%s: %s: %s", what, vm->name, missing);
	ret = cl_plan_rules_allow(st, vm->name, name, missing, sizeof(missing));
	if (ret)
		return refuse(ret, err, err_len, "%s: %s: %s", what, vm->name, missing);
	used = cl_state_host_mem_used(st, name);
	if (h->inventory && h->inventory->mem_bytes &&
	    used + vm->mem_bytes > h->inventory->mem_bytes)
		return refuse(-ENOMEM, err, err_len,
			      "%s: %s: %s has %llu MiB for guests, %llu MiB taken, %s needs %llu MiB",
			      what, vm->name, name,
			      (unsigned long long)(h->inventory->mem_bytes >> 20),
			      (unsigned long long)(used >> 20), vm->name,
			      (unsigned long long)(vm->mem_bytes >> 20));
	return 0;
}

static bool vm_running(const Ferry__Cluster__Vm *vm)
{
	return vm->desired == FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
}

static int apply_host_join(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	const Ferry__Cluster__Host *in = cmd->host_join->host;
	Ferry__Cluster__Host *h, *copy, **v;

	if (!in || !*in->name)
		return refuse(-EINVAL, err, err_len, "host join: no host");
	copy = CL_DUP(Ferry__Cluster__Host, in);
	if (!copy)
		return -ENOMEM;
	h = cl_state_host(st, in->name);
	if (h && in->witness && !h->witness && cl_state_host_mem_used(st, in->name)) {
		CL_FREE(copy);
		return refuse(-EBUSY, err, err_len, "host join: %s: VMs are placed on it, and a "
			      "witness runs none; stop or move them first", in->name);
	}
	if (h) {
		/* The mode is the operator's, not the joining node's. */
		copy->mode = h->mode;
		copy->mode_unix_ms = h->mode_unix_ms;
		for (size_t i = 0; i < st->n_hosts; i++)
			if (st->hosts[i] == h)
				st->hosts[i] = copy;
		CL_FREE(h);
		return 0;
	}
	v = realloc(st->hosts, (st->n_hosts + 1) * sizeof(*v));
	if (!v) {
		CL_FREE(copy);
		return -ENOMEM;
	}
	st->hosts = v;
	/* Kept in name order: every listing reads the same on every node. */
	size_t i = st->n_hosts;

	while (i > 0 && strcmp(st->hosts[i - 1]->name, copy->name) > 0) {
		st->hosts[i] = st->hosts[i - 1];
		i--;
	}
	st->hosts[i] = copy;
	st->n_hosts++;
	return 0;
}

static int apply_host_mode(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	const Ferry__Cluster__CmdHostMode *c = cmd->host_mode;
	Ferry__Cluster__Host *h = cl_state_host(st, c->host);
	int ret;

	if (!h)
		return refuse(-ENOENT, err, err_len, "host mode: no such host %s", c->host);
	/*
	 * Two hosts asked into maintenance at once, each admitted on the state
	 * before the other, must not both go: judged again here, as a start
	 * is (admit_apply), with the plan the proposer judged.
	 */
	if (c->admit && c->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE &&
	    h->mode != c->mode && !cl_state_host_below(st, CL_PROTO_13, NULL)) {
		ret = cl_admit_maintenance(st, cl_admit_up_unless_down, c->admit,
					   "host maintenance", h->name, c->admit->moves,
					   c->admit->n_moves, err, err_len);
		if (ret)
			return ret;
	}
	if (h->mode != c->mode)
		h->mode_unix_ms = cmd->unix_ms;
	h->mode = c->mode;
	return 0;
}

const char *cl_priority_name(Ferry__Cluster__VmPriority p)
{
	switch (p) {
	case FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_LOW: return "low";
	case FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM: return "medium";
	case FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH: return "high";
	default: return NULL;
	}
}

unsigned cl_priority_rank(Ferry__Cluster__VmPriority p)
{
	return p == FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_LOW ? 0 :
	       p == FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH ? 2 : 1;
}

/* Checks shared by create and set: a known value, agents that keep it. */
static int priority_check(const Ferry__Cluster__State *st, const char *what, const char *vm,
			  Ferry__Cluster__VmPriority p, char *err, size_t err_len)
{
	const Ferry__Cluster__Host *old;

	if (!cl_priority_name(p))
		return refuse(-EINVAL, err, err_len, "%s: %s: unknown priority %d (low, medium, "
			      "high)", what, vm, (int)p);
	if (p != FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM &&
	    (old = cl_state_host_below(st, CL_PROTO_5, NULL)))
		return refuse(-EPROTO, err, err_len, "%s: %s: the agent of %s predates VM "
			      "priorities; upgrade it first", what, vm, old->name);
	return 0;
}

static int apply_vm_create(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	const Ferry__Cluster__Vm *in = cmd->vm_create->vm;
	const Ferry__Cluster__Host *old;
	Ferry__Cluster__Vm *vm, **v;
	char why[CL_ERR_LEN];
	int ret;

	if (!in || !*in->name)
		return refuse(-EINVAL, err, err_len, "vm create: no VM");
	if (cl_state_vm(st, in->name))
		return refuse(-EEXIST, err, err_len, "vm create: %s: the name is taken",
			      in->name);
	if (!cl_model_known(in->cpu_model))
		return refuse(-EINVAL, err, err_len,
			      "vm create: %s: unknown CPU model '%s' (host, cluster, x86-64-v1..v4)",
			      in->name, in->cpu_model);
	if (in->mem_bytes < MEM_MIN_BYTES || in->mem_bytes > MEM_MAX_BYTES ||
	    in->mem_bytes % (2u << 20))
		return refuse(-EINVAL, err, err_len,
			      "vm create: %s: memory must be a multiple of 2 MiB, 8 MiB..128 GiB",
			      in->name);
	if (in->vcpus < 1 || in->vcpus > VCPUS_MAX)
		return refuse(-EINVAL, err, err_len, "vm create: %s: vCPUs must be 1..%d",
			      in->name, VCPUS_MAX);
	if (!*in->guest)
		return refuse(-EINVAL, err, err_len, "vm create: %s: no guest image", in->name);
	if (in->ha && (old = cl_state_host_below(st, CL_PROTO_3, NULL)))
		return refuse(-EPROTO, err, err_len, "vm create: %s: the agent of %s predates HA; "
			      "upgrade it first", in->name, old->name);
	ret = priority_check(st, "vm create", in->name, in->priority, err, err_len);
	if (ret)
		return ret;
	if (in->n_nets && (old = cl_state_host_below(st, CL_PROTO_4, NULL)))
		return refuse(-EPROTO, err, err_len, "vm create: %s: the agent of %s predates NICs; "
			      "upgrade it first", in->name, old->name);
	vm = CL_DUP(Ferry__Cluster__Vm, in);
	v = realloc(st->vms, (st->n_vms + 1) * sizeof(*v));
	if (!vm || !v) {
		CL_FREE(vm);
		if (v)
			st->vms = v;
		return -ENOMEM;
	}
	st->vms = v;
	ret = cl_nic_normalize(st, vm, why, sizeof(why));
	if (ret) {
		CL_FREE(vm);
		return refuse(ret, err, err_len, "vm create: %s: %s", in->name, why);
	}
	/* What the cluster decides is not the creator's to set. */
	vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED;
	cl_str_set(&vm->host, "");
	CL_FREE(vm->migration);
	vm->migration = NULL;
	CL_FREE(vm->last_migration);
	vm->last_migration = NULL;
	vm->generation = 0;
	vm_crashes_forget(vm);
	st->vms = v;
	st->vms[st->n_vms++] = vm;
	return 0;
}

static Ferry__Cluster__Vm *vm_get(const Ferry__Cluster__State *st, const char *what,
				  const char *name, char *err, size_t err_len)
{
	Ferry__Cluster__Vm *vm = cl_state_vm(st, name);

	if (!vm)
		refuse(0, err, err_len, "%s: %s: no such VM", what, name);
	return vm;
}

/*
 * HA admission control judged again in the total order: two requests that
 * two agents admitted at once, each against the state before the other,
 * cannot both land. By the view of the hosts the proposer had (adm), on
 * the state of this turn. An agent older than protocol 12 ignores adm, so
 * while one is in the cluster nobody judges here, alike.
 */
static int admit_apply(const Ferry__Cluster__State *st, const Ferry__Cluster__Admit *adm,
		       const char *what, const char *vm, const char *host, bool ha, bool move,
		       char *err, size_t err_len)
{
	if (!adm || cl_state_host_below(st, CL_PROTO_12, NULL))
		return 0;
	return cl_admit_judge(st, cl_admit_up_unless_down, adm, what, vm, host, ha, move, err,
			      err_len);
}

static int apply_vm_start(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			  char *err, size_t err_len)
{
	Ferry__Cluster__Vm *vm = vm_get(st, "vm start", cmd->vm_start->name, err, err_len);
	int ret;

	if (!vm)
		return -ENOENT;
	if (vm_running(vm))
		return refuse(-EALREADY, err, err_len, "vm start: %s: already running on %s",
			      vm->name, vm->host);
	ret = cl_state_host_fits(st, vm, "vm start", cmd->vm_start->host, err, err_len);
	if (!ret)
		ret = admit_apply(st, cmd->vm_start->admit, "vm start", vm->name,
				  cmd->vm_start->host, vm->ha, false, err, err_len);
	if (ret)
		return ret;
	vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
	cl_str_set(&vm->host, cmd->vm_start->host);
	cl_str_set(&vm->last_error, "");
	vm->generation++;
	vm->ha_unarmed = false;
	vm_crashes_forget(vm);
	return 0;
}

static int apply_vm_stop(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			 char *err, size_t err_len)
{
	Ferry__Cluster__Vm *vm = vm_get(st, "vm stop", cmd->vm_stop->name, err, err_len);

	if (!vm)
		return -ENOENT;
	if (!vm_running(vm))
		return refuse(-EALREADY, err, err_len, "vm stop: %s: not running", vm->name);
	if (vm->migration)
		return refuse(-EBUSY, err, err_len,
			      "vm stop: %s: migrating to %s; cancel or wait for it first",
			      vm->name, vm->migration->destination);
	vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED;
	cl_str_set(&vm->last_error, "stopped on request");
	return 0;
}

static int apply_vm_delete(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	Ferry__Cluster__Vm *vm = vm_get(st, "vm delete", cmd->vm_delete->name, err, err_len);

	if (!vm)
		return -ENOENT;
	if (vm_running(vm))
		return refuse(-EBUSY, err, err_len, "vm delete: %s: running on %s; stop it first",
			      vm->name, vm->host);
	REMOVE_FREE(st->vms, st->n_vms, vm);
	return 0;
}

static bool crash_counts(uint64_t t, uint64_t now_ms, uint64_t window_ms)
{
	/* One from a clock ahead of now_ms's counts: a skew must not reset the count. */
	return t > now_ms || now_ms - t < window_ms;
}

unsigned cl_vm_crashes_counted(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
			       uint64_t now_ms)
{
	uint64_t window_ms = cl_setting_get(st, CL_SET_CRASH_WINDOW_S) * 1000;
	unsigned n = 0;

	for (size_t i = 0; i < vm->n_crashes_unix_ms; i++)
		n += crash_counts(vm->crashes_unix_ms[i], now_ms, window_ms);
	return n;
}

bool cl_vm_crash_restarts(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
			  uint64_t now_ms)
{
	uint64_t max = cl_setting_get(st, CL_SET_CRASH_RESTARTS);

	/* No crash is recorded while an older agent runs: its rule, every restart counted. */
	if (cl_state_host_below(st, CL_PROTO_10, NULL))
		return vm->restarts < max;
	return cl_vm_crashes_counted(st, vm, now_ms) < max;
}

/*
 * Add a crash at now_ms to vm's list, which keeps only those that may
 * still count: within the window, the last crash-restarts of them.
 * -ENOMEM leaves the list as it was.
 */
static int vm_crash_add(const Ferry__Cluster__State *st, Ferry__Cluster__Vm *vm, uint64_t now_ms)
{
	uint64_t window_ms = cl_setting_get(st, CL_SET_CRASH_WINDOW_S) * 1000;
	size_t keep = cl_setting_get(st, CL_SET_CRASH_RESTARTS), n = 0;
	uint64_t *v = malloc((vm->n_crashes_unix_ms + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < vm->n_crashes_unix_ms; i++)
		if (crash_counts(vm->crashes_unix_ms[i], now_ms, window_ms))
			v[n++] = vm->crashes_unix_ms[i];
	v[n++] = now_ms;
	if (n > keep) {
		memmove(v, v + (n - keep), keep * sizeof(*v));
		n = keep;
	}
	free(vm->crashes_unix_ms);
	vm->crashes_unix_ms = v;
	vm->n_crashes_unix_ms = n;
	return 0;
}

static int apply_vm_exited(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	const Ferry__Cluster__CmdVmExited *c = cmd->vm_exited;
	Ferry__Cluster__Vm *vm = vm_get(st, "vm exited", c->name, err, err_len);

	if (!vm)
		return -ENOENT;
	/* A report about a vmon the cluster already replaced changes nothing. */
	if (!vm_running(vm) || strcmp(vm->host, c->host) || vm->generation != c->generation)
		return refuse(-ESTALE, err, err_len, "vm exited: %s: stale report from %s",
			      vm->name, c->host);
	/* Counted only once every agent counts them, or the copies of the state would differ. */
	if (c->crash && c->restart && !cl_state_host_below(st, CL_PROTO_10, NULL) &&
	    vm_crash_add(st, vm, c->unix_ms))
		return refuse(-ENOMEM, err, err_len, "vm exited: %s: out of memory", vm->name);
	cl_str_set(&vm->last_error, c->reason);
	if (c->restart) {
		vm->restarts++;
		vm->generation++;
		vm->ha_unarmed = false;   /* the new vmon starts with the fence */
	} else {
		vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED;
	}
	return 0;
}

static int apply_mig_begin(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	const Ferry__Cluster__CmdMigBegin *c = cmd->mig_begin;
	Ferry__Cluster__Vm *vm = vm_get(st, "migrate", c->vm, err, err_len);
	Ferry__Cluster__Migration *m;
	int ret;

	if (!vm)
		return -ENOENT;
	if (!vm_running(vm))
		return refuse(-EINVAL, err, err_len, "migrate: %s: not running", vm->name);
	if (vm->migration)
		return refuse(-EBUSY, err, err_len,
			      "migrate: %s: a migration to %s is already in flight",
			      vm->name, vm->migration->destination);
	if (!strcmp(vm->host, c->destination))
		return refuse(-EINVAL, err, err_len, "migrate: %s: already runs on %s",
			      vm->name, c->destination);
	ret = cl_state_host_fits(st, vm, "migrate", c->destination, err, err_len);
	if (!ret)
		ret = admit_apply(st, c->admit, "migrate", vm->name, c->destination, vm->ha, true,
				  err, err_len);
	if (ret)
		return ret;
	m = CL_NEW(Ferry__Cluster__Migration, ferry__cluster__migration__init);
	if (!m)
		return -ENOMEM;
	m->id = st->seq + 1;
	m->source = cl_strdup(vm->host);
	m->destination = cl_strdup(c->destination);
	/* Fixed here, at the start: a later `config set` leaves it alone. */
	m->downtime_ms = c->downtime_ms ? c->downtime_ms :
			 cl_setting_raw(st, &cl_settings[CL_SET_MIG_DOWNTIME_MS]);
	m->bandwidth_mbps = c->bandwidth_mbps ? c->bandwidth_mbps :
			    cl_setting_raw(st, &cl_settings[CL_SET_MIG_BANDWIDTH_MBPS]);
	m->dry_run = c->dry_run;
	vm->migration = m;
	return 0;
}

static Ferry__Cluster__Vm *vm_migrating(const Ferry__Cluster__State *st, const char *what,
					const char *name, uint64_t id, char *err,
					size_t err_len)
{
	Ferry__Cluster__Vm *vm = vm_get(st, what, name, err, err_len);

	if (vm && (!vm->migration || vm->migration->id != id)) {
		refuse(0, err, err_len, "%s: %s: migration %llu is not in flight", what,
		       name, (unsigned long long)id);
		return NULL;
	}
	return vm;
}

static int apply_mig_ready(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			   char *err, size_t err_len)
{
	const Ferry__Cluster__CmdMigReady *c = cmd->mig_ready;
	Ferry__Cluster__Vm *vm = vm_migrating(st, "migrate ready", c->vm, c->id, err, err_len);

	if (!vm)
		return -ESTALE;
	cl_str_set(&vm->migration->incoming_uri, c->uri);
	return 0;
}

static int apply_mig_end(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			 char *err, size_t err_len)
{
	const Ferry__Cluster__CmdMigEnd *c = cmd->mig_end;
	Ferry__Cluster__Vm *vm = vm_migrating(st, "migrate end", c->vm, c->id, err, err_len);
	Ferry__Cluster__MigrationResult *r;

	if (!vm)
		return -ESTALE;
	r = c->result ? CL_DUP(Ferry__Cluster__MigrationResult, c->result)
		      : CL_NEW(Ferry__Cluster__MigrationResult,
			       ferry__cluster__migration_result__init);
	if (!r)
		return -ENOMEM;
	r->id = c->id;
	r->dry_run = vm->migration->dry_run;
	/* Whatever the source says failed it, the operator wanted it stopped. */
	r->cancelled = !r->ok && vm->migration->cancel;
	r->ended_unix_ms = cmd->unix_ms;
	cl_str_set(&r->source, vm->migration->source);
	cl_str_set(&r->destination, vm->migration->destination);
	if (r->ok && !r->dry_run) {
		cl_str_set(&vm->host, vm->migration->destination);
		vm->generation++;
		/* HA does not change during a migration: the destination had the fence. */
		vm->ha_unarmed = false;
	}
	CL_FREE(vm->last_migration);
	vm->last_migration = r;
	CL_FREE(vm->migration);
	vm->migration = NULL;
	return 0;
}

/*
 * What an operator asks of a migration in flight (a cancel, a change): the
 * one they saw (id; a newer one goes on as it is), and only once every
 * agent knows the command (proto). 0 with *out, or -errno and err.
 */
struct mig_ask {
	const char *what;       /* the command, in messages */
	const char *noun;       /* "cancel", "change" */
	const char *feature;    /* what an agent before proto lacks */
	uint32_t proto;
};

static int mig_asked(Ferry__Cluster__State *st, const struct mig_ask *a, const char *name,
		     uint64_t id, Ferry__Cluster__Vm **out, char *err, size_t err_len)
{
	Ferry__Cluster__Vm *vm = vm_get(st, a->what, name, err, err_len);
	const Ferry__Cluster__Host *old;

	if (!vm)
		return -ENOENT;
	if (!vm->migration)
		return refuse(-ENOENT, err, err_len, "%s: %s: no migration in flight", a->what,
			      vm->name);
	if (id != vm->migration->id)
		return refuse(-ESTALE, err, err_len, "%s: %s: migration %llu began after the %s "
			      "was asked; it goes on", a->what, vm->name,
			      (unsigned long long)vm->migration->id, a->noun);
	if ((old = cl_state_host_below(st, a->proto, NULL)))
		return refuse(-EPROTO, err, err_len, "%s: %s: the agent of %s predates %s; "
			      "upgrade it first", a->what, vm->name, old->name, a->feature);
	*out = vm;
	return 0;
}

/*
 * Only the source's vmon can stop the stream; the state carries the
 * request to its agent. A VM past its switchover still lands: the end
 * reports what happened, not what was asked.
 */
static int apply_mig_cancel(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			    char *err, size_t err_len)
{
	const Ferry__Cluster__CmdMigCancel *c = cmd->mig_cancel;
	Ferry__Cluster__Vm *vm;
	static const struct mig_ask ask = { "migrate-cancel", "cancel", "cancelling", CL_PROTO_6 };
	int ret = mig_asked(st, &ask, c->vm, c->id, &vm, err, err_len);

	if (!ret)
		vm->migration->cancel = true;
	return ret;
}

/* As a cancel: carried to the source, whose vmon changes the migration. */
static int apply_mig_set(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			 char *err, size_t err_len)
{
	static const struct mig_ask ask = {
		"migrate-set", "change", "changing a migration in flight", CL_PROTO_8
	};
	const Ferry__Cluster__CmdMigSet *c = cmd->mig_set;
	Ferry__Cluster__Vm *vm;
	int ret;

	if (!c->set_downtime && !c->set_bandwidth)
		return refuse(-EINVAL, err, err_len, "migrate-set: %s: nothing to change", c->vm);
	if (c->set_downtime && !c->downtime_ms)
		return refuse(-EINVAL, err, err_len, "migrate-set: %s: the downtime target must "
			      "be at least 1 ms", c->vm);
	ret = mig_asked(st, &ask, c->vm, c->id, &vm, err, err_len);
	if (ret)
		return ret;
	if (vm->migration->dry_run)
		return refuse(-EINVAL, err, err_len, "migrate-set: %s: a dry run has nothing "
			      "to change", vm->name);
	if (c->set_downtime)
		vm->migration->downtime_ms = c->downtime_ms;
	if (c->set_bandwidth)
		vm->migration->bandwidth_mbps = c->bandwidth_mbps;
	return 0;
}

static int apply_vm_ha_armed(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			     char *err, size_t err_len)
{
	const Ferry__Cluster__CmdVmHaArmed *c = cmd->vm_ha_armed;
	Ferry__Cluster__Vm *vm = vm_get(st, "ha armed", c->vm, err, err_len);

	if (!vm)
		return -ENOENT;
	if (!vm->ha || !vm->ha_unarmed || !vm_running(vm) || vm->generation != c->generation)
		return refuse(-ESTALE, err, err_len, "ha armed: %s: stale (generation %llu)",
			      vm->name, (unsigned long long)c->generation);
	vm->ha_unarmed = false;
	return 0;
}

static int apply_revoke(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			char *err, size_t err_len)
{
	if (!*cmd->revoke->serial)
		return refuse(-EINVAL, err, err_len, "revoke: no serial");
	if (cl_state_revoked(st, cmd->revoke->serial))
		return 0;
	return cl_strv_add(&st->revoked, &st->n_revoked, cmd->revoke->serial);
}

static Ferry__Cluster__Rule *rule_find(const Ferry__Cluster__State *st, const char *name)
{
	for (size_t i = 0; i < st->n_rules; i++)
		if (!strcmp(st->rules[i]->name, name))
			return st->rules[i];
	return NULL;
}

static int apply_rule_add(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			  char *err, size_t err_len)
{
	const Ferry__Cluster__Rule *in = cmd->rule_add->rule;
	Ferry__Cluster__Rule *copy, **v;
	bool host_kind;

	if (!in || !*in->name)
		return refuse(-EINVAL, err, err_len, "rule add: no rule");
	if (rule_find(st, in->name))
		return refuse(-EEXIST, err, err_len, "rule add: %s: the name is taken", in->name);
	host_kind = in->kind >= FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST;
	if (in->kind > FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD_NOT)
		return refuse(-EINVAL, err, err_len, "rule add: %s: unknown kind", in->name);
	if (!in->n_vms || (host_kind && !in->n_hosts) || (!host_kind && in->n_vms < 2))
		return refuse(-EINVAL, err, err_len, "rule add: %s: %s", in->name, host_kind ?
			      "a host rule names VMs and hosts" : "an affinity rule names two VMs or more");
	copy = CL_DUP(Ferry__Cluster__Rule, in);
	v = realloc(st->rules, (st->n_rules + 1) * sizeof(*v));
	if (!copy || !v) {
		CL_FREE(copy);
		if (v)
			st->rules = v;
		return -ENOMEM;
	}
	st->rules = v;
	st->rules[st->n_rules++] = copy;
	return 0;
}

static int apply_rule_delete(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			     char *err, size_t err_len)
{
	Ferry__Cluster__Rule *r = rule_find(st, cmd->rule_delete->name);

	if (!r)
		return refuse(-ENOENT, err, err_len, "rule delete: no such rule %s",
			      cmd->rule_delete->name);
	REMOVE_FREE(st->rules, st->n_rules, r);
	return 0;
}

static int apply_balance_mode(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			      char *err, size_t err_len)
{
	if (cmd->balance_mode->mode > FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC)
		return refuse(-EINVAL, err, err_len, "balance: unknown mode");
	st->balance_mode = cmd->balance_mode->mode;
	return 0;
}

const Ferry__Cluster__Host *cl_state_host_below(const Ferry__Cluster__State *st, uint32_t proto,
						const char *except)
{
	for (size_t i = 0; i < st->n_hosts; i++)
		if (st->hosts[i]->agent_proto < proto &&
		    (!except || strcmp(st->hosts[i]->name, except)))
			return st->hosts[i];
	return NULL;
}

static int apply_config_set(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			    char *err, size_t err_len)
{
	const Ferry__Cluster__Host *old = cl_state_host_below(st, CL_PROTO_2, NULL);

	if (old)
		return refuse(-EPROTO, err, err_len, "config: the agent of %s predates cluster "
			      "settings and could not apply them; upgrade it first", old->name);
	return cl_settings_set(st, cmd->config_set, err, err_len);
}

static int apply_host_remove(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			     char *err, size_t err_len)
{
	const char *name = cmd->host_remove->host;
	Ferry__Cluster__Host *h = cl_state_host(st, name);
	const Ferry__Cluster__Host *old;

	if (!h)
		return refuse(-ENOENT, err, err_len, "host remove: no such host %s", name);
	/* The host itself may be old: it is gone and applies nothing any more. */
	old = cl_state_host_below(st, CL_PROTO_2, name);
	if (old)
		return refuse(-EPROTO, err, err_len, "host remove: the agent of %s predates it "
			      "and could not apply it; upgrade it first", old->name);
	for (size_t i = 0; i < st->n_vms; i++) {
		const Ferry__Cluster__Vm *vm = st->vms[i];

		if (vm->migration && (!strcmp(vm->migration->source, name) ||
				      !strcmp(vm->migration->destination, name)))
			return refuse(-EBUSY, err, err_len, "host remove: %s: %s is migrating "
				      "from or to it", name, vm->name);
		if (vm_running(vm) && !strcmp(vm->host, name))
			return refuse(-EBUSY, err, err_len, "host remove: %s: %s is placed on it; "
				      "stop or move it first", name, vm->name);
	}
	REMOVE_FREE(st->hosts, st->n_hosts, h);
	return 0;
}

/*
 * HA: the leader saw vm's host lost for longer than the fence time, so
 * the vmon there has stopped itself (or the host is down), and restarts
 * the VM on host. The state cannot see the membership; it checks the
 * rest, and that the leader decided on the VM as it is now.
 */
static int apply_vm_recover(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			    char *err, size_t err_len)
{
	const Ferry__Cluster__CmdVmRecover *c = cmd->vm_recover;
	Ferry__Cluster__Vm *vm = vm_get(st, "recover", c->vm, err, err_len);
	char why[CL_ERR_LEN];
	int ret;

	if (!vm)
		return -ENOENT;
	if (!vm->ha)
		return refuse(-EPERM, err, err_len, "recover: %s: not an HA VM", vm->name);
	if (!vm_running(vm) || strcmp(vm->host, c->from) || vm->generation != c->generation)
		return refuse(-ESTALE, err, err_len, "recover: %s: no longer running on %s "
			      "(generation %llu)", vm->name, c->from,
			      (unsigned long long)c->generation);
	if (vm->migration)
		return refuse(-EBUSY, err, err_len, "recover: %s: a migration is in flight",
			      vm->name);
	if (vm->ha_unarmed)
		return refuse(-EPERM, err, err_len, "recover: %s: HA was turned on while it ran, "
			      "and its vmon on %s had not armed the fence yet", vm->name, c->from);
	if (!strcmp(c->host, c->from))
		return refuse(-EINVAL, err, err_len, "recover: %s: %s is the lost host",
			      vm->name, c->host);
	ret = cl_state_host_fits(st, vm, "recover", c->host, err, err_len);
	if (ret)
		return ret;
	snprintf(why, sizeof(why), "recovered on %s: host %s was lost for %llu s", c->host,
		 c->from, (unsigned long long)(c->lost_ms / 1000));
	cl_str_set(&vm->host, c->host);
	cl_str_set(&vm->last_error, why);
	vm->generation++;
	vm->ha_unarmed = false;
	vm_crashes_forget(vm);
	return 0;
}

/*
 * HA on a running VM: its vmon took no fence when it started, so the VM
 * is not recovered elsewhere until its host's agent armed one (a host cut
 * off meanwhile would run it on: two copies). HA off takes effect at once;
 * the agent then disarms the fence.
 */
static int apply_vm_set(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
			char *err, size_t err_len)
{
	const Ferry__Cluster__CmdVmSet *c = cmd->vm_set;
	Ferry__Cluster__Vm *vm = vm_get(st, "vm set", c->name, err, err_len);
	const Ferry__Cluster__Host *old;
	int ret;

	if (!vm)
		return -ENOENT;
	if (!c->set_ha && !c->set_priority)
		return refuse(-EINVAL, err, err_len, "vm set: %s: nothing to change", vm->name);
	if (c->set_ha && vm_running(vm) && vm->migration)
		return refuse(-EBUSY, err, err_len, "vm set: %s: migrating to %s; change HA once "
			      "it has landed", vm->name, vm->migration->destination);
	if (c->set_ha && vm_running(vm) && c->ha != vm->ha &&
	    (old = cl_state_host_below(st, CL_PROTO_7, NULL)))
		return refuse(-EPROTO, err, err_len, "vm set: %s: running on %s, and the agent of "
			      "%s predates changing HA on a running VM; stop it first, or upgrade",
			      vm->name, vm->host, old->name);
	if (c->set_ha && c->ha && (old = cl_state_host_below(st, CL_PROTO_3, NULL)))
		return refuse(-EPROTO, err, err_len, "vm set: %s: the agent of %s predates HA; "
			      "upgrade it first", vm->name, old->name);
	if (c->set_ha && c->ha && !vm->ha && vm_running(vm)) {
		ret = admit_apply(st, c->admit, "vm set", vm->name, vm->host, true, false, err,
				  err_len);
		if (ret)
			return ret;
	}
	/* Only the planner reads it: it may change while the VM runs. */
	if (c->set_priority) {
		ret = priority_check(st, "vm set", vm->name, c->priority, err, err_len);
		if (ret)
			return ret;
	}
	if (c->set_ha) {
		if (c->ha && !vm->ha && vm_running(vm))
			vm->ha_unarmed = true;
		if (!c->ha)
			vm->ha_unarmed = false;
		vm->ha = c->ha;
	}
	if (c->set_priority)
		vm->priority = c->priority;
	return 0;
}

typedef int (*apply_fn)(Ferry__Cluster__State *, const Ferry__Cluster__Command *,
			char *, size_t);

static const apply_fn apply_ops[] = {
	[FERRY__CLUSTER__COMMAND__OP_HOST_JOIN] = apply_host_join,
	[FERRY__CLUSTER__COMMAND__OP_HOST_MODE] = apply_host_mode,
	[FERRY__CLUSTER__COMMAND__OP_VM_CREATE] = apply_vm_create,
	[FERRY__CLUSTER__COMMAND__OP_VM_START] = apply_vm_start,
	[FERRY__CLUSTER__COMMAND__OP_VM_STOP] = apply_vm_stop,
	[FERRY__CLUSTER__COMMAND__OP_VM_DELETE] = apply_vm_delete,
	[FERRY__CLUSTER__COMMAND__OP_VM_EXITED] = apply_vm_exited,
	[FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN] = apply_mig_begin,
	[FERRY__CLUSTER__COMMAND__OP_MIG_READY] = apply_mig_ready,
	[FERRY__CLUSTER__COMMAND__OP_MIG_END] = apply_mig_end,
	[FERRY__CLUSTER__COMMAND__OP_REVOKE] = apply_revoke,
	[FERRY__CLUSTER__COMMAND__OP_RULE_ADD] = apply_rule_add,
	[FERRY__CLUSTER__COMMAND__OP_RULE_DELETE] = apply_rule_delete,
	[FERRY__CLUSTER__COMMAND__OP_BALANCE_MODE] = apply_balance_mode,
	[FERRY__CLUSTER__COMMAND__OP_CONFIG_SET] = apply_config_set,
	[FERRY__CLUSTER__COMMAND__OP_HOST_REMOVE] = apply_host_remove,
	[FERRY__CLUSTER__COMMAND__OP_VM_RECOVER] = apply_vm_recover,
	[FERRY__CLUSTER__COMMAND__OP_VM_SET] = apply_vm_set,
	[FERRY__CLUSTER__COMMAND__OP_MIG_CANCEL] = apply_mig_cancel,
	[FERRY__CLUSTER__COMMAND__OP_VM_HA_ARMED] = apply_vm_ha_armed,
	[FERRY__CLUSTER__COMMAND__OP_MIG_SET] = apply_mig_set,
};

int cl_state_apply(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd,
		   char *err, size_t err_len)
{
	unsigned op = cmd->op_case;
	int ret;

	if (op >= ARRAY_SIZE(apply_ops) || !apply_ops[op])
		return refuse(-EINVAL, err, err_len, "unknown command %u", op);
	ret = apply_ops[op](st, cmd, err, err_len);
	if (!ret) {
		st->seq++;
		cl_state_event_add(st, cmd);
	}
	return ret;
}
