/*
 * clusterctl's certificate commands (clusterctl.h): thin argument parsing
 * around cluster/cl_pki.c, which does the work and words the errors.
 */
#include "clusterctl.h"

#include <stdio.h>
#include <string.h>

#include "cluster/cl_pki.h"

#define CTL_DEFAULT_DIR "./ferry-ca"
#define CTL_DEFAULT_NAME "ferry"

/* "--opt VALUE" or "--opt=VALUE" at argv[*i]: the value, or NULL. */
static const char *ctl_opt(int argc, char **argv, int *i, const char *opt)
{
	size_t n = strlen(opt);

	if (strncmp(argv[*i], opt, n))
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] || *i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int ctl_usage(const char *what, const char *bad, const char *usage)
{
	fprintf(stderr, "clusterctl: %s: %s '%s'\nusage: clusterctl %s\n",
		what, bad[0] == '-' ? "unknown option or missing value" :
		"unexpected argument", bad, usage);
	return 2;
}

int clusterctl_cluster_init(int argc, char **argv)
{
	static const char usage[] = "cluster init [--dir DIR] [--name NAME]";
	const char *dir = CTL_DEFAULT_DIR, *name = CTL_DEFAULT_NAME, *v;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if ((v = ctl_opt(argc, argv, &i, "--dir")))
			dir = v;
		else if ((v = ctl_opt(argc, argv, &i, "--name")))
			name = v;
		else
			return ctl_usage("cluster init", argv[i], usage);
	}
	if (cl_pki_init(dir, name, err, sizeof(err))) {
		fprintf(stderr, "clusterctl: cluster init: %s\n", err);
		return 1;
	}
	printf("cluster %s: CA %s/ca.pem, %s/ca.key (keep it secret)\n", name,
	       dir, dir);
	printf("corosync key: %s/authkey\n", dir);
	printf("admin certificate: %s/admin/ (ca.pem cert.pem key.pem)\n", dir);
	return 0;
}

int clusterctl_node_add(int argc, char **argv)
{
	static const char usage[] = "node add NAME ADDRESS [--dir DIR]";
	const char *dir = CTL_DEFAULT_DIR, *pos[2] = { NULL, NULL }, *v;
	char err[512], path[4200], serial[80];
	int npos = 0;

	for (int i = 1; i < argc; i++) {
		if ((v = ctl_opt(argc, argv, &i, "--dir")))
			dir = v;
		else if (argv[i][0] != '-' && npos < 2)
			pos[npos++] = argv[i];
		else
			return ctl_usage("node add", argv[i], usage);
	}
	if (npos < 2) {
		fprintf(stderr, "clusterctl: node add: %s\nusage: clusterctl %s\n",
			npos ? "missing the node's ADDRESS" : "missing NAME and ADDRESS",
			usage);
		return 2;
	}
	if (cl_pki_issue_node(dir, pos[0], pos[1], err, sizeof(err))) {
		fprintf(stderr, "clusterctl: node add: %s\n", err);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/nodes/%s/cert.pem", dir, pos[0]);
	if (cl_pki_cert_serial(path, serial, sizeof(serial), err, sizeof(err)))
		snprintf(serial, sizeof(serial), "?");
	printf("node %s (%s): %s/nodes/%s/ (ca.pem cert.pem key.pem authkey), "
	       "serial %s\n", pos[0], pos[1], dir, pos[0], serial);
	return 0;
}
