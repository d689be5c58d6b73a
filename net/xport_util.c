/*
 * Helpers shared by the transports: one-line errors, deadlines, socket
 * options, and keeping SIGPIPE away from the process.
 */
#include "net/xport_impl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

const struct xport_limits xport_limits = {
	.sockbuf_bytes = 4 << 20,
	.listen_backlog = 16,
	.handshake_ms = 30000,
	.tls_chunk_bytes = 256 << 10,
	.sendfile_max_bytes = 1 << 30,
};

void xport_errf(char *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err, XPORT_ERR_LEN, fmt, ap);
	va_end(ap);
	/* One line, always. */
	for (char *p = err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

const char *xport_strerror(int errnum, char *buf, size_t len)
{
	const char *s;

	switch (errnum) {
	case EPIPE:
		s = "connection closed by peer";
		break;
	case ETIMEDOUT:
		s = "timed out";
		break;
	case EAGAIN:
		s = "timed out";
		break;
	default:
		s = strerror_r(errnum, buf, len);
		break;
	}
	if (s != buf) {
		snprintf(buf, len, "%s", s);
		s = buf;
	}
	if (len && buf[0] && !(buf[1] && isupper((unsigned char)buf[1])))
		buf[0] = (char)tolower((unsigned char)buf[0]);
	return s;
}

int xport_fail(struct xport *x, int rc, const char *what)
{
	char eb[128];

	xport_strerror(-rc, eb, sizeof(eb));
	if (what)
		xport_errf(x->err, "%s %s: %s: %s", x->ops->name, x->peer, what,
			   eb);
	else
		xport_errf(x->err, "%s %s: %s", x->ops->name, x->peer, eb);
	return rc;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t xport_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return XPORT_NO_DEADLINE;
	return mono_ns() + (int64_t)timeout_ms * 1000000;
}

int xport_remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline == XPORT_NO_DEADLINE)
		return -1;
	left = deadline - mono_ns();
	if (left <= 0)
		return 0;
	/* Round up: never poll(0) while time is left. */
	left = (left + 999999) / 1000000;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

int xport_poll(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int ms = xport_remaining_ms(deadline);
		int n = poll(&p, 1, ms);

		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int xport_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

void xport_sock_tune(int fd)
{
	int one = 1;
	int sz = xport_limits.sockbuf_bytes;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/*
	 * Only the privileged *FORCE variants: a plain SO_SNDBUF is capped by
	 * net.core.[rw]mem_max (often 208 KiB) and would switch off the
	 * kernel's buffer autotuning, which does better than that.
	 */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
}

void xport_fmt_peer(char *out, size_t len, const char *host, unsigned port)
{
	if (strchr(host, ':'))
		snprintf(out, len, "[%s]:%u", host, port);
	else
		snprintf(out, len, "%s:%u", host, port);
}

void xport_sigpipe_block(struct xport_sigpipe *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

void xport_sigpipe_restore(struct xport_sigpipe *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1) {
		struct timespec zero = { 0, 0 };

		while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}
