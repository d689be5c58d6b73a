/*
 * Unit tests for the replicated state machine (cluster/cl_state.c) and the
 * sync decision (cluster/cl_sync.c): every command accepted and refused for
 * the reasons users will read, seq moving only on success, determinism (two
 * copies fed the same commands end up byte-identical), persistence, and
 * the sync verdicts of every member of a view.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_admit.h"
#include "cl_cpu.h"
#include "cl_msg.h"
#include "cl_settings.h"
#include "cl_state.h"
#include "cl_sync.h"
#include "net/nic.h"
#include "net/xport.h"

static const char *const feats_v3[] = {
	"fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "syscall", "lm", "cx16",
	"lahf_lm", "popcnt", "sse3", "sse4_1", "sse4_2", "ssse3", "avx", "avx2", "bmi1",
	"bmi2", "f16c", "fma", "abm", "movbe", "xsave", NULL,
};
static const char *const feats_v2[] = {
	"fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "syscall", "lm", "cx16",
	"lahf_lm", "popcnt", "sse3", "sse4_1", "sse4_2", "ssse3", NULL,
};

static char err[CL_ERR_LEN];

static int run(Ferry__Cluster__State *st, Ferry__Cluster__Command *cmd)
{
	err[0] = 0;
	return cl_state_apply(st, cmd, err, sizeof(err));
}

static int join_as(Ferry__Cluster__State *st, const char *name, uint32_t id,
		   const char *const *feats, uint64_t mem, bool witness)
{
	Ferry__Cluster__Inventory inv = FERRY__CLUSTER__INVENTORY__INIT;
	Ferry__Cluster__Host h = FERRY__CLUSTER__HOST__INIT;
	Ferry__Cluster__CmdHostJoin c = FERRY__CLUSTER__CMD_HOST_JOIN__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	size_t n = 0;

	while (feats[n])
		n++;
	inv.cpu_features = (char **)feats;
	inv.n_cpu_features = n;
	inv.mem_bytes = mem;
	inv.cpus = 2;
	h.name = (char *)name;
	h.address = "10.0.0.1";
	h.agent_proto = CL_STATE_PROTO;
	h.witness = witness;
	h.nodeid = id;
	h.inventory = &inv;
	c.host = &h;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_JOIN;
	cmd.host_join = &c;
	return run(st, &cmd);
}

static int join(Ferry__Cluster__State *st, const char *name, uint32_t id,
		const char *const *feats, uint64_t mem)
{
	return join_as(st, name, id, feats, mem, false);
}

static int create_ha(Ferry__Cluster__State *st, const char *name, const char *model,
		     uint64_t mem, bool ha)
{
	Ferry__Cluster__Vm vm = FERRY__CLUSTER__VM__INIT;
	Ferry__Cluster__CmdVmCreate c = FERRY__CLUSTER__CMD_VM_CREATE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	vm.name = (char *)name;
	vm.guest = "/guests/counter";
	vm.mem_bytes = mem;
	vm.vcpus = 1;
	vm.cpu_model = (char *)model;
	vm.host = "host9";   /* not the creator's to set */
	vm.desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING;
	vm.ha = ha;
	c.vm = &vm;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_CREATE;
	cmd.vm_create = &c;
	return run(st, &cmd);
}

static int create(Ferry__Cluster__State *st, const char *name, const char *model,
		  uint64_t mem)
{
	return create_ha(st, name, model, mem, false);
}

/* Judged by HA admission control where applied (adm; NULL: not asked for). */
static int start_adm(Ferry__Cluster__State *st, const char *name, const char *host,
		     Ferry__Cluster__Admit *adm)
{
	Ferry__Cluster__CmdVmStart c = FERRY__CLUSTER__CMD_VM_START__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.name = (char *)name;
	c.host = (char *)host;
	c.admit = adm;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_START;
	cmd.vm_start = &c;
	return run(st, &cmd);
}

static int start(Ferry__Cluster__State *st, const char *name, const char *host)
{
	return start_adm(st, name, host, NULL);
}

static int begin_adm(Ferry__Cluster__State *st, const char *vm, const char *dest,
		     uint64_t downtime_ms, uint64_t bandwidth_mbps, Ferry__Cluster__Admit *adm)
{
	Ferry__Cluster__CmdMigBegin c = FERRY__CLUSTER__CMD_MIG_BEGIN__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = (char *)vm;
	c.destination = (char *)dest;
	c.downtime_ms = downtime_ms;
	c.bandwidth_mbps = bandwidth_mbps;
	c.admit = adm;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN;
	cmd.mig_begin = &c;
	return run(st, &cmd);
}

static int begin_opts(Ferry__Cluster__State *st, const char *vm, const char *dest,
		      uint64_t downtime_ms, uint64_t bandwidth_mbps)
{
	return begin_adm(st, vm, dest, downtime_ms, bandwidth_mbps, NULL);
}

static int begin(Ferry__Cluster__State *st, const char *vm, const char *dest)
{
	return begin_opts(st, vm, dest, 0, 0);
}

static int end(Ferry__Cluster__State *st, const char *vm, uint64_t id, bool ok)
{
	Ferry__Cluster__MigrationResult r = FERRY__CLUSTER__MIGRATION_RESULT__INIT;
	Ferry__Cluster__CmdMigEnd c = FERRY__CLUSTER__CMD_MIG_END__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	r.ok = ok;
	r.error = ok ? "" : "migrate: vm1: rounds: connection reset";
	c.vm = (char *)vm;
	c.id = id;
	c.result = &r;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_END;
	cmd.mig_end = &c;
	return run(st, &cmd);
}

static Ferry__Cluster__State *cluster3(void)
{
	Ferry__Cluster__State *st = cl_state_new("t");

	assert_non_null(st);
	assert_int_equal(join(st, "host1", 1, feats_v3, 1ull << 30), 0);
	assert_int_equal(join(st, "host2", 2, feats_v3, 1ull << 30), 0);
	assert_int_equal(join(st, "host3", 3, feats_v2, 1ull << 30), 0);
	return st;
}

static void test_create_start(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;

	assert_int_equal(st->seq, 3);
	assert_int_equal(create(st, "vm1", "x86-64-v3", 64 << 20), 0);
	vm = cl_state_vm(st, "vm1");
	assert_non_null(vm);
	assert_string_equal(vm->host, "");
	assert_int_equal(vm->desired, FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED);
	assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), -EEXIST);
	assert_string_equal(err, "vm create: vm1: the name is taken");
	assert_int_equal(create(st, "vm2", "pentium", 64 << 20), -EINVAL);
	assert_int_equal(create(st, "vm2", "host", 3 << 20), -EINVAL);
	assert_int_equal(st->seq, 4);   /* refusals leave seq alone */

	assert_int_equal(start(st, "vm1", "host3"), -ENOTSUP);
	assert_non_null(strstr(err, "vm start: vm1: host3 lacks "));
	assert_non_null(strstr(err, "avx2"));
	assert_non_null(strstr(err, "required by model x86-64-v3"));
	assert_int_equal(start(st, "vm1", "host7"), -ENOENT);
	assert_int_equal(start(st, "vm9", "host1"), -ENOENT);
	assert_string_equal(err, "vm start: vm9: no such VM");
	assert_int_equal(start(st, "vm1", "host1"), 0);
	vm = cl_state_vm(st, "vm1");
	assert_string_equal(vm->host, "host1");
	assert_int_equal(vm->generation, 1);
	assert_int_equal(start(st, "vm1", "host2"), -EALREADY);
	CL_FREE(st);
}

static void test_memory(void **unused)
{
	Ferry__Cluster__State *st = cluster3();

	assert_int_equal(create(st, "big1", "x86-64-v2", 768 << 20), 0);
	assert_int_equal(create(st, "big2", "x86-64-v2", 512 << 20), 0);
	assert_int_equal(start(st, "big1", "host1"), 0);
	assert_int_equal(start(st, "big2", "host1"), -ENOMEM);
	assert_non_null(strstr(err, "host1 has 1024 MiB for guests, 768 MiB taken"));
	assert_int_equal(start(st, "big2", "host2"), 0);
	/* A migration reserves the destination's memory until it ends. */
	assert_int_equal(begin(st, "big1", "host3"), 0);
	assert_int_equal(cl_state_host_mem_used(st, "host3"), 768ull << 20);
	CL_FREE(st);
}

