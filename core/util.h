/* Small helpers shared by the core modules and tools. */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * Parse a size such as "512M", "4G", "65536" or "64KiB" (binary units).
 * Returns 0, -EINVAL for garbage, -ERANGE on overflow.
 */
int parse_size(const char *s, uint64_t *out);

/* Parse an unsigned decimal integer in [min, max]; 0 or -EINVAL/-ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Human-readable size, e.g. "1.5 GiB". Returns buf. */
const char *fmt_size(uint64_t bytes, char *buf, size_t len);
/* A migration's bandwidth cap: "400 Mbit/s", or "none" for 0. Returns buf. */
const char *fmt_cap_mbps(uint64_t mbps, char *buf, size_t len);

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wall-clock time in ns: what two hosts can compare (migration downtime). */
static inline uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Write or read all of buf, retrying on EINTR and short transfers. */
int write_full(int fd, const void *buf, size_t len);
/* write_full for a socket whose peer may be gone: -EPIPE, never SIGPIPE. */
int send_full(int fd, const void *buf, size_t len);
int read_full(int fd, void *buf, size_t len);
/*
 * Replace path with buf whole (PATH.tmp, fsync, rename), or leave the old
 * file as it was: a full disk loses this update, never the previous one.
 */
int write_file_atomic(const char *path, const void *buf, size_t len);

/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines (now_ns()). */
void cond_init_monotonic(pthread_cond_t *c);

#endif
