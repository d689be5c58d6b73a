/*
 * The migration stream's record layer (migrate/stream.c) against
 * docs/migration-stream.md: a full round trip, then every way a stream can
 * be wrong, each of which must be refused with the right errno and a
 * message naming the offset and the record. PAGE_DATA bodies on their own
 * are in test_stream_page.c.
 *
 * Expected bytes are computed here with libxxhash directly over the spec's
 * layout, not with the library's helpers: the spec is the oracle.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t, for the dispatch test */
#include "stream_test.h"
/* Both forms side by side: plain XXH3_* and the explicit _dispatch ones. */
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>

/* ---- the round trip ---- */

static void write_pb(struct stream_writer *w, uint32_t type, const void *m)
{
	assert_int_equal(stream_write_pb(w, type, (const ProtobufCMessage *)m), 0);
}

static void write_full_stream(int fd, uint8_t *ram, bool with_unknown)
{
	struct stream_writer w;
	Ferry__Mig__StreamHeader sh = FERRY__MIG__STREAM_HEADER__INIT;
	Ferry__Mig__VmConfig vc = FERRY__MIG__VM_CONFIG__INIT;
	Ferry__Mig__CpuModel cm = FERRY__MIG__CPU_MODEL__INIT;
	Ferry__Mig__RoundInfo ri = FERRY__MIG__ROUND_INFO__INIT;
	Ferry__Mig__VcpuState vs = FERRY__MIG__VCPU_STATE__INIT;
	Ferry__Mig__ClockState cs = FERRY__MIG__CLOCK_STATE__INIT;
	Ferry__Mig__DeviceState ds = FERRY__MIG__DEVICE_STATE__INIT;
	Ferry__Mig__StreamEnd end = FERRY__MIG__STREAM_END__INIT;
	uint64_t pfns[600], again = 5;
	static uint8_t big[100000];

	for (unsigned i = 0; i < 600; i++)
		pfns[i] = i;
	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_preamble(&w, STREAM_F_LIVE), 0);
	sh.source_host = "host1";
	sh.vm_name = "vm1";
	sh.purpose = FERRY__MIG__PURPOSE__PURPOSE_LIVE;
	write_pb(&w, STREAM_REC_STREAM_HEADER, &sh);
	vc.name = "vm1";
	vc.nr_pages = NR_PAGES;
	vc.mem_bytes = (uint64_t)NR_PAGES * PG;
	vc.nr_vcpus = 2;
	write_pb(&w, STREAM_REC_VM_CONFIG, &vc);
	cm.name = "x86-64-v2";
	write_pb(&w, STREAM_REC_CPU_MODEL, &cm);

	assert_int_equal(stream_write_pages(&w, pfns, 600, ram), 0);
	ri.round = 1;
	ri.pages = 600;
	write_pb(&w, STREAM_REC_ROUND, &ri);
	if (with_unknown) {
		/* Longer than the reader's skip chunk, odd length: padding. */
		memset(big, 0xa5, sizeof(big));
		assert_int_equal(stream_write_record(&w, STREAM_REC_OPTIONAL | 0x42,
						     big, 99997), 0);
	}
	/* Page 5 changes and is resent: the last copy wins. */
	memset(ram + 5 * PG, 0x77, PG);
	assert_int_equal(stream_write_pages(&w, &again, 1, ram), 0);

	for (unsigned i = 0; i < 2; i++) {
		vs.index = i;
		vs.exits_completed = true;
		write_pb(&w, STREAM_REC_VCPU_STATE, &vs);
	}
	cs.realtime_ns = 123;
	write_pb(&w, STREAM_REC_CLOCK, &cs);
	ds.name = "hcall";
	ds.data.data = (uint8_t *)"abc";
	ds.data.len = 3;
	write_pb(&w, STREAM_REC_DEVICE_STATE, &ds);

	assert_int_equal(w.pages, 601);
	assert_int_equal(w.zero_pages, 200);  /* pfns 0, 3, ..., 597 */
	end.records = w.records;
	end.bytes = w.off;
	end.pages = w.pages;
	end.zero_pages = w.zero_pages;
	end.rounds = 1;
	write_pb(&w, STREAM_REC_END, &end);
	assert_int_equal(w.off, fd_size(fd));
	stream_writer_destroy(&w);
}

