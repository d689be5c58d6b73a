/*
 * Requests to the agent come from anyone who can reach its socket:
 * cl_request_decode must refuse garbage with a reason, and whatever it
 * accepts must be what the handlers take for granted (cl_net.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cl_msg.h"
#include "cluster/cl_net.h"

static void check(int cond)
{
	if (!cond)
		abort();
}

static void check_name(const char *s)
{
	check(cl_name_valid(s));
}

static void check_accepted(const Ferry__Cluster__Request *r)
{
	const Ferry__Cluster__Vm *vm;

	switch (r->cmd_case) {
	case FERRY__CLUSTER__REQUEST__CMD_VM_CREATE:
		vm = r->vm_create;
		check_name(vm->name);
		check(vm->guest && *vm->guest && strlen(vm->guest) <= 4095);
		check(strlen(vm->args) <= 1023);
		check(vm->mem_bytes % (2u << 20) == 0);
		check(vm->mem_bytes >= (8u << 20) && vm->mem_bytes <= (128ull << 30));
		check(vm->vcpus >= 1 && vm->vcpus <= 32);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_VM_START:
		check_name(r->vm_start->name);
		check(!*r->vm_start->host || cl_name_valid(r->vm_start->host));
		break;
	case FERRY__CLUSTER__REQUEST__CMD_MIGRATE:
		check_name(r->migrate->vm);
		check_name(r->migrate->host);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_HOST_MODE:
		check_name(r->host_mode->host);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_REVOKE:
		check(strlen(r->revoke->serial) >= 1 &&
		      strlen(r->revoke->serial) <= 40);
		break;
	case FERRY__CLUSTER__REQUEST__CMD_CONFIG_SET:
		check(r->config_set->n_items >= 1 && r->config_set->n_items <= 16);
		for (size_t i = 0; i < r->config_set->n_items; i++)
			check_name(r->config_set->items[i]->key);
		break;
	case FERRY__CLUSTER__REQUEST__CMD__NOT_SET:
		abort();
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	Ferry__Cluster__Request *r;
	Ferry__Cluster__Request *copy;

	memset(err, 0, sizeof(err));
	r = cl_request_decode(data, size, err, sizeof(err));
	if (!r) {
		check(err[0] && strnlen(err, sizeof(err)) < sizeof(err));
		return 0;
	}
	check(!err[0]);
	check_accepted(r);
	/* What was accepted survives a round trip unchanged in meaning. */
	copy = CL_DUP(Ferry__Cluster__Request, r);
	check(copy && copy->cmd_case == r->cmd_case);
	CL_FREE(copy);
	CL_FREE(r);
	return 0;
}
