/*
 * PAGE_DATA bodies (migrate/stream_page.c) against the spec's "PAGE_DATA"
 * section: the parser's every rejection (count, reserved fields and bits,
 * kinds, pfn range, length) and the writer's encoding of zero and data
 * pages. The stream around them is test_stream.c's.
 */
#include "stream_test.h"
#include "migrate/mig.h"

struct pbody {
	uint8_t b[16 + 8 * 4 + 2 * PG];
	uint64_t len;
};

/* count entries; entry i is e[i]; data pages follow for DATA entries */
static void make_body(struct pbody *p, uint32_t count, const uint64_t *e,
		      unsigned ndata)
{
	memset(p->b, 0, sizeof(p->b));
	memcpy(p->b, &count, 4);
	for (uint32_t i = 0; i < count && i < 4; i++)
		memcpy(p->b + 16 + 8 * i, &e[i], 8);
	p->len = 16 + 8ull * count + (uint64_t)ndata * PG;
}

static void expect_page_error(const struct pbody *p, uint64_t len,
			      const char *want)
{
	struct stream_page_run run;
	char why[160] = "";

	assert_int_equal(stream_page_data_parse(p->b, len, NR_PAGES, &run, why,
						sizeof(why)), -EBADMSG);
	if (!strstr(why, want))
		print_error("got \"%s\", wanted \"%s\"\n", why, want);
	assert_non_null(strstr(why, want));
}

#define ZERO(pfn) ((pfn) | 1ull << 60)

static void test_page_valid(void **state)
{
	uint64_t e[3] = { 7, ZERO(8), NR_PAGES - 1 };
	struct pbody p;
	struct stream_page_run run;
	const uint8_t *page;
	uint64_t pfn;

	make_body(&p, 3, e, 2);
	memset(p.b + 16 + 24, 0x11, PG);
	memset(p.b + 16 + 24 + PG, 0x22, PG);
	assert_int_equal(stream_page_data_parse(p.b, p.len, NR_PAGES, &run, NULL, 0), 0);
	assert_int_equal(run.count, 3);
	assert_int_equal(run.ndata, 2);
	assert_true(stream_page_next(&run, &pfn, &page));
	assert_int_equal(pfn, 7);
	assert_int_equal(page[0], 0x11);
	assert_true(stream_page_next(&run, &pfn, &page));
	assert_int_equal(pfn, 8);
	assert_null(page);
	assert_true(stream_page_next(&run, &pfn, &page));
	assert_int_equal(pfn, NR_PAGES - 1);
	assert_int_equal(page[PG - 1], 0x22);
	assert_false(stream_page_next(&run, &pfn, &page));
}

static void test_page_bad_count(void **state)
{
	uint64_t e[1] = { ZERO(1) };
	struct pbody p;
	uint32_t big = 513;

	make_body(&p, 0, e, 0);
	expect_page_error(&p, 16, "count 0 is not in 1..512");
	make_body(&p, 1, e, 0);
	memcpy(p.b, &big, 4);
	expect_page_error(&p, 16 + 8 * 513, "count 513 is not in 1..512");
}

static void test_page_reserved_fields(void **state)
{
	uint64_t e[1] = { ZERO(1) };
	struct pbody p;

	make_body(&p, 1, e, 0);
	p.b[4] = 1;
	expect_page_error(&p, p.len, "reserved header fields");
	make_body(&p, 1, e, 0);
	p.b[15] = 0x80;
	expect_page_error(&p, p.len, "reserved header fields");
}

static void test_page_bad_kind(void **state)
{
	uint64_t e[2] = { ZERO(1), 1 | 2ull << 60 };
	struct pbody p;

	make_body(&p, 2, e, 0);
	expect_page_error(&p, p.len, "entry 1: unknown kind 2");
	e[1] = 1 | 15ull << 60;
	make_body(&p, 2, e, 0);
	expect_page_error(&p, p.len, "entry 1: unknown kind 15");
}

static void test_page_reserved_bits(void **state)
{
	uint64_t e[1] = { ZERO(1) | 1ull << 52 };
	struct pbody p;

	make_body(&p, 1, e, 0);
	expect_page_error(&p, p.len, "entry 0: reserved bits 52..59 set");
	e[0] = 3 | 1ull << 59;
	make_body(&p, 1, e, 1);
	expect_page_error(&p, p.len, "entry 0: reserved bits 52..59 set");
}

