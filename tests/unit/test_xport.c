/*
 * Transports over loopback with real sockets: address parsing, the TLS
 * directory layout, TCP data paths (sendv, send_file from a memfd, recv),
 * end of stream, refusals and timeouts, and TLS 1.3 with mutual
 * authentication and its refusals: a certificate from another CA, no
 * certificate, the wrong peer name, a key that does not match. A server
 * thread accepts; the main thread connects. The TLS tests make their own
 * CA with tools/mkcerts.sh and are skipped without the openssl CLI.
 *
 * The RDMA tests run the same data paths over rdma: where this host has an
 * RDMA device with an IPv4 address (FERRY_RDMA_ADDR, or the first found in
 * /sys/class/infiniband; tools/rdma-lab makes a soft-RoCE one), and are
 * skipped, saying so, where it has none. What needs no device (refusals,
 * the error on a host without one) runs everywhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/xport.h"
#include "core/util.h"

#ifndef FERRY_SRC_DIR
#error "FERRY_SRC_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

#define MiB (1024u * 1024u)

/* Where the data-path tests connect: loopback TCP, or an RDMA device's address. */
static struct {
	const char *scheme;     /* "tcp" or "rdma" */
	char host[64];
	enum xport_kind kind;
} via = { "tcp", "127.0.0.1", XPORT_TCP };

static char tmpdir[64];
static bool have_certs;

/* ---- helpers ---- */

static uint8_t pattern_byte(uint64_t i, uint8_t seed)
{
	return (uint8_t)(((i * 2654435761u) >> 13) ^ (i >> 12) ^ seed);
}

static void fill(uint8_t *p, size_t len, uint64_t base, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern_byte(base + i, seed);
}

static bool check(const uint8_t *p, size_t len, uint64_t base, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern_byte(base + i, seed))
			return false;
	return true;
}

/* A memfd of len bytes holding the pattern. */
static int pattern_memfd(size_t len, uint8_t seed)
{
	int fd = memfd_create("xport-test", MFD_CLOEXEC);
	uint8_t *p;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	fill(p, len, 0, seed);
	munmap(p, len);
	return fd;
}

static void tls_node(struct xport_tls *t, const char *ca, const char *node)
{
	char dir[256], err[XPORT_ERR_LEN];

	snprintf(dir, sizeof(dir), "%s/%s/%s", tmpdir, ca, node);
	assert_int_equal(xport_tls_from_dir(dir, t, err), 0);
}

/* ---- the server thread ---- */

struct server;
typedef int (*serve_fn)(struct server *s, struct xport *x);

struct server {
	struct xport_listener *l;
	serve_fn fn;
	pthread_t th;
	int accept_timeout_ms;
	int accept_rc;
	int fn_rc;
	bool peer_failed;         /* xport_accept_failed_peer named one */
	char err[XPORT_ERR_LEN];
	uint64_t arg;             /* test-specific */
	double secs;              /* test-specific */
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	struct xport *x = NULL;

	s->accept_rc = xport_accept(s->l, s->accept_timeout_ms, &x, s->err);
	s->peer_failed = s->accept_rc && xport_accept_failed_peer(s->l);
	if (s->accept_rc == 0) {
		s->fn_rc = s->fn ? s->fn(s, x) : 0;
		if (s->fn_rc && !s->err[0])
			snprintf(s->err, sizeof(s->err), "%s", x->err);
		xport_close(x);
	}
	return NULL;
}

