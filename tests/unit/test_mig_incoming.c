/*
 * The destination's wait for a source (mig_incoming) against connections
 * that are no migration: a peer that hangs up at once (a port scan), one
 * that sends garbage, an rdma: source's rendezvous on a tcp: listener and a
 * peer that says nothing. Each is dropped and closed, the listener stays
 * open for the next, and the wait ends at its own deadline, counting them.
 * Strays are served side by side: a mute one does not keep a source
 * waiting behind it. The sources here send a HELLO without a CPU model,
 * which the precheck refuses before it builds a VM: no /dev/kvm needed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "core/vm.h"
#include "migrate/mig_door.h"
#include "migrate/mig_live.h"
#include "migrate/mig_proto.h"

/* A peer's time to its first bytes (MIG_FIRST_BYTES_MS in vmon), short to keep the suite quick. */
#define FIRST_MS 1500
#define WAIT_MS 3500   /* FIRST_MS for the mute peer, and some */

struct dest {
	struct mig_incoming_opts o;
	pthread_t th;
	pthread_mutex_t lock;
	uint16_t port;
	int ret;
	bool done;
	double secs;
	char err[MIG_ERR_LEN];
};

static void on_listening(void *ctx, uint16_t port)
{
	struct dest *d = ctx;

	pthread_mutex_lock(&d->lock);
	d->port = port;
	pthread_mutex_unlock(&d->lock);
}

static void *dest_main(void *arg)
{
	struct dest *d = arg;
	struct mig_incoming_result res;
	struct vm *vm = NULL;
	double t0 = now_ns() / 1e9;
	int ret = mig_incoming(&d->o, &vm, &res, d->err);

	assert_null(vm);
	pthread_mutex_lock(&d->lock);
	d->ret = ret;
	d->secs = now_ns() / 1e9 - t0;
	d->done = true;
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static bool dest_done(struct dest *d)
{
	bool done;

	pthread_mutex_lock(&d->lock);
	done = d->done;
	pthread_mutex_unlock(&d->lock);
	return done;
}

/* tls_dir: a node's certificates, or NULL for plain TCP. */
static uint16_t dest_start_tls(struct dest *d, int wait_ms, const char *tls_dir)
{
	char err[XPORT_ERR_LEN];
	uint16_t port = 0;

	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:0", &d->o.addr, err), 0);
	if (tls_dir) {
		d->o.tls = true;
		assert_int_equal(xport_tls_from_dir(tls_dir, &d->o.tls_cfg, err), 0);
	}
	d->o.accept_timeout_ms = wait_ms;
	d->o.first_bytes_ms = FIRST_MS;
	d->o.listening = on_listening;
	d->o.ctx = d;
	assert_int_equal(pthread_create(&d->th, NULL, dest_main, d), 0);
	for (int i = 0; i < 2000 && !port; i++) {
		pthread_mutex_lock(&d->lock);
		port = d->port;
		pthread_mutex_unlock(&d->lock);
		if (!port)
			usleep(1000);
	}
	assert_true(port > 0);
	return port;
}

static uint16_t dest_start(struct dest *d, int wait_ms)
{
	return dest_start_tls(d, wait_ms, NULL);
}

static int peer_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Whether the destination closes our connection (EOF or a reset) within timeout_ms. */
static bool peer_closed_within(int fd, int timeout_ms)
{
	double t0 = now_ns() / 1e9;
	char b[256];
	bool closed = false;

	while (!closed) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = timeout_ms - (int)((now_ns() / 1e9 - t0) * 1000);

		if (left <= 0)
			break;
		if (poll(&p, 1, left) > 0)
			closed = recv(fd, b, sizeof(b), 0) <= 0;
	}
	close(fd);
	return closed;
}

static void peer_sees_close(int fd, int timeout_ms)
{
	if (!peer_closed_within(fd, timeout_ms))
		fail_msg("the destination kept the connection for %d ms", timeout_ms);
}