static void test_page_pfn_range(void **state)
{
	uint64_t e[2] = { ZERO(NR_PAGES - 1), ZERO(NR_PAGES) };
	struct pbody p;
	struct stream_page_run run;

	make_body(&p, 2, e, 0);
	expect_page_error(&p, p.len, "entry 1: pfn 1024 is beyond the guest's 1024 pages");
	make_body(&p, 1, e, 0);
	assert_int_equal(stream_page_data_parse(p.b, p.len, NR_PAGES, &run, NULL, 0), 0);
	/* the largest pfn the format holds, on a guest that small */
	e[0] = ZERO(STREAM_PAGE_PFN_MASK);
	make_body(&p, 1, e, 0);
	expect_page_error(&p, p.len, "is beyond the guest's");
}

static void test_page_length_mismatch(void **state)
{
	uint64_t e[2] = { 1, ZERO(2) };
	struct pbody p;

	make_body(&p, 2, e, 1);
	expect_page_error(&p, p.len - 8, "but 2 entries with 1 data pages make 4128");
	expect_page_error(&p, p.len + 8, "length 4136, but");
	expect_page_error(&p, 16 + 8, "length 24 is too short for 2 entries");
	expect_page_error(&p, 8, "length 8 is shorter than the 16-byte header");
	/* a ZERO entry carries no data: one page too many */
	make_body(&p, 2, e, 2);
	expect_page_error(&p, p.len, "length 8224, but");
}

static void test_writer_pages(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd();
	struct stream_writer w;
	uint64_t pfns[3] = { 0, 1, 1ull << 52 };
	uint8_t b[16 + 16];
	uint32_t count;
	uint64_t e0, e1;

	stream_writer_init(&w, fd);
	/* a pfn the format cannot hold: refused before anything is written */
	assert_int_equal(stream_write_pages(&w, pfns, 3, ram), -EINVAL);
	assert_int_equal(fd_size(fd), 0);
	/* nothing to send is not an error and writes nothing */
	assert_int_equal(stream_write_pages(&w, pfns, 0, ram), 0);
	assert_int_equal(fd_size(fd), 0);
	/* pfn 0 is zero, pfn 1 has data: one record, one data page */
	assert_int_equal(stream_write_pages(&w, pfns, 2, ram), 0);
	assert_int_equal(fd_size(fd), 24 + 16 + 16 + PG);
	assert_int_equal(pread(fd, b, sizeof(b), 24), (ssize_t)sizeof(b));
	memcpy(&count, b, 4);
	memcpy(&e0, b + 16, 8);
	memcpy(&e1, b + 24, 8);
	assert_int_equal(count, 2);
	assert_true(e0 == ZERO(0));
	assert_true(e1 == 1);
	assert_int_equal(w.pages, 2);
	assert_int_equal(w.zero_pages, 1);
	/* 513 pages make two records */
	{
		uint64_t many[513];

		for (unsigned i = 0; i < 513; i++)
			many[i] = i;
		assert_int_equal(stream_write_pages(&w, many, 513, ram), 0);
		assert_int_equal(w.records, 3);
	}
	stream_writer_destroy(&w);
	assert_int_equal(stream_write_preamble(&w, 4), -EINVAL);
	close(fd);
	free(ram);
}

/* Read the one frame of fd from offset 0 (no preamble). */
static int read_one(int fd, struct stream_reader *r, struct stream_page_run *run)
{
	const void *body;
	uint64_t len;
	uint32_t type;
	int rc;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	stream_reader_init(r, fd);
	rc = stream_read_frame(r, &type, &body, &len);
	if (rc)
		return rc;
	assert_int_equal(type, STREAM_REC_PAGE_HASHED);
	return stream_read_pages(r, body, len, NR_PAGES, run);
}

/*
 * PAGE_HASHED (live, no copy): one hash per data page; the record
 * checksum covers the framing, the pfns and the hashes, not the pages. A
 * damaged page is found by its own hash (torn), a damaged pfn list by
 * the record checksum.
 */