static void check_full_stream(int fd, const uint8_t *ram, bool with_unknown)
{
	static const uint32_t want[] = {
		STREAM_REC_STREAM_HEADER, STREAM_REC_VM_CONFIG,
		STREAM_REC_CPU_MODEL, STREAM_REC_PAGE_DATA,
		STREAM_REC_PAGE_DATA, STREAM_REC_ROUND, STREAM_REC_PAGE_DATA,
		STREAM_REC_VCPU_STATE, STREAM_REC_VCPU_STATE, STREAM_REC_CLOCK,
		STREAM_REC_DEVICE_STATE, STREAM_REC_END,
	};
	struct stream_reader r;
	uint8_t *dst = calloc(NR_PAGES, PG);
	uint64_t nr_pages = 0, zero = 0, data = 0;
	unsigned i = 0;
	uint32_t type;
	const void *body;
	uint64_t len;

	assert_non_null(dst);
	memset(dst, 0xee, (size_t)NR_PAGES * PG);  /* zero pages must clear */
	open_reader(&r, fd);
	for (;;) {
		int rc = stream_read_record(&r, &type, &body, &len);

		if (rc)
			print_error("%s\n", r.err);
		assert_int_equal(rc, 0);
		assert_true(i < sizeof(want) / sizeof(want[0]));
		assert_int_equal(type, want[i]);
		assert_int_equal(r.rec_off % 8, 0);
		i++;
		if (type == STREAM_REC_VM_CONFIG) {
			Ferry__Mig__VmConfig *vc;

			assert_int_equal(stream_pb_unpack(&r, &ferry__mig__vm_config__descriptor,
							  body, len, (ProtobufCMessage **)&vc), 0);
			nr_pages = vc->nr_pages;
			assert_string_equal(vc->name, "vm1");
			protobuf_c_message_free_unpacked(&vc->base, NULL);
		} else if (type == STREAM_REC_PAGE_DATA) {
			struct stream_page_run run;
			const uint8_t *page;
			uint64_t pfn;

			assert_int_equal(stream_read_pages(&r, body, len, nr_pages, &run), 0);
			while (stream_page_next(&run, &pfn, &page)) {
				if (page) {
					memcpy(dst + pfn * PG, page, PG);
					data++;
				} else {
					memset(dst + pfn * PG, 0, PG);
					zero++;
				}
			}
		} else if (type == STREAM_REC_DEVICE_STATE) {
			Ferry__Mig__DeviceState *ds;

			assert_int_equal(stream_pb_unpack(&r, &ferry__mig__device_state__descriptor,
							  body, len, (ProtobufCMessage **)&ds), 0);
			assert_string_equal(ds->name, "hcall");
			assert_int_equal(ds->data.len, 3);
			protobuf_c_message_free_unpacked(&ds->base, NULL);
		} else if (type == STREAM_REC_END) {
			Ferry__Mig__StreamEnd *end;

			assert_int_equal(stream_pb_unpack(&r, &ferry__mig__stream_end__descriptor,
							  body, len, (ProtobufCMessage **)&end), 0);
			assert_int_equal(end->records, r.records - 1);
			assert_int_equal(end->bytes, r.rec_off);
			assert_int_equal(end->pages, zero + data);
			assert_int_equal(end->zero_pages, zero);
			protobuf_c_message_free_unpacked(&end->base, NULL);
			break;
		}
	}
	assert_int_equal(i, sizeof(want) / sizeof(want[0]));
	assert_int_equal(r.skipped, with_unknown ? 1 : 0);
	assert_int_equal(r.off, fd_size(fd));
	assert_memory_equal(dst, ram, 600 * (size_t)PG);
	/* After END, the only clean outcome is the end of the file. */
	assert_int_equal(stream_read_record(&r, &type, &body, &len), -ENODATA);
	assert_non_null(strstr(r.err, "after END"));
	stream_reader_destroy(&r);
	free(dst);
}

static void test_roundtrip(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd();

	write_full_stream(fd, ram, false);
	check_full_stream(fd, ram, false);
	close(fd);
	free(ram);
}

