/*
 * Helpers shared by the stream's unit tests (test_stream*.c): streams in a
 * memfd, records written by hand from the spec's layout, and a reader that
 * runs to the first error. static inline: each test uses only some.
 */
#ifndef FERRY_TEST_STREAM_H
#define FERRY_TEST_STREAM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/stream.h"
#include "stream.pb-c.h"

#define NR_PAGES 1024u
#define PG STREAM_PAGE_SIZE

static inline int mkfd(void)
{
	int fd = memfd_create("stream-test", 0);

	assert_true(fd >= 0);
	return fd;
}

static inline uint64_t fd_size(int fd)
{
	off_t end = lseek(fd, 0, SEEK_END);

	assert_true(end >= 0);
	return (uint64_t)end;
}

static inline void open_reader(struct stream_reader *r, int fd)
{
	uint32_t flags = 0xdead;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	stream_reader_init(r, fd);
	assert_int_equal(stream_read_preamble(r, &flags), 0);
	assert_true(flags == 0 || flags == STREAM_F_LIVE);
}

/* Read records until one fails; its rc. */
static inline int read_to_error(struct stream_reader *r)
{
	uint32_t type;
	const void *body;
	uint64_t len;
	int rc;

	while ((rc = stream_read_record(r, &type, &body, &len)) == 0)
		;
	return rc;
}

/* Open fd, read to the first error, check rc and a piece of the message. */
static inline void expect_error(int fd, int want_rc, const char *want_msg)
{
	struct stream_reader r;
	int rc;

	open_reader(&r, fd);
	rc = read_to_error(&r);
	if (rc != want_rc || !strstr(r.err, want_msg))
		print_error("rc %d (%s), wanted %d with \"%s\"\n", rc, r.err,
			    want_rc, want_msg);
	assert_int_equal(rc, want_rc);
	assert_non_null(strstr(r.err, want_msg));
	assert_memory_equal(r.err, "stream: ", 8);
	assert_null(strchr(r.err, '\n'));
	stream_reader_destroy(&r);
}

static inline void xor_byte(int fd, uint64_t off, uint8_t mask)
{
	uint8_t b;

	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= mask;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
}

/* One PAGE_DATA body of a single ZERO entry: a valid record for order tests. */
static inline void write_zero_page_rec(struct stream_writer *w, uint64_t pfn)
{
	uint8_t b[24] = { 0 };
	uint64_t e = pfn | (uint64_t)STREAM_KIND_ZERO << 60;

	b[0] = 1;
	memcpy(b + 16, &e, 8);
	assert_int_equal(stream_write_record(w, STREAM_REC_PAGE_DATA, b, 24), 0);
}

/*
 * A stream of these types: protobuf records with empty bodies (a valid
 * proto3 encoding of every message), PAGE_DATA with one zero page.
 */
static inline void write_types(int fd, const uint32_t *types, size_t n)
{
	struct stream_writer w;

	stream_writer_init(&w, fd);
	assert_int_equal(stream_write_preamble(&w, 0), 0);
	for (size_t i = 0; i < n; i++) {
		if (types[i] == STREAM_REC_PAGE_DATA)
			write_zero_page_rec(&w, i);
		else
			assert_int_equal(stream_write_record(&w, types[i], NULL, 0), 0);
	}
	stream_writer_destroy(&w);
}

#define TYPES(...) ((const uint32_t[]){ __VA_ARGS__ })
#define NTYPES(...) (sizeof((const uint32_t[]){ __VA_ARGS__ }) / sizeof(uint32_t))
#define WRITE_TYPES(fd, ...) write_types(fd, TYPES(__VA_ARGS__), NTYPES(__VA_ARGS__))

#define HEAD STREAM_REC_STREAM_HEADER, STREAM_REC_VM_CONFIG, STREAM_REC_CPU_MODEL
#define TAIL STREAM_REC_VCPU_STATE, STREAM_REC_CLOCK, STREAM_REC_END

/*
 * A record written byte by byte from the spec: header, body, padding of
 * pad_byte, checksum over bytes 0..15 + body + padding.
 */
static inline void raw_record(int fd, uint32_t type, uint32_t flags,
		       const void *body, uint64_t len, uint8_t pad_byte)
{
	uint64_t padded = (len + 7) & ~7ull;
	uint8_t *buf = calloc(1, 24 + padded), *tmp;
	uint64_t sum;

	assert_non_null(buf);
	memcpy(buf, &type, 4);
	memcpy(buf + 4, &flags, 4);
	memcpy(buf + 8, &len, 8);
	if (len)
		memcpy(buf + 24, body, len);
	memset(buf + 24 + len, pad_byte, padded - len);
	/* checksum: bytes 0..15, then body and padding; 16..23 are left out */
	tmp = malloc(16 + padded);
	assert_non_null(tmp);
	memcpy(tmp, buf, 16);
	memcpy(tmp + 16, buf + 24, padded);
	sum = XXH3_64bits(tmp, 16 + padded);
	free(tmp);
	memcpy(buf + 16, &sum, 8);
	assert_int_equal(write(fd, buf, 24 + padded), (ssize_t)(24 + padded));
	free(buf);
}

static inline void raw_preamble(int fd, const char *magic, uint32_t version,
			 uint32_t flags)
{
	uint8_t p[16];

	memcpy(p, magic, 8);
	memcpy(p + 8, &version, 4);
	memcpy(p + 12, &flags, 4);
	assert_int_equal(write(fd, p, 16), 16);
}

static inline uint8_t *make_ram(void)
{
	uint8_t *ram = aligned_alloc(PG, (size_t)NR_PAGES * PG);

	assert_non_null(ram);
	memset(ram, 0, (size_t)NR_PAGES * PG);
	/* Every third page stays zero; the rest carry their pfn. */
	for (unsigned p = 0; p < NR_PAGES; p++)
		if (p % 3)
			for (unsigned i = 0; i < PG; i += 8) {
				uint64_t v = ((uint64_t)p << 32) | i;

				memcpy(ram + (size_t)p * PG + i, &v, 8);
			}
	return ram;
}

#endif
