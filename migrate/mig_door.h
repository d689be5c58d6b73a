/*
 * The front door of an incoming migration: the wait for a source's HELLO.
 *
 * Until its HELLO, a connection is nobody's migration. A port scan, a load
 * balancer's health check, a peer with another CA's certificate or the
 * wrong transport, or one that connects and says nothing is dropped with a
 * line in the log, and the wait goes on. Connections are taken side by
 * side (up to MIG_DOOR_SLOTS at once, one at a time on an RDMA listener),
 * so a peer that stalls its TLS handshake or its first bytes does not keep
 * the source that is expected waiting behind it. The first connection
 * whose HELLO arrives whole is the migration; every other one still in
 * progress is ended before mig_door_wait returns, so the listener is the
 * caller's alone again (the data connections join on it).
 */
#ifndef FERRY_MIG_DOOR_H
#define FERRY_MIG_DOOR_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/mig_state.h"
#include "migrate/stream.h"
#include "net/xport.h"
#include "stream.pb-c.h"

#define MIG_DOOR_SLOTS 16

/* Connections dropped before a HELLO, over every wait of one listener. */
struct mig_door_drops {
	unsigned n;
	char last[MIG_ERR_LEN];   /* why the last one was dropped */
};

/* The connection that said HELLO: the caller owns all three. */
struct mig_door_guest {
	struct xport *x;
	struct stream_reader hr;  /* read the preamble and the HELLO; point hr.io at x anew */
	Ferry__Mig__Hello *hello;
};

/*
 * Wait until deadline_ns (CLOCK_MONOTONIC; 0: for ever) for a HELLO on l;
 * a connection that sends nothing for first_bytes_ms is dropped.
 * 0 with *g filled; -ETIMEDOUT; or the listener's -errno with the cause
 * in err.
 */
int mig_door_wait(struct xport_listener *l, uint64_t deadline_ns, int first_bytes_ms,
		  struct mig_door_drops *drops, struct mig_door_guest *g, char *err, size_t err_len);

#endif
