/*
 * The hard placement rules for one VM on one host, outside any plan: the
 * state machine asks before it lets an operator's `vm start --host` or
 * `migrate` through, so a rule holds whoever moves the VM.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cl_plan_int.h"

const char *cl_rule_kind_name(Ferry__Cluster__RuleKind kind)
{
	static const char *const names[] = {
		[FERRY__CLUSTER__RULE_KIND__RULE_KIND_AFFINITY] = "affinity",
		[FERRY__CLUSTER__RULE_KIND__RULE_KIND_ANTI_AFFINITY] = "anti-affinity",
		[FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST] = "host-must",
		[FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_MUST_NOT] = "host-must-not",
		[FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD] = "host-should",
		[FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD_NOT] = "host-should-not",
	};

	return (unsigned)kind < sizeof(names) / sizeof(names[0]) && names[kind] ?
	       names[kind] : "unknown";
}

int cl_rule_kind_parse(const char *s, Ferry__Cluster__RuleKind *out)
{
	for (int k = 0; k <= FERRY__CLUSTER__RULE_KIND__RULE_KIND_HOST_SHOULD_NOT; k++)
		if (!strcmp(s, cl_rule_kind_name(k))) {
			*out = k;
			return 0;
		}
	return -EINVAL;
}

static int index_of(const char *const *names, size_t stride, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(*(const char *const *)((const char *)names + i * stride), name))
			return (int)i;
	return -1;
}

int cl_plan_rules_allow(const Ferry__Cluster__State *st, const char *vm, const char *host,
			char *why, size_t why_len)
{
	struct cl_plan_input *in = NULL;
	struct plan_work w;
	int v, h, ret;
	size_t r;

	if (!st->n_rules)
		return 0;
	ret = cl_plan_input_build(&in, st, NULL, 0, 0, NULL, why, why_len);
	if (ret)
		return ret;
	if (!in->n_vms || !in->n_hosts) {
		cl_plan_input_free(in);
		return 0;
	}
	v = index_of(&in->vms[0].name, sizeof(in->vms[0]), in->n_vms, vm);
	h = index_of(&in->hosts[0].name, sizeof(in->hosts[0]), in->n_hosts, host);
	if (v < 0 || h < 0) {
		cl_plan_input_free(in);
		return 0;   /* the state machine names unknown VMs and hosts itself */
	}
	ret = work_init(&w, in);
	if (ret) {
		cl_plan_input_free(in);
		return ret;
	}
	r = work_rules_block(&w, v, h, -1);
	if (r) {
		const struct cl_plan_rule *rule = &in->rules[r - 1];

		snprintf(why, why_len, "rule %s (%s) keeps it off %s", rule->name,
			 cl_rule_kind_name(rule->kind), host);
		ret = -EPERM;
	}
	work_free(&w);
	cl_plan_input_free(in);
	return ret;
}