/* The bytes themselves, as the spec lays them out. */
static void test_wire_layout(void **state)
{
	int fd = mkfd();
	struct stream_writer w;
	uint8_t buf[64], tmp[16 + 8];
	uint64_t len, sum;
	uint32_t type, flags;

	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_preamble(&w, STREAM_F_LIVE), 0);
	assert_int_equal(stream_write_record(&w, STREAM_REC_CLOCK, "hello", 5), 0);
	assert_int_equal(fd_size(fd), 16 + 24 + 8);
	assert_int_equal(pread(fd, buf, 48, 0), 48);
	assert_memory_equal(buf, "FERRYMIG\x01\0\0\0\x01\0\0\0", 16);
	memcpy(&type, buf + 16, 4);
	memcpy(&flags, buf + 20, 4);
	memcpy(&len, buf + 24, 8);
	memcpy(&sum, buf + 32, 8);
	assert_int_equal(type, STREAM_REC_CLOCK);
	assert_int_equal(flags, 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf + 40, "hello\0\0\0", 8);
	memcpy(tmp, buf + 16, 16);
	memcpy(tmp + 16, buf + 40, 8);
	assert_true(sum == XXH3_64bits(tmp, sizeof(tmp)));
	assert_int_equal(w.off, 48);
	assert_int_equal(w.records, 1);
	stream_writer_destroy(&w);
	close(fd);
}

/*
 * migrate/hash.h routes XXH3 through libxxhash's run-time dispatch (AVX2 or
 * AVX-512 where the CPU has them). A stream must hash the same on every
 * host: the dispatched functions must give the plain build's values, one
 * shot and in pieces, on every length class XXH3 treats apart.
 */
static void test_hash_dispatch_agrees(void **state)
{
	static const size_t lens[] = { 0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241,
				       1023, 1024, 4096, 4097, 65536 + 5 };
	size_t max = 65536 + 5;
	uint8_t *buf = malloc(max);
	uint64_t x = 0x9e3779b97f4a7c15ull;

	assert_non_null(buf);
	for (size_t i = 0; i < max; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		XXH3_state_t st;
		uint64_t want = XXH3_64bits(buf, lens[i]);

		assert_true(XXH3_64bits_dispatch(buf, lens[i]) == want);
		XXH3_INITSTATE(&st);
		XXH3_64bits_reset(&st);
		for (size_t off = 0; off < lens[i]; off += 1000)
			XXH3_64bits_update_dispatch(&st, buf + off,
						    lens[i] - off < 1000 ? lens[i] - off : 1000);
		assert_true(XXH3_64bits_digest(&st) == want);
		assert_true(XXH3_128bits_dispatch(buf, lens[i]).low64 ==
			    XXH3_128bits(buf, lens[i]).low64);
	}
	free(buf);
}

/* A pipe: nothing seeks, the unknown record is hashed away in chunks. */
static void test_roundtrip_pipe_unknown_optional(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd(), p[2];
	struct stream_reader r;
	ssize_t n;
	uint64_t size;
	uint8_t *copy;
	int status;

	/* Build in a memfd, then replay it through a pipe by a child. */
	write_full_stream(fd, ram, true);
	size = fd_size(fd);
	copy = malloc(size);
	assert_non_null(copy);
	assert_int_equal(pread(fd, copy, size, 0), (ssize_t)size);
	check_full_stream(fd, ram, true);

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		n = write(p[1], copy, size);
		_exit(n == (ssize_t)size ? 0 : 1);
	}
	close(p[1]);
	stream_reader_init(&r, p[0]);
	/* the child's writes fill the pipe; the reader drains it as it goes */
	assert_int_equal(stream_read_preamble(&r, NULL), 0);
	assert_int_equal(read_to_error(&r), -ENODATA);
	assert_int_equal(r.skipped, 1);
	assert_int_equal(r.off, size);
	stream_reader_destroy(&r);
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(copy);
	close(fd);
	free(ram);
}

/* ---- preamble ---- */

static void test_bad_magic(void **state)
{
	int fd = mkfd();
	struct stream_reader r;

	raw_preamble(fd, "FERRYMIH", 1, 0);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_preamble(&r, NULL), -EBADMSG);
	assert_non_null(strstr(r.err, "bad magic"));
	assert_non_null(strstr(r.err, "offset 0"));
	close(fd);
}

static void test_newer_version(void **state)
{
	int fd = mkfd();
	struct stream_reader r;

	raw_preamble(fd, "FERRYMIG", 2, 0);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_preamble(&r, NULL), -EPROTONOSUPPORT);
	assert_string_equal(r.err, "stream: version 2 is newer than this vmon (1)");
	close(fd);
}

