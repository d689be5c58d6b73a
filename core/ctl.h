/*
 * vmon's control socket (core/ctl.proto): a UNIX stream socket, frames of a
 * 4-byte big-endian length and one protobuf-c message.
 */
#ifndef FERRY_CTL_H
#define FERRY_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl.pb-c.h"

#define CTL_FRAME_MAX (1u << 20)
#define CTL_TIMEOUT_MS 10000

/* Send one message as a frame; 0 or -errno. */
int ctl_send(int fd, const ProtobufCMessage *msg);
/*
 * Receive one frame into a malloc'ed buffer. 0, -EPIPE on a clean EOF
 * before the frame, -EMSGSIZE for a frame over CTL_FRAME_MAX, -errno.
 */
int ctl_recv(int fd, uint8_t **buf, size_t *len);

struct vm;
struct dirty_rate;
struct ctl_server;

/*
 * Requests that need more than core/ (save, migrate) are handled by an
 * extension the program registers; core stays free of the layers above it.
 * The handler fills resp; what resp points to must stay valid until the
 * next call on the same thread.
 */
struct ctl_ext {
	void *opaque;
	bool (*handle)(void *opaque, struct vm *vm, const Ferry__Ctl__Request *req,
		       Ferry__Ctl__Response *resp);
};

/* Serve requests for vm on path until ctl_server_stop. ext may be NULL. */
int ctl_server_start(struct ctl_server **out, const char *path, struct vm *vm,
		     struct dirty_rate *rate, const struct ctl_ext *ext);
void ctl_server_stop(struct ctl_server *s);
/* Handle one decoded request (exposed for tests and the fuzzer). */
void ctl_handle(struct vm *vm, struct dirty_rate *rate, const struct ctl_ext *ext,
		const Ferry__Ctl__Request *req, Ferry__Ctl__Response *resp);

/*
 * Client: connect to path, send req, return the unpacked response (free it
 * with ferry__ctl__response__free_unpacked). 0 or -errno with a reason.
 */
int ctl_call(const char *path, const Ferry__Ctl__Request *req, int timeout_ms,
	     Ferry__Ctl__Response **resp, char *err, size_t err_len);

/* Print a response for a human, or as one JSON object. */
void ctl_print(FILE *f, const char *cmd, const Ferry__Ctl__Response *resp, bool json);

#endif