static void test_migration(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;
	uint64_t id;

	assert_int_equal(create(st, "vm1", "x86-64-v3", 64 << 20), 0);
	assert_int_equal(begin(st, "vm1", "host2"), -EINVAL);   /* not running */
	assert_int_equal(start(st, "vm1", "host1"), 0);
	assert_int_equal(begin(st, "vm1", "host1"), -EINVAL);
	assert_string_equal(err, "migrate: vm1: already runs on host1");
	assert_int_equal(begin(st, "vm1", "host3"), -ENOTSUP);
	assert_non_null(strstr(err, "migrate: vm1: host3 lacks "));
	assert_int_equal(begin(st, "vm1", "nohost"), -ENOENT);
	assert_int_equal(begin(st, "vm1", "host2"), 0);
	vm = cl_state_vm(st, "vm1");
	id = vm->migration->id;
	assert_int_equal(id, st->seq);
	assert_string_equal(vm->migration->source, "host1");
	assert_int_equal(begin(st, "vm1", "host2"), -EBUSY);
	assert_non_null(strstr(err, "already in flight"));
	/* stale and wrong ids change nothing */
	assert_int_equal(end(st, "vm1", id + 5, true), -ESTALE);
	assert_int_equal(end(st, "vm1", id, false), 0);
	vm = cl_state_vm(st, "vm1");
	assert_null(vm->migration);
	assert_string_equal(vm->host, "host1");
	assert_false(vm->last_migration->ok);
	assert_string_equal(vm->last_migration->destination, "host2");
	assert_int_equal(vm->generation, 1);
	/* again, and this time it lands */
	/* The operator's limits ride in the replicated migration, for the source's agent. */
	assert_int_equal(begin_opts(st, "vm1", "host2", 20, 800), 0);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->downtime_ms, 20);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->bandwidth_mbps, 800);
	id = cl_state_vm(st, "vm1")->migration->id;
	assert_int_equal(end(st, "vm1", id, true), 0);
	vm = cl_state_vm(st, "vm1");
	assert_string_equal(vm->host, "host2");
	assert_int_equal(vm->generation, 2);
	assert_int_equal(end(st, "vm1", id, true), -ESTALE);   /* said twice */
	CL_FREE(st);
}

static int cancel(Ferry__Cluster__State *st, const char *vm, uint64_t id)
{
	Ferry__Cluster__CmdMigCancel c = FERRY__CLUSTER__CMD_MIG_CANCEL__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = (char *)vm;
	c.id = id;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_CANCEL;
	cmd.mig_cancel = &c;
	return run(st, &cmd);
}

/*
 * A cancel is a request carried to the source: the migration stays in
 * flight until its end, and the end says whether it was cancelled.
 */
static void test_mig_cancel(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;
	uint64_t id, seq;

	assert_int_equal(create(st, "vm1", "x86-64-v3", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "host1"), 0);
	seq = st->seq;
	assert_int_equal(cancel(st, "vm1", 0), -ENOENT);
	assert_string_equal(err, "migrate-cancel: vm1: no migration in flight");
	assert_int_equal(cancel(st, "vm9", 0), -ENOENT);
	assert_string_equal(err, "migrate-cancel: vm9: no such VM");
	assert_int_equal(st->seq, seq);
	assert_int_equal(begin(st, "vm1", "host2"), 0);
	vm = cl_state_vm(st, "vm1");
	id = vm->migration->id;
	/* Only the one the operator saw: a migration begun since is left alone. */
	assert_int_equal(cancel(st, "vm1", id + 1), -ESTALE);
	assert_non_null(strstr(err, "began after the cancel was asked; it goes on"));
	assert_int_equal(cancel(st, "vm1", 0), -ESTALE);   /* the agent saw none */
	assert_false(vm->migration->cancel);
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_5;
	assert_int_equal(cancel(st, "vm1", id), -EPROTO);
	assert_string_equal(err, "migrate-cancel: vm1: the agent of host3 predates cancelling; "
			    "upgrade it first");
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	assert_false(vm->migration->cancel);
	assert_int_equal(cancel(st, "vm1", id), 0);
	assert_true(vm->migration->cancel);
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "vm vm1: cancel of the migration host1 -> host2 asked");
	assert_int_equal(cancel(st, "vm1", id), 0);   /* asked twice: the same */
	assert_non_null(vm->migration);
	assert_int_equal(end(st, "vm1", id, false), 0);
	assert_true(vm->last_migration->cancelled);
	assert_string_equal(vm->host, "host1");
	assert_int_equal(cancel(st, "vm1", id), -ENOENT);
	/* Past the switchover it lands anyway, and is not called cancelled. */
	assert_int_equal(begin(st, "vm1", "host2"), 0);
	id = vm->migration->id;
	assert_int_equal(cancel(st, "vm1", id), 0);
	assert_int_equal(end(st, "vm1", id, true), 0);
	assert_false(vm->last_migration->cancelled);
	assert_string_equal(vm->host, "host2");
	/* A failure without a cancel is not one either. */
	assert_int_equal(begin(st, "vm1", "host1"), 0);
	assert_int_equal(end(st, "vm1", vm->migration->id, false), 0);
	assert_false(vm->last_migration->cancelled);
	CL_FREE(st);
}

static int mig_set(Ferry__Cluster__State *st, const char *vm, uint64_t id, long downtime_ms,
		   long bandwidth_mbps)
{
	Ferry__Cluster__CmdMigSet c = FERRY__CLUSTER__CMD_MIG_SET__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = (char *)vm;
	c.id = id;
	c.set_downtime = downtime_ms >= 0;
	c.downtime_ms = downtime_ms >= 0 ? (uint64_t)downtime_ms : 0;
	c.set_bandwidth = bandwidth_mbps >= 0;
	c.bandwidth_mbps = bandwidth_mbps >= 0 ? (uint64_t)bandwidth_mbps : 0;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_MIG_SET;
	cmd.mig_set = &c;
	return run(st, &cmd);
}

/*
 * migrate-set changes the migration the operator saw, as the state holds
 * it for the source's agent; what is not given stays; a refusal changes
 * nothing (-1: not given).
 */
static void test_mig_set(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;
	uint64_t id, seq;

	assert_int_equal(create(st, "vm1", "x86-64-v3", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "host1"), 0);
	assert_int_equal(mig_set(st, "vm1", 0, -1, 0), -ENOENT);
	assert_string_equal(err, "migrate-set: vm1: no migration in flight");
	assert_int_equal(mig_set(st, "vm9", 0, 50, 0), -ENOENT);
	assert_string_equal(err, "migrate-set: vm9: no such VM");
	assert_int_equal(begin_opts(st, "vm1", "host2", 0, 10), 0);
	vm = cl_state_vm(st, "vm1");
	id = vm->migration->id;
	seq = st->seq;
	assert_int_equal(mig_set(st, "vm1", id, -1, -1), -EINVAL);
	assert_string_equal(err, "migrate-set: vm1: nothing to change");
	assert_int_equal(mig_set(st, "vm1", id, 0, -1), -EINVAL);
	assert_string_equal(err, "migrate-set: vm1: the downtime target must be at least 1 ms");
	assert_int_equal(mig_set(st, "vm1", id + 1, 500, -1), -ESTALE);
	assert_non_null(strstr(err, "began after the change was asked; it goes on"));
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_7;
	assert_int_equal(mig_set(st, "vm1", id, 500, -1), -EPROTO);
	assert_string_equal(err, "migrate-set: vm1: the agent of host3 predates changing a "
			    "migration in flight; upgrade it first");
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(st->seq, seq);
	assert_int_equal(vm->migration->downtime_ms, 0);
	assert_int_equal(vm->migration->bandwidth_mbps, 10);
	/* the cap alone: the downtime target stays vmon's default */
	assert_int_equal(mig_set(st, "vm1", id, -1, 40), 0);
	assert_int_equal(vm->migration->downtime_ms, 0);
	assert_int_equal(vm->migration->bandwidth_mbps, 40);
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "vm vm1: the migration host1 -> host2 changed: downtime target "
			    "vmon's default, bandwidth cap 40 Mbit/s");
	/* both; 0 lifts the cap */
	assert_int_equal(mig_set(st, "vm1", id, 500, 0), 0);
	assert_int_equal(vm->migration->downtime_ms, 500);
	assert_int_equal(vm->migration->bandwidth_mbps, 0);
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "vm vm1: the migration host1 -> host2 changed: downtime target "
			    "500 ms, bandwidth cap none");
	assert_int_equal(vm->migration->id, id);
	assert_int_equal(end(st, "vm1", id, true), 0);
	assert_int_equal(mig_set(st, "vm1", id, 500, -1), -ENOENT);
	/* a dry run moves nothing: nothing to change */
	assert_int_equal(begin(st, "vm1", "host1"), 0);
	vm->migration->dry_run = true;
	assert_int_equal(mig_set(st, "vm1", vm->migration->id, 500, -1), -EINVAL);
	assert_string_equal(err, "migrate-set: vm1: a dry run has nothing to change");
	CL_FREE(st);
}

