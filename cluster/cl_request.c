/*
 * Requests as they come off the wire (cl_net.h): everything a handler may
 * take for granted is checked here, once, so that no handler has to. The
 * input is whatever a peer sent, hence the fuzzer.
 */
#include "cl_net.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_state.h"
#include "net/nic.h"

/* Limits of what a request may carry. */
static const struct {
	size_t name_max;
	size_t guest_path_max;
	size_t args_max;
	size_t serial_hex_max;   /* an X.509 serial is at most 20 octets */
	uint64_t vm_mem_min_bytes;
	uint64_t vm_mem_max_bytes;
	uint64_t vm_mem_align_bytes;
	uint32_t vm_vcpus_max;
} req_limits = {
	.name_max = 63,
	.guest_path_max = 4095,
	.args_max = 1023,
	.serial_hex_max = 40,
	.vm_mem_min_bytes = 8ull << 20,
	.vm_mem_max_bytes = 128ull << 30,
	.vm_mem_align_bytes = 2ull << 20,
	.vm_vcpus_max = 32,
};

#define NAME_RULE "(1..63 of A-Z a-z 0-9 _ . -)"

bool cl_name_valid(const char *name)
{
	size_t len;

	if (!name || !*name || name[0] == '-' || name[0] == '.')
		return false;
	len = strnlen(name, req_limits.name_max + 1);
	return len <= req_limits.name_max &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyz"
		      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == len;
}

struct req_check {
	const char *what;   /* "vm create" */
	char *err;
	size_t err_len;
	bool failed;
};

static void req_fail(struct req_check *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void req_fail(struct req_check *c, const char *fmt, ...)
{
	char why[224];
	va_list ap;

	if (c->failed)
		return;   /* the first reason is the one reported */
	c->failed = true;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->err && c->err_len)
		snprintf(c->err, c->err_len, "%s: %s", c->what, why);
}

/* A name from the wire as it can be printed: 64 chars, no controls. */
static const char *req_quote(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < len && i < 64; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (s[i] && i + 4 <= len)
		memcpy(buf + i, "...", 4);
	else
		buf[i] = 0;
	return buf;
}

static void req_name(struct req_check *c, const char *field, const char *v,
		     bool optional)
{
	char q[72];

	if (!v || !*v) {
		if (!optional)
			req_fail(c, "%s is missing", field);
		return;
	}
	if (!cl_name_valid(v))
		req_fail(c, "%s '%s' is not valid " NAME_RULE, field,
			 req_quote(v, q, sizeof(q)));
}

static void req_len(struct req_check *c, const char *field, const char *v,
		    size_t max)
{
	size_t len = v ? strnlen(v, max + 1) : 0;

	if (len > max)
		req_fail(c, "%s is longer than %zu bytes", field, max);
}

static void req_body(struct req_check *c, const void *body)
{
	if (!body)
		req_fail(c, "the request has no body");
}

static void req_vm_create(struct req_check *c, const Ferry__Cluster__Vm *vm)
{
	req_body(c, vm);
	if (c->failed)
		return;
	req_name(c, "name", vm->name, false);
	if (!vm->guest || !*vm->guest)
		req_fail(c, "guest image path is missing");
	req_len(c, "guest image path", vm->guest, req_limits.guest_path_max);
	req_len(c, "args", vm->args, req_limits.args_max);
	if (vm->n_disks > 8)
		req_fail(c, "at most 8 disks");
	for (size_t i = 0; i < vm->n_disks; i++) {
		if (!vm->disks[i] || !*vm->disks[i])
			req_fail(c, "an empty disk");
		req_len(c, "disk", vm->disks[i], req_limits.guest_path_max);
	}
	if (!cl_priority_name(vm->priority))
		req_fail(c, "unknown priority %d", (int)vm->priority);
	if (vm->n_nets > GABI_NET_MAX_NICS)
		req_fail(c, "at most %u NICs", GABI_NET_MAX_NICS);
	for (size_t i = 0; i < vm->n_nets && !c->failed; i++) {
		struct nic_spec sp;
		char why[NIC_ERR_LEN];

		if (!vm->nets[i] || nic_spec_parse(vm->nets[i], &sp, why, sizeof(why)))
			req_fail(c, "net %.64s: %s", vm->nets[i] ? vm->nets[i] : "",
				 vm->nets[i] ? why : "empty");
	}
	if (vm->mem_bytes < req_limits.vm_mem_min_bytes ||
	    vm->mem_bytes > req_limits.vm_mem_max_bytes)
		req_fail(c, "memory %llu bytes is outside 8 MiB..128 GiB",
			 (unsigned long long)vm->mem_bytes);
	else if (vm->mem_bytes % req_limits.vm_mem_align_bytes)
		req_fail(c, "memory %llu bytes is not a multiple of 2 MiB",
			 (unsigned long long)vm->mem_bytes);
	if (vm->vcpus < 1 || vm->vcpus > req_limits.vm_vcpus_max)
		req_fail(c, "%u vCPUs is outside 1..%u", vm->vcpus,
			 req_limits.vm_vcpus_max);
	req_name(c, "cpu model", vm->cpu_model, true);
	req_name(c, "host", vm->host, true);
	if (vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_STOPPED &&
	    vm->desired != FERRY__CLUSTER__VM_DESIRED__VM_DESIRED_RUNNING)
		req_fail(c, "desired state %d is not known", (int)vm->desired);
}

