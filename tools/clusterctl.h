/*
 * clusterctl's commands, one function per command group, each taking the
 * arguments after the group's name (argv[0] is the command: "init",
 * "add") and returning the exit status: 0 done, 1 failed, 2 bad usage.
 * Errors go to stderr as "clusterctl: GROUP COMMAND: cause".
 *
 * The groups that talk to an agent take the connection too; what their
 * files share (clusterctl.c, clusterctl_print.c, clusterctl_follow.c) is
 * below the certificate commands.
 */
#ifndef FERRY_CLUSTERCTL_H
#define FERRY_CLUSTERCTL_H

#include <stdbool.h>

#include "cluster/cl_msg.h"

/* cluster init [--dir DIR] [--name NAME]: a new CA dir (cl_pki_init). */
int clusterctl_cluster_init(int argc, char **argv);
/* node add NAME ADDRESS [--dir DIR]: a node's certificate. */
int clusterctl_node_add(int argc, char **argv);

struct xport;

/* Where to reach an agent, and the connection once made. */
struct clusterctl {
	const char *socket;
	const char *connect;
	const char *tls_dir;
	bool json;
	struct xport *x;
};

#define CLUSTERCTL_REQ(field, kase, val) do {                          \
	req.cmd_case = FERRY__CLUSTER__REQUEST__CMD_##kase;            \
	req.field = (val);                                             \
} while (0)

__attribute__((format(printf, 1, 2)))
int clusterctl_die_usage(const char *fmt, ...);
Ferry__Cluster__Response *clusterctl_call(struct clusterctl *c,
					  const Ferry__Cluster__Request *req, int *status);
int clusterctl_finish(struct clusterctl *c, Ferry__Cluster__Response *r,
		      void (*text)(const Ferry__Cluster__Response *));
int clusterctl_simple(struct clusterctl *c, Ferry__Cluster__Request *req,
		      void (*text)(const Ferry__Cluster__Response *));

/* The answers as text (without -o json): clusterctl_print.c. */
void clusterctl_print_hosts(const Ferry__Cluster__Response *r);
void clusterctl_print_vms(const Ferry__Cluster__Response *r);
void clusterctl_print_status(const Ferry__Cluster__Response *r);
void clusterctl_print_host(const Ferry__Cluster__Response *r);
void clusterctl_print_vm(const Ferry__Cluster__Response *r);
void clusterctl_print_nothing(const Ferry__Cluster__Response *r);
void clusterctl_print_message(const Ferry__Cluster__Response *r);
void clusterctl_print_baseline(const Ferry__Cluster__Response *r);
void clusterctl_print_plan(const Ferry__Cluster__Response *r);
void clusterctl_print_rules(const Ferry__Cluster__Response *r);
void clusterctl_print_events(const Ferry__Cluster__Response *r);
void clusterctl_print_settings(const Ferry__Cluster__Response *r);
void clusterctl_print_setting_keys(void);
void clusterctl_print_settings_json(const Ferry__Cluster__State *st);

/* migrate VM HOST [OPTIONS] (argv[0] is "migrate"): clusterctl_follow.c. */
int clusterctl_migrate(struct clusterctl *c, int argc, char **argv);
int clusterctl_migrate_cancel(struct clusterctl *c, int argc, char **argv);
int clusterctl_migrate_set(struct clusterctl *c, int argc, char **argv);
/* host maintenance HOST enter|exit, followed until HOST is empty or stuck. */
int clusterctl_maintenance(struct clusterctl *c, const char *host, bool enter, bool force_stop,
			   bool wait);

#endif
