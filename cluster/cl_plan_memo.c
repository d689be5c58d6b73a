/*
 * CPU compatibility answers kept across inputs (cl_plan_memo_*). Within
 * one input the planner asks cl_cpu_check once per (model, host feature
 * list); an agent or a simulator that plans every interval would ask the
 * same questions again each time, and cl_cpu_check is slow (it parses
 * model tables on every call). The answer depends on the model name, the
 * target's feature list and, for "host", the feature list of the host the
 * VM runs on, so that is the key, compared in full. The "cluster" model
 * also depends on every host's features and is never kept here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_plan_int.h"

struct memo_entry {
	uint64_t hash;
	char *key;
	bool ok;
};

struct cl_plan_memo {
	struct memo_entry *e;
	size_t n, cap;
};

struct cl_plan_memo *cl_plan_memo_new(void)
{
	return calloc(1, sizeof(struct cl_plan_memo));
}

void cl_plan_memo_free(struct cl_plan_memo *m)
{
	for (size_t i = 0; m && i < m->n; i++)
		free(m->e[i].key);
	if (m)
		free(m->e);
	free(m);
}

static size_t features_len(const Ferry__Cluster__Inventory *inv)
{
	size_t n = 1;

	for (size_t i = 0; inv && i < inv->n_cpu_features; i++)
		n += strlen(inv->cpu_features[i]) + 1;
	return n;
}

static char *features_put(char *p, const Ferry__Cluster__Inventory *inv)
{
	for (size_t i = 0; inv && i < inv->n_cpu_features; i++) {
		size_t l = strlen(inv->cpu_features[i]);

		memcpy(p, inv->cpu_features[i], l);
		p += l;
		*p++ = ',';
	}
	*p++ = '|';
	return p;
}

/* "model|source features|target features|"; NULL when not to be kept. */
static char *memo_key(const char *model, const Ferry__Cluster__Inventory *source,
		      const Ferry__Cluster__Inventory *target)
{
	size_t ml = strlen(model);
	char *key, *p;

	if (!strcmp(model, "cluster"))
		return NULL;
	key = malloc(ml + 1 + features_len(source) + features_len(target) + 1);
	if (!key)
		return NULL;
	memcpy(key, model, ml);
	p = key + ml;
	*p++ = '|';
	p = features_put(p, source);
	p = features_put(p, target);
	*p = '\0';
	return key;
}

static uint64_t key_hash(const char *k)
{
	uint64_t h = 1469598103934665603ull;

	for (; *k; k++)
		h = (h ^ (uint8_t)*k) * 1099511628211ull;
	return h;
}

int memo_answer(struct cl_plan_memo *m, const char *model,
		const Ferry__Cluster__Inventory *source, const Ferry__Cluster__Inventory *target,
		int (*ask)(void *), void *arg)
{
	char *key = m ? memo_key(model, source, target) : NULL;
	uint64_t h = key ? key_hash(key) : 0;
	int ok;

	for (size_t i = 0; key && i < m->n; i++) {
		if (m->e[i].hash == h && !strcmp(m->e[i].key, key)) {
			free(key);
			return m->e[i].ok;
		}
	}
	ok = ask(arg);
	if (key && m->n == m->cap) {
		size_t n = m->cap ? m->cap * 2 : 16;
		struct memo_entry *e = realloc(m->e, n * sizeof(*e));

		if (e) {
			m->e = e;
			m->cap = n;
		}
	}
	if (key && m->n < m->cap) {
		m->e[m->n++] = (struct memo_entry){ .hash = h, .key = key, .ok = ok };
		key = NULL;
	}
	free(key);
	return ok;
}
