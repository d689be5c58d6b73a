/*
 * Disks without a VM: the block hypercalls' decoding and request
 * validation, --disk parsing, the migration's disk precheck (with a real
 * nbdkit on 127.0.0.1, and a silent server in a network namespace of its
 * own), and the block log format and its checker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/hcall.h"
#include "core/util.h"
#include "storage/blk.h"
#include "storage/blk_state.h"
#include "storage/blklog.h"

#define MEM  (64ull << 20)
#define DISK (16ull << 20)

static int decode(uint64_t nr, uint64_t a0, uint64_t a1)
{
	struct gabi_hcall page = { .nr = nr, .args = { a0, a1 } };
	struct hcall_req r;

	return hcall_decode(&page, MEM, &r);
}

static void test_blk_decode(void **state)
{
	(void)state;
	assert_string_equal(hcall_name(GABI_HC_BLK_SUBMIT), "blk_submit");
	assert_int_equal(decode(GABI_HC_BLK_INFO, 0, 0x500000), 0);
	assert_int_equal(decode(GABI_HC_BLK_INFO, GABI_BLK_MAX_DISKS, 0x500000), -ENODEV);
	assert_int_equal(decode(GABI_HC_BLK_INFO, 0, 0x500004), -EINVAL);
	/* The ring: 64-byte aligned, all of it inside RAM; the kick: a disk number. */
	assert_int_equal(decode(GABI_HC_BLK_RING, 0, 0x800000), 0);
	assert_int_equal(decode(GABI_HC_BLK_RING, 0, 0x800020), -EINVAL);
	assert_int_equal(decode(GABI_HC_BLK_RING, 0, MEM - sizeof(struct gabi_blk_ring)), 0);
	assert_int_equal(decode(GABI_HC_BLK_RING, 0, MEM - sizeof(struct gabi_blk_ring) + 64),
			 -EFAULT);
	assert_int_equal(decode(GABI_HC_BLK_RING, GABI_BLK_MAX_DISKS, 0x800000), -ENODEV);
	assert_int_equal(decode(GABI_HC_BLK_KICK, GABI_BLK_MAX_DISKS - 1, 0), 0);
	assert_int_equal(decode(GABI_HC_BLK_KICK, GABI_BLK_MAX_DISKS, 0), -ENODEV);
	assert_int_equal(decode(GABI_HC_BLK_INFO, 0, MEM - 16), -EFAULT);
	assert_int_equal(decode(GABI_HC_BLK_SUBMIT, 7, 0x500040), 0);
	assert_int_equal(decode(GABI_HC_BLK_SUBMIT, 0, 0x500020), -EINVAL);
	assert_int_equal(decode(GABI_HC_BLK_SUBMIT, 0, MEM), -EFAULT);
	assert_int_equal(decode(GABI_HC_BLK_SUBMIT, 0, ~0ull << 6), -EFAULT);
}

static int req(uint32_t op, uint64_t off, uint64_t len, uint64_t buf)
{
	struct gabi_blk_req q = { .op = op, .offset = off, .len = len, .buf_gpa = buf };

	return hcall_blk_req_check(&q, DISK, MEM);
}