/* key, value pairs up to a NULL key */
static int config_set(Ferry__Cluster__State *st, ...)
{
	Ferry__Cluster__ConfigItem items[8], *ptrs[8];
	Ferry__Cluster__CmdConfigSet c = FERRY__CLUSTER__CMD_CONFIG_SET__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	const char *key;
	va_list ap;

	va_start(ap, st);
	while ((key = va_arg(ap, const char *)) && c.n_items < 8) {
		ferry__cluster__config_item__init(&items[c.n_items]);
		items[c.n_items].key = (char *)key;
		items[c.n_items].value = va_arg(ap, uint64_t);
		ptrs[c.n_items] = &items[c.n_items];
		c.n_items++;
	}
	va_end(ap);
	c.items = ptrs;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_CONFIG_SET;
	cmd.config_set = &c;
	return run(st, &cmd);
}

static void test_settings(void **unused)
{
	Ferry__Cluster__State *st = cluster3(), *back;
	struct cl_plan_config base, cfg;
	uint64_t seq, id;
	uint8_t *buf;
	size_t len;

	/* Nothing set: the built-in defaults, and no cap. */
	assert_int_equal(cl_setting_get(st, CL_SET_MIG_BANDWIDTH_MBPS), 0);
	assert_int_equal(cl_setting_get(st, CL_SET_MIG_DOWNTIME_MS), 30);
	assert_int_equal(cl_setting_get(st, CL_SET_LINK_MBPS), CL_PLAN_DEFAULT_LINK_MBPS);
	assert_null(cl_setting_find("bandwidth"));

	/* Refusals change nothing, and a bad item spoils the whole command. */
	seq = st->seq;
	/* An agent that could not apply them: nobody does, or its copy would lag. */
	cl_state_host(st, "host2")->agent_proto = 1;
	assert_int_equal(config_set(st, "link-mbps", (uint64_t)10000, NULL), -EPROTO);
	assert_string_equal(err, "config: the agent of host2 predates cluster settings and "
			    "could not apply them; upgrade it first");
	cl_state_host(st, "host2")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(config_set(st, "bandwidth", (uint64_t)5, NULL), -ENOENT);
	assert_string_equal(err, "config: no such setting 'bandwidth'");
	assert_int_equal(config_set(st, "link-mbps", (uint64_t)10000,
				    "max-migrations-per-host", (uint64_t)65, NULL), -EINVAL);
	assert_string_equal(err, "config: max-migrations-per-host: 65 is not in 1..64");
	assert_int_equal(config_set(st, "link-mbps", (uint64_t)10000, "link-mbps", (uint64_t)5,
				    NULL), -EINVAL);
	assert_string_equal(err, "config: link-mbps is set twice");
	assert_int_equal(config_set(st, NULL), -EINVAL);
	assert_int_equal(st->seq, seq);
	assert_int_equal(cl_setting_get(st, CL_SET_LINK_MBPS), CL_PLAN_DEFAULT_LINK_MBPS);

	assert_int_equal(config_set(st, "migration-bandwidth-mbps", (uint64_t)1000,
				    "migration-downtime-ms", (uint64_t)50, NULL), 0);
	assert_int_equal(st->seq, seq + 1);
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "config: migration-bandwidth-mbps set to 1000 Mbit/s;"
			    " migration-downtime-ms set to 50 ms");

	/* A migration that names no limits takes the cluster's, fixed at its start. */
	assert_int_equal(create(st, "vm1", "x86-64-v3", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "host1"), 0);
	assert_int_equal(begin(st, "vm1", "host2"), 0);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->bandwidth_mbps, 1000);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->downtime_ms, 50);
	assert_int_equal(config_set(st, "migration-bandwidth-mbps", (uint64_t)10, NULL), 0);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->bandwidth_mbps, 1000);
	id = cl_state_vm(st, "vm1")->migration->id;
	assert_int_equal(end(st, "vm1", id, true), 0);
	/* One that names its own keeps them. */
	assert_int_equal(begin_opts(st, "vm1", "host1", 20, 800), 0);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->bandwidth_mbps, 800);
	assert_int_equal(cl_state_vm(st, "vm1")->migration->downtime_ms, 20);

	/* The planner sees them: a capped stream, the link, the limits. */
	cl_plan_defaults(&base);
	base.interval_s = 5;
	assert_int_equal(config_set(st, "link-mbps", (uint64_t)10000, "max-migrations-per-host",
				    (uint64_t)4, "holddown-s", (uint64_t)60, NULL), 0);
	cl_settings_plan_config(st, &base, &cfg);
	assert_int_equal(cfg.stream_mbps, 10);
	assert_int_equal(cfg.link_mbps, 10000);
	assert_int_equal(cfg.max_mig_per_host, 4);
	assert_int_equal(cfg.max_mig_cluster, CL_PLAN_DEFAULT_MAX_MIG_CLUSTER);
	assert_int_equal(cfg.holddown_s, 60);
	assert_int_equal(cfg.downtime_ms, 50);
	assert_int_equal(cfg.interval_s, 5);   /* the agent's own */

	/* Back to the default; and the settings survive packing. */
	assert_int_equal(config_set(st, "migration-bandwidth-mbps", (uint64_t)0, NULL), 0);
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "config: migration-bandwidth-mbps back to its default (none)");
	assert_int_equal(cl_setting_get(st, CL_SET_MIG_BANDWIDTH_MBPS), 0);
	cl_settings_plan_config(st, &base, &cfg);
	assert_int_equal(cfg.stream_mbps, CL_PLAN_DEFAULT_STREAM_MBPS);
	len = ferry__cluster__state__get_packed_size(st);
	buf = malloc(len);
	assert_non_null(buf);
	ferry__cluster__state__pack(st, buf);
	back = ferry__cluster__state__unpack(NULL, len, buf);
	assert_non_null(back);
	assert_int_equal(cl_setting_get(back, CL_SET_LINK_MBPS), 10000);
	assert_int_equal(cl_setting_get(back, CL_SET_MIG_DOWNTIME_MS), 50);
	ferry__cluster__state__free_unpacked(back, NULL);
	free(buf);
	CL_FREE(st);
}

/* A witness votes and keeps the state; it takes no VM and leaves the
 * cluster's CPU model alone (it has no KVM, hence no features). */
static void test_witness(void **unused)
{
	static const char *const none[] = { NULL };
	Ferry__Cluster__State *st = cluster3();
	const char **before, **after;
	size_t n_before, n_after;

	assert_int_equal(cl_cpu_baseline(st, &before, &n_before), 0);
	assert_int_equal(join_as(st, "wit", 4, none, 0, true), 0);
	assert_true(cl_state_host(st, "wit")->witness);
	assert_int_equal(cl_cpu_baseline(st, &after, &n_after), 0);
	assert_int_equal(n_after, n_before);
	assert_true(n_after > 0);
	free(before);
	free(after);

	assert_int_equal(create(st, "vm1", "cluster", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "wit"), -EPERM);
	assert_string_equal(err, "vm start: vm1: host wit is a witness: it runs no VMs");
	assert_int_equal(start(st, "vm1", "host1"), 0);
	assert_int_equal(begin(st, "vm1", "wit"), -EPERM);
	assert_string_equal(err, "migrate: vm1: host wit is a witness: it runs no VMs");

	/* A host with a VM on it cannot turn witness under it; an empty one can. */
	assert_int_equal(join_as(st, "host1", 1, none, 0, true), -EBUSY);
	assert_string_equal(err, "host join: host1: VMs are placed on it, and a witness runs "
			    "none; stop or move them first");
	assert_false(cl_state_host(st, "host1")->witness);
	assert_int_equal(join_as(st, "host2", 2, none, 0, true), 0);
	assert_true(cl_state_host(st, "host2")->witness);
	CL_FREE(st);
}

static int host_remove(Ferry__Cluster__State *st, const char *host)
{
	Ferry__Cluster__CmdHostRemove c = FERRY__CLUSTER__CMD_HOST_REMOVE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.host = (char *)host;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_REMOVE;
	cmd.host_remove = &c;
	return run(st, &cmd);
}

static void test_host_remove(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	uint64_t seq;

	assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "host3"), 0);
	seq = st->seq;
	assert_int_equal(host_remove(st, "host9"), -ENOENT);
	assert_string_equal(err, "host remove: no such host host9");
	assert_int_equal(host_remove(st, "host3"), -EBUSY);
	assert_string_equal(err, "host remove: host3: vm1 is placed on it; stop or move it first");
	assert_int_equal(begin(st, "vm1", "host2"), 0);
	assert_int_equal(host_remove(st, "host2"), -EBUSY);
	assert_string_equal(err, "host remove: host2: vm1 is migrating from or to it");
	/* Another host's old agent could not apply it; the host that goes may be old. */
	cl_state_host(st, "host2")->agent_proto = 1;
	cl_state_host(st, "host1")->agent_proto = 1;
	assert_int_equal(host_remove(st, "host1"), -EPROTO);
	assert_string_equal(err, "host remove: the agent of host2 predates it and could not "
			    "apply it; upgrade it first");
	cl_state_host(st, "host2")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(st->seq, seq + 1);   /* the begin alone */

	assert_int_equal(host_remove(st, "host1"), 0);
	assert_null(cl_state_host(st, "host1"));
	assert_int_equal(st->n_hosts, 2);
	assert_string_equal(st->hosts[0]->name, "host2");
	assert_string_equal(st->events[st->n_events - 1]->text, "host host1 removed");
	/* It may join again, as a new host. */
	assert_int_equal(join(st, "host1", 1, feats_v3, 1ull << 30), 0);
	assert_int_equal(st->n_hosts, 3);
	CL_FREE(st);
}

