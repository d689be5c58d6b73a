/*
 * The destination's wait for a migration's data connections
 * (mig_lanes_rx_accept) over loopback TCP, with the source's side
 * (mig_lanes_tx_open) in a thread: lanes that JOIN with the token are
 * taken, a wrong token is not, and a source that hangs up the control
 * connection ends the wait at once instead of after the timeout, while
 * bytes on it do not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migrate/mig_lanes.h"
#include "core/util.h"

static const uint8_t token[MIG_LANE_TOKEN_LEN] = "sixteen bytes!!";

struct side {
	struct xport_listener *l;
	struct xport *ctl;      /* the destination's end of the control connection */
	int ctl_peer;           /* the source's end */
};

static void side_open(struct side *s)
{
	struct xport_addr a;
	char err[XPORT_ERR_LEN];
	int sv[2];

	assert_int_equal(xport_addr_parse("tcp:127.0.0.1:0", &a, err), 0);
	assert_int_equal(xport_listen(&a, NULL, &s->l, err), 0);
	/* The lanes must come from the control connection's host. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(xport_wrap_fd(sv[0], "127.0.0.1:1", &s->ctl, err), 0);
	s->ctl_peer = sv[1];
}

static void side_close(struct side *s)
{
	xport_close(s->ctl);
	if (s->ctl_peer >= 0)
		close(s->ctl_peer);
	xport_listener_close(s->l);
}

struct source {
	struct xport_addr addr;
	const uint8_t *token;
	unsigned n;
	int ret;
	char err[MIG_ERR_LEN];
	struct mig_lanes_tx *t;
};

static void *source_main(void *arg)
{
	struct source *src = arg;
	int fds[MIG_CONN_MAX];

	src->ret = mig_lanes_tx_open(&src->addr, NULL, src->n, src->token, true, 5000,
				     &src->t, fds, src->err);
	return NULL;
}

static void source_start(struct source *src, pthread_t *th, const struct side *s,
			 const uint8_t *tok, unsigned n)
{
	memset(src, 0, sizeof(*src));
	snprintf(src->addr.host, sizeof(src->addr.host), "127.0.0.1");
	src->addr.port = xport_listener_port(s->l);
	src->token = tok;
	src->n = n;
	assert_int_equal(pthread_create(th, NULL, source_main, src), 0);
}

static void test_lanes_join(void **state)
{
	struct side s;
	struct source src;
	struct mig_lanes_rx *rx = NULL;
	char err[MIG_ERR_LEN] = "";
	pthread_t th;

	(void)state;
	side_open(&s);
	source_start(&src, &th, &s, token, 3);
	if (mig_lanes_rx_accept(s.l, s.ctl, 3, token, 5000, &rx, err))
		fail_msg("accept: %s", err);
	pthread_join(th, NULL);
	assert_int_equal(src.ret, 0);
	mig_lanes_rx_close(rx);
	mig_lanes_tx_close(src.t);
	side_close(&s);
}

/* A connection with another migration's token is closed; the wait goes on. */
static void test_lanes_wrong_token(void **state)
{
	static const uint8_t other[MIG_LANE_TOKEN_LEN] = "another token!!";
	struct side s;
	struct source src;
	struct mig_lanes_rx *rx = NULL;
	char err[MIG_ERR_LEN] = "";
	pthread_t th;
	double t0 = now_ns() / 1e9;

	(void)state;
	side_open(&s);
	source_start(&src, &th, &s, other, 1);
	assert_int_equal(mig_lanes_rx_accept(s.l, s.ctl, 1, token, 1000, &rx, err), -ETIMEDOUT);
	assert_null(rx);
	assert_true(now_ns() / 1e9 - t0 >= 0.9);
	print_message("  %s\n", err);
	assert_non_null(strstr(err, "0 of 1 data connections joined within 1 s"));
	pthread_join(th, NULL);
	mig_lanes_tx_close(src.t);
	side_close(&s);
}

/*
 * mig_lanes_rx_accept for 2 lanes that never come: it returns want_rc
 * within [min_s, max_s) with an error that says want.
 */
static void accept_none(struct side *s, int timeout_ms, int want_rc, double min_s,
			double max_s, const char *want)
{
	struct mig_lanes_rx *rx = NULL;
	char err[MIG_ERR_LEN] = "";
	double t0 = now_ns() / 1e9, dt;

	assert_int_equal(mig_lanes_rx_accept(s->l, s->ctl, 2, token, timeout_ms, &rx, err),
			 want_rc);
	dt = now_ns() / 1e9 - t0;
	print_message("  %.2f s: %s\n", dt, err);
	assert_null(rx);
	assert_true(dt >= min_s && dt < max_s);
	assert_non_null(strstr(err, want));
}

/* The source hangs up the control connection: the wait ends at once. */
static void test_lanes_ctl_closed(void **state)
{
	struct side s;

	(void)state;
	side_open(&s);
	close(s.ctl_peer);
	s.ctl_peer = -1;
	/*
	 * recv() at EOF returns 0 and leaves errno alone: in vmon it still
	 * held EAGAIN from a non-blocking socket, and the end was taken for
	 * "nothing yet" until the timeout. Set the trap again.
	 */
	errno = EAGAIN;
	accept_none(&s, 10000, -ECONNABORTED, 0, 1.0,
		    "the source closed the control connection when 0 of 2");
	side_close(&s);
}

/* Bytes on the control connection are the source going on, not its end. */
static void test_lanes_ctl_bytes(void **state)
{
	struct side s;

	(void)state;
	side_open(&s);
	assert_int_equal(write(s.ctl_peer, "x", 1), 1);
	accept_none(&s, 1000, -ETIMEDOUT, 0.9, 5.0,
		    "0 of 2 data connections joined within 1 s: no more came");
	side_close(&s);
}

/*
 * --bandwidth's bucket: a sender on time or ahead keeps its start; one that
 * fell behind (idle between rounds, a stalled peer) keeps 50 ms of credit
 * and no more, so what it sends next goes out at the cap after that burst.
 */
static void test_pace_bucket(void **state)
{
	const uint64_t ms = 1000000ull;

	(void)state;
	/* ahead of the cap: it will sleep; nothing moves */
	assert_int_equal(mig_pace_start(1000 * ms, 300 * ms, 1200 * ms), 1000 * ms);
	/* behind by 40 ms: within the bucket */
	assert_int_equal(mig_pace_start(1000 * ms, 300 * ms, 1340 * ms), 1000 * ms);
	/* behind by exactly the bucket */
	assert_int_equal(mig_pace_start(1000 * ms, 300 * ms, 1350 * ms), 1000 * ms);
	/* idle for 2 s: only 50 ms of it is credit */
	assert_int_equal(mig_pace_start(1000 * ms, 300 * ms, 3300 * ms), 2950 * ms);
	/* and then on time: the 2 s are gone for good */
	assert_int_equal(mig_pace_start(2950 * ms, 350 * ms, 3300 * ms), 2950 * ms);
	/* nothing sent yet */
	assert_int_equal(mig_pace_start(1000 * ms, 0, 1010 * ms), 1000 * ms);
	assert_int_equal(mig_pace_start(1000 * ms, 0, 2000 * ms), 1950 * ms);
}

/*
 * migrate-set changes the cap while a sender runs: its schedule starts
 * again from now at the new rate, so a lowered cap does not make it wait
 * for what it sent before at the new rate, and a cap where there was none
 * does not count from the first page.
 */
static void test_pace_cap_change(void **state)
{
	const uint64_t ms = 1000000ull, MB = 1000000ull;
	struct mig_pacer p;

	(void)state;
	mig_pacer_init(&p, 0, 80, 1000 * ms);  /* 10 MB/s */
	/* on schedule at 80 Mbit/s: 30 MB in 3 s, nothing to wait */
	mig_pacer_update(&p, 30 * MB, 80, 4000 * ms);
	assert_int_equal(p.t_start, 1000 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 30 * MB, 4000 * ms), 0);
	/* and 2 MB more are due 200 ms later */
	assert_int_equal(mig_pacer_wait_ns(&p, 32 * MB, 4000 * ms), 200 * ms);
	/* lowered to 8 Mbit/s: the 30 MB count as on time; not 26 s of wait */
	mig_pacer_update(&p, 30 * MB, 8, 4000 * ms);
	assert_int_equal(p.cap_mbps, 8);
	assert_int_equal(mig_pacer_wait_ns(&p, 30 * MB, 4000 * ms), 0);
	/* the next 2 MB at 1 MB/s */
	mig_pacer_update(&p, 32 * MB, 8, 4000 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 32 * MB, 4000 * ms), 2000 * ms);
	/* raised to 800 Mbit/s while waiting: 20 ms for those 2 MB, already past */
	mig_pacer_update(&p, 32 * MB, 800, 4500 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 32 * MB, 4500 * ms), 0);
	assert_int_equal(mig_pacer_wait_ns(&p, 34 * MB, 4500 * ms), 20 * ms);
	/* lifted: no wait at all, whatever was sent */
	mig_pacer_update(&p, 500 * MB, 0, 4600 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 500 * MB, 4600 * ms), 0);
	/* a cap again after 500 MB uncapped: from now, not from the first page */
	mig_pacer_update(&p, 500 * MB, 80, 5000 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 500 * MB, 5000 * ms), 0);
	assert_int_equal(mig_pacer_wait_ns(&p, 501 * MB, 5000 * ms), 100 * ms);
	/* an unchanged cap keeps the 50 ms bucket of before */
	mig_pacer_update(&p, 501 * MB, 80, 7000 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 511 * MB, 7000 * ms), 950 * ms);
	/* the clock's origin is no floor: 10 GB at 8 Mbit/s would be due
	 * 10,000 s after it, and the schedule must still start from now */
	mig_pacer_update(&p, 10000 * MB, 8, 20 * ms);
	assert_int_equal(mig_pacer_wait_ns(&p, 10000 * MB, 20 * ms), 0);
}