static void test_bad_preamble(void **state)
{
	struct stream_reader r;
	int fd;

	/* version 0 never existed */
	fd = mkfd();
	raw_preamble(fd, "FERRYMIG", 0, 0);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_preamble(&r, NULL), -EBADMSG);
	close(fd);
	/* flags other than bit 0 */
	fd = mkfd();
	raw_preamble(fd, "FERRYMIG", 1, 2);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_preamble(&r, NULL), -EBADMSG);
	assert_non_null(strstr(r.err, "flags"));
	close(fd);
	/* empty, and cut inside the preamble */
	fd = mkfd();
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_preamble(&r, NULL), -EPIPE);
	assert_int_equal(write(fd, "FERRYMIG\x01", 9), 9);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_preamble(&r, NULL), -EPIPE);
	assert_non_null(strstr(r.err, "truncated"));
	close(fd);
	/* records before the preamble was read */
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, TAIL);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(read_to_error(&r), -EINVAL);
	close(fd);
}

/* ---- framing: checksum, padding, flags, limits, truncation ---- */

/* offset of the n-th record (0-based) in a WRITE_TYPES stream of empty pb */
#define REC_OFF(n) (16u + 24u * (n))

static void test_flip_header_byte(void **state)
{
	int fd;

	/* the flags field: covered by the checksum */
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, TAIL);
	xor_byte(fd, REC_OFF(1) + 4, 0x10);
	expect_error(fd, -EBADMSG, "record VM_CONFIG at offset 40: checksum mismatch");
	close(fd);
	/* the checksum field itself */
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, TAIL);
	xor_byte(fd, REC_OFF(2) + 20, 0x01);
	expect_error(fd, -EBADMSG, "record CPU_MODEL at offset 64: checksum mismatch");
	close(fd);
	/* the type: VM_CONFIG (2) becomes CLOCK (6), caught by the checksum
	 * before any order rule sees it */
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, TAIL);
	xor_byte(fd, REC_OFF(1), 0x04);
	expect_error(fd, -EBADMSG, "record CLOCK at offset 40: checksum mismatch");
	close(fd);
}

static void test_flip_body_byte(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd();
	struct stream_writer w;
	uint64_t pfns[4] = { 1, 2, 3, 4 }, at;
	char want[128];

	WRITE_TYPES(fd, HEAD);
	at = fd_size(fd);
	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_pages(&w, pfns, 4, ram), 0);
	stream_writer_destroy(&w);
	/* a byte deep inside the second data page */
	xor_byte(fd, at + 24 + 16 + 32 + PG + 1000, 0x80);
	snprintf(want, sizeof(want),
		 "stream: record PAGE_DATA at offset %llu: checksum mismatch",
		 (unsigned long long)at);
	expect_error(fd, -EBADMSG, want);
	close(fd);
	free(ram);
}

static void test_nonzero_padding(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD);
	/* checksum right, padding not zero: a writer bug, not corruption */
	raw_record(fd, STREAM_REC_VCPU_STATE, 0, "\x08\x01", 2, 0x5a);
	expect_error(fd, -EBADMSG, "record VCPU_STATE at offset 88: nonzero padding");
	close(fd);
	/* the same for a record that is only skipped */
	fd = mkfd();
	WRITE_TYPES(fd, HEAD);
	raw_record(fd, STREAM_REC_OPTIONAL | 0x42, 0, "abc", 3, 0x01);
	expect_error(fd, -EBADMSG, "record 0x80000042 at offset 88: nonzero padding");
	close(fd);
}

static void test_reserved_header_flags(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD);
	raw_record(fd, STREAM_REC_VCPU_STATE, 1, NULL, 0, 0);
	expect_error(fd, -EBADMSG, "record VCPU_STATE at offset 88: reserved flags");
	close(fd);
}

static void test_oversized_fails_fast(void **state)
{
	static const uint64_t lens[] = {
		STREAM_PAGE_DATA_MAX + 1, 1ull << 40, UINT64_MAX,
	};

	for (unsigned i = 0; i < 3; i++) {
		struct stream_reader r;
		struct stream_rec_hdr h = {
			.type = STREAM_REC_PAGE_DATA, .length = lens[i],
		};
		int p[2];

		/*
		 * A pipe whose writer stays open and which never holds the
		 * body: reading a byte of it would fail with -EAGAIN, and
		 * allocating for it would show in r.buf.
		 */
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		raw_preamble(p[1], "FERRYMIG", 1, 0);
		assert_int_equal(write(p[1], &h, sizeof(h)), (ssize_t)sizeof(h));
		stream_reader_init(&r, p[0]);
		assert_int_equal(stream_read_preamble(&r, NULL), 0);
		assert_int_equal(read_to_error(&r), -EMSGSIZE);
		assert_null(r.buf);
		assert_int_equal(r.cap, 0);
		assert_non_null(strstr(r.err, "record PAGE_DATA at offset 16: length"));
		assert_non_null(strstr(r.err, "exceeds the limit 2101264"));
		close(p[0]);
		close(p[1]);
	}
}