static void test_incoming_drops_strays(void **state)
{
	static const char rdma_magic[16] = "FERRY-RDMA-1\0\0\0";
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n and then some more bytes";
	struct dest d;
	uint16_t port;
	double t0;
	int fd;

	(void)state;
	port = dest_start(&d, WAIT_MS);

	/* A port scan: connect, hang up. */
	close(peer_connect(port));

	/* Garbage where the stream's first frame should be. */
	fd = peer_connect(port);
	assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	peer_sees_close(fd, 3000);

	/* An rdma: source at a tcp: destination. */
	fd = peer_connect(port);
	assert_int_equal(send(fd, rdma_magic, sizeof(rdma_magic), 0), (ssize_t)sizeof(rdma_magic));
	peer_sees_close(fd, 3000);
	assert_false(dest_done(&d));

	/* A mute peer is let go after FIRST_MS, not the HELLO's 30 s. */
	t0 = now_ns() / 1e9;
	fd = peer_connect(port);
	peer_sees_close(fd, FIRST_MS + 1500);
	assert_true(now_ns() / 1e9 - t0 >= FIRST_MS / 1000.0 - 0.1);
	assert_false(dest_done(&d));

	/* Still listening: a stray that starts a frame and hangs up. */
	fd = peer_connect(port);
	assert_int_equal(send(fd, junk, 8, 0), 8);
	shutdown(fd, SHUT_WR);
	peer_sees_close(fd, 3000);

	pthread_join(d.th, NULL);
	print_message("  after %.1f s: %s\n", d.secs, d.err);
	assert_int_equal(d.ret, -ETIMEDOUT);
	/* The whole wait, from the first accept, not from the last stray. */
	assert_true(d.secs >= WAIT_MS / 1000.0 - 0.1 && d.secs < WAIT_MS / 1000.0 + 2);
	assert_non_null(strstr(d.err, "no source connected within 3500 ms"));
	assert_non_null(strstr(d.err, "5 connections were dropped before a HELLO"));
	assert_non_null(strstr(d.err, "127.0.0.1:"));
	pthread_mutex_destroy(&d.lock);
}

/* A flood of strays: all dropped and counted, but the log gets 12 lines, not 250. */
static void test_incoming_flood(void **state)
{
	struct dest d;
	uint16_t port;
	char line[1024], path[] = "/tmp/test_mig_incoming.XXXXXX";
	int saved = dup(STDERR_FILENO), logfd = mkstemp(path), lines = 0, kept = 0;
	FILE *f;

	(void)state;
	assert_true(saved >= 0 && logfd >= 0);
	unlink(path);
	fflush(stderr);
	assert_int_equal(dup2(logfd, STDERR_FILENO), STDERR_FILENO);
	port = dest_start(&d, 3000);
	/* No assertion while stderr is the log: cmocka would print into it. */
	for (int i = 0; i < 250; i++) {
		int fd = peer_connect(port);

		shutdown(fd, SHUT_WR);   /* a port scan: connect, hang up */
		kept += !peer_closed_within(fd, 2000);
	}
	pthread_join(d.th, NULL);
	fflush(stderr);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	assert_int_equal(kept, 0);
	print_message("  %s\n", d.err);
	assert_int_equal(d.ret, -ETIMEDOUT);
	assert_non_null(strstr(d.err, "250 connections were dropped before a HELLO"));
	f = fdopen(logfd, "r");
	assert_non_null(f);
	rewind(f);
	while (fgets(line, sizeof(line), f))
		lines += strstr(line, "dropped a connection before its HELLO") != NULL;
	fclose(f);
	assert_int_equal(lines, 10 + 2);   /* 1..10, 100, 200 */
	pthread_mutex_destroy(&d.lock);
}

/*
 * A source whose HELLO the precheck refuses before any VM is built (it
 * names no CPU model). Returns the seconds from connect to the VERDICT,
 * which must be a refusal naming that.
 */
static double source_refused(uint16_t port, const struct xport_tls *tls)
{
	Ferry__Mig__Hello h = FERRY__MIG__HELLO__INIT;
	ProtobufCMessage *msg = NULL;
	Ferry__Mig__Verdict *v;
	struct xport_addr addr;
	struct xport *x = NULL;
	struct stream_io io;
	struct stream_writer w;
	struct stream_reader r;
	char err[MIG_ERR_LEN], uri[64];
	double t0 = now_ns() / 1e9, secs;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	assert_int_equal(xport_addr_parse(uri, &addr, err), 0);
	if (xport_connect(&addr, tls, 5000, &x, err))
		fail_msg("connect: %s", err);
	h.min_version = STREAM_VERSION;
	h.max_version = STREAM_VERSION;
	h.mem_bytes = 2 << 20;
	h.nr_vcpus = 1;
	h.vm_name = "t";
	mig_xport_io(x, &io);
	stream_writer_init(&w, -1);
	stream_reader_init(&r, -1);
	w.io = &io;
	r.io = &io;
	assert_int_equal(mig_send_msg(&w, STREAM_REC_HELLO, &h.base), 0);
	if (mig_recv_msg(&r, STREAM_REC_VERDICT, &ferry__mig__verdict__descriptor, &msg, err))
		fail_msg("no verdict: %s", err);
	secs = now_ns() / 1e9 - t0;
	v = (Ferry__Mig__Verdict *)msg;
	assert_false(v->accept);
	assert_true(v->n_refusals >= 1);
	assert_non_null(strstr(v->refusals[0]->message, "no CPU model"));
	protobuf_c_message_free_unpacked(msg, NULL);
	stream_writer_destroy(&w);
	stream_reader_destroy(&r);
	xport_close(x);
	return secs;
}

