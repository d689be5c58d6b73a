/*
 * PAGE_DATA bodies (docs/migration-stream.md, "PAGE_DATA"): building them
 * from guest RAM on the sending side, validating and walking them on the
 * receiving side.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "core/hash.h"
#include "migrate/stream.h"

/* Zero for sure: the written map says so, or the page itself. */
static bool page_zero(const struct stream_writer *w, uint64_t pfn, const uint8_t *ram)
{
	if (w->written && !(__atomic_load_n(&w->written[pfn / 64], __ATOMIC_RELAXED) >>
			    (pfn % 64) & 1))
		return true;
	return mem_page_is_zero(ram + pfn * STREAM_PAGE_SIZE);
}

/* A run's record went out (rc 0): count its pages. */
static int run_written(struct stream_writer *w, int rc, uint32_t n, uint32_t ndata)
{
	if (rc)
		return rc;
	w->pages += n;
	w->zero_pages += n - ndata;
	return 0;
}

/*
 * One PAGE_DATA record from n <= STREAM_PAGES_MAX valid pfns. Zero pages
 * are found on guest RAM itself, then only data pages are copied, each one
 * hashed right after its copy while it is in L1. The guest may be running
 * (pre-copy): the record is consistent with its checksum because only the
 * copy is hashed and sent, and a page found zero but written since is dirty
 * again and will be resent.
 */
static int write_run(struct stream_writer *w, const uint64_t *pfns,
		     uint32_t n, const uint8_t *ram)
{
	uint8_t *b = w->page_buf;
	uint8_t *data = b + STREAM_PAGE_HDR_LEN + 8u * n;
	struct stream_rec_hdr h = { .type = STREAM_REC_PAGE_DATA };
	uint32_t ndata = 0;
	XXH3_state_t st;

	memset(b, 0, STREAM_PAGE_HDR_LEN);
	memcpy(b, &n, 4);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t kind, e;

		if (page_zero(w, pfns[i], ram)) {
			kind = STREAM_KIND_ZERO;
		} else {
			kind = STREAM_KIND_DATA;
			ndata++;
		}
		e = pfns[i] | kind << STREAM_PAGE_KIND_SHIFT;
		memcpy(b + STREAM_PAGE_HDR_LEN + 8u * i, &e, 8);
	}
	h.length = STREAM_PAGE_HDR_LEN + 8ull * n + (uint64_t)ndata * STREAM_PAGE_SIZE;
	stream_hash_start(&st, &h);
	XXH3_64bits_update(&st, b, STREAM_PAGE_HDR_LEN + 8u * n);
	for (uint32_t i = 0, d = 0; i < n; i++) {
		uint8_t *dst = data + (size_t)d * STREAM_PAGE_SIZE;
		uint64_t e;

		memcpy(&e, b + STREAM_PAGE_HDR_LEN + 8u * i, 8);
		if ((e >> STREAM_PAGE_KIND_SHIFT) != STREAM_KIND_DATA)
			continue;
		memcpy(dst, ram + pfns[i] * STREAM_PAGE_SIZE, STREAM_PAGE_SIZE);
		XXH3_64bits_update(&st, dst, STREAM_PAGE_SIZE);
		d++;
	}
	/* 16 + 8n + 4096k is a multiple of 8: no padding to hash. */
	return run_written(w, stream_write_hashed(w, STREAM_REC_PAGE_DATA, b, h.length,
						  XXH3_64bits_digest(&st)), n, ndata);
}

/*
 * One PAGE_HASHED record: the same zero check, then each data page hashed
 * on guest RAM and handed to the sink from there. Only the prefix (counts,
 * entries, hashes) is built here.
 */