static void test_oversized_pb(void **state)
{
	int fd = mkfd();
	struct stream_writer w;
	struct stream_rec_hdr h = {
		.type = STREAM_REC_VM_CONFIG, .length = STREAM_PB_MAX + 1,
	};
	uint8_t *big = calloc(1, STREAM_PB_MAX + 1);

	assert_non_null(big);
	/* the writer refuses before writing anything */
	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_record(&w, STREAM_REC_VM_CONFIG, big,
					     STREAM_PB_MAX + 1), -EMSGSIZE);
	assert_int_equal(fd_size(fd), 0);
	assert_int_equal(w.off, 0);
	/* exactly the limit is fine */
	WRITE_TYPES(fd, STREAM_REC_STREAM_HEADER);
	assert_int_equal(stream_write_record(&w, STREAM_REC_VM_CONFIG, big,
					     STREAM_PB_MAX), 0);
	stream_writer_destroy(&w);
	/* and the reader refuses one byte more */
	assert_int_equal(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	expect_error(fd, -EMSGSIZE, "length 1048577 exceeds the limit 1048576");
	free(big);
	close(fd);
}

static void test_truncated_inside_header(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD, TAIL);
	assert_int_equal(ftruncate(fd, REC_OFF(3) + 10), 0);
	expect_error(fd, -EPIPE,
		     "record VCPU_STATE at offset 88: truncated inside the header (10 of 24 bytes)");
	assert_int_equal(ftruncate(fd, REC_OFF(3) + 2), 0);
	expect_error(fd, -EPIPE, "record at offset 88: truncated inside the header");
	close(fd);
}

static void test_truncated_inside_body(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd();
	struct stream_writer w;
	uint64_t pfn = 1, at;
	char want[128];

	WRITE_TYPES(fd, HEAD);
	at = fd_size(fd);
	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_pages(&w, &pfn, 1, ram), 0);
	stream_writer_destroy(&w);
	assert_int_equal(ftruncate(fd, at + 24 + 100), 0);
	snprintf(want, sizeof(want),
		 "record PAGE_DATA at offset %llu: truncated inside the body (100 of 4120 bytes)",
		 (unsigned long long)at);
	expect_error(fd, -EPIPE, want);
	close(fd);
	free(ram);
}

static void test_truncated_between_records(void **state)
{
	int fd = mkfd();

	/* everything but END */
	WRITE_TYPES(fd, HEAD, STREAM_REC_PAGE_DATA, STREAM_REC_VCPU_STATE,
		    STREAM_REC_CLOCK);
	expect_error(fd, -EPIPE, "truncated at offset 184 after CLOCK: no END");
	close(fd);
	/* nothing but the preamble */
	fd = mkfd();
	WRITE_TYPES(fd, STREAM_REC_STREAM_HEADER);
	assert_int_equal(ftruncate(fd, 16), 0);
	expect_error(fd, -EPIPE, "truncated at offset 16 after the preamble: no END");
	close(fd);
}

/* ---- unknown types ---- */

static void test_unknown_mandatory(void **state)
{
	int fd = mkfd();

	WRITE_TYPES(fd, HEAD, 0x42, TAIL);
	expect_error(fd, -EPROTO,
		     "stream: unknown mandatory record type 0x00000042 at offset 88");
	close(fd);
}

static void test_unknown_optional_skipped(void **state)
{
	int fd = mkfd();
	struct stream_reader r;
	uint32_t type;
	const void *body;
	uint64_t len;

	WRITE_TYPES(fd, HEAD, STREAM_REC_OPTIONAL | 0x42, STREAM_REC_PAGE_DATA,
		    STREAM_REC_OPTIONAL | 0x7fff, TAIL);
	open_reader(&r, fd);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(stream_read_record(&r, &type, &body, &len), 0);
	/* the fourth record returned is the PAGE_DATA after the unknown one */
	assert_int_equal(stream_read_record(&r, &type, &body, &len), 0);
	assert_int_equal(type, STREAM_REC_PAGE_DATA);
	assert_int_equal(r.rec_off, REC_OFF(4));
	assert_int_equal(stream_read_record(&r, &type, &body, &len), 0);
	assert_int_equal(type, STREAM_REC_VCPU_STATE);
	assert_int_equal(r.skipped, 2);
	assert_int_equal(read_to_error(&r), -ENODATA);
	/* END's count includes skipped records: the writer counted them */
	assert_int_equal(r.records, 9);
	stream_reader_destroy(&r);
	close(fd);
}

