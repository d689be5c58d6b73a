/*
 * CPU compatibility (cl_cpu.h). Feature sets are one flag per entry of
 * core/cpumodel's feature table, so every list built from them comes out in
 * table order, the order users see missing features in.
 *
 * A VM whose cpu_model is "" is treated as "host": that is what vmon runs
 * when no --cpu-model is given.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_cpu.h"
#include "core/cpumodel.h"

struct fset {
	bool *has;
	size_t n;
};

static int fset_init(struct fset *s, bool value)
{
	cpu_features(&s->n);
	s->has = malloc(s->n ? s->n : 1);
	if (!s->has)
		return -ENOMEM;
	memset(s->has, value, s->n);
	return 0;
}

/* The features an inventory lists; names this node does not know are skipped. */
static void fset_and_inventory(struct fset *s, const Ferry__Cluster__Inventory *inv)
{
	size_t count;
	const struct cpu_feature *table = cpu_features(&count);
	bool *inv_has = calloc(s->n ? s->n : 1, 1);

	if (!inv_has) {
		memset(s->has, 0, s->n);   /* claim nothing rather than too much */
		return;
	}
	for (size_t i = 0; inv && i < inv->n_cpu_features; i++) {
		const struct cpu_feature *f = cpu_feature_find(inv->cpu_features[i]);

		if (f)
			inv_has[f - table] = true;
	}
	for (size_t i = 0; i < s->n; i++)
		s->has[i] = s->has[i] && inv_has[i];
	free(inv_has);
}

/* What host offers; one that has not reported its inventory offers nothing. */
static int fset_host(struct fset *s, const Ferry__Cluster__Host *host)
{
	int rc = fset_init(s, true);

	if (!rc)
		fset_and_inventory(s, host->inventory);
	return rc;
}

static int fset_baseline(const Ferry__Cluster__State *st, struct fset *s)
{
	bool any = false;
	int rc = fset_init(s, true);

	if (rc)
		return rc;
	for (size_t i = 0; st && i < st->n_hosts; i++) {
		/* A witness has no KVM, hence no features, and runs nothing. */
		if (!st->hosts[i]->inventory || st->hosts[i]->witness)
			continue;
		fset_and_inventory(s, st->hosts[i]->inventory);
		any = true;
	}
	/* No host has reported yet: no feature is known to be shared. */
	if (!any)
		memset(s->has, 0, s->n);
	return 0;
}

static const Ferry__Cluster__Host *host_find(const Ferry__Cluster__State *st, const char *name)
{
	for (size_t i = 0; st && name && *name && i < st->n_hosts; i++) {
		if (!strcmp(st->hosts[i]->name, name))
			return st->hosts[i];
	}
	return NULL;
}

static const char *vm_model(const Ferry__Cluster__Vm *vm)
{
	return vm->cpu_model && *vm->cpu_model ? vm->cpu_model : "host";
}

static bool is_cluster_model(const char *name)
{
	return !strcmp(name, CL_CPU_MODEL_CLUSTER);
}

/* The core model behind name, NULL for "cluster" and for unknown names. */
static const struct cpumodel *core_model(const char *name, char *err, size_t err_len)
{
	const struct cpumodel *m = is_cluster_model(name) ? NULL : cpumodel_find(name);

	if (!m && !is_cluster_model(name) && err && err_len)
		snprintf(err, err_len, "unknown CPU model '%s' (known: %s, %s)", name,
			 cpumodel_list(), CL_CPU_MODEL_CLUSTER);
	return m;
}

static bool is_host_model(const struct cpumodel *m)
{
	return m && !strcmp(cpumodel_name(m), "host");
}

/* The features vm's model needs, as a set. */
static int fset_model(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		      struct fset *s, char *err, size_t err_len)
{
	const char *name = vm_model(vm);
	const struct cpumodel *m = core_model(name, err, err_len);
	const struct cpu_feature *table;
	const Ferry__Cluster__Host *h;
	int rc;

	if (is_cluster_model(name))
		return fset_baseline(st, s);
	if (!m)
		return -ENOENT;
	/* "host" needs what its current host has; unplaced, nothing. */
	h = is_host_model(m) ? host_find(st, vm->host) : NULL;
	if (h)
		return fset_host(s, h);
	rc = fset_init(s, false);
	if (rc || is_host_model(m))
		return rc;
	table = cpu_features(NULL);
	for (size_t i = 0; i < s->n; i++)
		s->has[i] = cpumodel_requires(m, &table[i]);
	return 0;
}