static void server_start_ms(struct server *s, const struct xport_tls *tls,
			    serve_fn fn, int accept_timeout_ms)
{
	struct xport_addr a;
	char err[XPORT_ERR_LEN];

	memset(s, 0, sizeof(*s));
	s->fn = fn;
	s->accept_timeout_ms = accept_timeout_ms;
	char uri[96];

	snprintf(uri, sizeof(uri), "%s:%s:0", via.scheme, via.host);
	assert_int_equal(xport_addr_parse(uri, &a, err), 0);
	if (xport_listen(&a, tls, &s->l, err))
		fail_msg("listen %s: %s", uri, err);
	assert_true(xport_listener_port(s->l) > 0);
	assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_start(struct server *s, const struct xport_tls *tls,
			 serve_fn fn)
{
	server_start_ms(s, tls, fn, 10000);
}

static void server_join(struct server *s)
{
	pthread_join(s->th, NULL);
	xport_listener_close(s->l);
	s->l = NULL;
}

static int client_connect(struct server *s, const struct xport_tls *tls,
			  struct xport **x, char *err)
{
	struct xport_addr a = { .kind = via.kind };

	snprintf(a.host, sizeof(a.host), "%s", via.host);
	a.port = xport_listener_port(s->l);
	return xport_connect(&a, tls, 5000, x, err);
}

/* ---- server behaviours ---- */

/* Echo: u32 length, then that many bytes, sent back reversed in order. */
static int serve_echo(struct server *s, struct xport *x)
{
	for (;;) {
		uint32_t len;
		uint8_t *buf;
		int ret = xport_recv(x, &len, sizeof(len));

		if (ret == -EPIPE)
			return 0;
		if (ret)
			return ret;
		buf = malloc(len ? len : 1);
		if (!buf)
			return -ENOMEM;
		ret = xport_recv(x, buf, len);
		for (uint32_t i = 0; !ret && i < len / 2; i++) {
			uint8_t t = buf[i];

			buf[i] = buf[len - 1 - i];
			buf[len - 1 - i] = t;
		}
		if (!ret)
			ret = xport_send(x, &len, sizeof(len));
		if (!ret)
			ret = xport_send(x, buf, len);
		free(buf);
		if (ret)
			return ret;
	}
}

/* Receive u64 length and u8 seed, then the pattern; answer 1 if it held. */
static int serve_verify(struct server *s, struct xport *x)
{
	struct { uint64_t len; uint64_t seed; } h;
	size_t chunk = 1 * MiB;
	uint8_t *buf = malloc(chunk), ok = 1;
	int ret = buf ? xport_recv(x, &h, sizeof(h)) : -ENOMEM;

	for (uint64_t off = 0; !ret && off < h.len; off += chunk) {
		size_t n = h.len - off < chunk ? h.len - off : chunk;

		ret = xport_recv(x, buf, n);
		if (!ret && !check(buf, n, off, (uint8_t)h.seed))
			ok = 0;
	}
	if (!ret)
		ret = xport_send(x, &ok, 1);
	free(buf);
	s->arg = x->bytes_received;
	return ret;
}

/* Receive u64 length, then that many bytes without looking; answer. */
static int serve_sink(struct server *s, struct xport *x)
{
	size_t chunk = 4 * MiB;
	uint8_t *buf = malloc(chunk), ok = 1;
	uint64_t len;
	int ret = buf ? xport_recv(x, &len, sizeof(len)) : -ENOMEM;

	for (uint64_t off = 0; !ret && off < len; off += chunk)
		ret = xport_recv(x, buf, len - off < chunk ? len - off : chunk);
	if (!ret)
		ret = xport_send(x, &ok, 1);
	free(buf);
	return ret;
}

/* Wait for the client to go away, then close. */
static int serve_wait_eof(struct server *s, struct xport *x)
{
	uint8_t b;
	int ret = xport_recv(x, &b, 1);

	return ret == -EPIPE || ret == -ECONNRESET ? 0 : ret;
}

/* Read a little, then hang up. */
static int serve_read_and_close(struct server *s, struct xport *x)
{
	uint8_t b[4];

	return xport_recv(x, b, sizeof(b));
}

/* ---- addresses and TLS material ---- */

static void test_addr_good(void **state)
{
	struct xport_addr a;
	char err[XPORT_ERR_LEN];

	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:4444", &a, err), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 4444);
	assert_int_equal(xport_addr_parse("tcp:[::1]:80", &a, err), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 80);
	assert_int_equal(xport_addr_parse("tcp:host2.example-1:65535", &a,
					  err), 0);
	assert_string_equal(a.host, "host2.example-1");
	assert_int_equal(a.port, 65535);
	assert_int_equal(xport_addr_parse("tcp:[fe80::1%lo]:1", &a, err), 0);
	assert_string_equal(a.host, "fe80::1%lo");
	/* Port 0: "any" for listen; connect refuses it. */
	assert_int_equal(xport_addr_parse("tcp:localhost:0", &a, err), 0);
	assert_int_equal(a.port, 0);
	assert_int_equal(a.kind, XPORT_TCP);
	assert_int_equal(xport_addr_parse("rdma:10.0.0.7:4444", &a, err), 0);
	assert_int_equal(a.kind, XPORT_RDMA);
	assert_string_equal(a.host, "10.0.0.7");
	assert_int_equal(a.port, 4444);
	assert_int_equal(xport_addr_parse("rdma:[fe80::2]:9", &a, err), 0);
	assert_int_equal(a.kind, XPORT_RDMA);
	assert_string_equal(a.host, "fe80::2");
}

static void test_addr_bad(void **state)
{
	static const struct { const char *uri, *says; } bad[] = {
		{ "", "empty" },
		{ "udp:1.2.3.4:5", "tcp: or rdma:" },
		{ "rdma:1.2.3.4", "no port" },
		{ "rdma:[::1]80", "after ']'" },
		{ "tcp:", "no port" },
		{ "tcp:host", "no port" },
		{ "tcp:host:", "no port" },
		{ "tcp:host:70000", "0..65535" },
		{ "tcp:host:-1", "0..65535" },
		{ "tcp:host:12a", "0..65535" },
		{ "tcp:host:99999999999999999999", "0..65535" },
		{ "tcp:::1:80", "brackets" },
		{ "tcp:[::1]80", "after ']'" },
		{ "tcp:[::1:80", "without ']'" },
		{ "tcp:[zz]:80", "not an IPv6" },
		{ "tcp:[1.2.3.4]:80", "not an IPv6" },
		{ "tcp::80", "no host" },
		{ "tcp:a b:80", "invalid character" },
	};
	struct xport_addr a;
	char err[XPORT_ERR_LEN], longuri[400];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (xport_addr_parse(bad[i].uri, &a, err) == 0)
			fail_msg("'%s' parsed", bad[i].uri);
		if (!strstr(err, bad[i].says))
			fail_msg("'%s': '%s' does not say '%s'", bad[i].uri,
				 err, bad[i].says);
		assert_null(strchr(err, '\n'));
	}
	assert_int_equal(xport_addr_parse(NULL, &a, err), -EINVAL);
	memset(longuri, 'h', sizeof(longuri));
	memcpy(longuri, "tcp:", 4);
	strcpy(longuri + sizeof(longuri) - 6, ":80");
	assert_int_equal(xport_addr_parse(longuri, &a, err), -ENAMETOOLONG);
	assert_non_null(strstr(err, "longer than"));
}

static void test_tls_from_dir_missing(void **state)
{
	struct xport_tls t;
	char dir[128], path[192], err[XPORT_ERR_LEN];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/incomplete", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir,
			 i ? "key.pem" : "ca.pem");
		f = fopen(path, "w");
		assert_non_null(f);
		fclose(f);
	}
	assert_int_equal(xport_tls_from_dir(dir, &t, err), -ENOENT);
	assert_non_null(strstr(err, "cert.pem is missing"));
	assert_non_null(strstr(err, dir));

	snprintf(dir, sizeof(dir), "%s/nonexistent", tmpdir);
	assert_int_equal(xport_tls_from_dir(dir, &t, err), -ENOENT);
	assert_non_null(strstr(err, dir));
}

/* ---- TCP ---- */