static void test_unknown_optional_checked(void **state)
{
	int fd = mkfd();

	/* skipped records are still checksummed */
	WRITE_TYPES(fd, HEAD, STREAM_REC_OPTIONAL | 0x42, TAIL);
	xor_byte(fd, REC_OFF(3) + 4, 1);
	expect_error(fd, -EBADMSG, "record 0x80000042 at offset 88: checksum mismatch");
	close(fd);
	/* and not allowed where the spec pins the first and last records */
	fd = mkfd();
	WRITE_TYPES(fd, STREAM_REC_OPTIONAL | 0x42, HEAD, TAIL);
	expect_error(fd, -EPROTO, "0x80000042 before STREAM_HEADER at offset 16");
	close(fd);
	fd = mkfd();
	WRITE_TYPES(fd, HEAD, TAIL, STREAM_REC_OPTIONAL | 0x42);
	expect_error(fd, -EPROTO, "0x80000042 after END at offset 160");
	close(fd);
}

#define ZERO(pfn) ((pfn) | 1ull << 60)

/* stream_read_pages puts the reason on a reader line with the offset. */
static void test_page_error_via_reader(void **state)
{
	int fd = mkfd();
	struct stream_reader r;
	struct stream_page_run run;
	uint8_t b[24] = { 1 };
	uint64_t e = ZERO(5000);
	uint32_t type;
	const void *body;
	uint64_t len;
	struct stream_writer w;

	WRITE_TYPES(fd, HEAD);
	memcpy(b + 16, &e, 8);
	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_record(&w, STREAM_REC_PAGE_DATA, b, 24), 0);
	open_reader(&r, fd);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(stream_read_record(&r, &type, &body, &len), 0);
	assert_int_equal(type, STREAM_REC_PAGE_DATA);
	assert_int_equal(stream_read_pages(&r, body, len, NR_PAGES, &run), -EBADMSG);
	assert_string_equal(r.err,
		"stream: record PAGE_DATA at offset 88: entry 0: pfn 5000 is beyond the guest's 1024 pages");
	stream_reader_destroy(&r);
	close(fd);
}

/* Live protocol frames: same framing, no preamble, no order. */
static void test_frames(void **state)
{
	int fd = mkfd();
	struct stream_reader r;
	uint32_t type;
	const void *body;
	uint64_t len;
	struct stream_writer w;

	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_record(&w, STREAM_REC_HELLO, "\x08\x01", 2), 0);
	assert_int_equal(stream_write_record(&w, STREAM_REC_OPTIONAL | 3, "x", 1), 0);
	assert_int_equal(stream_write_record(&w, STREAM_REC_COMMIT, NULL, 0), 0);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	assert_int_equal(stream_read_frame(&r, &type, &body, &len), 0);
	assert_int_equal(type, STREAM_REC_HELLO);
	assert_int_equal(len, 2);
	assert_memory_equal(body, "\x08\x01", 2);
	assert_int_equal(stream_read_frame(&r, &type, &body, &len), 0);
	assert_int_equal(type, STREAM_REC_COMMIT);
	assert_int_equal(len, 0);
	assert_non_null(body);
	assert_int_equal(stream_read_frame(&r, &type, &body, &len), -EPIPE);
	stream_reader_destroy(&r);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_wire_layout),
		cmocka_unit_test(test_hash_dispatch_agrees),
		cmocka_unit_test(test_roundtrip_pipe_unknown_optional),
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_newer_version),
		cmocka_unit_test(test_bad_preamble),
		cmocka_unit_test(test_flip_header_byte),
		cmocka_unit_test(test_flip_body_byte),
		cmocka_unit_test(test_nonzero_padding),
		cmocka_unit_test(test_reserved_header_flags),
		cmocka_unit_test(test_oversized_fails_fast),
		cmocka_unit_test(test_oversized_pb),
		cmocka_unit_test(test_truncated_inside_header),
		cmocka_unit_test(test_truncated_inside_body),
		cmocka_unit_test(test_truncated_between_records),
		cmocka_unit_test(test_unknown_mandatory),
		cmocka_unit_test(test_unknown_optional_skipped),
		cmocka_unit_test(test_unknown_optional_checked),
		cmocka_unit_test(test_page_error_via_reader),
		cmocka_unit_test(test_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
