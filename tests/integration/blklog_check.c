/*
 * blklog_check IMAGE [--slots N] [--min-seq N]: check the blkwriter log
 * directly on a disk image (storage/blklog.h): no gap, no duplicate, no
 * torn block, and with --min-seq, every block the guest was told was
 * written (its "acked" value) is there. Prints one line; exit 0 ok, 1 a
 * fault, 2 bad usage.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/blklog.h"

int main(int argc, char **argv)
{
	uint64_t slots = 0, min_seq = 0, buf[BLKLOG_WORDS];
	struct blklog_result r;
	struct blklog_slot *s;
	struct stat st;
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: blklog_check IMAGE [--slots N] [--min-seq N]\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--slots"))
			slots = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--min-seq"))
			min_seq = strtoull(argv[i + 1], NULL, 0);
		else
			return fprintf(stderr, "blklog_check: unknown option %s\n", argv[i]), 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		return perror(argv[1]), 2;
	if (!slots)
		slots = (uint64_t)st.st_size / BLKLOG_BLOCK;
	s = calloc(slots ? slots : 1, sizeof(*s));
	if (!s || !slots)
		return fprintf(stderr, "blklog_check: empty image\n"), 2;
	for (uint64_t i = 0; i < slots; i++) {
		if (pread(fd, buf, sizeof(buf), (off_t)(i * BLKLOG_BLOCK)) != (ssize_t)sizeof(buf))
			return fprintf(stderr, "blklog_check: short read at block %llu\n",
				       (unsigned long long)i), 2;
		blklog_parse(buf, i, slots, &s[i]);
	}
	blklog_verify(s, slots, &r);
	if (r.err) {
		printf("blklog_check: FAIL: %s at slot %llu (expected block %llu); last seq %llu\n",
		       blklog_err_name(r.err), (unsigned long long)r.slot,
		       (unsigned long long)r.want_seq, (unsigned long long)r.last_seq);
		return 1;
	}
	if (r.last_seq < min_seq) {
		printf("blklog_check: FAIL: acknowledged block %llu is not on the storage "
		       "(last seq %llu)\n", (unsigned long long)min_seq,
		       (unsigned long long)r.last_seq);
		return 1;
	}
	printf("blklog_check: ok: last seq %llu, %llu blocks%s\n",
	       (unsigned long long)r.last_seq, (unsigned long long)r.valid,
	       r.torn_tail ? ", torn unacknowledged tail" : "");
	free(s);
	close(fd);
	return 0;
}
