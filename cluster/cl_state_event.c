/* The state's event log: what each applied command did, in words. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_msg.h"
#include "cl_plan.h"
#include "cl_settings.h"
#include "cl_state.h"
#include "core/util.h"

static void config_text(const Ferry__Cluster__State *st, const Ferry__Cluster__CmdConfigSet *c,
			char *t, size_t len)
{
	size_t u = snprintf(t, len, "config:");

	for (size_t i = 0; i < c->n_items && u < len; i++) {
		const struct cl_setting *k = cl_setting_find(c->items[i]->key);
		uint64_t v;
		char vb[64];

		if (!k)
			continue;
		v = cl_setting_value(st, k);
		u += snprintf(t + u, len - u, "%s %s %s %s%s%s", i ? ";" : "", k->key,
			      c->items[i]->value ? "set to" : "back to its default", v ? "" : "(",
			      cl_setting_fmt(k, v, vb, sizeof(vb)), v ? "" : ")");
	}
}

/* What a command did, for the event log (after it was applied). */
static void event_text(const Ferry__Cluster__State *st, const Ferry__Cluster__Command *c,
		       char *t, size_t len)
{
	static const char *const modes[] = { "off", "manual", "automatic" };
	const Ferry__Cluster__Vm *vm;

	t[0] = 0;
	switch (c->op_case) {
	case FERRY__CLUSTER__COMMAND__OP_HOST_MODE:
		snprintf(t, len, "host %s: %s", c->host_mode->host, c->host_mode->mode ==
			 FERRY__CLUSTER__HOST_MODE__HOST_MODE_MAINTENANCE ?
			 "enters maintenance" : "active");
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_CREATE:
		snprintf(t, len, "vm %s: created", c->vm_create->vm->name);
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_START:
		snprintf(t, len, "vm %s: started on %s", c->vm_start->name, c->vm_start->host);
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_STOP:
		snprintf(t, len, "vm %s: stopped", c->vm_stop->name);
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_DELETE:
		snprintf(t, len, "vm %s: deleted", c->vm_delete->name);
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_EXITED:
		snprintf(t, len, "vm %s: %s%s", c->vm_exited->name, c->vm_exited->reason,
			 c->vm_exited->restart ? "; restarted" : "");
		break;
	case FERRY__CLUSTER__COMMAND__OP_MIG_BEGIN:
		vm = cl_state_vm(st, c->mig_begin->vm);
		snprintf(t, len, "vm %s: %s %s -> %s%s%s", c->mig_begin->vm,
			 c->mig_begin->dry_run ? "dry run" : "migration",
			 vm && vm->migration ? vm->migration->source : "?",
			 c->mig_begin->destination, *c->mig_begin->reason ? " by the " : "",
			 c->mig_begin->reason);
		break;
	case FERRY__CLUSTER__COMMAND__OP_MIG_END:
		vm = cl_state_vm(st, c->mig_end->vm);
		if (vm && vm->last_migration)
			snprintf(t, len, "vm %s: %s %s", c->mig_end->vm,
				 vm->last_migration->dry_run ? "dry run" : "migration",
				 vm->last_migration->ok ? "done" : vm->last_migration->error);
		break;
	case FERRY__CLUSTER__COMMAND__OP_MIG_CANCEL:
		vm = cl_state_vm(st, c->mig_cancel->vm);
		if (vm && vm->migration)
			snprintf(t, len, "vm %s: cancel of the migration %s -> %s asked",
				 vm->name, vm->migration->source, vm->migration->destination);
		break;
	case FERRY__CLUSTER__COMMAND__OP_MIG_SET:
		vm = cl_state_vm(st, c->mig_set->vm);
		if (vm && vm->migration) {
			char cap[32], dt[32];

			snprintf(dt, sizeof(dt), "%llu ms",
				 (unsigned long long)vm->migration->downtime_ms);
			snprintf(t, len, "vm %s: the migration %s -> %s changed: downtime target "
				 "%s, bandwidth cap %s", vm->name, vm->migration->source,
				 vm->migration->destination,
				 vm->migration->downtime_ms ? dt : "vmon's default",
				 fmt_cap_mbps(vm->migration->bandwidth_mbps, cap, sizeof(cap)));
		}
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_HA_ARMED:
		vm = cl_state_vm(st, c->vm_ha_armed->vm);
		snprintf(t, len, "vm %s: HA armed (its vmon on %s fences itself)",
			 c->vm_ha_armed->vm, vm ? vm->host : "?");
		break;
	case FERRY__CLUSTER__COMMAND__OP_RULE_ADD:
		snprintf(t, len, "rule %s (%s) added", c->rule_add->rule->name,
			 cl_rule_kind_name(c->rule_add->rule->kind));
		break;
	case FERRY__CLUSTER__COMMAND__OP_RULE_DELETE:
		snprintf(t, len, "rule %s deleted", c->rule_delete->name);
		break;
	case FERRY__CLUSTER__COMMAND__OP_BALANCE_MODE:
		snprintf(t, len, "balancer: %s", modes[c->balance_mode->mode]);
		break;
	case FERRY__CLUSTER__COMMAND__OP_CONFIG_SET:
		config_text(st, c->config_set, t, len);
		break;
	case FERRY__CLUSTER__COMMAND__OP_HOST_REMOVE:
		snprintf(t, len, "host %s removed", c->host_remove->host);
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_SET:
		snprintf(t, len, "vm %s:%s%s%s%s%s", c->vm_set->name,
			 c->vm_set->set_ha ? " ha " : "",
			 c->vm_set->set_ha ? (c->vm_set->ha ? "on" : "off") : "",
			 c->vm_set->set_ha && c->vm_set->set_priority ? "," : "",
			 c->vm_set->set_priority ? " priority " : "",
			 c->vm_set->set_priority ? cl_priority_name(c->vm_set->priority) : "");
		break;
	case FERRY__CLUSTER__COMMAND__OP_VM_RECOVER:
		vm = cl_state_vm(st, c->vm_recover->vm);
		snprintf(t, len, "vm %s: %s", c->vm_recover->vm, vm ? vm->last_error : "recovered");
		break;
	case FERRY__CLUSTER__COMMAND__OP_REVOKE:
		snprintf(t, len, "certificate %s (%s) revoked", c->revoke->serial, c->revoke->name);
		break;
	default:
		break;
	}
}

void cl_state_event_add(Ferry__Cluster__State *st, const Ferry__Cluster__Command *cmd)
{
	Ferry__Cluster__Event *e;
	char text[CL_ERR_LEN + 128];

	event_text(st, cmd, text, sizeof(text));
	if (!*text)
		return;
	if (st->n_events >= CL_EVENTS_MAX) {
		CL_FREE(st->events[0]);
		memmove(&st->events[0], &st->events[1], (st->n_events - 1) * sizeof(*st->events));
		st->n_events--;
	}
	e = CL_NEW(Ferry__Cluster__Event, ferry__cluster__event__init);
	if (!e)
		return;
	e->seq = st->seq;
	e->unix_ms = cmd->unix_ms;
	e->text = cl_strdup(text);
	/* protobuf-c sizes arrays to fit, so an unpacked state has no room. */
	Ferry__Cluster__Event **v = realloc(st->events, (st->n_events + 1) * sizeof(*v));

	if (!v) {
		CL_FREE(e);
		return;
	}
	st->events = v;
	st->events[st->n_events++] = e;
}