/* Send a u32-framed message and check the reversed echo. */
static void echo_once(struct xport *x, uint32_t len, uint8_t seed)
{
	uint8_t *out = malloc(len), *in = malloc(len);
	uint32_t got;

	assert_non_null(out);
	assert_non_null(in);
	fill(out, len, 0, seed);
	assert_int_equal(xport_send(x, &len, sizeof(len)), 0);
	assert_int_equal(xport_send(x, out, len), 0);
	assert_int_equal(x->ops->flush(x), 0);
	assert_int_equal(xport_recv(x, &got, sizeof(got)), 0);
	assert_int_equal(got, len);
	assert_int_equal(xport_recv(x, in, len), 0);
	for (uint32_t i = 0; i < len; i++)
		if (in[i] != out[len - 1 - i])
			fail_msg("echo differs at byte %u of %u", i, len);
	free(out);
	free(in);
}

static void roundtrip(const struct xport_tls *stls,
		      const struct xport_tls *ctls)
{
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];

	server_start(&s, stls, serve_echo);
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	assert_int_equal(x->kind, ctls ? XPORT_TLS : via.kind);
	assert_string_equal(x->ops->name, ctls ? "tls" : via.scheme);
	echo_once(x, 1, 1);
	echo_once(x, 4096, 2);
	echo_once(x, 3 * MiB + 17, 3);
	assert_int_equal(x->bytes_sent, 3 * 4 + 1 + 4096 + 3 * MiB + 17);
	assert_int_equal(x->bytes_received, x->bytes_sent);
	xport_close(x);
	server_join(&s);
	if (s.accept_rc || s.fn_rc)
		fail_msg("server: %s", s.err);
}

static void test_tcp_roundtrip(void **state)
{
	roundtrip(NULL, NULL);
}

/* Several iovecs, empty ones and more than one sendmsg() batch among them. */
static void sendv_pattern(struct xport *x, uint64_t total)
{
	enum { N = 600 };
	static struct iovec iov[N];
	uint8_t *data = malloc(total);
	struct { uint64_t len; uint64_t seed; } h = { total, 7 };
	size_t off = 0;
	int n = 0;

	assert_non_null(data);
	fill(data, total, 0, 7);
	iov[n++] = (struct iovec){ &h, sizeof(h) };
	for (size_t sz = 1; n < N && off < total; sz = sz * 3 % 70001) {
		size_t take = n == N - 1 ? total - off :
			(sz < total - off ? sz : total - off);

		if (n % 5 == 0)
			iov[n++] = (struct iovec){ data, 0 };
		iov[n++] = (struct iovec){ data + off, take };
		off += take;
	}
	assert_int_equal(off, total);
	assert_int_equal(x->ops->sendv(x, iov, n), 0);
	free(data);
}

static void sendv_test(const struct xport_tls *stls,
		       const struct xport_tls *ctls)
{
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	uint8_t ok = 0;

	server_start(&s, stls, serve_verify);
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	sendv_pattern(x, 5 * MiB + 3);
	assert_int_equal(xport_recv(x, &ok, 1), 0);
	assert_int_equal(ok, 1);
	xport_close(x);
	server_join(&s);
	if (s.fn_rc)
		fail_msg("server: %s", s.err);
	assert_int_equal(s.arg, 16 + 5 * MiB + 3);
}

static void test_tcp_sendv(void **state)
{
	sendv_test(NULL, NULL);
}

static void send_file_test(const struct xport_tls *stls,
			   const struct xport_tls *ctls)
{
	const size_t size = 8 * MiB;
	struct { uint64_t len; uint64_t seed; } h;
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	uint8_t ok = 0;
	int fd = pattern_memfd(size, 9);

	server_start(&s, stls, serve_verify);
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	/* The whole file, as two pieces (the second from an offset). */
	h.len = size;
	h.seed = 9;
	assert_int_equal(xport_send(x, &h, sizeof(h)), 0);
	assert_int_equal(x->ops->send_file(x, fd, 0, 3 * MiB + 4096), 0);
	assert_int_equal(x->ops->send_file(x, fd, 3 * MiB + 4096,
					   size - 3 * MiB - 4096), 0);
	assert_int_equal(x->ops->flush(x), 0);
	assert_int_equal(xport_recv(x, &ok, 1), 0);
	assert_int_equal(ok, 1);
	assert_int_equal(x->bytes_sent, sizeof(h) + size);
	/* Past the end of the file: an error, not a hang. */
	assert_int_equal(x->ops->send_file(x, fd, size - 10, 20), -EIO);
	assert_non_null(strstr(x->err, "short"));
	xport_close(x);
	server_join(&s);
	if (s.fn_rc)
		fail_msg("server: %s", s.err);
	close(fd);
}

static void test_tcp_send_file(void **state)
{
	send_file_test(NULL, NULL);
}

/* The server hangs up: recv says -EPIPE; sends fail without SIGPIPE. */
static void eof_test(const struct xport_tls *stls,
		     const struct xport_tls *ctls)
{
	static uint8_t junk[256 * 1024];
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN], want[64];
	uint8_t b;
	int ret = 0, fd = pattern_memfd(1 * MiB, 1);

	/* The default action of SIGPIPE kills: surviving is the test. */
	signal(SIGPIPE, SIG_DFL);
	server_start(&s, stls, NULL);
	snprintf(want, sizeof(want), "%s %s:%u: ", ctls ? "tls" : via.scheme, via.host,
		 (unsigned)xport_listener_port(s.l));
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	server_join(&s);
	assert_int_equal(xport_recv(x, &b, 1), -EPIPE);
	assert_non_null(strstr(x->err, "connection closed by peer"));
	if (strncmp(x->err, want, strlen(want)))
		fail_msg("'%s' does not start with '%s'", x->err, want);
	for (int i = 0; i < 100 && !ret; i++)
		ret = xport_send(x, junk, sizeof(junk));
	if (ret != -EPIPE && ret != -ECONNRESET)
		fail_msg("send after close: %d %s", ret, x->err);
	ret = 0;
	for (int i = 0; i < 100 && !ret; i++)
		ret = x->ops->send_file(x, fd, 0, 1 * MiB);
	if (ret != -EPIPE && ret != -ECONNRESET)
		fail_msg("send_file after close: %d %s", ret, x->err);
	xport_close(x);
	close(fd);
}