static void test_blk_req_check(void **state)
{
	struct gabi_blk_req q = { .op = GABI_BLK_READ, .len = 512, .flags = 1 };

	(void)state;
	assert_int_equal(req(GABI_BLK_READ, 0, 4096, 0x500000), 0);
	assert_int_equal(req(GABI_BLK_WRITE, DISK - 512, 512, MEM - 512), 0);
	assert_int_equal(req(GABI_BLK_FLUSH, 0, 0, 0), 0);
	assert_int_equal(req(GABI_BLK_FLUSH, 0, 512, 0), -EINVAL);
	assert_int_equal(req(0, 0, 512, 0x500000), -EINVAL);
	assert_int_equal(req(4, 0, 512, 0x500000), -EINVAL);
	assert_int_equal(req(GABI_BLK_READ, 0, 0, 0x500000), -EINVAL);
	assert_int_equal(req(GABI_BLK_READ, 1, 512, 0x500000), -EINVAL);
	assert_int_equal(req(GABI_BLK_READ, 0, 513, 0x500000), -EINVAL);
	assert_int_equal(req(GABI_BLK_READ, 0, GABI_BLK_MAX_IO + 512, 0x500000), -EINVAL);
	assert_int_equal(req(GABI_BLK_READ, DISK, 512, 0x500000), -ERANGE);
	assert_int_equal(req(GABI_BLK_WRITE, DISK - 512, 1024, 0x500000), -ERANGE);
	assert_int_equal(req(GABI_BLK_WRITE, ~0ull << 9, 1024, 0x500000), -ERANGE);
	assert_int_equal(req(GABI_BLK_WRITE, 0, 1024, MEM - 512), -EFAULT);
	assert_int_equal(req(GABI_BLK_WRITE, 0, 1024, ~0ull - 100), -EFAULT);
	assert_int_equal(hcall_blk_req_check(&q, DISK, MEM), -EINVAL);
}