static void test_writer_hashed(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd();
	struct stream_writer w;
	struct stream_reader r;
	struct stream_page_run run;
	uint64_t pfns[5] = { 0, 1, 2, 4, 5 }, pfn, prefix = 16 + 5 * 8 + 4 * 8;
	const uint8_t *page;
	unsigned n = 0, torn = 0;

	stream_writer_init(&w, fd);
	w.hashed = true;
	assert_int_equal(stream_write_pages(&w, pfns, 5, ram), 0);
	assert_int_equal(w.pages, 5);
	assert_int_equal(w.zero_pages, 1);
	assert_int_equal(fd_size(fd), 24 + prefix + 4 * PG);
	/* intact: every page as in RAM */
	assert_int_equal(read_one(fd, &r, &run), 0);
	assert_int_equal(run.ndata, 4);
	while (stream_page_next(&run, &pfn, &page)) {
		assert_true(pfn == pfns[n++]);
		assert_true(stream_page_intact(&run, page));
		if (page)
			assert_memory_equal(page, ram + pfn * PG, PG);
		else
			assert_int_equal(pfn, 0);
	}
	stream_reader_destroy(&r);
	/* the guest wrote page 2 between hash and send: only it is torn */
	xor_byte(fd, 24 + prefix + PG + 5, 0x40);
	assert_int_equal(read_one(fd, &r, &run), 0);
	while (stream_page_next(&run, &pfn, &page))
		if (!stream_page_intact(&run, page)) {
			assert_int_equal(pfn, 2);
			torn++;
		}
	assert_int_equal(torn, 1);
	stream_reader_destroy(&r);
	/* a pfn damaged on the way: the record itself is refused */
	xor_byte(fd, 24 + 16 + 8, 0x01);
	assert_int_equal(read_one(fd, &r, &run), -EBADMSG);
	assert_non_null(strstr(r.err, "PAGE_HASHED at offset 0: checksum mismatch"));
	stream_reader_destroy(&r);
	xor_byte(fd, 24 + 16 + 8, 0x01);
	/* ndata that does not fit the length: refused before any hashing */
	xor_byte(fd, 24 + 4, 0x02);
	assert_int_equal(read_one(fd, &r, &run), -EBADMSG);
	assert_non_null(strstr(r.err, "count or ndata disagree"));
	stream_reader_destroy(&r);
	stream_writer_destroy(&w);
	close(fd);
	free(ram);
}

/* The written map: a page outside it is a ZERO entry, never read. */
static void test_writer_written_map(void **state)
{
	uint8_t *ram = make_ram();
	int fd = mkfd();
	struct stream_writer w;
	struct stream_reader r;
	struct stream_page_run run;
	uint64_t pfns[3] = { 1, 2, 4 }, map[NR_PAGES / 64] = { 0 }, pfn;
	const uint8_t *page;

	(void)state;
	map[0] = 1ull << 2 | 1ull << 4;   /* pfn 1 holds data but is not in the map */
	stream_writer_init(&w, fd);
	w.hashed = true;
	w.written = map;
	assert_int_equal(stream_write_pages(&w, pfns, 3, ram), 0);
	assert_int_equal(w.zero_pages, 1);
	assert_int_equal(read_one(fd, &r, &run), 0);
	assert_int_equal(run.ndata, 2);
	assert_true(stream_page_next(&run, &pfn, &page));
	assert_int_equal(pfn, 1);
	assert_null(page);
	stream_reader_destroy(&r);
	stream_writer_destroy(&w);
	close(fd);
	free(ram);
}

/* Read fd's one PAGE_HASHED frame straight into dst (pages pages). */
static int read_direct(int fd, struct stream_reader *r, struct stream_page_run *run,
		       uint8_t *dst, uint64_t pages)
{
	const void *body;
	uint64_t len;
	uint32_t type;
	int rc;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	stream_reader_init(r, fd);
	r->page_ram = dst;
	r->page_ram_pages = pages;
	r->order.phase = STREAM_PH_PAGES;  /* where pages may come */
	rc = stream_read_frame(r, &type, &body, &len);
	if (rc)
		return rc;
	assert_true(r->direct);
	return stream_read_pages(r, body, len, pages, run);
}