static int recover(Ferry__Cluster__State *st, const char *vm, const char *from,
		   const char *to, uint64_t generation)
{
	Ferry__Cluster__CmdVmRecover c = FERRY__CLUSTER__CMD_VM_RECOVER__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = (char *)vm;
	c.from = (char *)from;
	c.host = (char *)to;
	c.generation = generation;
	c.lost_ms = 40500;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_RECOVER;
	cmd.vm_recover = &c;
	return run(st, &cmd);
}

/*
 * HA: a recovery moves the VM to its new host as a new run (generation),
 * and only for an HA VM running on the lost host as the leader saw it; an
 * agent that predates HA takes no HA VM; the fence time stays fixed while
 * HA VMs run.
 */
static void test_ha(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;
	uint64_t seq, gen;

	assert_int_equal(create_ha(st, "ha1", "x86-64-v2", 64 << 20, true), 0);
	assert_int_equal(create(st, "plain", "x86-64-v2", 64 << 20), 0);
	vm = cl_state_vm(st, "ha1");
	assert_true(vm->ha);
	assert_int_equal(start(st, "plain", "host1"), 0);
	seq = st->seq;
	/* Not running: nothing to recover. */
	assert_int_equal(recover(st, "ha1", "host1", "host2", vm->generation), -ESTALE);
	assert_int_equal(start(st, "ha1", "host1"), 0);
	gen = vm->generation;
	seq = st->seq;
	assert_int_equal(recover(st, "plain", "host1", "host2", 1), -EPERM);
	assert_string_equal(err, "recover: plain: not an HA VM");
	assert_int_equal(recover(st, "nope", "host1", "host2", 1), -ENOENT);
	assert_int_equal(recover(st, "ha1", "host2", "host3", gen), -ESTALE);
	assert_string_equal(err, "recover: ha1: no longer running on host2 (generation 1)");
	assert_int_equal(recover(st, "ha1", "host1", "host2", gen - 1), -ESTALE);
	assert_int_equal(recover(st, "ha1", "host1", "host1", gen), -EINVAL);
	assert_int_equal(recover(st, "ha1", "host1", "host9", gen), -ENOENT);
	/* The target's agent must fence it. */
	cl_state_host(st, "host2")->agent_proto = CL_PROTO_2;
	assert_int_equal(recover(st, "ha1", "host1", "host2", gen), -EPROTO);
	assert_string_equal(err, "recover: ha1: the agent of host2 predates HA and could not "
			    "fence an HA VM; upgrade it first");
	/* Nor may another HA VM be created while it is old. */
	assert_int_equal(create_ha(st, "ha2", "x86-64-v2", 64 << 20, true), -EPROTO);
	assert_string_equal(err, "vm create: ha2: the agent of host2 predates HA; upgrade it first");
	cl_state_host(st, "host2")->agent_proto = CL_STATE_PROTO;
	/* The fence time is the vmons' too: fixed while an HA VM runs. */
	assert_int_equal(config_set(st, "ha-fence-s", (uint64_t)10, NULL), -EBUSY);
	assert_string_equal(err, "config: ha-fence-s: HA VM ha1 runs, and its vmon fences on the "
			    "value it started with; stop the HA VMs first");
	assert_int_equal(config_set(st, "ha-fence-s", (uint64_t)30, NULL), 0);   /* the same */
	assert_int_equal(st->seq, seq + 1);

	assert_int_equal(recover(st, "ha1", "host1", "host2", gen), 0);
	assert_string_equal(vm->host, "host2");
	assert_int_equal(vm->generation, gen + 1);
	assert_int_equal(vm->desired, FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING);
	assert_string_equal(vm->last_error, "recovered on host2: host host1 was lost for 40 s");
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "vm ha1: recovered on host2: host host1 was lost for 40 s");
	/* The same decision again (a second leader, a retry) is stale now. */
	assert_int_equal(recover(st, "ha1", "host1", "host3", gen), -ESTALE);
	/* Migrating: left to the migration. */
	assert_int_equal(begin(st, "ha1", "host3"), 0);
	assert_int_equal(recover(st, "ha1", "host2", "host1", gen + 1), -EBUSY);
	CL_FREE(st);
}

static int create_nets(Ferry__Cluster__State *st, const char *name, const char *const *nets)
{
	Ferry__Cluster__Vm vm = FERRY__CLUSTER__VM__INIT;
	Ferry__Cluster__CmdVmCreate c = FERRY__CLUSTER__CMD_VM_CREATE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	vm.name = (char *)name;
	vm.guest = "/guests/netecho";
	vm.mem_bytes = 64 << 20;
	vm.vcpus = 1;
	vm.cpu_model = "x86-64-v2";
	while (nets[vm.n_nets])
		vm.n_nets++;
	vm.nets = (char **)nets;
	c.vm = &vm;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_CREATE;
	cmd.vm_create = &c;
	return run(st, &cmd);
}

static void bridges_set(Ferry__Cluster__State *st, const char *host, const char *const *br)
{
	Ferry__Cluster__Inventory *inv = cl_state_host(st, host)->inventory;

	for (; *br; br++)
		assert_int_equal(cl_strv_add(&inv->bridges, &inv->n_bridges, *br), 0);
}

/*
 * NICs: their MACs filled in at create and unique in the cluster; a VM
 * with NICs goes only where its bridges are, and never to an old agent.
 */
static void test_nets(void **unused)
{
	static const char *const br0[] = { "vmbr0", NULL }, *const both[] = { "br1", "vmbr0", NULL };
	Ferry__Cluster__State *st = cluster3();
	char want[NIC_SPEC_MAX], mac[18], taken[80], msg[128];
	struct nic_spec sp = { .bridge = "vmbr0", .mac_set = 1 };
	Ferry__Cluster__Vm *vm;
	uint64_t seq;

	bridges_set(st, "host1", br0);
	bridges_set(st, "host2", both);
	assert_int_equal(create_nets(st, "n1", (const char *const[]){ "bridge=vmbr0", NULL }), 0);
	vm = cl_state_vm(st, "n1");
	nic_mac_derive("n1", 0, sp.mac);
	nic_spec_format(&sp, want, sizeof(want));
	assert_int_equal(vm->n_nets, 1);
	assert_string_equal(vm->nets[0], want);
	nic_mac_format(sp.mac, mac);

	seq = st->seq;
	snprintf(taken, sizeof(taken), "bridge=br1,mac=%s", mac);
	assert_int_equal(create_nets(st, "n2", (const char *const[]){ taken, NULL }), -EINVAL);
	snprintf(msg, sizeof(msg), "vm create: n2: net0: MAC %s is taken by n1's net0", mac);
	assert_string_equal(err, msg);
	assert_int_equal(create_nets(st, "n2", (const char *const[]){ "vmbr0", NULL }), -EINVAL);
	assert_string_equal(err, "vm create: n2: net0: 'vmbr0' is not KEY=VALUE (bridge=BR[,mac=MAC])");
	assert_int_equal(create_nets(st, "n2", (const char *const[]){
		"bridge=br1,mac=02:00:00:00:00:07", "bridge=vmbr0,mac=02:00:00:00:00:07", NULL }),
		-EINVAL);
	assert_string_equal(err, "vm create: n2: net1: MAC 02:00:00:00:00:07 is net0's too");
	assert_int_equal(st->seq, seq);
	assert_null(cl_state_vm(st, "n2"));
	assert_int_equal(create_nets(st, "n2", (const char *const[]){
		"bridge=br1,mac=02:00:00:00:00:07", "bridge=vmbr0", NULL }), 0);
	assert_string_equal(cl_state_vm(st, "n2")->nets[0], "bridge=br1,mac=02:00:00:00:00:07");

	/* Only where the bridges are. */
	assert_int_equal(start(st, "n1", "host3"), -ENODEV);
	assert_string_equal(err, "vm start: n1: host3 has no bridge vmbr0 for net0");
	assert_int_equal(start(st, "n2", "host1"), -ENODEV);
	assert_string_equal(err, "vm start: n2: host1 has no bridge br1 for net0");
	assert_int_equal(start(st, "n1", "host1"), 0);
	assert_int_equal(begin(st, "n1", "host3"), -ENODEV);
	assert_int_equal(start(st, "n2", "host2"), 0);
	/* A VM without NICs minds no bridges. */
	assert_int_equal(create(st, "plain", "x86-64-v2", 64 << 20), 0);
	assert_int_equal(start(st, "plain", "host3"), 0);

	/* An old agent would start the VM without its NICs. */
	cl_state_host(st, "host2")->agent_proto = CL_PROTO_3;
	assert_int_equal(begin(st, "n1", "host2"), -EPROTO);
	assert_string_equal(err, "migrate: n1: the agent of host2 predates NICs and would start "
			    "the VM without them; upgrade it first");
	assert_int_equal(create_nets(st, "n3", (const char *const[]){ "bridge=vmbr0", NULL }),
			 -EPROTO);
	assert_string_equal(err, "vm create: n3: the agent of host2 predates NICs; upgrade it first");
	cl_state_host(st, "host2")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(begin(st, "n1", "host2"), 0);
	CL_FREE(st);
}

