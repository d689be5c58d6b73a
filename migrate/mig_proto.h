/* Sending and receiving the live protocol's messages (HELLO, VERDICT, ...). */
#ifndef FERRY_MIG_PROTO_H
#define FERRY_MIG_PROTO_H

#include "migrate/mig_live.h"

/* A protocol message: a record frame around a protobuf message. */
int mig_send_msg(struct stream_writer *w, uint32_t type, const ProtobufCMessage *m);
/*
 * Receive the next frame, which must be one of the expected type (or ABORT,
 * whose reason then lands in err). *out is unpacked with desc.
 */
int mig_recv_msg(struct stream_reader *r, uint32_t expect,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
		 char *err);
/* Tell the peer why we stop, best effort. */
void mig_send_abort(struct stream_writer *w, const char *phase, const char *msg);

#endif