/* A mute peer that came first does not keep the source waiting behind it. */
static void test_incoming_side_by_side(void **state)
{
	struct dest d;
	uint16_t port;
	double secs;
	int mute;

	(void)state;
	port = dest_start(&d, 20000);
	mute = peer_connect(port);
	usleep(100 * 1000);   /* the door has it in hand */
	secs = source_refused(port, NULL);
	print_message("  the source's verdict came %.3f s after it connected\n", secs);
	assert_true(secs < 1.0);
	pthread_join(d.th, NULL);
	assert_non_null(strstr(d.err, "precheck: refused the VM from 127.0.0.1:"));
	assert_non_null(strstr(d.err, "no CPU model"));
	/* Once a HELLO came, the door ended every other connection at once. */
	peer_sees_close(mute, 1000);
	pthread_mutex_destroy(&d.lock);
}

/*
 * TLS: a peer that connects and never starts its handshake used to hold the
 * destination for the handshake's 30 s, longer than a source's own.
 */
static void test_incoming_tls_stall(void **state)
{
	char dir[] = "/tmp/ferry-incoming-XXXXXX", cmd[512], err[XPORT_ERR_LEN], node[300];
	struct xport_tls cli;
	struct dest d;
	uint16_t port;
	double secs;
	int stall;

	(void)state;
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "'%s/tools/mkcerts.sh' '%s' srv cli >/dev/null", FERRY_SRC_DIR,
		 dir);
	assert_int_equal(system(cmd), 0);
	snprintf(node, sizeof(node), "%s/cli", dir);
	assert_int_equal(xport_tls_from_dir(node, &cli, err), 0);
	snprintf(node, sizeof(node), "%s/srv", dir);
	port = dest_start_tls(&d, 40000, node);
	stall = peer_connect(port);
	usleep(100 * 1000);
	secs = source_refused(port, &cli);
	print_message("  behind a stalled TLS handshake, the verdict came after %.3f s\n", secs);
	assert_true(secs < 2.0);
	pthread_join(d.th, NULL);
	assert_non_null(strstr(d.err, "no CPU model"));
	peer_sees_close(stall, 1000);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	pthread_mutex_destroy(&d.lock);
}

/* All slots held by mute peers: the source waits in the backlog for one, no longer. */
static void test_incoming_slots_full(void **state)
{
	int mute[MIG_DOOR_SLOTS];
	struct dest d;
	uint16_t port;
	double secs;

	(void)state;
	port = dest_start(&d, 20000);
	for (int i = 0; i < MIG_DOOR_SLOTS; i++)
		mute[i] = peer_connect(port);
	usleep(200 * 1000);
	secs = source_refused(port, NULL);
	print_message("  with %d mute peers ahead, the verdict came after %.3f s\n",
		      MIG_DOOR_SLOTS, secs);
	/* The first slot frees when its peer's FIRST_MS run out. */
	assert_true(secs > FIRST_MS / 1000.0 - 0.5);
	assert_true(secs < FIRST_MS / 1000.0 + 2.0);
	pthread_join(d.th, NULL);
	assert_non_null(strstr(d.err, "no CPU model"));
	for (int i = 0; i < MIG_DOOR_SLOTS; i++)
		peer_sees_close(mute[i], 1000);
	pthread_mutex_destroy(&d.lock);
}

/* Nobody at all: the plain time-out, with nothing about drops. */
static void test_incoming_nobody(void **state)
{
	struct dest d;

	(void)state;
	dest_start(&d, 300);
	pthread_join(d.th, NULL);
	assert_int_equal(d.ret, -ETIMEDOUT);
	assert_non_null(strstr(d.err, "incoming: no source connected within 300 ms"));
	assert_null(strstr(d.err, "dropped"));
	pthread_mutex_destroy(&d.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_incoming_drops_strays),
		cmocka_unit_test(test_incoming_flood),
		cmocka_unit_test(test_incoming_nobody),
		cmocka_unit_test(test_incoming_side_by_side),
		cmocka_unit_test(test_incoming_tls_stall),
		cmocka_unit_test(test_incoming_slots_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