/* vm set: HA when set_ha, the priority when set_prio. */
static int vm_set_adm(Ferry__Cluster__State *st, const char *vm, bool set_ha, bool ha,
		      bool set_prio, Ferry__Cluster__VmPriority prio, Ferry__Cluster__Admit *adm)
{
	Ferry__Cluster__CmdVmSet c = FERRY__CLUSTER__CMD_VM_SET__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.admit = adm;
	c.name = (char *)vm;
	c.set_ha = set_ha;
	c.ha = ha;
	c.set_priority = set_prio;
	c.priority = prio;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_SET;
	cmd.vm_set = &c;
	return run(st, &cmd);
}

static int vm_set(Ferry__Cluster__State *st, const char *vm, bool set_ha, bool ha,
		  bool set_prio, Ferry__Cluster__VmPriority prio)
{
	return vm_set_adm(st, vm, set_ha, ha, set_prio, prio, NULL);
}

static int vm_set_ha(Ferry__Cluster__State *st, const char *vm, bool set, bool ha)
{
	return vm_set(st, vm, set, ha, false, FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM);
}

static int ha_armed(Ferry__Cluster__State *st, const char *vm, uint64_t generation)
{
	Ferry__Cluster__CmdVmHaArmed c = FERRY__CLUSTER__CMD_VM_HA_ARMED__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.vm = (char *)vm;
	c.generation = generation;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_HA_ARMED;
	cmd.vm_ha_armed = &c;
	return run(st, &cmd);
}

/*
 * vm set --ha: a stopped VM's takes effect when it starts; a running VM's
 * HA protects it only once its host's agent armed its vmon's fence, and
 * never changes during a migration.
 */
static void test_vm_set_ha(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;
	uint64_t seq, id;

	assert_int_equal(create(st, "v", "x86-64-v2", 64 << 20), 0);
	vm = cl_state_vm(st, "v");
	assert_int_equal(start(st, "v", "host1"), 0);
	seq = st->seq;
	assert_int_equal(vm_set_ha(st, "nope", true, true), -ENOENT);
	assert_int_equal(vm_set_ha(st, "v", false, true), -EINVAL);
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_6;
	assert_int_equal(vm_set_ha(st, "v", true, true), -EPROTO);
	assert_string_equal(err, "vm set: v: running on host1, and the agent of host3 predates "
			    "changing HA on a running VM; stop it first, or upgrade");
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(begin(st, "v", "host2"), 0);
	id = vm->migration->id;
	assert_int_equal(vm_set_ha(st, "v", true, true), -EBUSY);
	assert_string_equal(err, "vm set: v: migrating to host2; change HA once it has landed");
	assert_int_equal(end(st, "v", id, false), 0);
	seq = st->seq;

	/* On while it runs: HA, but no recovery before its vmon is armed. */
	assert_int_equal(vm_set_ha(st, "v", true, true), 0);
	assert_true(vm->ha);
	assert_true(vm->ha_unarmed);
	assert_int_equal(recover(st, "v", "host1", "host2", vm->generation), -EPERM);
	assert_string_equal(err, "recover: v: HA was turned on while it ran, and its vmon on "
			    "host1 had not armed the fence yet");
	assert_int_equal(ha_armed(st, "v", vm->generation + 1), -ESTALE);
	assert_int_equal(ha_armed(st, "v", vm->generation), 0);
	assert_false(vm->ha_unarmed);
	assert_string_equal(st->events[st->n_events - 1]->text,
			    "vm v: HA armed (its vmon on host1 fences itself)");
	assert_int_equal(ha_armed(st, "v", vm->generation), -ESTALE);   /* said twice */
	assert_int_equal(st->seq, seq + 2);
	assert_int_equal(recover(st, "v", "host1", "host2", vm->generation), 0);
	assert_string_equal(vm->host, "host2");

	/* Off while it runs: at once (the agent disarms the fence after). */
	assert_int_equal(vm_set_ha(st, "v", true, false), 0);
	assert_false(vm->ha);
	assert_string_equal(st->events[st->n_events - 1]->text, "vm v: ha off");
	/* On again: a new vmon (here a migration's) starts with the fence. */
	assert_int_equal(vm_set_ha(st, "v", true, true), 0);
	assert_true(vm->ha_unarmed);
	assert_int_equal(begin(st, "v", "host1"), 0);
	assert_int_equal(end(st, "v", vm->migration->id, true), 0);
	assert_false(vm->ha_unarmed);
	/* Off then on while it runs, once more, then off: unarmed goes with HA. */
	assert_int_equal(vm_set_ha(st, "v", true, false), 0);
	assert_int_equal(vm_set_ha(st, "v", true, true), 0);
	assert_true(vm->ha_unarmed);
	assert_int_equal(vm_set_ha(st, "v", true, false), 0);
	assert_false(vm->ha_unarmed);

	/* A stopped VM's takes effect at its next start. */
	vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED;
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_2;
	assert_int_equal(vm_set_ha(st, "v", true, true), -EPROTO);
	assert_string_equal(err, "vm set: v: the agent of host3 predates HA; upgrade it first");
	assert_int_equal(vm_set_ha(st, "v", true, false), 0);   /* off needs no new agent */
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(vm_set_ha(st, "v", true, true), 0);
	assert_true(vm->ha);
	assert_false(vm->ha_unarmed);
	assert_string_equal(st->events[st->n_events - 1]->text, "vm v: ha on");
	CL_FREE(st);
}

static int vm_set_priority(Ferry__Cluster__State *st, const char *vm,
			   Ferry__Cluster__VmPriority p, bool ha_too)
{
	return vm_set(st, vm, ha_too, ha_too, true, p);
}

/* vm set --priority: at any time (only the planner reads it); checked. */
static void test_vm_priority(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__Vm *vm;
	uint64_t seq;

	assert_int_equal(create(st, "v", "x86-64-v2", 64 << 20), 0);
	vm = cl_state_vm(st, "v");
	assert_int_equal(vm->priority, FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM);
	assert_string_equal(cl_priority_name(vm->priority), "medium");
	assert_int_equal(start(st, "v", "host1"), 0);
	assert_int_equal(vm_set_priority(st, "v", FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH,
					 false), 0);
	assert_int_equal(vm->priority, FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH);
	assert_string_equal(st->events[st->n_events - 1]->text, "vm v: priority high");
	/* With --ha in the same command on a migrating VM, both are refused. */
	assert_int_equal(begin(st, "v", "host2"), 0);
	assert_int_equal(vm_set_priority(st, "v", FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_LOW,
					 true), -EBUSY);
	assert_int_equal(vm->priority, FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_HIGH);
	assert_int_equal(end(st, "v", vm->migration->id, false), 0);
	seq = st->seq;
	assert_int_equal(vm_set_priority(st, "v", (Ferry__Cluster__VmPriority)9, false), -EINVAL);
	assert_string_equal(err, "vm set: v: unknown priority 9 (low, medium, high)");
	/* An older agent would plan without it: only medium, the default, then. */
	cl_state_host(st, "host2")->agent_proto = CL_PROTO_4;
	assert_int_equal(vm_set_priority(st, "v", FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_LOW,
					 false), -EPROTO);
	assert_string_equal(err, "vm set: v: the agent of host2 predates VM priorities; upgrade "
			    "it first");
	assert_int_equal(st->seq, seq);
	assert_int_equal(vm_set_priority(st, "v", FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM,
					 false), 0);
	cl_state_host(st, "host2")->agent_proto = CL_STATE_PROTO;
	vm->desired = FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED;
	assert_int_equal(vm_set_priority(st, "v", FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_LOW,
					 true), 0);
	assert_true(vm->ha);
	assert_string_equal(st->events[st->n_events - 1]->text, "vm v: ha on, priority low");
	CL_FREE(st);
}