static void req_revoke(struct req_check *c, const Ferry__Cluster__RevokeReq *r)
{
	size_t len;

	req_body(c, r);
	if (c->failed)
		return;
	len = r->serial ? strnlen(r->serial, req_limits.serial_hex_max + 1) : 0;
	if (!len || len > req_limits.serial_hex_max ||
	    strspn(r->serial, "0123456789abcdef") != len)
		req_fail(c, "serial must be 1..%zu lower-case hex digits",
			 req_limits.serial_hex_max);
	req_name(c, "name", r->name, true);
}

/* The commands whose body is one Name. */
static const struct {
	Ferry__Cluster__Request__CmdCase cmd;
	const char *what;
	const char *field;
	size_t off;
} req_name_cmds[] = {
#define NAME_CMD(c, w, f, m) { FERRY__CLUSTER__REQUEST__CMD_##c, w, f, \
			       offsetof(Ferry__Cluster__Request, m) }
	NAME_CMD(HOST_SHOW, "host show", "host", host_show),
	NAME_CMD(VM_SHOW, "vm show", "vm", vm_show),
	NAME_CMD(VM_STOP, "vm stop", "vm", vm_stop),
	NAME_CMD(VM_DELETE, "vm delete", "vm", vm_delete),
	NAME_CMD(MIGRATE_STATUS, "migrate status", "vm", migrate_status),
	NAME_CMD(MIGRATE_CANCEL, "migrate-cancel", "vm", migrate_cancel),
	NAME_CMD(RULE_DELETE, "rule delete", "rule", rule_delete),
	NAME_CMD(EVACUATION, "evacuation", "host", evacuation),
	NAME_CMD(HOST_REMOVE, "host remove", "host", host_remove),
	NAME_CMD(VM_RESUME, "vm resume", "vm", vm_resume),
	NAME_CMD(VM_PAUSE, "vm pause", "vm", vm_pause),
#undef NAME_CMD
};

static bool req_check_name_cmd(struct req_check *c, const Ferry__Cluster__Request *r)
{
	for (size_t i = 0; i < sizeof(req_name_cmds) / sizeof(req_name_cmds[0]); i++) {
		const Ferry__Cluster__Name *n;

		if (req_name_cmds[i].cmd != r->cmd_case)
			continue;
		n = *(Ferry__Cluster__Name *const *)((const char *)r +
						     req_name_cmds[i].off);
		c->what = req_name_cmds[i].what;
		req_body(c, n);
		req_name(c, req_name_cmds[i].field, n ? n->name : NULL, false);
		return true;
	}
	return false;
}

