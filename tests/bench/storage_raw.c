/*
 * storage_raw FILE seq|rand N [sync] [direct]: the raw backend, fio-style,
 * as the baseline for storage_bench: N 4 KiB pwrites at queue depth 1,
 * sequential or random over the file, each followed by fdatasync with
 * "sync", through the page cache or with O_DIRECT ("direct", fio's
 * --direct=1). Prints the same line as blkwriter's bench mode.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096u
#define LAT_BUCKETS 20000u

static uint32_t hist[LAT_BUCKETS];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t pct(uint64_t n, unsigned p)
{
	uint64_t want = (n * p + 99) / 100, seen = 0;

	for (unsigned i = 0; i < LAT_BUCKETS; i++)
		if ((seen += hist[i]) >= want)
			return i + 1;
	return LAT_BUCKETS;
}

int main(int argc, char **argv)
{
	static char buf[BLOCK] __attribute__((aligned(4096)));
	uint64_t n, slots, t0, sum = 0, x = 42, errors = 0;
	bool rnd, sync = false, direct = false;
	struct stat st;
	int fd;

	if (argc < 4)
		return fprintf(stderr, "usage: storage_raw FILE seq|rand N [sync] [direct]\n"), 2;
	rnd = !strcmp(argv[2], "rand");
	n = strtoull(argv[3], NULL, 0);
	for (int i = 4; i < argc; i++) {
		sync |= !strcmp(argv[i], "sync");
		direct |= !strcmp(argv[i], "direct");
	}
	fd = open(argv[1], O_RDWR | (direct ? O_DIRECT : 0));
	if (fd < 0 || fstat(fd, &st) || !n)
		return perror(argv[1]), 2;
	slots = (uint64_t)st.st_size / BLOCK;
	memset(buf, 0x5a, sizeof(buf));
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t slot, s = now_ns(), ns;

		x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
		slot = rnd ? (x * 0x2545f4914f6cdd1dull) % slots : i % slots;
		if (pwrite(fd, buf, BLOCK, (off_t)(slot * BLOCK)) != BLOCK)
			errors++;
		if (sync && fdatasync(fd))
			errors++;
		ns = now_ns() - s;
		sum += ns;
		hist[ns / 1000 < LAT_BUCKETS ? ns / 1000 : LAT_BUCKETS - 1]++;
	}
	t0 = now_ns() - t0;
	printf("raw: bench %s%s%s: %llu writes in %llu us: %llu IOPS, %llu MiB/s, latency avg %llu "
	       "us p50 %llu us p99 %llu us, errors %llu\n", argv[2], sync ? "+flush" : "",
	       direct ? " direct" : "",
	       (unsigned long long)n, (unsigned long long)(t0 / 1000),
	       (unsigned long long)(n * 1000000000ull / t0),
	       (unsigned long long)((n * BLOCK * 1000000000ull / t0) >> 20),
	       (unsigned long long)(sum / n / 1000), (unsigned long long)pct(n, 50),
	       (unsigned long long)pct(n, 99), (unsigned long long)errors);
	close(fd);
	return 0;
}