static void test_maintenance_stop_delete(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__CmdHostMode hm = FERRY__CLUSTER__CMD_HOST_MODE__INIT;
	Ferry__Cluster__CmdVmStop stop = FERRY__CLUSTER__CMD_VM_STOP__INIT;
	Ferry__Cluster__CmdVmDelete del = FERRY__CLUSTER__CMD_VM_DELETE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	assert_int_equal(create(st, "vm1", "cluster", 64 << 20), 0);
	hm.host = "host2";
	hm.mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_MODE;
	cmd.host_mode = &hm;
	cmd.unix_ms = 1000;
	assert_int_equal(run(st, &cmd), 0);
	assert_int_equal(cl_state_host(st, "host2")->mode_unix_ms, 1000);
	/* Said again, the evacuation's start stays where it was. */
	cmd.unix_ms = 2000;
	assert_int_equal(run(st, &cmd), 0);
	assert_int_equal(cl_state_host(st, "host2")->mode_unix_ms, 1000);
	cmd.unix_ms = 0;
	assert_int_equal(start(st, "vm1", "host2"), -EBUSY);
	assert_non_null(strstr(err, "maintenance"));
	/* a rejoining node does not undo the operator's mode */
	assert_int_equal(join(st, "host2", 2, feats_v3, 1ull << 30), 0);
	assert_int_equal(cl_state_host(st, "host2")->mode,
			 FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE);
	assert_int_equal(cl_state_host(st, "host2")->mode_unix_ms, 1000);
	assert_int_equal(start(st, "vm1", "host3"), 0);   /* cluster = v2 here */

	del.name = "vm1";
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_DELETE;
	cmd.vm_delete = &del;
	assert_int_equal(run(st, &cmd), -EBUSY);
	stop.name = "vm1";
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_STOP;
	cmd.vm_stop = &stop;
	assert_int_equal(run(st, &cmd), 0);
	assert_int_equal(run(st, &cmd), -EALREADY);
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_DELETE;
	cmd.vm_delete = &del;
	assert_int_equal(run(st, &cmd), 0);
	assert_null(cl_state_vm(st, "vm1"));
	assert_int_equal(st->n_vms, 0);
	CL_FREE(st);
}

static void test_exited(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	Ferry__Cluster__CmdVmExited c = FERRY__CLUSTER__CMD_VM_EXITED__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	Ferry__Cluster__Vm *vm;

	assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "host1"), 0);
	c.name = "vm1";
	c.host = "host1";
	c.generation = 1;
	c.reason = "host1: vmon crashed (status 3)";
	c.restart = true;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_EXITED;
	cmd.vm_exited = &c;
	assert_int_equal(run(st, &cmd), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->generation, 2);
	assert_int_equal(vm->restarts, 1);
	assert_int_equal(run(st, &cmd), -ESTALE);   /* about generation 1: old news */
	c.generation = 2;
	c.restart = false;
	c.reason = "host1: vmon exited with status 0";
	assert_int_equal(run(st, &cmd), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->desired, FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED);
	assert_string_equal(vm->last_error, "host1: vmon exited with status 0");
	CL_FREE(st);
}

/* One end of vm1's current run at unix_ms, reported by host1. */
static int exited_at(Ferry__Cluster__State *st, bool crash, bool restart, uint64_t unix_ms)
{
	Ferry__Cluster__CmdVmExited c = FERRY__CLUSTER__CMD_VM_EXITED__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.name = "vm1";
	c.host = "host1";
	c.generation = cl_state_vm(st, "vm1")->generation;
	c.reason = crash ? "host1: vmon: guest crashed" : "host1: vmon fenced";
	c.restart = restart;
	c.crash = crash;
	c.unix_ms = unix_ms;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_VM_EXITED;
	cmd.vm_exited = &c;
	return run(st, &cmd);
}

/* Crashes count within crash-window-s, at most crash-restarts of them; fences never. */
static void test_crash_window(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	const uint64_t H = 3600 * 1000;
	Ferry__Cluster__Vm *vm;

	assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), 0);
	assert_int_equal(start(st, "vm1", "host1"), 0);
	assert_int_equal(exited_at(st, true, true, 1000), 0);
	assert_int_equal(exited_at(st, false, true, 1500), 0);   /* a fence: not counted */
	assert_int_equal(exited_at(st, true, true, 2000), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->restarts, 3);
	assert_int_equal(vm->n_crashes_unix_ms, 2);
	assert_true(cl_vm_crash_restarts(st, vm, 2500));
	assert_int_equal(exited_at(st, true, true, 3000), 0);
	vm = cl_state_vm(st, "vm1");
	/* The default: 3 within an hour. A fourth now is not restarted... */
	assert_int_equal(cl_vm_crashes_counted(st, vm, 4000), 3);
	assert_false(cl_vm_crash_restarts(st, vm, 4000));
	/* ...one an hour after the first is: that one no longer counts. */
	assert_int_equal(cl_vm_crashes_counted(st, vm, 1000 + H), 2);
	assert_true(cl_vm_crash_restarts(st, vm, 1000 + H));
	/* A clock behind the others' must not make old crashes vanish. */
	assert_int_equal(cl_vm_crashes_counted(st, vm, 500), 3);
	assert_int_equal(exited_at(st, true, true, 1000 + H), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->n_crashes_unix_ms, 3);   /* 2000, 3000, 1000 + H */
	assert_int_equal(vm->crashes_unix_ms[0], 2000);

	/* A shorter window drops the old ones at the next crash; the list keeps crash-restarts. */
	assert_int_equal(config_set(st, "crash-window-s", (uint64_t)10, "crash-restarts",
				    (uint64_t)2, NULL), 0);
	assert_int_equal(exited_at(st, true, true, 2 * H), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->n_crashes_unix_ms, 1);
	assert_int_equal(exited_at(st, true, true, 2 * H + 1000), 0);
	assert_int_equal(exited_at(st, true, true, 2 * H + 2000), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->n_crashes_unix_ms, 2);
	assert_int_equal(vm->crashes_unix_ms[1], 2 * H + 2000);
	assert_false(cl_vm_crash_restarts(st, vm, 2 * H + 3000));
	assert_true(cl_vm_crash_restarts(st, vm, 2 * H + 11001));
	/* A crash not restarted (the cap) stops the VM and adds nothing. */
	assert_int_equal(exited_at(st, true, false, 2 * H + 3000), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->desired, FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED);
	assert_int_equal(vm->n_crashes_unix_ms, 2);
	/* A start forgets them. */
	assert_int_equal(start(st, "vm1", "host1"), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->n_crashes_unix_ms, 0);
	assert_int_equal(vm->restarts, 0);

	/* With an older agent: no crash recorded, its rule (every restart counts) decides. */
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_9;
	assert_int_equal(config_set(st, "crash-restarts", (uint64_t)5, NULL), -EPROTO);
	assert_int_equal(exited_at(st, false, true, 3 * H), 0);
	assert_int_equal(exited_at(st, true, true, 3 * H + 1), 0);
	vm = cl_state_vm(st, "vm1");
	assert_int_equal(vm->n_crashes_unix_ms, 0);
	assert_false(cl_vm_crash_restarts(st, vm, 3 * H + 2));   /* restarts 2, crash-restarts 2 */
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	assert_true(cl_vm_crash_restarts(st, vm, 3 * H + 2));
	/* ha-host-failures waits for every agent at protocol 11; 1..4 only. */
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_10;
	assert_int_equal(config_set(st, "ha-host-failures", (uint64_t)1, NULL), -EPROTO);
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	assert_int_equal(config_set(st, "ha-host-failures", (uint64_t)5, NULL), -EINVAL);
	assert_int_equal(config_set(st, "ha-host-failures", (uint64_t)1, NULL), 0);
	assert_int_equal(cl_setting_get(st, CL_SET_HA_HOST_FAILURES), 1);
	/* Changes are refused when more than half the online hosts cannot save. */
	assert_false(cl_state_unsaved_refuses(0, 3));
	assert_false(cl_state_unsaved_refuses(1, 3));
	assert_true(cl_state_unsaved_refuses(2, 3));
	assert_false(cl_state_unsaved_refuses(1, 2));
	assert_true(cl_state_unsaved_refuses(1, 1));
	CL_FREE(st);
}

/*
 * A command judged by HA admission control (Admit) is judged again where it
 * is applied, on the state of its turn, by the proposer's view of which
 * hosts are down.
 */
static Ferry__Cluster__Admit *view(const char *down)
{
	static Ferry__Cluster__Admit adm;
	static char *names[1];

	ferry__cluster__admit__init(&adm);
	names[0] = (char *)down;
	adm.down = names;
	adm.n_down = down ? 1 : 0;
	return &adm;
}

static int start_admit(Ferry__Cluster__State *st, const char *name, const char *host)
{
	return start_adm(st, name, host, view(NULL));
}

static int begin_admit(Ferry__Cluster__State *st, const char *vm, const char *dest)
{
	return begin_adm(st, vm, dest, 0, 0, view(NULL));
}

static int ha_on_admit(Ferry__Cluster__State *st, const char *vm, const char *down)
{
	return vm_set_adm(st, vm, true, true, false,
			  FERRY__CLUSTER__VM_PRIORITY__VM_PRIORITY_MEDIUM, view(down));
}

