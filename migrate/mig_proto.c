#include "migrate/mig_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int mig_send_msg(struct stream_writer *w, uint32_t type, const ProtobufCMessage *m)
{
	return stream_write_pb(w, type, m);
}

int mig_recv_msg(struct stream_reader *r, uint32_t expect,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
		 char *err)
{
	const void *body;
	uint64_t len;
	uint32_t type;
	int ret;

	*out = NULL;
	ret = stream_read_frame(r, &type, &body, &len);
	if (ret) {
		snprintf(err, MIG_ERR_LEN, "%s", ret == -EPIPE ?
			 "the peer closed the connection" : r->err);
		return ret;
	}
	if (type == STREAM_REC_ABORT) {
		ProtobufCMessage *m;

		if (!stream_pb_unpack(r, &ferry__mig__abort__descriptor, body, len, &m)) {
			Ferry__Mig__Abort *a = (Ferry__Mig__Abort *)m;

			snprintf(err, MIG_ERR_LEN, "the peer gave up in %.32s: %.400s",
				 a->phase, a->message);
			protobuf_c_message_free_unpacked(m, NULL);
		} else {
			snprintf(err, MIG_ERR_LEN, "the peer gave up");
		}
		return -ECONNABORTED;
	}
	if (type == STREAM_REC_ACK && expect != STREAM_REC_ACK) {
		/* A destination that failed a record says why in a refusing ACK. */
		ProtobufCMessage *m;

		if (!stream_pb_unpack(r, &ferry__mig__ack__descriptor, body, len, &m)) {
			Ferry__Mig__Ack *a = (Ferry__Mig__Ack *)m;

			snprintf(err, MIG_ERR_LEN, "the destination refused in %.32s: %.400s",
				 a->phase, a->message);
			protobuf_c_message_free_unpacked(m, NULL);
			return -EPROTO;
		}
	}
	if (type != expect) {
		snprintf(err, MIG_ERR_LEN, "expected %s, got %s", stream_type_name(expect),
			 stream_type_name(type) ? stream_type_name(type) : "an unknown message");
		return -EPROTO;
	}
	if (!desc)
		return 0;
	ret = stream_pb_unpack(r, desc, body, len, out);
	if (ret)
		snprintf(err, MIG_ERR_LEN, "%s", r->err);
	return ret;
}

void mig_send_abort(struct stream_writer *w, const char *phase, const char *msg)
{
	Ferry__Mig__Abort a = FERRY__MIG__ABORT__INIT;

	a.phase = (char *)phase;
	a.message = (char *)msg;
	stream_write_pb(w, STREAM_REC_ABORT, &a.base);
}