static bool stop_after(void *ctx)
{
	int *looks = ctx;

	return --*looks <= 0;
}

/*
 * A wait for the cap ends when the sender is told to stop (a cancel, the
 * time limit): at 1 Mbit/s, 2 MiB ahead of schedule is a 16 s wait.
 */
static void test_pace_sleep_stops(void **state)
{
	const uint64_t MB = 1000000;
	uint64_t cap = 1, t0;
	struct mig_pacer p;
	int looks = 3;

	(void)state;
	mig_pacer_init(&p, 0, cap, now_ns());
	t0 = now_ns();
	mig_pace_sleep(&p, 2 * MB, &cap, stop_after, &looks);
	assert_int_equal(looks, 0);
	/* Three looks, two 50 ms slices between them. */
	assert_true(now_ns() - t0 < 1000ull * 1000 * 1000);
	/* No stop, and a cap lifted: no wait at all. */
	cap = 0;
	t0 = now_ns();
	mig_pace_sleep(&p, 4 * MB, &cap, NULL, NULL);
	assert_true(now_ns() - t0 < 50ull * 1000 * 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lanes_join),
		cmocka_unit_test(test_lanes_wrong_token),
		cmocka_unit_test(test_lanes_ctl_closed),
		cmocka_unit_test(test_lanes_ctl_bytes),
		cmocka_unit_test(test_pace_bucket),
		cmocka_unit_test(test_pace_cap_change),
		cmocka_unit_test(test_pace_sleep_stops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
