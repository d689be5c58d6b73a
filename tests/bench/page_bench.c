/*
 * page_bench: the migration's page path without KVM. One process sends a
 * region of random "guest RAM" to another over 127.0.0.1, in the ways the
 * migration could, and each way is timed against the raw link measured in
 * the same run:
 *
 *   raw       1 MiB sends from RAM, received straight into the other RAM:
 *             the floor (two kernel copies, nothing else)
 *   hashed    PAGE_HASHED records (the live default): the source hashes
 *             each page and sends it from RAM; the destination reads the
 *             pages straight into its RAM and checks each hash
 *   buffered  the same records read into a buffer and copied into RAM,
 *             as before direct receive
 *   copied    PAGE_DATA (FERRY_MIG_PAGE_COPY=1): each page copied before
 *             the record is hashed
 *   auto      PAGE_HASHED, received as vmon's loader chooses for this RAM
 *             (mig_recv_buffered): straight in (as hashed), or through a
 *             buffer (as buffered) where the kernel's first write to a page
 *             of it is dear
 *
 * This is S2 of migrate_bench with everything else taken away (no vmon, no
 * handshake, no dirty tracking): what the stream costs on this machine.
 * Every run checks that the destination's RAM equals the source's.
 *
 * With -f each run gets a new receiving process whose RAM is a new memfd,
 * populated (MADV_POPULATE_WRITE) as vmon --incoming populates guest RAM,
 * instead of one warm receiver for all runs.
 *
 * -w warms that RAM first, as vmon --warm-ram does (mem_warm).
 *
 *   page_bench [-s MiB] [-r RUNS] [-m MODE,...] [-t TLSDIR] [-f [-w]]
 *
 * Without -m every mode runs but auto, which is one of hashed and buffered.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/util.h"
#include "migrate/mig.h"
#include "migrate/mig_live.h"
#include "migrate/stream.h"
#include "net/xport.h"

#define CHUNK (1u << 20)
#define PG STREAM_PAGE_SIZE

enum mode { M_RAW, M_HASHED, M_BUFFERED, M_COPIED, M_AUTO, M_NR };
static const char *const mode_name[M_NR] = { "raw", "hashed", "buffered", "copied", "auto" };

struct bench {
	uint8_t *src, *dst;
	struct guest_mem dst_mem;  /* -f: the receiver's RAM, made as vmon makes it */
	uint64_t bytes, pages;
	const char *tls_dir;
	struct xport_tls tls;
	bool fresh;                /* -f: a new receiver with new RAM per run */
	bool warm;                 /* -w: and warm it as vmon --warm-ram does */
};

static void die(const char *what, const char *err)
{
	fprintf(stderr, "page_bench: %s: %s\n", what, err);
	exit(1);
}

/* Shared: the receiving process compares its RAM with the sender's. */
static uint8_t *ram_alloc(uint64_t bytes)
{
	uint8_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap", strerror(errno));
	return p;
}

/*
 * The destination's side: a child process, RAM already faulted in. Pages
 * go through the loader's own sink (mig_page_sink_apply), as in vmon.
 */
static int receive(struct bench *b, enum mode m, struct xport *x)
{
	struct stream_reader r;
	struct stream_io io;
	struct stream_page_run run;
	struct mig_page_sink sink = {
		.ram = b->dst,
		.touched = calloc(b->pages / 64 + 1, sizeof(uint64_t)),
		.owed = calloc(b->pages / 64 + 1, sizeof(uint64_t)),
	};
	const void *body;
	uint64_t len;
	uint32_t flags, type;
	int ret;

	if (!sink.touched || !sink.owed)
		die("receive", "out of memory");
	if (m == M_RAW) {
		ret = 0;
		for (uint64_t off = 0; off < b->bytes && !ret; off += CHUNK)
			ret = xport_recv(x, b->dst + off, CHUNK);
		goto out;
	}
	mig_xport_io(x, &io);
	stream_reader_init(&r, -1);
	r.io = &io;
	ret = stream_read_preamble(&r, &flags);
	while (!ret && sink.pages < b->pages) {
		ret = stream_read_record(&r, &type, &body, &len);
		if (ret || (type != STREAM_REC_PAGE_HASHED && type != STREAM_REC_PAGE_DATA))
			continue;
		/* As the loader does once the VM exists (single connection). */
		if ((m == M_HASHED || (m == M_AUTO && !mig_recv_buffered(&b->dst_mem))) &&
		    !r.page_ram) {
			r.page_ram = b->dst;
			r.page_ram_pages = b->pages;
		}
		ret = stream_read_pages(&r, body, len, b->pages, &run);
		if (!ret)
			mig_page_sink_apply(&sink, &run);
	}
	if (ret || sink.nr_owed)
		fprintf(stderr, "page_bench: receive: %s (%llu pages owed)\n",
			ret ? r.err : "torn pages", (unsigned long long)sink.nr_owed);
	stream_reader_destroy(&r);
out:
	free(sink.touched);
	free(sink.owed);
	return ret || sink.nr_owed;
}

