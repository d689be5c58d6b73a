#include "core/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_call(const char *path, const Ferry__Ctl__Request *req, int timeout_ms,
	     Ferry__Ctl__Response **resp, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = {
		.tv_sec = (timeout_ms > 0 ? timeout_ms : CTL_TIMEOUT_MS) / 1000,
		.tv_usec = ((timeout_ms > 0 ? timeout_ms : CTL_TIMEOUT_MS) % 1000) * 1000,
	};
	uint8_t *buf = NULL;
	size_t len;
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "%s: socket path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, err_len, "socket: %s", strerror(errno));
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		snprintf(err, err_len, "%s: %s%s", path, strerror(errno),
			 errno == ECONNREFUSED || errno == ENOENT ?
			 " (is vmon running with --control here?)" : "");
		goto out;
	}
	ret = ctl_send(fd, &req->base);
	if (ret) {
		snprintf(err, err_len, "%s: send: %s", path, strerror(-ret));
		goto out;
	}
	ret = ctl_recv(fd, &buf, &len);
	if (ret) {
		snprintf(err, err_len, "%s: no answer: %s", path,
			 ret == -EPIPE ? "monitor closed the connection" : strerror(-ret));
		goto out;
	}
	*resp = ferry__ctl__response__unpack(NULL, len, buf);
	if (!*resp) {
		ret = -EBADMSG;
		snprintf(err, err_len, "%s: malformed answer", path);
	}
out:
	free(buf);
	close(fd);
	return ret;
}