/*
 * The destination's direct read: data pages land in RAM, each checked on
 * arrival; nothing lands before the prefix passed its checksum and every
 * pfn its range.
 */
static void test_reader_direct(void **state)
{
	uint8_t *ram = make_ram(), *dst = calloc(NR_PAGES, PG), *before = malloc(NR_PAGES * PG);
	int fd = mkfd();
	struct stream_writer w;
	struct stream_reader r;
	struct stream_page_run run;
	uint64_t pfns[5] = { 0, 1, 2, 4, 5 }, pfn, prefix = 16 + 5 * 8 + 4 * 8;
	const uint8_t *page;
	unsigned n = 0;

	(void)state;
	assert_non_null(dst);
	assert_non_null(before);
	stream_writer_init(&w, fd);
	w.hashed = true;
	assert_int_equal(stream_write_pages(&w, pfns, 5, ram), 0);
	assert_int_equal(read_direct(fd, &r, &run, dst, NR_PAGES), 0);
	assert_ptr_equal(run.ram, dst);
	while (stream_page_next(&run, &pfn, &page)) {
		assert_true(pfn == pfns[n++]);
		assert_true(stream_page_intact(&run, page));
		if (page) {
			assert_ptr_equal(page, dst + pfn * PG);
			assert_memory_equal(page, ram + pfn * PG, PG);
		}
	}
	assert_int_equal(n, 5);
	stream_reader_destroy(&r);
	/* a torn page lands, and says so */
	xor_byte(fd, 24 + prefix + PG + 5, 0x40);
	assert_int_equal(read_direct(fd, &r, &run, dst, NR_PAGES), 0);
	while (stream_page_next(&run, &pfn, &page))
		assert_true(stream_page_intact(&run, page) == (pfn != 2));
	assert_int_equal(dst[2 * PG + 5], ram[2 * PG + 5] ^ 0x40);
	stream_reader_destroy(&r);
	xor_byte(fd, 24 + prefix + PG + 5, 0x40);
	memset(dst + PG, 0xee, PG);
	memcpy(before, dst, NR_PAGES * PG);
	/* a damaged pfn: refused, RAM untouched */
	xor_byte(fd, 24 + 16 + 8, 0x01);
	assert_int_equal(read_direct(fd, &r, &run, dst, NR_PAGES), -EBADMSG);
	assert_non_null(strstr(r.err, "PAGE_HASHED at offset 0: checksum mismatch"));
	assert_memory_equal(dst, before, NR_PAGES * PG);
	stream_reader_destroy(&r);
	xor_byte(fd, 24 + 16 + 8, 0x01);
	/* a pfn beyond this guest: refused, RAM untouched */
	assert_int_equal(read_direct(fd, &r, &run, dst, 5), -EBADMSG);
	assert_non_null(strstr(r.err, "pfn 5 is beyond the guest's 5 pages"));
	assert_memory_equal(dst, before, NR_PAGES * PG);
	stream_reader_destroy(&r);
	/* cut inside the pages: truncated */
	assert_int_equal(ftruncate(fd, 24 + prefix + 2 * PG + 100), 0);
	assert_int_equal(read_direct(fd, &r, &run, dst, NR_PAGES), -EPIPE);
	assert_non_null(strstr(r.err, "truncated inside the body"));
	stream_reader_destroy(&r);
	stream_writer_destroy(&w);
	close(fd);
	free(before);
	free(dst);
	free(ram);
}

/* One hashed record of pfns[0..n) of src, read direct into dst, applied. */
static void sink_record(struct mig_page_sink *k, const uint8_t *src, const uint64_t *pfns,
			size_t n, uint8_t *dst, uint64_t tear_off)
{
	int fd = mkfd();
	struct stream_writer w;
	struct stream_reader r;
	struct stream_page_run run;

	stream_writer_init(&w, fd);
	w.hashed = true;
	assert_int_equal(stream_write_pages(&w, pfns, n, src), 0);
	if (tear_off)
		xor_byte(fd, tear_off, 0x40);
	assert_int_equal(read_direct(fd, &r, &run, dst, NR_PAGES), 0);
	mig_page_sink_apply(k, &run);
	stream_reader_destroy(&r);
	stream_writer_destroy(&w);
	close(fd);
}

