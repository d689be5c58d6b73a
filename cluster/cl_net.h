/*
 * How clusterctl and the agents talk (docs/cluster.md): frames of a 4-byte
 * big-endian length and one message of cluster.proto, over a UNIX socket
 * (local root only) or mutual TLS 1.3 with certificates from the cluster's
 * CA (net/xport). A certificate whose serial the cluster revoked is
 * refused.
 */
#ifndef FERRY_CL_NET_H
#define FERRY_CL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cluster.pb-c.h"
#include "net/xport.h"

#define CL_FRAME_MAX (4u << 20)
#define CL_AGENT_PORT 7400
#define CL_CALL_TIMEOUT_MS 30000

/* Frames over a transport. recv: 0, -EPIPE on EOF before a frame,
 * -EMSGSIZE over CL_FRAME_MAX, -errno; buf is malloc'ed. */
int cl_frame_send(struct xport *x, const ProtobufCMessage *m);
int cl_frame_recv(struct xport *x, uint8_t **buf, size_t *len);

/*
 * Decode and check a request: exactly one command set, names that are
 * valid (cl_name_valid), sizes within bounds. NULL with a one-line reason
 * in err on anything else. This is what the fuzzer exercises.
 */
Ferry__Cluster__Request *cl_request_decode(const uint8_t *buf, size_t len,
					   char *err, size_t err_len);
/* VM and host names: 1..63 of [A-Za-z0-9_.-], not starting with '-' or '.'. */
bool cl_name_valid(const char *name);

/* Who sent a request. */
struct cl_peer {
	bool tls;
	char name[256];    /* certificate CN, or "uid N" on the UNIX socket */
	char serial[80];   /* certificate serial, lower-case hex ("" for UNIX) */
	uid_t uid;
};

/*
 * The handler answers one request with a malloc'ed, heap-owned response
 * (cl_msg.h), which the server sends and frees. It runs on the
 * connection's thread and may block (a proposal waits for its commit).
 */
typedef Ferry__Cluster__Response *(*cl_handler_fn)(void *opaque,
		const Ferry__Cluster__Request *req, const struct cl_peer *peer);

struct cl_server_cfg {
	const char *unix_path;              /* NULL: none */
	const struct xport_addr *tls_addr;  /* NULL: none */
	const struct xport_tls *tls;
	cl_handler_fn handler;
	/* Whether a certificate serial is revoked (checked at every accept). */
	bool (*revoked)(void *opaque, const char *serial);
	void *opaque;
};

struct cl_server;
int cl_server_start(const struct cl_server_cfg *cfg, struct cl_server **out,
		    char *err, size_t err_len);
uint16_t cl_server_tls_port(const struct cl_server *s);
void cl_server_stop(struct cl_server *s);

/* Client side: connect by UNIX path or by TLS, then call. */
int cl_connect_unix(const char *path, struct xport **out, char *err, size_t err_len);
int cl_connect_tls(const struct xport_addr *addr, const struct xport_tls *tls,
		   int timeout_ms, struct xport **out, char *err, size_t err_len);
int cl_call(struct xport *x, const Ferry__Cluster__Request *req, int timeout_ms,
	    Ferry__Cluster__Response **resp, char *err, size_t err_len);

#endif
