/*
 * Disks, the pure parts: the block hypercalls' decoding and request
 * validation, --disk parsing, the migration's disk precheck, and the block
 * log format and its checker.
 */
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
#include <unistd.h>

#include "core/hcall.h"
#include "storage/blk.h"
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
	assert_int_equal(blk_spec_parse("a\nb", &s, err, sizeof(err)), -EINVAL);
}

static int precheck_text(const char *text, char *err)
{
	return blk_state_precheck(1, (const uint8_t *)text, strlen(text), err, BLK_ERR_LEN);
}

/*
 * The migration's disk precheck on the destination: image files must open
 * here with the source's size; an NBD export is parsed, not connected to;
 * a state it does not understand is refused. Nothing is locked.
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
	/* NBD: parsed only, so an unreachable server is no refusal yet */
	assert_int_equal(precheck_text("4096 nbd://127.0.0.1:1/e,lease=/nonexistent/l\n", err), 0);
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
		cmocka_unit_test(test_log_ok),
		cmocka_unit_test(test_log_faults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