static void test_tcp_recv_eof(void **state)
{
	eof_test(NULL, NULL);
}

static void test_tcp_connect_refused(void **state)
{
	struct xport_listener *l;
	struct xport_addr a;
	struct xport *x;
	char err[XPORT_ERR_LEN], want[64];
	double t0;

	/* A port that was just free: nobody listens there now. */
	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:0", &a, err), 0);
	assert_int_equal(xport_listen(&a, NULL, &l, err), 0);
	a.port = xport_listener_port(l);
	xport_listener_close(l);
	t0 = now_ns() / 1e9;
	assert_int_equal(xport_connect(&a, NULL, 5000, &x, err), -ECONNREFUSED);
	assert_true(now_ns() / 1e9 - t0 < 1.0);
	assert_null(x);
	snprintf(want, sizeof(want), "tcp 127.0.0.1:%u: connect: connection "
		 "refused", a.port);
	assert_string_equal(err, want);

	a.port = 0;
	assert_int_equal(xport_connect(&a, NULL, 5000, &x, err), -EINVAL);
	assert_non_null(strstr(err, "port 0"));
}

static void test_tcp_accept_timeout(void **state)
{
	struct xport_listener *l;
	struct xport_addr a;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	double t0, dt;

	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:0", &a, err), 0);
	assert_int_equal(xport_listen(&a, NULL, &l, err), 0);
	t0 = now_ns() / 1e9;
	assert_int_equal(xport_accept(l, 150, &x, err), -ETIMEDOUT);
	dt = now_ns() / 1e9 - t0;
	assert_true(dt >= 0.14 && dt < 2.0);
	assert_null(x);
	assert_non_null(strstr(err, "no connection within 150 ms"));
	assert_null(xport_accept_failed_peer(l));
	xport_listener_close(l);

	/* The same port twice: the second listen says why. */
	assert_int_equal(xport_listen(&a, NULL, &l, err), 0);
	a.port = xport_listener_port(l);
	{
		struct xport_listener *l2;

		assert_int_equal(xport_listen(&a, NULL, &l2, err),
				 -EADDRINUSE);
		assert_non_null(strstr(err, "address already in use"));
	}
	xport_listener_close(l);
}

static void recv_timeout_test(const struct xport_tls *stls,
			      const struct xport_tls *ctls)
{
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	uint8_t b;
	double t0, dt;

	server_start(&s, stls, serve_wait_eof);
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	assert_int_equal(xport_set_timeout(x, 100), 0);
	t0 = now_ns() / 1e9;
	assert_int_equal(xport_recv(x, &b, 1), -ETIMEDOUT);
	dt = now_ns() / 1e9 - t0;
	assert_true(dt >= 0.09 && dt < 2.0);
	assert_non_null(strstr(x->err, "timed out"));
	assert_int_equal(xport_set_timeout(x, -1), -EINVAL);
	xport_close(x);
	server_join(&s);
	assert_int_equal(s.fn_rc, 0);
}

static void test_tcp_recv_timeout(void **state)
{
	recv_timeout_test(NULL, NULL);
}

static volatile int idle_done;

/* Read nothing until the test says so. */
static int serve_idle(struct server *s, struct xport *x)
{
	while (!idle_done)
		usleep(5000);
	return 0;
}

/* The peer does not read: sends stop with -ETIMEDOUT once buffers fill. */
static void send_timeout_test(const struct xport_tls *stls,
			      const struct xport_tls *ctls)
{
	static uint8_t junk[1 * MiB];
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	int ret = 0, i;

	idle_done = 0;
	server_start(&s, stls, serve_idle);
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	assert_int_equal(xport_set_timeout(x, 200), 0);
	for (i = 0; i < 256 && !ret; i++)
		ret = xport_send(x, junk, sizeof(junk));
	if (ret != -ETIMEDOUT)
		fail_msg("send to a peer that does not read: %d '%s'", ret,
			 x->err);
	assert_non_null(strstr(x->err, "send: timed out"));
	idle_done = 1;
	xport_close(x);
	server_join(&s);
}

static void test_tcp_send_timeout(void **state)
{
	send_timeout_test(NULL, NULL);
}

static void test_tcp_ipv6(void **state)
{
	struct xport_listener *l;
	struct xport_addr a;
	struct xport *x, *y;
	char err[XPORT_ERR_LEN], want[64];
	uint32_t v = 0xfe77;
	int ret;

	assert_int_equal(xport_addr_parse("tcp:[::1]:0", &a, err), 0);
	ret = xport_listen(&a, NULL, &l, err);
	if (ret == -EADDRNOTAVAIL || ret == -EAFNOSUPPORT) {
		print_message("no IPv6 loopback (%s): skipped\n", err);
		skip();
	}
	assert_int_equal(ret, 0);
	a.port = xport_listener_port(l);
	/* Loopback: the connect completes before accept is called. */
	assert_int_equal(xport_connect(&a, NULL, 2000, &x, err), 0);
	assert_int_equal(xport_accept(l, 2000, &y, err), 0);
	snprintf(want, sizeof(want), "[::1]:%u", a.port);
	assert_string_equal(x->peer, want);
	assert_int_equal(strncmp(y->peer, "[::1]:", 6), 0);
	assert_int_equal(xport_send(x, &v, sizeof(v)), 0);
	v = 0;
	assert_int_equal(xport_recv(y, &v, sizeof(v)), 0);
	assert_int_equal(v, 0xfe77);
	xport_close(x);
	xport_close(y);
	xport_listener_close(l);
}

/* ---- TLS ---- */

struct nodes {
	struct xport_tls srv, cli, rogue;
};

static struct nodes nodes;

#define NEED_CERTS()                                                       \
	do {                                                               \
		if (!have_certs) {                                         \
			print_message("openssl CLI missing: skipped\n");   \
			skip();                                            \
		}                                                          \
	} while (0)