static int write_run_hashed(struct stream_writer *w, const uint64_t *pfns,
			    uint32_t n, const uint8_t *ram)
{
	uint8_t *b = w->page_buf;
	uint8_t *hashes = b + STREAM_PAGE_HDR_LEN + 8u * n;
	struct stream_rec_hdr h = { .type = STREAM_REC_PAGE_HASHED };
	struct iovec iov[1 + STREAM_PAGES_MAX];
	uint32_t ndata = 0;
	uint64_t prefix;
	XXH3_state_t st;
	int k = 1;

	memset(b, 0, STREAM_PAGE_HDR_LEN);
	memcpy(b, &n, 4);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *page = ram + pfns[i] * STREAM_PAGE_SIZE;
		uint64_t kind = STREAM_KIND_ZERO, e;

		if (!page_zero(w, pfns[i], ram)) {
			uint64_t hash = XXH3_64bits(page, STREAM_PAGE_SIZE);

			kind = STREAM_KIND_DATA;
			memcpy(hashes + 8u * ndata++, &hash, 8);
			/*
			 * One piece per page: merging adjacent pages into one
			 * large piece was slower end to end (docs/benchmarks.md).
			 */
			iov[k++] = (struct iovec){ (void *)page, STREAM_PAGE_SIZE };
		}
		e = pfns[i] | kind << STREAM_PAGE_KIND_SHIFT;
		memcpy(b + STREAM_PAGE_HDR_LEN + 8u * i, &e, 8);
	}
	memcpy(b + 4, &ndata, 4);
	prefix = STREAM_PAGE_HDR_LEN + 8ull * n + 8ull * ndata;
	iov[0] = (struct iovec){ b, (size_t)prefix };
	h.length = prefix + (uint64_t)ndata * STREAM_PAGE_SIZE;
	stream_hash_start(&st, &h);
	XXH3_64bits_update(&st, b, (size_t)prefix);
	return run_written(w, stream_write_gather(w, STREAM_REC_PAGE_HASHED, iov, k, h.length,
						  XXH3_64bits_digest(&st)), n, ndata);
}

int stream_write_pages(struct stream_writer *w, const uint64_t *pfns,
		       size_t n, const uint8_t *ram)
{
	int rc;

	for (size_t i = 0; i < n; i++)
		if (pfns[i] > STREAM_PAGE_PFN_MASK)
			return -EINVAL;
	if (n && !w->page_buf) {
		w->page_buf = malloc(STREAM_PAGE_DATA_MAX);
		if (!w->page_buf)
			return -ENOMEM;
	}
	for (size_t done = 0; done < n; ) {
		uint32_t run = (uint32_t)MIN(n - done, (size_t)STREAM_PAGES_MAX);

		rc = w->hashed ? write_run_hashed(w, pfns + done, run, ram) :
			write_run(w, pfns + done, run, ram);
		if (rc)
			return rc;
		done += run;
	}
	return 0;
}

static int why_fail(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int why_fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

/* Entries: reserved bits clear, kinds known, pfns in range; *ndata out. */
static int page_entries_check(const uint8_t *ent, uint32_t count, uint64_t nr_pages,
			      uint64_t *ndata, char *why, size_t whylen)
{
	*ndata = 0;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e, pfn;
		unsigned kind;

		memcpy(&e, ent + 8u * i, 8);
		pfn = e & STREAM_PAGE_PFN_MASK;
		kind = (unsigned)(e >> STREAM_PAGE_KIND_SHIFT);
		if (e & STREAM_PAGE_RSVD_MASK)
			return why_fail(why, whylen,
					"entry %u: reserved bits 52..59 set (0x%016llx)",
					i, (unsigned long long)e);
		if (kind != STREAM_KIND_DATA && kind != STREAM_KIND_ZERO)
			return why_fail(why, whylen, "entry %u: unknown kind %u",
					i, kind);
		if (pfn >= nr_pages)
			return why_fail(why, whylen,
					"entry %u: pfn %llu is beyond the guest's %llu pages",
					i, (unsigned long long)pfn,
					(unsigned long long)nr_pages);
		if (kind == STREAM_KIND_DATA)
			(*ndata)++;
	}
	return 0;
}

int stream_page_data_parse(const void *body, uint64_t len, uint64_t nr_pages,
			   struct stream_page_run *out, char *why,
			   size_t whylen)
{
	const uint8_t *b = body;
	uint32_t count, rsvd, ndata;
	uint64_t rsvd2, want, nd;
	int rc;

	if (len < STREAM_PAGE_HDR_LEN)
		return why_fail(why, whylen,
				"length %llu is shorter than the %u-byte header",
				(unsigned long long)len, STREAM_PAGE_HDR_LEN);
	memcpy(&count, b, 4);
	memcpy(&rsvd, b + 4, 4);
	memcpy(&rsvd2, b + 8, 8);
	if (count < 1 || count > STREAM_PAGES_MAX)
		return why_fail(why, whylen, "count %u is not in 1..%u", count,
				STREAM_PAGES_MAX);
	if (rsvd || rsvd2)
		return why_fail(why, whylen, "reserved header fields are not zero");
	if (len < STREAM_PAGE_HDR_LEN + 8ull * count)
		return why_fail(why, whylen,
				"length %llu is too short for %u entries",
				(unsigned long long)len, count);
	rc = page_entries_check(b + STREAM_PAGE_HDR_LEN, count, nr_pages, &nd, why, whylen);
	if (rc)
		return rc;
	ndata = (uint32_t)nd;
	want = STREAM_PAGE_HDR_LEN + 8ull * count +
	       (uint64_t)ndata * STREAM_PAGE_SIZE;
	if (len != want)
		return why_fail(why, whylen,
				"length %llu, but %u entries with %u data pages make %llu",
				(unsigned long long)len, count, ndata,
				(unsigned long long)want);
	*out = (struct stream_page_run){
		.count = count,
		.ndata = ndata,
		.entries = b + STREAM_PAGE_HDR_LEN,
		.data = b + STREAM_PAGE_HDR_LEN + 8u * count,
	};
	return 0;
}

