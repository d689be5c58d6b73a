#include "core/ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

int ctl_send(int fd, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;
	uint32_t be;
	int ret;

	if (len > CTL_FRAME_MAX)
		return -EMSGSIZE;
	buf = malloc(len + 4);
	if (!buf)
		return -ENOMEM;
	be = htonl((uint32_t)len);
	memcpy(buf, &be, 4);
	protobuf_c_message_pack(msg, buf + 4);
	/* A client that hung up must not take the process with it. */
	ret = send_full(fd, buf, len + 4);
	free(buf);
	return ret;
}

int ctl_recv(int fd, uint8_t **buf, size_t *len)
{
	uint32_t be;
	size_t n;
	int ret;

	ret = read_full(fd, &be, sizeof(be));
	if (ret)
		return ret;
	n = ntohl(be);
	if (n > CTL_FRAME_MAX)
		return -EMSGSIZE;
	*buf = malloc(n ? n : 1);
	if (!*buf)
		return -ENOMEM;
	ret = read_full(fd, *buf, n);
	if (ret) {
		free(*buf);
		*buf = NULL;
		/* EOF inside a frame is a truncated message, not a clean end. */
		return ret == -EPIPE ? -EPROTO : ret;
	}
	*len = n;
	return 0;
}
