/*
 * loopback_bw: the baseline the migration benchmark compares against. One
 * process sends 1 GiB to another over 127.0.0.1 in 1 MiB writes, through
 * the same transports the migration uses (plain TCP, TLS with -t DIR, and
 * RDMA with -r ADDR, an address of an RDMA device here: both ends then
 * meet there instead of on 127.0.0.1), and prints MB/s. The receiver only
 * reads: this is the link, not a VM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "net/xport.h"

#define CHUNK (1u << 20)

int main(int argc, char **argv)
{
	struct xport_addr addr = { .host = "127.0.0.1", .port = 0 };
	struct xport_tls tls;
	struct xport_listener *l;
	struct xport *x;
	uint64_t total = 1ull << 30, t0;
	char err[XPORT_ERR_LEN];
	const char *tls_dir = NULL;
	uint8_t *buf;
	int c, status, pfd[2];
	pid_t pid;

	while ((c = getopt(argc, argv, "t:s:r:")) != -1) {
		switch (c) {
		case 't':
			tls_dir = optarg;
			break;
		case 'r':
			snprintf(addr.host, sizeof(addr.host), "%s", optarg);
			addr.kind = XPORT_RDMA;
			break;
		case 's':
			total = strtoull(optarg, NULL, 10) << 20;
			break;
		default:
			fprintf(stderr, "usage: loopback_bw [-t TLS_DIR | -r RDMA_ADDR] [-s MiB]\n");
			return 2;
		}
	}
	if (tls_dir && xport_tls_from_dir(tls_dir, &tls, err)) {
		fprintf(stderr, "loopback_bw: %s\n", err);
		return 2;
	}
	buf = malloc(CHUNK);
	if (!buf)
		return 1;
	for (unsigned i = 0; i < CHUNK; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	/*
	 * Fork before any transport exists: a child may not use the RDMA
	 * devices its parent opened (the kernel refuses it). The child
	 * listens and receives, and tells its port through a pipe.
	 */
	if (pipe(pfd))
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		uint16_t port;

		close(pfd[0]);
		if (xport_listen(&addr, tls_dir ? &tls : NULL, &l, err)) {
			fprintf(stderr, "loopback_bw: %s\n", err);
			_exit(1);
		}
		port = xport_listener_port(l);
		if (write(pfd[1], &port, sizeof(port)) != (ssize_t)sizeof(port) ||
		    xport_accept(l, 10000, &x, err)) {
			fprintf(stderr, "loopback_bw: %s\n", err);
			_exit(1);
		}
		for (uint64_t got = 0; got < total; got += CHUNK)
			if (xport_recv(x, buf, CHUNK))
				_exit(1);
		xport_send(x, "k", 1);
		xport_close(x);
		xport_listener_close(l);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], &addr.port, sizeof(addr.port)) != (ssize_t)sizeof(addr.port)) {
		fprintf(stderr, "loopback_bw: the receiver did not start\n");
		waitpid(pid, &status, 0);
		return 1;
	}
	if (xport_connect(&addr, tls_dir ? &tls : NULL, 10000, &x, err)) {
		fprintf(stderr, "loopback_bw: %s\n", err);
		return 1;
	}
	t0 = now_ns();
	for (uint64_t sent = 0; sent < total; sent += CHUNK)
		if (xport_send(x, buf, CHUNK)) {
			fprintf(stderr, "loopback_bw: %s\n", x->err);
			return 1;
		}
	xport_recv(x, buf, 1);      /* the receiver has everything */
	printf("%.1f\n", (double)total / ((double)(now_ns() - t0) / 1e9) / 1e6);
	xport_close(x);
	waitpid(pid, &status, 0);
	return 0;
}