static void test_tls_roundtrip(void **state)
{
	struct xport_tls s = nodes.srv, c = nodes.cli;

	NEED_CERTS();
	/* Names checked both ways: a DNS name and an IP address. */
	strcpy(s.peer_name, "cli");
	strcpy(c.peer_name, "srv");
	roundtrip(&s, &c);
	strcpy(c.peer_name, "127.0.0.1");
	roundtrip(&s, &c);
}

static void test_tls_sendv(void **state)
{
	NEED_CERTS();
	sendv_test(&nodes.srv, &nodes.cli);
}

static void test_tls_send_file(void **state)
{
	NEED_CERTS();
	send_file_test(&nodes.srv, &nodes.cli);
}

static void test_tls_recv_eof(void **state)
{
	NEED_CERTS();
	eof_test(&nodes.srv, &nodes.cli);
}

static void test_tls_recv_timeout(void **state)
{
	NEED_CERTS();
	recv_timeout_test(&nodes.srv, &nodes.cli);
}

static void test_tls_send_timeout(void **state)
{
	NEED_CERTS();
	send_timeout_test(&nodes.srv, &nodes.cli);
}

/* Both sides fail; each message must contain its words. */
static void refused(const struct xport_tls *stls, const struct xport_tls *ctls,
		    const char *server_says, const char *client_says)
{
	struct server s;
	struct xport *x = NULL;
	char err[XPORT_ERR_LEN] = "";
	int ret;

	server_start(&s, stls, NULL);
	ret = client_connect(&s, ctls, &x, err);
	server_join(&s);
	print_message("  server: %s\n  client: %s\n", s.err, err);
	if (ret == 0)
		fail_msg("connect succeeded");
	assert_null(x);
	assert_true(s.accept_rc < 0);
	/* One bad client, not a dead listener: a server goes on accepting. */
	assert_true(s.peer_failed);
	if (!strstr(s.err, server_says))
		fail_msg("server said '%s', not '%s'", s.err, server_says);
	if (!strstr(err, client_says))
		fail_msg("client said '%s', not '%s'", err, client_says);
	assert_int_equal(strncmp(s.err, "tls 127.0.0.1:", 14), 0);
	assert_int_equal(strncmp(err, "tls 127.0.0.1:", 14), 0);
}

static void test_tls_other_ca(void **state)
{
	struct xport_tls c = nodes.rogue;

	NEED_CERTS();
	/* A node of another cluster: neither side trusts the other. */
	refused(&nodes.srv, &nodes.rogue, "not signed by the peer's CA",
		"peer certificate is not signed by our CA");
	/* Its certificate is foreign but it trusts our CA. */
	strcpy(c.ca, nodes.cli.ca);
	refused(&nodes.srv, &c, "peer certificate is not signed by our CA",
		"peer refused our certificate: it is not signed by the "
		"peer's CA");
}

static void test_tls_no_client_cert(void **state)
{
	struct xport_tls c = { 0 };

	NEED_CERTS();
	strcpy(c.ca, nodes.cli.ca);
	refused(&nodes.srv, &c, "peer presented no certificate",
		"peer requires a certificate and we presented none");
}

static void test_tls_peer_name(void **state)
{
	struct xport_tls s = nodes.srv, c = nodes.cli;

	NEED_CERTS();
	strcpy(c.peer_name, "host9");
	refused(&s, &c, "peer refused our certificate",
		"peer certificate is not for 'host9'");
	c.peer_name[0] = '\0';
	strcpy(s.peer_name, "host9");
	refused(&s, &c, "peer certificate is not for 'host9'",
		"peer refused our certificate");
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* The list's format: serials in any case, leading zeros, comments. */
static void test_revoked_list(void **state)
{
	char path[160];

	(void)state;
	snprintf(path, sizeof(path), "%s/revoked-format", tmpdir);
	assert_int_equal(xport_revoked_check(path, "abc1"), 0); /* no file */
	write_file(path, "# revoked by hand\n\n  00ABC1  # host7\n1234\r\n");
	assert_int_equal(xport_revoked_check(path, "abc1"), 1);
	assert_int_equal(xport_revoked_check(path, "1234"), 1);
	assert_int_equal(xport_revoked_check(path, "abc"), 0);
	assert_int_equal(xport_revoked_check(path, "123"), 0);
	assert_int_equal(xport_revoked_check(path, "host7"), 0);
	/* the tail of an overlong line is not a serial of its own */
	{
		char text[600];

		memset(text, 'f', 300);
		snprintf(text + 300, sizeof(text) - 300, "5678\n");
		write_file(path, text);
		assert_int_equal(xport_revoked_check(path, "5678"), 0);
	}
	/* unreadable: an error, never "not listed" */
	assert_int_equal(xport_revoked_check(tmpdir, "abc1"), -EIO);
}

/*
 * A revoked peer is refused in the handshake, on either side, and each
 * side says why; the list is read at every handshake, so an addition
 * counts at once.
 */
static void test_tls_revoked(void **state)
{
	struct xport_tls s = nodes.srv, c = nodes.cli;
	char cli_serial[80], srv_serial[80], text[256], err[XPORT_ERR_LEN];

	NEED_CERTS();
	assert_int_equal(xport_tls_cert_identity(c.cert, NULL, 0, cli_serial,
						 sizeof(cli_serial), err), 0);
	assert_int_equal(xport_tls_cert_identity(s.cert, NULL, 0, srv_serial,
						 sizeof(srv_serial), err), 0);
	snprintf(s.revoked, sizeof(s.revoked), "%s/revoked-srv", tmpdir);
	snprintf(c.revoked, sizeof(c.revoked), "%s/revoked-cli", tmpdir);
	/* lists that name other serials: accepted */
	write_file(s.revoked, "# nobody here\n0123\n");
	roundtrip(&s, &c);
	/* the server's list names the client */
	snprintf(text, sizeof(text), "0123\n%s\n", cli_serial);
	write_file(s.revoked, text);
	snprintf(text, sizeof(text), "peer certificate (serial %s) is revoked", cli_serial);
	refused(&s, &c, text, "peer refused our certificate: it is revoked");
	unlink(s.revoked);
	/* the client's list names the server */
	snprintf(text, sizeof(text), "%s\n", srv_serial);
	write_file(c.revoked, text);
	snprintf(text, sizeof(text), "peer certificate (serial %s) is revoked", srv_serial);
	refused(&s, &c, "peer refused our certificate: it is revoked", text);
	unlink(c.revoked);
	roundtrip(&s, &c);
	/* a list that cannot be read refuses everyone */
	snprintf(s.revoked, sizeof(s.revoked), "%s", tmpdir);
	refused(&s, &c, "cannot read the revocation list", "peer refused the handshake");
}

static void test_tls_key_mismatch(void **state)
{
	struct xport_tls t = nodes.srv;
	struct xport_listener *l;
	struct xport_addr a;
	struct xport *x;
	char err[XPORT_ERR_LEN], want[700];

	NEED_CERTS();
	strcpy(t.key, nodes.cli.key);
	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:0", &a, err), 0);
	assert_int_equal(xport_listen(&a, &t, &l, err), -EINVAL);
	snprintf(want, sizeof(want), "tls: %s does not match %s", t.key,
		 t.cert);
	assert_string_equal(err, want);
	a.port = 1;
	assert_int_equal(xport_connect(&a, &t, 1000, &x, err), -EINVAL);
	assert_string_equal(err, want);
	/* A missing CA file says which. */
	strcpy(t.ca, "/nonexistent/ca.pem");
	assert_int_equal(xport_listen(&a, &t, &l, err), -EINVAL);
	assert_non_null(strstr(err, "cannot load CA certificate "
			       "/nonexistent/ca.pem"));
}

/* TLS on one end, plain TCP on the other. */
static void test_tls_vs_plain(void **state)
{
	static const char hello[] = "plain text, not a ClientHello";
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];

	NEED_CERTS();
	server_start(&s, &nodes.srv, NULL);
	assert_int_equal(client_connect(&s, NULL, &x, err), 0);
	assert_int_equal(xport_send(x, hello, sizeof(hello)), 0);
	server_join(&s);
	xport_close(x);
	print_message("  server: %s\n", s.err);
	assert_int_equal(s.accept_rc, -EPROTO);
	assert_non_null(strstr(s.err, "does not speak TLS"));

	server_start(&s, NULL, serve_read_and_close);
	assert_true(client_connect(&s, &nodes.cli, &x, err) < 0);
	server_join(&s);
	print_message("  client: %s\n", err);
	assert_non_null(strstr(err, "closed the connection during the "
			       "handshake"));
}

