/*
 * clusterctl's commands, one function per command group, each taking the
 * arguments after the group's name (argv[0] is the command: "init",
 * "add") and returning the exit status: 0 done, 1 failed, 2 bad usage.
 * Errors go to stderr as "clusterctl: GROUP COMMAND: cause".
 */
#ifndef FERRY_CLUSTERCTL_H
#define FERRY_CLUSTERCTL_H

/* cluster init [--dir DIR] [--name NAME]: a new CA dir (cl_pki_init). */
int clusterctl_cluster_init(int argc, char **argv);
/* node add NAME ADDRESS [--dir DIR]: a node's certificate. */
int clusterctl_node_add(int argc, char **argv);

#endif