static void test_spec(void **state)
{
	struct blk_spec s;
	char err[BLK_ERR_LEN];

	(void)state;
	assert_int_equal(blk_spec_parse("/srv/vm1.img", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, BLK_FILE);
	assert_string_equal(s.target, "/srv/vm1.img");
	assert_string_equal(s.lease, "");
	assert_int_equal(blk_spec_parse("nbd://h:10809/exp,lease=/srv/l", &s, err, sizeof(err)), 0);
	assert_int_equal(s.kind, BLK_NBD);
	assert_string_equal(s.target, "nbd://h:10809/exp");
	assert_string_equal(s.lease, "/srv/l");
	assert_string_equal(s.spec, "nbd://h:10809/exp,lease=/srv/l");
	assert_int_equal(blk_spec_parse("nbd://h:10809/exp", &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "lease=PATH"));
	assert_int_equal(blk_spec_parse("nbd://h:1/e,lease=/l,ro", &s, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_spec_parse("nbd://", &s, err, sizeof(err)), -EINVAL);
	assert_int_equal(blk_spec_parse("", &s, err, sizeof(err)), -EINVAL);
	/* a spec travels to another host: relative paths would name other files there */
	assert_int_equal(blk_spec_parse("vm1.img", &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "must be absolute"));
	assert_int_equal(blk_spec_parse("nbd://h:1/e,lease=l", &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "must be absolute"));
	assert_int_equal(blk_spec_parse("a\nb", &s, err, sizeof(err)), -EINVAL);
}

static int precheck_text(const char *text, char *err)
{
	return blk_state_precheck(1, (const uint8_t *)text, strlen(text), err, BLK_ERR_LEN);
}

/*
 * The migration's disk precheck on the destination: image files must open
 * here with the source's size; a state it does not understand is refused.
 * Nothing is locked. NBD exports: test_precheck_nbd.
 */
static void test_precheck(void **state)
{
	char dir[] = "/tmp/ferry-blk-XXXXXX", img[64], text[256], err[BLK_ERR_LEN];
	FILE *f;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/vm1.img", dir);
	fd = open(img, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	/* the source holds its lock: the precheck takes none */
	assert_int_equal(fcntl(fd, F_OFD_SETLK, &(struct flock){ .l_type = F_WRLCK }), 0);
	snprintf(text, sizeof(text), "%d %s\n", 1 << 20, img);
	assert_int_equal(precheck_text(text, err), 0);
	snprintf(text, sizeof(text), "%d %s\n", 2 << 20, img);
	assert_int_equal(precheck_text(text, err), -EBADMSG);
	assert_non_null(strstr(err, "is 1048576 bytes here, 2097152 on the source"));
	snprintf(text, sizeof(text), "%d %s/other.img\n", 1 << 20, dir);
	assert_int_equal(precheck_text(text, err), -ENOENT);
	assert_non_null(strstr(err, "other.img: No such file or directory"));
	snprintf(text, sizeof(text), "%d %s\n", 1 << 20, dir);
	assert_int_equal(precheck_text(text, err), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	/* nothing but a regular file is opened: not a device either */
	assert_int_equal(precheck_text("4096 /dev/null\n", err), -EINVAL);
	/* NBD: the lease file is looked at first, and must exist */
	assert_int_equal(precheck_text("4096 nbd://127.0.0.1:1/e,lease=/nonexistent/l\n", err),
			 -ENOENT);
	assert_non_null(strstr(err, "lease file /nonexistent/l"));
	assert_non_null(strstr(err, "storage shared"));
	assert_int_equal(precheck_text("", err), 0);
	assert_int_equal(precheck_text("garbage\n", err), -EBADMSG);
	assert_int_equal(blk_state_precheck(9, (const uint8_t *)"", 0, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "not understood"));
	/* the lock is still the source's */
	f = fopen(img, "r+");
	assert_non_null(f);
	assert_int_equal(fcntl(fileno(f), F_OFD_SETLK, &(struct flock){ .l_type = F_WRLCK }), -1);
	fclose(f);
	close(fd);
	unlink(img);
	rmdir(dir);
}

static int state_parse(uint32_t version, const char *text)
{
	struct blk_state st;
	char err[BLK_ERR_LEN];

	return blk_state_parse(version, (const uint8_t *)text, strlen(text), &st, err,
			       sizeof(err));
}

/*
 * DEVICE_STATE "blk" has one form, the writer's: what parses writes back
 * the same bytes, and anything else is refused (fuzz_blk_state checks the
 * first half on random input).
 */
static void test_state_one_form(void **state)
{
	static const char *const good2 =
		"16777216 /a.img\n4096 nbd://h:1/e,lease=/l\nring 0 4096 0\nring 1 0 4294967295\n";
	static const struct { uint32_t v; const char *text; } bad[] = {
		{ 1, "12abc /p\n" },            /* junk after the size */
		{ 1, "-1 /p\n" },               /* a sign */
		{ 1, "012 /p\n" },              /* a leading zero */
		{ 1, "18446744073709551616 /p\n" }, /* 2^64 */
		{ 1, "12  /p\n" },              /* two spaces: a path " /p" is not ours */
		{ 1, "12 /p" },                 /* no newline at the end */
		{ 1, "12 /p\n\n" },             /* an empty line */
		{ 1, "12\n" },                  /* no spec */
		{ 1, "12 nbd://h:1/e\n" },      /* NBD without a lease */
		{ 1, "12 /p\nring 0 4096 0\n" }, /* a ring in version 1 */
		{ 2, "ring 0 4096 0\n12 /p\n" }, /* a ring before its disk */
		{ 2, "12 /p\nring 1 4096 0\n" }, /* a ring of no disk */
		{ 2, "12 /p\n12 /q\nring 1 4096 0\nring 0 4096 0\n" }, /* out of order */
		{ 2, "12 /p\nring 0 4096 0\nring 0 4096 0\n" },        /* twice */
		{ 2, "12 /p\nring 0 04096 0\n" },       /* a leading zero */
		{ 2, "12 /p\nring 0 4096 4294967296\n" }, /* head over 32 bits */
		{ 2, "12 /p\nring 0 4096 0 \n" },       /* a trailing space */
		{ 2, "12 /p\nring 0 4096\n" },          /* too few numbers */
		{ 2, "12 /p\nring 0 4096 0\n13 /q\n" }, /* a disk after the rings */
		{ 4, "12 /p\n" },                       /* an unknown version */
		{ 3, "12 /p\n" },                       /* version 3, nothing stalled */
		{ 2, "12 /p\nstalled 0 full\n" },      /* stalled in version 2 */
		{ 3, "12 /p\nstalled 1 full\n" },      /* no disk 1 */
		{ 3, "12 /p\nstalled 0 half\n" },      /* another word */
		{ 3, "12 /p\n12 /q\nstalled 1 full\nstalled 0 full\n" }, /* out of order */
		{ 3, "12 /p\nstalled 0 full\nring 0 4096 0\n" },      /* a ring after it */
		{ 3, "12 /p\nstalled 0 full\n13 /q\n" },               /* a disk after it */
		{ 3, "12 /p\n12 /q\nstalled 0 full\nheld 1 0 0 2 0 0 512 0 0\n" }, /* not stalled */
		{ 3, "12 /p\nstalled 0 full\nheld 0 2 0 2 0 0 512 0 0\n" },  /* RING 2 */
		{ 3, "12 /p\nring 0 4096 0\nstalled 0 full\nheld 0 2 4352 2 0 0 512 0 0\n" }, /* RING 2 (fuzz) */
		{ 1, "12 /p\nring 8 4096 0\n" },       /* a digit over the maximum (7) */
		{ 3, "12 /p\nstalled 0 full\nheld 0 1 4352 2 0 0 512 0 0\n" }, /* no ring */
		{ 3, "12 /p\nring 0 4096 0\nstalled 0 full\nheld 0 1 4096 2 0 0 512 0 0\n" }, /* not a slot */
		{ 3, "12 /p\nring 0 4096 0\nstalled 0 full\nheld 0 1 4384 2 0 0 512 0 0\n" }, /* mid-slot */
		{ 3, "12 /p\nring 0 4096 0\nstalled 0 full\nheld 0 1 8448 2 0 0 512 0 0\n" }, /* past slot 63 */
		{ 3, "12 /p\nstalled 0 full\nheld 0 0 0 4294967296 0 0 512 0 0\n" }, /* op over 32 bits */
		{ 3, "12 /p\nstalled 0 full\nheld 0 0 0 2 0 0 512 0\n" },   /* a number short */
		{ 3, "12 /p\nstalled 0 full\nheld 0 0 0 2 0 0 512 0 0\nstalled 0 full\n" },
	};
	struct blk_state st;
	char err[BLK_ERR_LEN];
	uint32_t v;
	uint8_t *out;
	size_t len;

	(void)state;
	assert_int_equal(blk_state_parse(2, (const uint8_t *)good2, strlen(good2), &st, err,
					 sizeof(err)), 0);
	assert_int_equal(st.n, 2);
	assert_int_equal(st.nr_rings, 2);
	assert_int_equal(st.rings[1].head, UINT32_MAX);
	assert_int_equal(blk_state_format(&st, &v, &out, &len), 0);
	assert_int_equal(v, 2);
	assert_int_equal(len, strlen(good2));
	assert_memory_equal(out, good2, len);
	free(out);
	assert_int_equal(state_parse(1, ""), 0);
	/* Version 3: the ring's slot 0 and 63, and a request of blk_submit's. */
	assert_int_equal(state_parse(3, "12 /p\nring 0 4096 0\nstalled 0 gone\n"
				     "held 0 1 4352 2 0 0 512 0 0\nheld 0 1 8384 2 1 512 512 0 5\n"
				     "held 0 0 0 1 0 0 512 0 0\n"), 0);
	assert_int_equal(state_parse(1, "0 /p, with commas.img\n"), 0);
	assert_int_equal(state_parse(1, "18446744073709551615 /p\n"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (state_parse(bad[i].v, bad[i].text) != -EBADMSG)
			fail_msg("accepted: version %u, '%s'", bad[i].v, bad[i].text);
	}
}

/* A TCP listener on 127.0.0.1 (port chosen by the kernel); its port. */
static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* nbdkit serving a 1 MiB memory disk on port, or -1 when nbdkit is missing. */
static pid_t nbdkit_start(int port)
{
	char p[16];
	pid_t pid;

	if (access("/usr/bin/nbdkit", X_OK) && access("/usr/sbin/nbdkit", X_OK))
		return -1;
	snprintf(p, sizeof(p), "%d", port);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		execlp("nbdkit", "nbdkit", "-f", "-i", "127.0.0.1", "-p", p, "memory", "1M",
		       (char *)NULL);
		_exit(127);
	}
	/* Ready when it accepts a connection. */
	for (int i = 0; i < 200; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int ok = !connect(fd, (struct sockaddr *)&a, sizeof(a));

		close(fd);
		if (ok)
			return pid;
		usleep(20000);
	}
	fail_msg("nbdkit did not listen on port %d", port);
	return -1;
}

static int precheck_nbd(uint64_t size, int port, const char *lease, char *err)
{
	char text[256];

	snprintf(text, sizeof(text), "%llu nbd://127.0.0.1:%d/,lease=%s\n",
		 (unsigned long long)size, port, lease);
	return precheck_text(text, err);
}

/*
 * The precheck of an NBD disk: the lease file must exist here, the server
 * must answer, with the source's size. A server that takes the connection
 * but does not answer in time (one client at a time, busy with the
 * source's) is no reason to refuse. The lease file is not created, not
 * locked, and the source's lock on it survives.
 */
static void test_precheck_nbd(void **state)
{
	char dir[] = "/tmp/ferry-nbdpre-XXXXXX", lease[64], err[BLK_ERR_LEN];
	struct timespec t0, t1;
	int lfd, busy, port, busy_port;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(lease, sizeof(lease), "%s/vm1.lease", dir);
	/* a port nobody listens on: refused, naming the server */
	close(listen_any(&port));
	assert_int_equal(precheck_nbd(1 << 20, port, "/nonexistent/l", err), -ENOENT);
	assert_int_equal(access("/nonexistent/l", F_OK), -1);
	lfd = open(lease, O_RDWR | O_CREAT, 0600);
	assert_true(lfd >= 0);
	assert_int_equal(fcntl(lfd, F_OFD_SETLK, &(struct flock){ .l_type = F_WRLCK }), 0);
	assert_true(precheck_nbd(1 << 20, port, lease, err) < 0);
	assert_non_null(strstr(err, "nbd://127.0.0.1:"));
	pid = nbdkit_start(port);
	if (pid < 0) {
		close(lfd);
		unlink(lease);
		rmdir(dir);
		print_message("nbdkit is not installed: the served cases did not run\n");
		skip();
	}
	assert_int_equal(precheck_nbd(1 << 20, port, lease, err), 0);
	assert_int_equal(precheck_nbd(2 << 20, port, lease, err), -EBADMSG);
	assert_non_null(strstr(err, "is 1048576 bytes here, 2097152 on the source"));
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	/* taken but never answered: accepted after the wait, size unchecked */
	busy = listen_any(&busy_port);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(precheck_nbd(2 << 20, busy_port, lease, err), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >=
		    (long)blk_defaults.probe_wait_ms - 10);
	close(busy);
	/* the source's lock is still its own */
	{
		int fd = open(lease, O_RDWR);

		assert_true(fd >= 0);
		assert_int_equal(fcntl(fd, F_OFD_SETLK, &(struct flock){ .l_type = F_WRLCK }),
				 -1);
		close(fd);
	}
	close(lfd);
	unlink(lease);
	rmdir(dir);
}

/*
 * A server that never answers (its SYNs go nowhere) is refused after the
 * wait, naming it. Needs a network namespace of its own: a veth whose
 * neighbour 10.9.9.2 is a MAC nobody has, so nothing leaves it. Skipped
 * where namespaces or veth cannot be made.
 */
static void test_precheck_nbd_silent(void **state)
{
	char lease[] = "/tmp/ferry-nbdsil-XXXXXX";
	int lfd, st;
	pid_t pid;

	(void)state;
	lfd = mkstemp(lease);
	assert_true(lfd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		char err[BLK_ERR_LEN], text[512];
		int ret;

		if (unshare(CLONE_NEWNET) ||
		    system("ip link add v0 type veth peer name v1 && "
			   "ip addr add 10.9.9.1/24 dev v0 && ip link set v0 up && "
			   "ip link set v1 up && ip neigh add 10.9.9.2 lladdr "
			   "02:00:00:00:00:99 dev v0 nud permanent 2>/dev/null"))
			_exit(77);
		uint64_t t0;

		/* Three silent servers are waited for together, not in turn. */
		snprintf(text, sizeof(text),
			 "4096 nbd://10.9.9.2:10809/x,lease=%s\n"
			 "4096 nbd://10.9.9.2:10810/y,lease=%s\n"
			 "4096 nbd://10.9.9.2:10811/z,lease=%s\n", lease, lease, lease);
		t0 = now_ns();
		ret = precheck_text(text, err);
		t0 = (now_ns() - t0) / 1000000;
		if (t0 >= blk_defaults.probe_wait_ms * 3 / 2) {
			fprintf(stderr, "three probes took %llu ms\n", (unsigned long long)t0);
			_exit(1);
		}
		_exit(ret == -ETIMEDOUT &&
		      strstr(err, "disk 0: nbd://10.9.9.2:10809/x: no answer in") ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(lfd);
	unlink(lease);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77) {
		print_message("no network namespace with veth here: not run\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* A log of n slots holding blocks 1..m, as the writer leaves it. */
#define SLOTS 8
static uint64_t img[SLOTS][BLKLOG_WORDS];

static void write_log(uint64_t m)
{
	uint64_t prev = 0;

	memset(img, 0, sizeof(img));
	for (uint64_t seq = 1; seq <= m; seq++)
		prev = blklog_fill(img[(seq - 1) % SLOTS], seq, prev, SLOTS);
}

static uint32_t check_log(struct blklog_result *r)
{
	struct blklog_slot s[SLOTS];

	for (unsigned i = 0; i < SLOTS; i++)
		blklog_parse(img[i], i, SLOTS, &s[i]);
	return blklog_verify(s, SLOTS, r);
}

static void test_log_ok(void **state)
{
	struct blklog_result r;

	(void)state;
	for (uint64_t m = 0; m < 3 * SLOTS; m++) {
		write_log(m);
		assert_int_equal(check_log(&r), BLKLOG_OK);
		assert_int_equal(r.last_seq, m);
		assert_int_equal(r.valid, m < SLOTS ? m : SLOTS);
	}
}

static void test_log_faults(void **state)
{
	static uint64_t stale[BLKLOG_WORDS];
	struct blklog_result r;

	(void)state;
	/* A lost write in the middle. */
	write_log(5);
	memset(img[2], 0, sizeof(img[2]));
	assert_int_equal(check_log(&r), BLKLOG_E_GAP);
	assert_int_equal(r.want_seq, 3);
	/* A stale block: the write of block 11 over block 3 was lost. */
	write_log(3);
	memcpy(stale, img[2], sizeof(stale));
	write_log(SLOTS + 5);
	memcpy(img[2], stale, sizeof(stale));
	assert_int_equal(check_log(&r), BLKLOG_E_GAP);
	assert_int_equal(r.want_seq, SLOTS + 3);
	/* A torn block in the middle. */
	write_log(6);
	img[3][100] ^= 1;
	assert_int_equal(check_log(&r), BLKLOG_E_TORN);
	/* A torn block where the next write goes is the unacknowledged tail. */
	write_log(6);
	img[6][0] = 0x1234;
	assert_int_equal(check_log(&r), BLKLOG_OK);
	assert_int_equal(r.torn_tail, 1);
	write_log(SLOTS + 2);
	img[2][200] = 7;
	assert_int_equal(check_log(&r), BLKLOG_OK);
	assert_int_equal(r.last_seq, SLOTS + 2);
	/* A block written twice with different contents breaks the chain. */
	write_log(6);
	blklog_fill(img[3], 4, 0x999, SLOTS);
	assert_int_equal(check_log(&r), BLKLOG_E_CHAIN);
	/* A block in the wrong slot is not valid there. */
	write_log(3);
	memcpy(img[5], img[1], sizeof(img[1]));
	assert_int_equal(check_log(&r), BLKLOG_E_TORN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blk_decode),
		cmocka_unit_test(test_blk_req_check),
		cmocka_unit_test(test_spec),
		cmocka_unit_test(test_precheck),
		cmocka_unit_test(test_state_one_form),
		cmocka_unit_test(test_precheck_nbd),
		cmocka_unit_test(test_precheck_nbd_silent),
		cmocka_unit_test(test_log_ok),
		cmocka_unit_test(test_log_faults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