static int send_pages(struct bench *b, enum mode m, struct xport *x)
{
	static uint64_t pfns[STREAM_PAGES_MAX];
	struct stream_writer w;
	struct stream_io io;
	int ret;

	if (m == M_RAW) {
		for (uint64_t off = 0; off < b->bytes; off += CHUNK)
			if (xport_send(x, b->src + off, CHUNK))
				return -EIO;
		return 0;
	}
	mig_xport_io(x, &io);
	stream_writer_init(&w, -1);
	w.io = &io;
	w.hashed = m != M_COPIED;  /* buffered and auto differ at the receiver only */
	/* The order a reader wants before pages; the bodies are not read. */
	ret = stream_write_preamble(&w, STREAM_F_LIVE);
	if (!ret)
		ret = stream_write_record(&w, STREAM_REC_STREAM_HEADER, "", 0);
	if (!ret)
		ret = stream_write_record(&w, STREAM_REC_VM_CONFIG, "", 0);
	if (!ret)
		ret = stream_write_record(&w, STREAM_REC_CPU_MODEL, "", 0);
	for (uint64_t pfn = 0; !ret && pfn < b->pages; pfn += STREAM_PAGES_MAX) {
		size_t n = 0;

		for (uint64_t p = pfn; p < b->pages && n < STREAM_PAGES_MAX; p++)
			pfns[n++] = p;
		ret = stream_write_pages(&w, pfns, n, b->src);
	}
	stream_writer_destroy(&w);
	return ret;
}

/*
 * The destination: one process for every run. Memory a process touches for
 * the first time is slow here (about 1 s per 512 MiB even after
 * MADV_POPULATE_WRITE: the hypervisor builds its mappings per address space
 * on first access), so it touches its RAM once, as vmon --incoming does,
 * and then serves every run.
 */
static void receiver(struct bench *b, const struct xport_addr *addr, unsigned n)
{
	const struct xport_tls *tls = b->tls_dir ? &b->tls : NULL;
	char err[XPORT_ERR_LEN], m, ok;
	struct xport *x;

	if (b->fresh) {
		/* As vmon --incoming makes guest RAM: a memfd, populated (warmed). */
		int ret = mem_create(&b->dst_mem, b->bytes,
				     MEM_PREALLOC | (b->warm ? MEM_WARM : 0));

		if (ret)
			die("guest RAM", strerror(-ret));
		b->dst = b->dst_mem.base;
		fprintf(stderr, "page_bench: receiver: a first write to its RAM costs the kernel "
			"%lld ns a page more: auto receives %s\n",
			(long long)b->dst_mem.cold_write_ns,
			mig_recv_buffered(&b->dst_mem) ? "through a buffer" : "straight into it");
	} else {
		for (uint64_t off = 0; off < b->bytes; off += PG)
			b->dst[off] = 0;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!b->fresh)
			memset(b->dst, 0, b->bytes);  /* before the clock starts */
		if (xport_connect(addr, tls, 10000, &x, err))
			die("connect", err);
		if (xport_recv(x, &m, 1) || m < 0 || m >= M_NR)
			die("receiver", "no mode");
		ok = receive(b, (enum mode)m, x) ? 'n' : 'y';
		xport_send(x, "d", 1);  /* done: the clock stops here */
		if (ok == 'y' && memcmp(b->dst, b->src, b->bytes))
			ok = 'n';
		xport_send(x, &ok, 1);
		xport_close(x);
	}
	_exit(0);
}