static bool all_up(const void *opaque, const char *host)
{
	(void)opaque;
	(void)host;
	return true;
}

static void test_admit_applied(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	char said[CL_ERR_LEN];
	uint64_t seq, id;

	(void)unused;
	assert_int_equal(config_set(st, "ha-host-failures", (uint64_t)1, NULL), 0);
	assert_int_equal(create_ha(st, "a", "x86-64-v2", 640 << 20, true), 0);
	assert_int_equal(create_ha(st, "b", "x86-64-v2", 640 << 20, true), 0);
	for (const char *const *v = (const char *const[]){ "p", "q", "r1", "r2", NULL }; *v; v++)
		assert_int_equal(create(st, *v, "x86-64-v2", 256 << 20), 0);
	assert_int_equal(start_admit(st, "a", "host1"), 0);
	assert_int_equal(start_admit(st, "b", "host2"), 0);
	assert_int_equal(start_admit(st, "p", "host1"), 0);
	assert_int_equal(start_admit(st, "q", "host2"), 0);

	/* HA on for p, by the proposer's view: with host2 down, b takes host3's room. */
	assert_int_equal(ha_on_admit(st, "p", "host2"), -ENOSPC);
	assert_non_null(strstr(err, "vm set: p: refused by HA admission control"));
	assert_non_null(strstr(err, "(with host2, down)"));
	assert_false(cl_state_vm(st, "p")->ha);
	assert_int_equal(ha_on_admit(st, "p", NULL), 0);   /* host3 takes a and p */
	assert_true(cl_state_vm(st, "p")->ha);
	assert_int_equal(vm_set_ha(st, "p", true, false), 0);

	/* Two agents admit r1 and r2 on host3 at once, each on this state... */
	assert_int_equal(cl_admit_judge(st, all_up, NULL, "vm start", "r1", "host3", false,
					false, said, sizeof(said)), 0);
	assert_int_equal(cl_admit_judge(st, all_up, NULL, "vm start", "r2", "host3", false,
					false, said, sizeof(said)), 0);
	/* ...the total order lets the first land, and the second finds no room. */
	assert_int_equal(start_admit(st, "r1", "host3"), 0);
	seq = st->seq;
	assert_int_equal(start_admit(st, "r2", "host3"), -ENOSPC);
	assert_string_equal(err, "vm start: r2: refused by HA admission control "
			    "(ha-host-failures 1): were host1 lost, HA VM a (640 MiB) could not "
			    "restart: the most memory left on a host would be 512 MiB (host3); "
			    "free memory or add hosts, or lower ha-host-failures");
	assert_int_equal(st->seq, seq);
	assert_int_equal(cl_state_vm(st, "r2")->desired,
			 FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED);

	/* A move that breaks what holds: p to host3 leaves 512 MiB there for a. */
	assert_int_equal(begin_admit(st, "p", "host3"), -ENOSPC);
	assert_non_null(strstr(err, "migrate: p: refused by HA admission control "
				    "(ha-host-failures 1): were host1 lost"));
	assert_null(cl_state_vm(st, "p")->migration);

	/* An agent older than protocol 12 ignores Admit: then nobody judges, alike. */
	cl_state_host(st, "host3")->agent_proto = CL_PROTO_11;
	assert_int_equal(start_admit(st, "r2", "host3"), 0);
	cl_state_host(st, "host3")->agent_proto = CL_STATE_PROTO;
	/* The cluster would not survive losing host1 now: a move still goes on. */
	assert_int_equal(begin_admit(st, "q", "host3"), 0);
	id = cl_state_vm(st, "q")->migration->id;
	assert_int_equal(end(st, "q", id, true), 0);
	/* Not judged without Admit (HA restarts, evacuations), nor with the setting off. */
	assert_int_equal(begin(st, "r2", "host2"), 0);
	CL_FREE(st);
}

/* host into maintenance, judged by a proposer that saw all hosts up (vm moved to to). */
static int maintenance_admit(Ferry__Cluster__State *st, const char *host, const char *vm,
			     const char *to)
{
	Ferry__Cluster__CmdHostMode hm = FERRY__CLUSTER__CMD_HOST_MODE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;
	Ferry__Cluster__AdmitMove mv = FERRY__CLUSTER__ADMIT_MOVE__INIT, *pmv = &mv;

	hm.host = (char *)host;
	hm.mode = FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
	hm.admit = view(NULL);
	mv.vm = (char *)vm;
	mv.to = (char *)to;
	hm.admit->moves = vm ? &pmv : NULL;
	hm.admit->n_moves = vm ? 1 : 0;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_HOST_MODE;
	cmd.host_mode = &hm;
	return run(st, &cmd);
}

static bool in_maintenance(Ferry__Cluster__State *st, const char *host)
{
	return cl_state_host(st, host)->mode == FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE;
}

/* Two hosts asked into maintenance at once, each admitted alone: the second is judged again. */
static void test_maintenance_applied(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	uint64_t seq;

	(void)unused;
	assert_int_equal(config_set(st, "ha-host-failures", (uint64_t)1, NULL), 0);
	assert_int_equal(create_ha(st, "a", "x86-64-v2", 640 << 20, true), 0);
	assert_int_equal(create(st, "p", "x86-64-v2", 256 << 20), 0);
	assert_int_equal(start_admit(st, "a", "host1"), 0);
	assert_int_equal(start_admit(st, "p", "host3"), 0);

	/* host2 goes first; host3's plan, made before, put p there. */
	assert_int_equal(maintenance_admit(st, "host2", NULL, NULL), 0);
	assert_true(in_maintenance(st, "host2"));
	seq = st->seq;
	assert_int_equal(maintenance_admit(st, "host3", "p", "host2"), -ESTALE);
	assert_string_equal(err, "host maintenance: host3: HA admission control judged it with "
			    "p moved to host2, which went into maintenance since; ask again");
	/* Asked again, with a plan of now: host1 alone would be left to lose. */
	assert_int_equal(maintenance_admit(st, "host3", "p", "host1"), -ENOSPC);
	assert_string_equal(err, "host maintenance: host3: refused by HA admission control "
			    "(ha-host-failures 1): with host3 in maintenance and its VMs moved "
			    "(p -> host1), were host1 lost, HA VM a (640 MiB) could not restart: "
			    "no host would be left to take it; make room first, or lower "
			    "ha-host-failures while host3 is in maintenance");
	assert_int_equal(st->seq, seq);
	assert_false(in_maintenance(st, "host3"));
	/* An agent older than protocol 13 ignores Admit here: nobody judges, alike. */
	cl_state_host(st, "host1")->agent_proto = CL_PROTO_12;
	assert_int_equal(maintenance_admit(st, "host3", "p", "host1"), 0);
	assert_true(in_maintenance(st, "host3"));
	cl_state_host(st, "host1")->agent_proto = CL_STATE_PROTO;
	/* Already in maintenance: said again, not judged. */
	assert_int_equal(maintenance_admit(st, "host3", "p", "host1"), 0);
	CL_FREE(st);
}

/* Same commands, same order: the same bytes on every node. */
static void test_deterministic_and_persisted(void **unused)
{
	Ferry__Cluster__State *a = cluster3(), *b = cluster3(), *loaded = NULL;
	char path[] = "/tmp/ferry-state-XXXXXX";
	uint8_t *pa, *pb;
	size_t la, lb;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < 2; i++) {
		Ferry__Cluster__State *st = i ? b : a;

		assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), 0);
		assert_int_equal(start(st, "vm1", "host3"), 0);
		assert_int_equal(begin(st, "vm1", "host1"), 0);
		assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), -EEXIST);
	}
	la = ferry__cluster__state__get_packed_size(a);
	lb = ferry__cluster__state__get_packed_size(b);
	assert_int_equal(la, lb);
	pa = malloc(la);
	pb = malloc(lb);
	ferry__cluster__state__pack(a, pa);
	ferry__cluster__state__pack(b, pb);
	assert_memory_equal(pa, pb, la);

	assert_int_equal(cl_state_save(path, a, err, sizeof(err)), 0);
	assert_int_equal(cl_state_load(path, &loaded, err, sizeof(err)), 0);
	assert_int_equal(loaded->seq, a->seq);
	assert_non_null(cl_state_vm(loaded, "vm1")->migration);
	CL_FREE(loaded);
	/* a damaged file is refused, not half-read */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "\xff\xff\xff", 3), 3);
	close(fd);
	assert_int_equal(cl_state_load(path, &loaded, err, sizeof(err)), -EBADMSG);
	unlink(path);
	assert_int_equal(cl_state_load(path, &loaded, err, sizeof(err)), -ENOENT);
	free(pa);
	free(pb);
	CL_FREE(a);
	CL_FREE(b);
}