/* A peer that connects and says nothing: the handshake is bounded. */
static void test_tls_handshake_timeout(void **state)
{
	struct xport_listener *l;
	struct xport_addr a;
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	double t0, dt;

	NEED_CERTS();
	/* Server side: a plain TCP client that sends nothing. */
	server_start_ms(&s, &nodes.srv, NULL, 300);
	assert_int_equal(client_connect(&s, NULL, &x, err), 0);
	server_join(&s);
	xport_close(x);
	print_message("  server: %s\n", s.err);
	assert_int_equal(s.accept_rc, -ETIMEDOUT);
	assert_non_null(strstr(s.err, "handshake did not finish in time"));

	/* Client side: a listener that never answers. */
	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:0", &a, err), 0);
	assert_int_equal(xport_listen(&a, NULL, &l, err), 0);
	a.port = xport_listener_port(l);
	t0 = now_ns() / 1e9;
	assert_int_equal(xport_connect(&a, &nodes.cli, 300, &x, err),
			 -ETIMEDOUT);
	dt = now_ns() / 1e9 - t0;
	print_message("  client: %s\n", err);
	assert_true(dt >= 0.29 && dt < 2.0);
	assert_non_null(strstr(err, "handshake did not finish in time"));
	xport_listener_close(l);
}

/* ---- throughput, for information ---- */

/* ---- RDMA ---- */

/* The IPv4 address of netdev, or false. */
static bool netdev_ipv4(const char *netdev, char *out, size_t len)
{
	struct ifaddrs *ifs, *i;
	bool found = false;

	if (getifaddrs(&ifs))
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    strcmp(i->ifa_name, netdev))
			continue;
		found = inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr,
				  out, (socklen_t)len) != NULL;
	}
	freeifaddrs(ifs);
	return found;
}

/*
 * An address of an RDMA device: FERRY_RDMA_ADDR, else the IPv4 address of
 * the network interface under the first RDMA device that has one (RoCE).
 */
static bool rdma_addr(char *out, size_t len)
{
	const char *env = getenv("FERRY_RDMA_ADDR");
	DIR *d;
	struct dirent *e;
	bool found = false;

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return true;
	}
	d = opendir("/sys/class/infiniband");
	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		char path[512], netdev[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0",
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(netdev, sizeof(netdev), f))
			netdev[strcspn(netdev, "\n")] = 0;
		fclose(f);
		found = netdev[0] && netdev_ipv4(netdev, out, len);
	}
	closedir(d);
	return found;
}

/* Point the shared data-path tests at RDMA, or skip saying why. */
#define VIA_RDMA()                                                                  \
	do {                                                                        \
		char names_[128];                                                   \
		if (!xport_rdma_devices(names_, sizeof(names_))) {                  \
			print_message("no RDMA device on this host: skipped "       \
				      "(tools/rdma-lab makes a soft-RoCE one)\n");  \
			skip();                                                     \
		}                                                                   \
		if (!rdma_addr(via.host, sizeof(via.host))) {                       \
			print_message("RDMA device(s) %s, none with an IPv4 "       \
				      "address: skipped (set FERRY_RDMA_ADDR)\n", names_); \
			skip();                                                     \
		}                                                                   \
		via.scheme = "rdma";                                                \
		via.kind = XPORT_RDMA;                                              \
	} while (0)

static int via_reset(void **state)
{
	via.scheme = "tcp";
	snprintf(via.host, sizeof(via.host), "127.0.0.1");
	via.kind = XPORT_TCP;
	return 0;
}