/* One transfer; MB/s, or a negative number when it failed. */
static double run_one(struct bench *b, struct xport_listener *l, enum mode m)
{
	char err[XPORT_ERR_LEN], ok = 0, c = (char)m;
	struct xport *x;
	uint64_t t0, t1;

	if (xport_accept(l, 60000, &x, err))
		die("accept", err);
	if (xport_send(x, &c, 1))
		die("send", x->err);
	t0 = now_ns();
	if (send_pages(b, m, x))
		fprintf(stderr, "page_bench: %s: send: %s\n", mode_name[m], x->err);
	/* Then the receiver checks its RAM, untimed, and says how it went. */
	t1 = xport_recv(x, &ok, 1) ? 0 : now_ns();
	if (t1 && xport_recv(x, &ok, 1))
		t1 = 0;
	xport_close(x);
	if (ok != 'y' || !t1) {
		fprintf(stderr, "page_bench: %s: the destination's RAM differs or "
			"the transfer failed\n", mode_name[m]);
		return -1;
	}
	return (double)b->bytes / ((double)(t1 - t0) / 1e9) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	struct bench b = { 0 };
	bool want[M_NR] = { true, true, true, true };
	double mbs[M_NR][64];
	unsigned runs = 3, mib = 512;
	struct xport_addr addr = { .host = "127.0.0.1", .port = 0 };
	struct xport_listener *l;
	char err[XPORT_ERR_LEN];
	unsigned nr_runs = 0;
	int c, status = 0, wstatus;
	pid_t pid = -1;

	while ((c = getopt(argc, argv, "s:r:m:t:fwh")) != -1) {
		switch (c) {
		case 'f': b.fresh = true; break;
		case 'w': b.warm = true; break;
		case 's': mib = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': runs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': b.tls_dir = optarg; break;
		case 'm':
			memset(want, 0, sizeof(want));
			for (char *s = strtok(optarg, ","); s; s = strtok(NULL, ",")) {
				unsigned i;

				for (i = 0; i < M_NR && strcmp(s, mode_name[i]); i++)
					;
				if (i == M_NR)
					die("-m", "modes are raw, hashed, buffered, copied, auto");
				want[i] = true;
			}
			break;
		default:
			fprintf(stderr, "usage: page_bench [-s MiB] [-r RUNS] "
				"[-m raw,hashed,buffered,copied,auto] [-t TLSDIR] [-f [-w]]\n"
				"  -f  a fresh receiver per run, its RAM a new memfd "
				"populated as vmon --incoming does\n"
				"  -w  and warmed as vmon --warm-ram does (mem_warm)\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (!mib || mib > 65536 || !runs || runs > 64)
		die("usage", "-s 1..65536 MiB, -r 1..64 runs");
	if (b.tls_dir && xport_tls_from_dir(b.tls_dir, &b.tls, err))
		die("tls", err);
	b.bytes = (uint64_t)mib << 20;
	b.pages = b.bytes / PG;
	b.src = ram_alloc(b.bytes);
	if (!b.fresh)
		b.dst = ram_alloc(b.bytes);
	if (xport_listen(&addr, b.tls_dir ? &b.tls : NULL, &l, err))
		die("listen", err);
	addr.port = xport_listener_port(l);
	for (unsigned m = 0; m < M_NR; m++)
		nr_runs += want[m] ? runs : 0;
	if (!b.fresh) {
		pid = fork();
		if (pid == 0)
			receiver(&b, &addr, nr_runs);
	}
	/*
	 * The sender's RAM, random so that no page is zero and nothing
	 * compresses, and touched here as a running guest's would be.
	 */
	for (uint64_t i = 0, s = 0x9E3779B97F4A7C15ull; i < b.bytes; i += 8) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		memcpy(b.src + i, &s, 8);
	}
	/* Interleaved, so that the machine's drift hits every mode alike. */
	for (unsigned r = 0; r < runs; r++)
		for (unsigned m = 0; m < M_NR; m++)
			if (want[m]) {
				if (b.fresh) {
					pid = fork();
					if (pid == 0)
						receiver(&b, &addr, 1);
				}
				mbs[m][r] = run_one(&b, l, m);
				status |= mbs[m][r] < 0;
				if (b.fresh)
					waitpid(pid, &wstatus, 0);
			}
	if (!b.fresh)
		waitpid(pid, &wstatus, 0);
	xport_listener_close(l);
	printf("page path, %u MiB of random pages over %s on 127.0.0.1, median of %u%s\n",
	       mib, b.tls_dir ? "TLS" : "TCP", runs,
	       !b.fresh ? "" : b.warm ? ", fresh receiver RAM each run, warmed" :
	       ", fresh receiver RAM each run");
	printf("%-9s %9s %9s %7s\n", "mode", "MB/s", "ms", "of raw");
	for (unsigned m = 0; m < M_NR; m++) {
		double med, raw = 0;

		if (!want[m])
			continue;
		qsort(mbs[m], runs, sizeof(double), cmp_double);
		med = mbs[m][runs / 2];
		if (want[M_RAW])
			raw = mbs[M_RAW][runs / 2];
		printf("%-9s %9.0f %9.1f", mode_name[m], med, (double)b.bytes / med / 1e3);
		if (raw > 0)
			printf(" %6.0f%%", 100.0 * med / raw);
		putchar('\n');
	}
	return status;
}