/* The names of the features in s; s itself is released. */
static int fset_to_names(struct fset *s, const char ***names, size_t *n)
{
	const struct cpu_feature *table = cpu_features(NULL);
	const char **v = malloc((s->n ? s->n : 1) * sizeof(*v));
	size_t k = 0;

	for (size_t i = 0; v && i < s->n; i++) {
		if (s->has[i])
			v[k++] = table[i].name;
	}
	free(s->has);
	if (!v)
		return -ENOMEM;
	*names = v;
	*n = k;
	return 0;
}

/*
 * Join the names of the features in want but not in have (have NULL: all of
 * want) with sep. Whole names only: -ENOSPC when they do not fit, since a
 * cut list would say less than the truth.
 */
static int fset_join(const struct fset *want, const struct fset *have, const char *sep,
		     char *buf, size_t len)
{
	const struct cpu_feature *table = cpu_features(NULL);
	size_t used = 0;
	int w;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	for (size_t i = 0; i < want->n; i++) {
		if (!want->has[i] || (have && have->has[i]))
			continue;
		w = snprintf(buf + used, len - used, "%s%s", used ? sep : "", table[i].name);
		if (w < 0 || (size_t)w >= len - used) {
			buf[used] = '\0';
			return -ENOSPC;
		}
		used += (size_t)w;
	}
	return 0;
}

/* Too many to list: whole names, then a sign that the list goes on. */
static void missing_cut(char *missing, size_t len)
{
	size_t used = strlen(missing);
	char *comma;

	while (used + sizeof(", ...") > len && (comma = strrchr(missing, ','))) {
		*comma = '\0';
		used = (size_t)(comma - missing);
	}
	if (used + sizeof(", ...") <= len)
		strcpy(missing + used, ", ...");
}

int cl_cpu_baseline(const Ferry__Cluster__State *st, const char ***names, size_t *n)
{
	struct fset s;
	int rc = fset_baseline(st, &s);

	return rc ? rc : fset_to_names(&s, names, n);
}

int cl_cpu_model_features(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
			  const char ***names, size_t *n, char *err, size_t err_len)
{
	struct fset s;
	int rc = fset_model(st, vm, &s, err, err_len);

	return rc ? rc : fset_to_names(&s, names, n);
}

int cl_cpu_check(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		 const Ferry__Cluster__Host *host, char *missing, size_t len)
{
	struct fset want = { 0 }, have = { 0 };
	bool lacks = false;
	int rc;

	if (missing && len)
		missing[0] = '\0';
	rc = fset_model(st, vm, &want, missing, len);
	if (rc)
		goto out;
	rc = fset_host(&have, host);
	if (rc)
		goto out;
	for (size_t i = 0; i < want.n; i++)
		lacks = lacks || (want.has[i] && !have.has[i]);
	if (!lacks)
		goto out;
	rc = -ENOTSUP;
	if (missing && len && fset_join(&want, &have, ", ", missing, len) == -ENOSPC)
		missing_cut(missing, len);
out:
	free(want.has);
	free(have.has);
	return rc;
}

int cl_cpu_vmon_args(const Ferry__Cluster__State *st, const Ferry__Cluster__Vm *vm,
		     const Ferry__Cluster__Host *host, char *model, size_t model_len,
		     char *hide, size_t hide_len)
{
	const char *name = vm_model(vm);
	const struct cpumodel *m = core_model(name, NULL, 0);
	struct fset base = { 0 }, have = { 0 };
	int rc = 0;

	if (hide_len)
		hide[0] = '\0';
	if (!m && !is_cluster_model(name))
		return -ENOENT;
	/* "cluster" is the host model with everything outside the baseline hidden. */
	if ((size_t)snprintf(model, model_len, "%s", m ? cpumodel_name(m) : "host") >= model_len)
		return -ENOSPC;
	if (m)
		return 0;
	rc = fset_baseline(st, &base);
	if (rc)
		goto out;
	rc = fset_host(&have, host);
	if (rc)
		goto out;
	rc = fset_join(&have, &base, ",", hide, hide_len);
out:
	free(base.has);
	free(have.has);
	return rc;
}