static void test_rdma_roundtrip(void **state)
{
	VIA_RDMA();
	roundtrip(NULL, NULL);
}

static void test_rdma_sendv(void **state)
{
	VIA_RDMA();
	sendv_test(NULL, NULL);
}

static void test_rdma_send_file(void **state)
{
	VIA_RDMA();
	send_file_test(NULL, NULL);
}

static void test_rdma_recv_eof(void **state)
{
	VIA_RDMA();
	eof_test(NULL, NULL);
}

static void test_rdma_recv_timeout(void **state)
{
	VIA_RDMA();
	recv_timeout_test(NULL, NULL);
}

static void test_rdma_send_timeout(void **state)
{
	VIA_RDMA();
	send_timeout_test(NULL, NULL);
}

struct blocked {
	struct xport *x;
	int ret;
};

static void *recv_blocked(void *arg)
{
	struct blocked *b = arg;
	uint8_t byte;

	b->ret = xport_recv(b->x, &byte, 1);
	return NULL;
}

/* A cancel shuts x->fd down from another thread: a blocked receive returns. */
static void test_rdma_shutdown_unblocks(void **state)
{
	struct server s;
	struct blocked b = { 0 };
	pthread_t th;
	char err[XPORT_ERR_LEN];
	double t0;

	VIA_RDMA();
	server_start(&s, NULL, serve_wait_eof);
	if (client_connect(&s, NULL, &b.x, err))
		fail_msg("connect: %s", err);
	assert_int_equal(pthread_create(&th, NULL, recv_blocked, &b), 0);
	usleep(200000);
	t0 = now_ns() / 1e9;
	assert_int_equal(shutdown(b.x->fd, SHUT_RDWR), 0);
	pthread_join(th, NULL);
	assert_true(now_ns() / 1e9 - t0 < 2.0);
	assert_int_equal(b.ret, -EPIPE);
	xport_close(b.x);
	server_join(&s);
}

/* rdma: against tcp: either way round: refused, in words, not a hang. */
static void test_rdma_vs_tcp(void **state)
{
	static const char hello[] = "a stream preamble, not the RDMA rendezvous";
	struct server s;
	struct xport_addr a = { .kind = XPORT_RDMA };
	struct xport *x;
	char err[XPORT_ERR_LEN];

	VIA_RDMA();
	/* An rdma: client at a tcp: listener that reads and hangs up. */
	via_reset(NULL);
	server_start(&s, NULL, serve_read_and_close);
	snprintf(a.host, sizeof(a.host), "127.0.0.1");
	a.port = xport_listener_port(s.l);
	assert_true(xport_connect(&a, NULL, 5000, &x, err) < 0);
	server_join(&s);
	print_message("  rdma client, tcp server: %s\n", err);
	assert_non_null(strstr(err, "rendezvous"));

	/* A tcp: client at an rdma: listener. */
	VIA_RDMA();
	server_start(&s, NULL, NULL);
	a.kind = XPORT_TCP;
	snprintf(a.host, sizeof(a.host), "%s", via.host);
	a.port = xport_listener_port(s.l);
	assert_int_equal(xport_connect(&a, NULL, 5000, &x, err), 0);
	assert_int_equal(xport_send(x, hello, sizeof(hello)), 0);
	server_join(&s);
	xport_close(x);
	print_message("  tcp client, rdma server: %s\n", s.err);
	assert_int_equal(s.accept_rc, -EPROTO);
	assert_non_null(strstr(s.err, "does not speak Ferry's RDMA rendezvous"));
}

/* Needs no device: TLS over rdma: is refused on both sides, saying so. */
static void test_rdma_tls_refused(void **state)
{
	struct xport_listener *l = NULL;
	struct xport_addr a;
	struct xport *x = NULL;
	char err[XPORT_ERR_LEN];

	NEED_CERTS();
	assert_int_equal(xport_addr_parse("rdma:127.0.0.1:0", &a, err), 0);
	assert_int_equal(xport_listen(&a, &nodes.srv, &l, err), -EPROTONOSUPPORT);
	assert_null(l);
	assert_non_null(strstr(err, "TLS over RDMA is not supported"));
	a.port = 9;
	assert_int_equal(xport_connect(&a, &nodes.cli, 1000, &x, err), -EPROTONOSUPPORT);
	assert_null(x);
	assert_non_null(strstr(err, "TLS over RDMA is not supported"));
}

/*
 * Needs no device: a tcp: listener tells an rdma: client's rendezvous from
 * a Ferry stream by its first bytes, whether they come at once, in pieces
 * or not at all, and takes none of them.
 */
static void test_rdma_knocking(void **state)
{
	static const char magic[16] = "FERRY-RDMA-1\0\0\0";
	static const uint8_t hello[24] = { 0x00, 0x01, 0x00, 0x00, 8 };
	char back[16];
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], magic, sizeof(magic)), sizeof(magic));
	assert_int_equal(xport_rdma_knocking(sv[0], 1000), 1);
	assert_int_equal(read(sv[0], back, sizeof(back)), sizeof(back));   /* still there */
	assert_memory_equal(back, magic, sizeof(magic));

	assert_int_equal(write(sv[1], hello, sizeof(hello)), sizeof(hello));
	assert_int_equal(xport_rdma_knocking(sv[0], 1000), 0);
	assert_int_equal(read(sv[0], back, sizeof(back)), sizeof(back));
	assert_int_equal(read(sv[0], back, 8), 8);

	/* A prefix, then the rest 30 ms later: still the magic. */
	assert_int_equal(write(sv[1], magic, 7), 7);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		usleep(30000);
		_exit(write(sv[1], magic + 7, sizeof(magic) - 7) == sizeof(magic) - 7 ? 0 : 1);
	}
	assert_int_equal(xport_rdma_knocking(sv[0], 2000), 1);
	assert_int_equal(read(sv[0], back, sizeof(back)), sizeof(back));
	waitpid(pid, NULL, 0);

	/* A prefix that never ends, and silence: a time-out, told apart. */
	assert_int_equal(write(sv[1], magic, 5), 5);
	assert_int_equal(xport_rdma_knocking(sv[0], 50), -ETIMEDOUT);
	assert_int_equal(read(sv[0], back, 5), 5);
	assert_int_equal(xport_rdma_knocking(sv[0], 50), -ETIMEDOUT);

	/* The peer gone with nothing sent. */
	close(sv[1]);
	assert_int_equal(xport_rdma_knocking(sv[0], 1000), 0);
	close(sv[0]);
}