/* The checks of one command; c->what names it in the reason. */
static void req_check_cmd(struct req_check *c, const Ferry__Cluster__Request *r)
{
	if (req_check_name_cmd(c, r))
		return;
	switch (r->cmd_case) {
	case FERRY__CLUSTER__REQUEST__CMD_STATUS:
		c->what = "status";
		break;
	case FERRY__CLUSTER__REQUEST__CMD_HOST_LIST:
		c->what = "host list";
		break;
	case FERRY__CLUSTER__REQUEST__CMD_VM_LIST:
		c->what = "vm list";
		break;
	case FERRY__CLUSTER__REQUEST__CMD_CPU_BASELINE:
		c->what = "cpu baseline";
		break;
	case FERRY__CLUSTER__REQUEST__CMD_VM_CREATE:
		c->what = "vm create";
		req_vm_create(c, r->vm_create);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_MIGRATE:
		c->what = "migrate";
		req_body(c, r->migrate);
		if (c->failed)
			break;
		req_name(c, "vm", r->migrate->vm, false);
		req_name(c, "host", r->migrate->host, false);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_VM_SET:
		c->what = "vm set";
		req_body(c, r->vm_set);
		if (c->failed)
			break;
		req_name(c, "vm", r->vm_set->name, false);
		if (!r->vm_set->set_ha && !r->vm_set->set_priority)
			req_fail(c, "nothing to change");
		if (r->vm_set->set_priority && !cl_priority_name(r->vm_set->priority))
			req_fail(c, "unknown priority %d", (int)r->vm_set->priority);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_MIGRATE_SET:
		c->what = "migrate-set";
		req_body(c, r->migrate_set);
		if (c->failed)
			break;
		req_name(c, "vm", r->migrate_set->vm, false);
		if (!r->migrate_set->set_downtime && !r->migrate_set->set_bandwidth)
			req_fail(c, "nothing to change");
		if (r->migrate_set->set_downtime && !r->migrate_set->downtime_ms)
			req_fail(c, "the downtime target must be at least 1 ms");
		break;
	case FERRY__CLUSTER__REQUEST__CMD_VM_START:
		c->what = "vm start";
		req_body(c, r->vm_start);
		if (c->failed)
			break;
		req_name(c, "vm", r->vm_start->name, false);
		req_name(c, "host", r->vm_start->host, true);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_CPU_CHECK:
		c->what = "cpu check";
		req_body(c, r->cpu_check);
		if (c->failed)
			break;
		req_name(c, "vm", r->cpu_check->vm, false);
		req_name(c, "host", r->cpu_check->host, false);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_HOST_MODE:
		c->what = "host mode";
		req_body(c, r->host_mode);
		if (c->failed)
			break;
		req_name(c, "host", r->host_mode->host, false);
		if (r->host_mode->mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_ACTIVE &&
		    r->host_mode->mode != FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE)
			req_fail(c, "mode %d is not known", (int)r->host_mode->mode);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_REVOKE:
		c->what = "revoke";
		req_revoke(c, r->revoke);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_RULE_LIST:
		c->what = "rule list";
		break;
	case FERRY__CLUSTER__REQUEST__CMD_EVENTS:
		c->what = "events";
		break;
	case FERRY__CLUSTER__REQUEST__CMD_BALANCE:
		c->what = "balance";
		req_body(c, r->balance);
		if (c->failed)
			break;
		if (strcmp(r->balance->action, "status") && strcmp(r->balance->action, "recommend") &&
		    strcmp(r->balance->action, "apply") && strcmp(r->balance->action, "mode"))
			req_fail(c, "action must be status, recommend, apply or mode");
		if (r->balance->mode > FERRY__CLUSTER__BALANCE_MODE__BALANCE_MODE_AUTOMATIC)
			req_fail(c, "mode %d is not known", (int)r->balance->mode);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_MAINTENANCE:
		c->what = "host maintenance";
		req_body(c, r->maintenance);
		if (!c->failed)
			req_name(c, "host", r->maintenance->host, false);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_RULE_ADD:
		c->what = "rule add";
		req_body(c, r->rule_add);
		if (c->failed)
			break;
		req_name(c, "rule", r->rule_add->name, false);
		if (r->rule_add->kind > FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD_NOT)
			req_fail(c, "kind %d is not known", (int)r->rule_add->kind);
		if (r->rule_add->n_vms > 256 || r->rule_add->n_hosts > 256)
			req_fail(c, "at most 256 VMs and 256 hosts");
		for (size_t i = 0; !c->failed && i < r->rule_add->n_vms; i++)
			req_name(c, "vm", r->rule_add->vms[i], false);
		for (size_t i = 0; !c->failed && i < r->rule_add->n_hosts; i++)
			req_name(c, "host", r->rule_add->hosts[i], false);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_CONFIG_SET:
		c->what = "config set";
		req_body(c, r->config_set);
		if (c->failed)
			break;
		/* Keys and ranges are the state machine's to judge (cl_settings.c). */
		if (!r->config_set->n_items || r->config_set->n_items > 16)
			req_fail(c, "1..16 settings at once");
		for (size_t i = 0; !c->failed && i < r->config_set->n_items; i++) {
			req_body(c, r->config_set->items[i]);
			if (!c->failed)
				req_name(c, "key", r->config_set->items[i]->key, false);
		}
		break;
	default:
		c->what = "request";
		req_fail(c, "no command (or one this agent does not know)");
		break;
	}
}

/*
 * Drop the fields this agent does not know, in every sub-message. A newer
 * client may send them and nothing here reads them; kept, they would be
 * copied into commands and the replicated state. protobuf-c even keeps
 * some it cannot pack again (field number 0), which would make such a
 * copy fail on every node.
 */
static void req_strip_unknown(ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		char *base = (char *)m;

		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(size_t *)(base + fd->quantifier_offset);
			ProtobufCMessage **v = *(ProtobufCMessage ***)(base + fd->offset);

			for (size_t k = 0; k < n; k++)
				req_strip_unknown(v[k]);
			continue;
		}
		if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(uint32_t *)(base + fd->quantifier_offset) != fd->id)
			continue;
		if (*(ProtobufCMessage **)(base + fd->offset))
			req_strip_unknown(*(ProtobufCMessage **)(base + fd->offset));
	}
	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		free(m->unknown_fields[i].data);
	free(m->unknown_fields);
	m->unknown_fields = NULL;
	m->n_unknown_fields = 0;
}

Ferry__Cluster__Request *cl_request_decode(const uint8_t *buf, size_t len,
					   char *err, size_t err_len)
{
	struct req_check c = { .what = "request", .err = err, .err_len = err_len };
	Ferry__Cluster__Request *r;

	if (err && err_len)
		err[0] = 0;
	r = ferry__cluster__request__unpack(NULL, len, buf);
	if (!r) {
		req_fail(&c, "not a valid message (%zu bytes)", len);
		return NULL;
	}
	req_strip_unknown(&r->base);
	req_check_cmd(&c, r);
	if (c.failed) {
		ferry__cluster__request__free_unpacked(r, NULL);
		return NULL;
	}
	return r;
}