uint64_t stream_page_hashed_covered(const void *body, uint64_t len)
{
	const uint8_t *b = body;
	uint32_t count, ndata;
	uint64_t prefix;

	if (len < STREAM_PAGE_HDR_LEN)
		return 0;
	memcpy(&count, b, 4);
	memcpy(&ndata, b + 4, 4);
	if (count < 1 || count > STREAM_PAGES_MAX || ndata > count)
		return 0;
	prefix = STREAM_PAGE_HDR_LEN + 8ull * count + 8ull * ndata;
	if (len != prefix + (uint64_t)ndata * STREAM_PAGE_SIZE)
		return 0;
	return prefix;
}

int stream_page_hashed_parse(const void *body, uint64_t len, uint64_t nr_pages,
			     struct stream_page_run *out, char *why, size_t whylen)
{
	const uint8_t *b = body;
	uint64_t prefix = stream_page_hashed_covered(body, len), rsvd;
	uint32_t count, ndata;
	int rc;

	if (!prefix)
		return why_fail(why, whylen, "count or ndata disagree with the length %llu",
				(unsigned long long)len);
	memcpy(&count, b, 4);
	memcpy(&ndata, b + 4, 4);
	memcpy(&rsvd, b + 8, 8);
	if (rsvd)
		return why_fail(why, whylen, "reserved header field is not zero");
	/* The entries are PAGE_DATA's, checked the same way. */
	rc = page_entries_check(b + STREAM_PAGE_HDR_LEN, count, nr_pages, &rsvd, why, whylen);
	if (rc)
		return rc;
	if (rsvd != ndata)
		return why_fail(why, whylen, "ndata %u, but %llu entries are DATA", ndata,
				(unsigned long long)rsvd);
	*out = (struct stream_page_run){
		.count = count,
		.ndata = ndata,
		.entries = b + STREAM_PAGE_HDR_LEN,
		.hashes = b + STREAM_PAGE_HDR_LEN + 8u * count,
		.data = b + prefix,
	};
	return 0;
}

int stream_read_pages(struct stream_reader *r, const void *body, uint64_t len,
		      uint64_t nr_pages, struct stream_page_run *out)
{
	if (r->direct) {
		/* Parsed and checked (against page_ram_pages) as it was read. */
		*out = r->direct_run;
		return 0;
	}
	char why[160];
	bool hashed = r->type == STREAM_REC_PAGE_HASHED;
	int rc = hashed ? stream_page_hashed_parse(body, len, nr_pages, out, why, sizeof(why)) :
		stream_page_data_parse(body, len, nr_pages, out, why, sizeof(why));

	if (rc)
		snprintf(r->err, sizeof(r->err),
			 "stream: record %s at offset %llu: %s", hashed ? "PAGE_HASHED" :
			 "PAGE_DATA", (unsigned long long)r->rec_off, why);
	return rc;
}

bool stream_page_intact(const struct stream_page_run *run, const uint8_t *page)
{
	uint64_t want;

	if (!run->hashes || !page || !run->dpos)
		return true;
	if (run->ram)
		return run->intact[(run->dpos - 1) / 64] >> ((run->dpos - 1) % 64) & 1;
	memcpy(&want, run->hashes + 8u * (run->dpos - 1), 8);
	return XXH3_64bits(page, STREAM_PAGE_SIZE) == want;
}

bool stream_page_next(struct stream_page_run *run, uint64_t *pfn,
		      const uint8_t **page)
{
	uint64_t e;

	if (run->pos >= run->count)
		return false;
	memcpy(&e, run->entries + 8u * run->pos++, 8);
	*pfn = e & STREAM_PAGE_PFN_MASK;
	if ((e >> STREAM_PAGE_KIND_SHIFT) == STREAM_KIND_ZERO) {
		*page = NULL;
	} else if (run->ram) {
		*page = run->ram + *pfn * STREAM_PAGE_SIZE;
		run->dpos++;
	} else {
		*page = run->data + (size_t)run->dpos++ * STREAM_PAGE_SIZE;
	}
	return true;
}
