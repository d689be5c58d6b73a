/*
 * The cluster's certificates (OpenSSL): one CA per cluster, a certificate
 * per node and one for the operator. Directory layout of a CA dir:
 *   ca.pem ca.key          the cluster CA (EC P-256, 10 years)
 *   authkey                corosync's knet key (random, 256 bytes)
 *   cluster.name           the cluster's name
 *   admin/                 ca.pem cert.pem key.pem for clusterctl
 *   nodes/NAME/            ca.pem cert.pem key.pem authkey for node NAME
 * Every cert dir holds what net/xport's xport_tls_from_dir() reads.
 * Serials are 128 random bits: unique without a counter to keep.
 */
#ifndef FERRY_CL_PKI_H
#define FERRY_CL_PKI_H

#include <stddef.h>

/* Create a CA dir; refuses (-EEXIST) to overwrite an existing CA. */
int cl_pki_init(const char *dir, const char *cluster_name, char *err, size_t err_len);
/*
 * Issue a node certificate: CN=NAME, SAN DNS:NAME and IP:ADDRESS, signed
 * by the CA in dir, into dir/nodes/NAME (refuses -EEXIST when present).
 */
int cl_pki_issue_node(const char *dir, const char *name, const char *address,
		      char *err, size_t err_len);
/* The serial of the certificate in a PEM file, lower-case hex. */
int cl_pki_cert_serial(const char *pem_path, char *serial, size_t len,
		       char *err, size_t err_len);

#endif
