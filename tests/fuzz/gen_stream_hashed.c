/*
 * Make a fuzz seed with PAGE_HASHED records out of a snapshot: the same
 * records, the pages rewritten as a live sender writes them (one hash per
 * page), END recounted. Snapshots never hold PAGE_HASHED, and without such
 * a seed the fuzzer would rarely reach the reader's direct path (pages
 * read straight into guest RAM), which is the one that writes into RAM.
 *
 * With --sync it also writes the SYNC a live source sends after a round's
 * pages (here after the last page record), as the control connection
 * carries it: a file never holds one, and the loader must refuse it there.
 *
 *   gen_stream_hashed [--sync] SNAPSHOT OUT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/mig_state.h"

static int copy_pages(struct stream_writer *w, struct stream_reader *r, uint8_t *ram,
		      uint64_t nr_pages, const void *body, uint64_t len)
{
	struct stream_page_run run;
	uint64_t pfns[STREAM_PAGES_MAX], pfn;
	const uint8_t *page;
	size_t n = 0;
	int ret = stream_read_pages(r, body, len, nr_pages, &run);

	if (ret)
		return ret;
	while (stream_page_next(&run, &pfn, &page)) {
		if (page)
			memcpy(ram + pfn * STREAM_PAGE_SIZE, page, STREAM_PAGE_SIZE);
		else
			memset(ram + pfn * STREAM_PAGE_SIZE, 0, STREAM_PAGE_SIZE);
		pfns[n++] = pfn;
	}
	return stream_write_pages(w, pfns, n, ram);
}

static int end_recounted(struct stream_writer *w, const void *body, uint64_t len)
{
	Ferry__Mig__StreamEnd *e = ferry__mig__stream_end__unpack(NULL, len, body);
	int ret;

	if (!e)
		return -EBADMSG;
	e->records = w->records;
	e->bytes = w->off;
	e->pages = w->pages;
	e->zero_pages = w->zero_pages;
	ret = stream_write_pb(w, STREAM_REC_END, &e->base);
	ferry__mig__stream_end__free_unpacked(e, NULL);
	return ret;
}

int main(int argc, char **argv)
{
	struct stream_reader r;
	struct stream_writer w;
	uint8_t *ram = NULL;
	uint64_t nr_pages = 0, len;
	uint32_t flags, type;
	const void *body;
	bool sync = argc == 4 && !strcmp(argv[1], "--sync");
	int in, out, ret;

	if (argc != 3 && !sync) {
		fprintf(stderr, "usage: gen_stream_hashed [--sync] SNAPSHOT OUT\n");
		return 2;
	}
	argv += sync;
	in = open(argv[1], O_RDONLY | O_CLOEXEC);
	out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in < 0 || out < 0) {
		perror("gen_stream_hashed");
		return 2;
	}
	stream_reader_init(&r, in);
	stream_writer_init(&w, out);
	w.hashed = true;
	ret = stream_read_preamble(&r, &flags);
	if (!ret)
		ret = stream_write_preamble(&w, flags | STREAM_F_LIVE);
	while (!ret) {
		ret = stream_read_record(&r, &type, &body, &len);
		if (ret)
			break;
		if (type == STREAM_REC_VM_CONFIG) {
			Ferry__Mig__VmConfig *c = ferry__mig__vm_config__unpack(NULL, len, body);

			if (!c || !c->nr_pages || c->nr_pages > (1u << 20)) {
				ret = -EBADMSG;
				break;
			}
			nr_pages = c->nr_pages;
			ferry__mig__vm_config__free_unpacked(c, NULL);
			free(ram);
			ram = calloc(nr_pages, STREAM_PAGE_SIZE);
			if (!ram) {
				ret = -ENOMEM;
				break;
			}
		}
		if (type == STREAM_REC_PAGE_DATA && ram)
			ret = copy_pages(&w, &r, ram, nr_pages, body, len);
		else if (type == STREAM_REC_VCPU_STATE && sync) {
			Ferry__Mig__Sync sy = FERRY__MIG__SYNC__INIT;

			sync = false;
			sy.round = 1;
			ret = stream_write_pb(&w, STREAM_REC_SYNC, &sy.base);
			if (!ret)
				ret = stream_write_record(&w, type, body, len);
		} else if (type == STREAM_REC_END)
			ret = end_recounted(&w, body, len);
		else
			ret = stream_write_record(&w, type, body, len);
		if (type == STREAM_REC_END)
			break;
	}
	if (ret)
		fprintf(stderr, "gen_stream_hashed: %s: %s\n", argv[1],
			r.err[0] ? r.err : strerror(-ret));
	stream_reader_destroy(&r);
	stream_writer_destroy(&w);
	free(ram);
	close(in);
	return close(out) || ret ? 1 : 0;
}