/*
 * The loader's side of a direct read: a torn page is already in guest RAM,
 * so it must stay owed until a later copy overwrites it, and a later ZERO
 * entry must clear it (the page is no longer the fresh zero page).
 */
static void test_sink_direct_torn(void **state)
{
	uint8_t *src = make_ram(), *dst = calloc(NR_PAGES, PG);
	uint64_t touched[NR_PAGES / 64] = { 0 }, owed[NR_PAGES / 64] = { 0 };
	struct mig_page_sink k = { .ram = dst, .touched = touched, .owed = owed };
	uint64_t pfns[3] = { 1, 2, 4 }, prefix = 16 + 3 * 8 + 3 * 8;

	(void)state;
	assert_non_null(dst);
	/* page 2 torn on the way, 1 and 4 intact */
	sink_record(&k, src, pfns, 3, dst, 24 + prefix + PG + 9);
	assert_int_equal(k.torn, 1);
	assert_int_equal(k.nr_owed, 1);
	assert_true(owed[0] == 1ull << 2);
	assert_true(touched[0] == (1ull << 1 | 1ull << 2 | 1ull << 4));
	assert_memory_equal(dst + PG, src + PG, PG);
	assert_memory_not_equal(dst + 2 * PG, src + 2 * PG, PG);
	/* it comes again as a zero page: paid, and RAM cleared */
	memset(src + 2 * PG, 0, PG);
	sink_record(&k, src, &pfns[1], 1, dst, 0);
	assert_int_equal(k.nr_owed, 0);
	assert_int_equal(k.zero_pages, 1);
	for (unsigned i = 0; i < PG; i++)
		assert_int_equal(dst[2 * PG + i], 0);
	/* torn again, then an intact copy of the data: paid, and equal */
	memset(src + 2 * PG, 0x5a, PG);
	sink_record(&k, src, &pfns[1], 1, dst, 24 + 16 + 8 + 8 + 100);
	assert_int_equal(k.nr_owed, 1);
	sink_record(&k, src, &pfns[1], 1, dst, 0);
	assert_int_equal(k.nr_owed, 0);
	assert_int_equal(k.torn, 2);
	assert_memory_equal(dst + 2 * PG, src + 2 * PG, PG);
	free(dst);
	free(src);
}

/*
 * Straight into RAM or through a buffer: by the RAM's cold-write cost,
 * unless FERRY_MIG_RECV_BUFFERED says 0 or 1.
 */
static void test_recv_buffered_choice(void **state)
{
	struct guest_mem cheap = { .cold_write_ns = 120 }, dear = { .cold_write_ns = 6000 };

	(void)state;
	unsetenv("FERRY_MIG_RECV_BUFFERED");
	assert_false(mig_recv_buffered(&cheap));
	assert_true(mig_recv_buffered(&dear));
	assert_false(mig_recv_buffered(&(struct guest_mem){ .cold_write_ns = MIG_RECV_COLD_NS_MAX }));
	setenv("FERRY_MIG_RECV_BUFFERED", "0", 1);
	assert_false(mig_recv_buffered(&dear));
	setenv("FERRY_MIG_RECV_BUFFERED", "1", 1);
	assert_true(mig_recv_buffered(&cheap));
	setenv("FERRY_MIG_RECV_BUFFERED", "yes", 1);  /* not 0 or 1: vmon chooses */
	assert_false(mig_recv_buffered(&cheap));
	assert_true(mig_recv_buffered(&dear));
	unsetenv("FERRY_MIG_RECV_BUFFERED");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page_valid),
		cmocka_unit_test(test_page_bad_count),
		cmocka_unit_test(test_page_reserved_fields),
		cmocka_unit_test(test_page_bad_kind),
		cmocka_unit_test(test_page_reserved_bits),
		cmocka_unit_test(test_page_pfn_range),
		cmocka_unit_test(test_page_length_mismatch),
		cmocka_unit_test(test_writer_pages),
		cmocka_unit_test(test_writer_hashed),
		cmocka_unit_test(test_writer_written_map),
		cmocka_unit_test(test_reader_direct),
		cmocka_unit_test(test_sink_direct_torn),
		cmocka_unit_test(test_recv_buffered_choice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
