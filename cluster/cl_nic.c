/* A VM's NICs in the cluster: specs as the state keeps them, bridges of hosts. */
#include "cl_nic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_msg.h"
#include "core/log.h"
#include "net/nic.h"

/* Which NIC of which VM has mac, or NULL (except: the VM being created). */
static const Ferry__Cluster__Vm *mac_owner(const Ferry__Cluster__State *st, const uint8_t mac[6],
					   const char *except, size_t *nic)
{
	for (size_t v = 0; v < st->n_vms; v++) {
		const Ferry__Cluster__Vm *vm = st->vms[v];

		if (!strcmp(vm->name, except))
			continue;
		for (size_t i = 0; i < vm->n_nets; i++) {
			struct nic_spec sp;
			char why[NIC_ERR_LEN];

			if (!nic_spec_parse(vm->nets[i], &sp, why, sizeof(why)) && sp.mac_set &&
			    !memcmp(sp.mac, mac, 6)) {
				*nic = i;
				return vm;
			}
		}
	}
	return NULL;
}

int cl_nic_normalize(const Ferry__Cluster__State *st, Ferry__Cluster__Vm *vm, char *err,
		     size_t err_len)
{
	struct nic_spec sp[GABI_NET_MAX_NICS];
	char why[NIC_ERR_LEN], mac[18];

	if (vm->n_nets > GABI_NET_MAX_NICS) {
		snprintf(err, err_len, "at most %u NICs", GABI_NET_MAX_NICS);
		return -EINVAL;
	}
	for (size_t i = 0; i < vm->n_nets; i++) {
		const Ferry__Cluster__Vm *other;
		size_t on;

		if (nic_spec_parse(vm->nets[i], &sp[i], why, sizeof(why))) {
			snprintf(err, err_len, "net%zu: %s", i, why);
			return -EINVAL;
		}
		if (!sp[i].mac_set)
			nic_mac_derive(vm->name, (unsigned)i, sp[i].mac);
		sp[i].mac_set = 1;
		nic_mac_format(sp[i].mac, mac);
		for (size_t j = 0; j < i; j++)
			if (!memcmp(sp[j].mac, sp[i].mac, 6)) {
				snprintf(err, err_len, "net%zu: MAC %s is net%zu's too", i, mac, j);
				return -EINVAL;
			}
		other = mac_owner(st, sp[i].mac, vm->name, &on);
		if (other) {
			snprintf(err, err_len, "net%zu: MAC %s is taken by %s's net%zu%s", i, mac,
				 other->name, on, strstr(vm->nets[i], "mac=") ? "" :
				 " (derived from the name: give one with mac=)");
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < vm->n_nets; i++) {
		char spec[NIC_SPEC_MAX];

		nic_spec_format(&sp[i], spec, sizeof(spec));
		cl_str_set(&vm->nets[i], spec);
	}
	return 0;
}

int cl_nic_missing_bridge(const Ferry__Cluster__Vm *vm, const Ferry__Cluster__Host *h,
			  char *bridge)
{
	const Ferry__Cluster__Inventory *inv = h->inventory;

	for (size_t i = 0; i < vm->n_nets; i++) {
		struct nic_spec sp;
		char why[NIC_ERR_LEN];
		bool found = false;

		if (nic_spec_parse(vm->nets[i], &sp, why, sizeof(why)))
			snprintf(sp.bridge, sizeof(sp.bridge), "?");
		for (size_t b = 0; inv && b < inv->n_bridges && !found; b++)
			found = !strcmp(inv->bridges[b], sp.bridge);
		if (!found) {
			snprintf(bridge, IFNAMSIZ, "%s", sp.bridge);
			return (int)i;
		}
	}
	return -1;
}

#define CL_BRIDGES_MAX 64

bool cl_nic_bridges_refresh(Ferry__Cluster__Inventory *inv)
{
	char (*names)[IFNAMSIZ] = malloc(CL_BRIDGES_MAX * IFNAMSIZ);
	char err[NIC_ERR_LEN], **v;
	unsigned n;
	bool same;

	if (!names)
		return false;
	if (nic_bridges_list(names, CL_BRIDGES_MAX, &n, err, sizeof(err))) {
		log_warn("inventory: cannot list bridges: %s", err);
		free(names);
		return false;
	}
	same = n == inv->n_bridges;
	for (unsigned i = 0; same && i < n; i++)
		same = !strcmp(names[i], inv->bridges[i]);
	v = same ? NULL : calloc(n ? n : 1, sizeof(*v));
	for (unsigned i = 0; v && i < n; i++)
		if (!(v[i] = strdup(names[i]))) {
			while (i--)
				free(v[i]);
			free(v);
			v = NULL;
		}
	free(names);
	if (!v)
		return false;
	for (size_t i = 0; i < inv->n_bridges; i++)
		free(inv->bridges[i]);
	free(inv->bridges);
	inv->bridges = v;
	inv->n_bridges = n;
	return true;
}