static int cmd_revoke(Ferry__Cluster__State *st, const char *serial)
{
	Ferry__Cluster__CmdRevoke c = FERRY__CLUSTER__CMD_REVOKE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	c.serial = (char *)serial;
	c.name = "intruder";
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_REVOKE;
	cmd.revoke = &c;
	return run(st, &cmd);
}

/*
 * The revoked serials as the node's vmons read them (net/xport.h): the
 * list the state holds, nothing more, replaced whole on every write.
 */
static void test_revoked_file(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	char dir[] = "/tmp/ferry-revoked-XXXXXX", path[64], text[512];
	FILE *f;
	size_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/revoked", dir);
	assert_int_equal(cl_state_write_revoked(st, path, err, sizeof(err)), 0);
	assert_int_equal(xport_revoked_check(path, "abc1"), 0);
	assert_int_equal(cmd_revoke(st, "abc1"), 0);
	assert_int_equal(cmd_revoke(st, "ff00"), 0);
	assert_int_equal(cmd_revoke(st, "abc1"), 0); /* again: listed once */
	assert_int_equal(cl_state_write_revoked(st, path, err, sizeof(err)), 0);
	assert_int_equal(xport_revoked_check(path, "abc1"), 1);
	assert_int_equal(xport_revoked_check(path, "ff00"), 1);
	assert_int_equal(xport_revoked_check(path, "ff"), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	assert_non_null(strstr(text, "\nabc1\nff00\n"));
	/* a directory that is gone: an error that says where, nothing half-written */
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(cl_state_write_revoked(st, path, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "revocation list"));
	assert_non_null(strstr(err, dir));
	CL_FREE(st);
}

static int rule_add(Ferry__Cluster__State *st, const char *name, Ferry__Cluster__RuleKind kind,
		    char **vms, size_t n_vms, char **hosts, size_t n_hosts)
{
	Ferry__Cluster__Rule r = FERRY__CLUSTER__RULE__INIT;
	Ferry__Cluster__CmdRuleAdd c = FERRY__CLUSTER__CMD_RULE_ADD__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	r.name = (char *)name;
	r.kind = kind;
	r.vms = vms;
	r.n_vms = n_vms;
	r.hosts = hosts;
	r.n_hosts = n_hosts;
	c.rule = &r;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_RULE_ADD;
	cmd.rule_add = &c;
	cmd.unix_ms = 1234;
	return run(st, &cmd);
}

/* Rules hold for the operator's starts and migrations too; events record
 * what happened, at the proposer's time, capped. */
static void test_rules_events(void **unused)
{
	Ferry__Cluster__State *st = cluster3();
	char *pair[] = { "vm1", "vm2" }, *h1[] = { "host1" }, *one[] = { "vm1" };
	Ferry__Cluster__CmdRuleDelete del = FERRY__CLUSTER__CMD_RULE_DELETE__INIT;
	Ferry__Cluster__CmdBalanceMode bm = FERRY__CLUSTER__CMD_BALANCE_MODE__INIT;
	Ferry__Cluster__Command cmd = FERRY__CLUSTER__COMMAND__INIT;

	assert_int_equal(create(st, "vm1", "x86-64-v2", 64 << 20), 0);
	assert_int_equal(create(st, "vm2", "x86-64-v2", 64 << 20), 0);
	assert_int_equal(rule_add(st, "sep", FERRY__CLUSTER__RULE_KIND__RULE_KIND_ANTI_AFFINITY,
				  pair, 2, NULL, 0), 0);
	assert_int_equal(rule_add(st, "sep", FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY,
				  pair, 2, NULL, 0), -EEXIST);
	assert_int_equal(rule_add(st, "lone", FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY,
				  one, 1, NULL, 0), -EINVAL);
	assert_int_equal(rule_add(st, "nohost", FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST,
				  one, 1, NULL, 0), -EINVAL);
	assert_int_equal(rule_add(st, "not1", FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST_NOT,
				  one, 1, h1, 1), 0);
	assert_int_equal(start(st, "vm1", "host1"), -EPERM);
	assert_string_equal(err, "vm start: vm1: rule not1 (host-must-not) keeps it off host1");
	assert_int_equal(start(st, "vm1", "host2"), 0);
	assert_int_equal(start(st, "vm2", "host2"), -EPERM);
	assert_non_null(strstr(err, "rule sep (anti-affinity)"));
	assert_int_equal(start(st, "vm2", "host1"), 0);
	assert_int_equal(begin(st, "vm2", "host2"), -EPERM);
	assert_int_equal(begin(st, "vm1", "host1"), -EPERM);
	assert_int_equal(begin(st, "vm1", "host3"), 0);

	del.name = "sep";
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_RULE_DELETE;
	cmd.rule_delete = &del;
	assert_int_equal(run(st, &cmd), 0);
	assert_int_equal(run(st, &cmd), -ENOENT);
	assert_int_equal(st->n_rules, 1);
	bm.mode = FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC;
	cmd.op_case = FERRY__CLUSTER__COMMAND__OP_BALANCE_MODE;
	cmd.balance_mode = &bm;
	cmd.unix_ms = 777;
	assert_int_equal(run(st, &cmd), 0);
	assert_int_equal(st->balance_mode, FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC);
	assert_string_equal(st->events[st->n_events - 1]->text, "balancer: automatic");
	assert_int_equal(st->events[st->n_events - 1]->seq, st->seq);
	assert_int_equal(st->events[st->n_events - 1]->unix_ms, 777);
	for (int i = 0; i < 300; i++)
		assert_int_equal(run(st, &cmd), 0);
	assert_int_equal(st->n_events, CL_EVENTS_MAX);
	assert_int_equal(st->events[CL_EVENTS_MAX - 1]->seq, st->seq);
	CL_FREE(st);
}

static Ferry__Cluster__SyncHello hello(uint32_t id, uint64_t seq, uint32_t *members, size_t n)
{
	Ferry__Cluster__SyncHello h = FERRY__CLUSTER__SYNC_HELLO__INIT;

	h.nodeid = id;
	h.seq = seq;
	h.members = members;
	h.n_members = n;
	return h;
}

/* Every member sees the same hellos in the same order and must agree. */
static void test_sync(void **unused)
{
	uint32_t view[] = { 3, 1, 2 }, old[] = { 1, 2 };
	struct cl_sync s[4];
	Ferry__Cluster__SyncHello h1 = hello(1, 10, view, 3), h2 = hello(2, 12, view, 3),
				  h3 = hello(3, 12, view, 3), stale = hello(3, 99, old, 2);
	Ferry__Cluster__SyncState st = FERRY__CLUSTER__SYNC_STATE__INIT;

	for (uint32_t me = 1; me <= 3; me++) {
		cl_sync_view(&s[me], view, 3);
		assert_int_equal(cl_sync_hello(&s[me], me, &h1), CL_SYNC_WAIT);
		assert_int_equal(cl_sync_hello(&s[me], me, &stale), CL_SYNC_WAIT);
		assert_int_equal(cl_sync_hello(&s[me], me, &h3), CL_SYNC_WAIT);
		/* node 2 is the lowest id with the newest seq: the donor */
		assert_int_equal(cl_sync_hello(&s[me], me, &h2),
				 me == 2 ? CL_SYNC_SEND_STATE : CL_SYNC_WAIT);
		assert_false(s[me].synced);
		st.nodeid = 3;   /* not the donor: ignored */
		st.members = view;
		st.n_members = 3;
		assert_false(cl_sync_state(&s[me], &st));
		st.nodeid = 2;
		st.members = old;
		st.n_members = 2;
		assert_false(cl_sync_state(&s[me], &st));
		st.members = view;
		st.n_members = 3;
		assert_true(cl_sync_state(&s[me], &st));
		assert_true(s[me].synced);
	}
	/* all equal: synced without a transfer */
	cl_sync_view(&s[0], old, 2);
	h1 = hello(1, 5, old, 2);
	h2 = hello(2, 5, old, 2);
	assert_int_equal(cl_sync_hello(&s[0], 1, &h1), CL_SYNC_WAIT);
	assert_int_equal(cl_sync_hello(&s[0], 1, &h2), CL_SYNC_DONE);
	assert_true(s[0].synced);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_start),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_migration),
		cmocka_unit_test(test_mig_cancel),
		cmocka_unit_test(test_mig_set),
		cmocka_unit_test(test_maintenance_stop_delete),
		cmocka_unit_test(test_exited),
		cmocka_unit_test(test_crash_window),
		cmocka_unit_test(test_admit_applied),
		cmocka_unit_test(test_maintenance_applied),
		cmocka_unit_test(test_deterministic_and_persisted),
		cmocka_unit_test(test_revoked_file),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_rules_events),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_witness),
		cmocka_unit_test(test_host_remove),
		cmocka_unit_test(test_ha),
		cmocka_unit_test(test_nets),
		cmocka_unit_test(test_vm_priority),
		cmocka_unit_test(test_vm_set_ha),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