/* Where there is no RDMA device, listening on rdma: says so and holds nothing. */
static void test_rdma_no_device(void **state)
{
	struct xport_listener *l = NULL;
	struct xport_addr a;
	char err[XPORT_ERR_LEN] = "", names[128];

	if (xport_rdma_devices(names, sizeof(names))) {
		print_message("this host has RDMA device(s) %s: the test of a host "
			      "without one is skipped\n", names);
		skip();
	}
	assert_int_equal(xport_addr_parse("rdma:127.0.0.1:0", &a, err), 0);
	assert_true(xport_listen(&a, NULL, &l, err) < 0);
	assert_null(l);
	print_message("  %s\n", err);
	assert_non_null(strstr(err, "no RDMA device"));
	assert_int_equal(strncmp(err, "rdma 127.0.0.1:0: ", 18), 0);
}

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock MiB/s, and MiB per CPU second of both ends together. */
static void send_file_rate(const struct xport_tls *stls,
			   const struct xport_tls *ctls, int fd,
			   size_t file_len, uint64_t total)
{
	struct server s;
	struct xport *x;
	char err[XPORT_ERR_LEN];
	uint8_t ok = 0;
	double t0, c0, dt, dc;

	server_start(&s, stls, serve_sink);
	if (client_connect(&s, ctls, &x, err))
		fail_msg("connect: %s", err);
	t0 = now_ns() / 1e9;
	c0 = cpu_s();
	assert_int_equal(xport_send(x, &total, sizeof(total)), 0);
	for (uint64_t off = 0; off < total; off += file_len)
		assert_int_equal(x->ops->send_file(x, fd, 0, file_len), 0);
	assert_int_equal(xport_recv(x, &ok, 1), 0);
	dt = now_ns() / 1e9 - t0;
	dc = cpu_s() - c0;
	assert_int_equal(ok, 1);
	xport_close(x);
	server_join(&s);
	assert_int_equal(s.fn_rc, 0);
	print_message("  loopback send_file of %llu MiB, %s: %.0f MiB/s "
		      "(%.0f MiB per CPU second, both ends)\n",
		      (unsigned long long)(total / MiB), ctls ? "tls" : "tcp",
		      (double)total / dt / MiB, (double)total / dc / MiB);
}

static void test_throughput(void **state)
{
	const size_t file_len = 64 * MiB;
	const uint64_t total = 256 * MiB;
	int fd = pattern_memfd(file_len, 3);

	send_file_rate(NULL, NULL, fd, file_len, total);
	if (have_certs)
		send_file_rate(&nodes.srv, &nodes.cli, fd, file_len, total);
	close(fd);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	char cmd[512];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-xport-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		return 0;
	snprintf(cmd, sizeof(cmd), "'%s/tools/mkcerts.sh' '%s/one' srv cli && "
		 "'%s/tools/mkcerts.sh' '%s/two' rogue", FERRY_SRC_DIR, tmpdir,
		 FERRY_SRC_DIR, tmpdir);
	if (system(cmd) != 0)
		return -1;
	tls_node(&nodes.srv, "one", "srv");
	tls_node(&nodes.cli, "one", "cli");
	tls_node(&nodes.rogue, "two", "rogue");
	have_certs = true;
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_good),
		cmocka_unit_test(test_addr_bad),
		cmocka_unit_test(test_tls_from_dir_missing),
		cmocka_unit_test(test_tcp_roundtrip),
		cmocka_unit_test(test_tcp_sendv),
		cmocka_unit_test(test_tcp_send_file),
		cmocka_unit_test(test_tcp_recv_eof),
		cmocka_unit_test(test_tcp_connect_refused),
		cmocka_unit_test(test_tcp_accept_timeout),
		cmocka_unit_test(test_tcp_recv_timeout),
		cmocka_unit_test(test_tcp_send_timeout),
		cmocka_unit_test(test_tcp_ipv6),
		cmocka_unit_test(test_tls_roundtrip),
		cmocka_unit_test(test_tls_sendv),
		cmocka_unit_test(test_tls_send_file),
		cmocka_unit_test(test_tls_recv_eof),
		cmocka_unit_test(test_tls_recv_timeout),
		cmocka_unit_test(test_tls_send_timeout),
		cmocka_unit_test(test_tls_other_ca),
		cmocka_unit_test(test_tls_no_client_cert),
		cmocka_unit_test(test_tls_peer_name),
		cmocka_unit_test(test_revoked_list),
		cmocka_unit_test(test_tls_revoked),
		cmocka_unit_test(test_tls_key_mismatch),
		cmocka_unit_test(test_tls_vs_plain),
		cmocka_unit_test(test_tls_handshake_timeout),
		cmocka_unit_test(test_rdma_no_device),
		cmocka_unit_test(test_rdma_tls_refused),
		cmocka_unit_test(test_rdma_knocking),
		cmocka_unit_test_teardown(test_rdma_roundtrip, via_reset),
		cmocka_unit_test_teardown(test_rdma_sendv, via_reset),
		cmocka_unit_test_teardown(test_rdma_send_file, via_reset),
		cmocka_unit_test_teardown(test_rdma_recv_eof, via_reset),
		cmocka_unit_test_teardown(test_rdma_recv_timeout, via_reset),
		cmocka_unit_test_teardown(test_rdma_send_timeout, via_reset),
		cmocka_unit_test_teardown(test_rdma_shutdown_unblocks, via_reset),
		cmocka_unit_test_teardown(test_rdma_vs_tcp, via_reset),
		cmocka_unit_test(test_throughput),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
