/*
 * The microguest runtime: what every program in tools/guests/ links with.
 *
 * Guests are freestanding static x86-64 ELF programs that vmon runs at CPL 3
 * (IOPL 3) on identity-mapped pages, one entry per vCPU, all at once. There
 * is no IDT: any exception ends the VM with a triple fault, so nothing here
 * may fault, and hot loops must not exit (no hypercall, no port I/O). What
 * may appear in a hot loop: rt_rdtsc, rt_stall_tick, rt_rand_*, rt_cpu,
 * plain memory accesses. Everything else is a hypercall or may become one.
 *
 * A program defines guest_main(), which every vCPU calls. Returning from it
 * ends the whole VM with that exit code (0..255): a vCPU that must not end
 * the VM loops for ever or calls rt_park().
 */
#ifndef FERRY_GUEST_RT_H
#define FERRY_GUEST_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_abi.h"

#define RT_NORETURN      __attribute__((noreturn))
#define RT_PRINTF(f, a)  __attribute__((format(printf, f, a)))
#define RT_UNUSED        __attribute__((unused))
#define RT_CACHELINE     64
#define RT_ALIGNED(n)    __attribute__((aligned(n)))
#define rt_likely(x)     __builtin_expect(!!(x), 1)
#define rt_unlikely(x)   __builtin_expect(!!(x), 0)
/* Compiler barrier: x86 is TSO, so this orders stores as the CPU sees them. */
#define rt_compiler_barrier() __asm__ __volatile__("" ::: "memory")
#define RT_READ_ONCE(x)     (*(const volatile __typeof__(x) *)&(x))
#define RT_WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define RT_ALIGN_UP(x, a)   (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define RT_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define RT_PAGE_SIZE        4096ull
#define RT_NS_PER_SEC       1000000000ull
#define RT_NS_PER_MS        1000000ull

/* A 64-bit value alone on its cache line (per-vCPU counters). */
struct rt_padded_u64 {
	volatile uint64_t v;
	char pad[RT_CACHELINE - sizeof(uint64_t)];
} RT_ALIGNED(RT_CACHELINE);

/* ---- the program ------------------------------------------------------ */

/* Called on every vCPU; the return value is the VM's exit code. */
int guest_main(unsigned cpu, const struct gabi_boot *boot);

/* Image bounds from the linker script. */
extern char __image_start[], __image_end[];

/* ---- vCPU identity ---------------------------------------------------- */

extern const struct gabi_boot *rt_boot;

/* The current vCPU, from the stack pointer: stack i is
 * [GABI_STACK_GPA + i * GABI_STACK_SIZE, + GABI_STACK_SIZE). */
static inline unsigned rt_cpu(void)
{
	uint64_t sp;

	__asm__("mov %%rsp, %0" : "=r"(sp));
	return (unsigned)((sp - GABI_STACK_GPA) / GABI_STACK_SIZE);
}

static inline unsigned rt_nr_vcpus(void)
{
	return rt_boot->nr_vcpus;
}

static inline void rt_cpu_relax(void)
{
	__asm__ __volatile__("pause" ::: "memory");
}

/* ---- hypercalls (each one is a VM exit) -------------------------------- */

int64_t rt_hcall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2);
int64_t rt_console_write(const char *buf, size_t len);
void rt_sleep_ns(uint64_t ns);       /* capped at 60 s by the monitor    */
void rt_yield(void);                 /* sleep 0: give up the host CPU     */
int rt_report(const char *name, uint64_t value);
/* The monitor reads *value whenever it reports statistics. Names are
 * 1..32 bytes of [A-Za-z0-9._-]; the value must be 8-byte aligned. */
int rt_publish(const char *name, const volatile uint64_t *value);
/* rt_publish with a formatted name kept in runtime storage. */
int rt_publishf(const volatile uint64_t *value, const char *fmt, ...) RT_PRINTF(2, 3);
/* Flush this vCPU's console line and end the VM. */
RT_NORETURN void rt_exit(int code);
/* Sleep for ever (for vCPUs that are done but must not end the VM). */
RT_NORETURN void rt_park(void);
/* Print a message and end the VM with code. If several vCPUs die at once,
 * the first one prints and exits, the others park. */
RT_NORETURN void rt_die(int code, const char *fmt, ...) RT_PRINTF(2, 3);

/* ---- console ---------------------------------------------------------- */

/* Formats into this vCPU's line buffer; each complete line (or a full
 * buffer) goes out with one console hypercall. Supports %d %i %u %x %X %o
 * %p %s %c %%, the flags - 0 + space #, width and precision (also *), and
 * the length modifiers hh h l ll z j t. */
int rt_printf(const char *fmt, ...) RT_PRINTF(1, 2);
int rt_vprintf(const char *fmt, va_list ap);
int rt_snprintf(char *buf, size_t size, const char *fmt, ...) RT_PRINTF(3, 4);
int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
/* Write out this vCPU's partial line, if any. */
void rt_flush(void);

/* ---- arguments (boot->args: "key=value key2=value2") -------------------- */

/* 1 and the value (not NUL-terminated) if key is present, else 0. */
int rt_arg(const char *key, const char **val, size_t *len);
/* Decimal or 0x hex, with an optional k/K, m/M, g/G or t/T suffix (powers
 * of 1024, optionally followed by "iB" or "B"). 0 on success, -1 if bad. */
int rt_parse_u64(const char *s, size_t len, uint64_t *out);
/* The integer value of key, or def if absent; dies with code 2 if bad. */
uint64_t rt_arg_u64(const char *key, uint64_t def);
/* Copy the value of key (or def) into buf; dies with code 2 if too long. */
const char *rt_arg_str(const char *key, char *buf, size_t size, const char *def);
/* Die with code 2 on a word without '=' or a key not in known (NULL-ended). */
void rt_args_check(const char *prog, const char *const *known);

/* ---- time ------------------------------------------------------------- */

extern uint64_t rt_tsc_khz;
extern uint64_t rt_ns_per_tsc_q32;  /* nanoseconds per TSC tick, Q32.32 */
extern uint64_t rt_tsc_per_ns_q32;  /* TSC ticks per nanosecond, Q32.32 */

static inline uint64_t rt_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rt_tsc_to_ns(uint64_t tsc)
{
	return (uint64_t)(((unsigned __int128)tsc * rt_ns_per_tsc_q32) >> 32);
}

static inline uint64_t rt_ns_to_tsc(uint64_t ns)
{
	return (uint64_t)(((unsigned __int128)ns * rt_tsc_per_ns_q32) >> 32);
}

static inline uint64_t rt_now_ns(void)
{
	return rt_tsc_to_ns(rt_rdtsc());
}

/* ---- PRNG: xorshift64* ------------------------------------------------ */

struct rt_rand {
	uint64_t s;
};

/* Any seed works (it is mixed with splitmix64; the state is never 0). */
static inline void rt_rand_seed(struct rt_rand *r, uint64_t seed)
{
	uint64_t z = seed + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	r->s = z ? z : 0x9e3779b97f4a7c15ull;
}

static inline uint64_t rt_rand_next(struct rt_rand *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) for n > 0 (multiply-shift, no division). */
static inline uint64_t rt_rand_below(struct rt_rand *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rt_rand_next(r) * n) >> 64);
}

/* ---- stall tracker ---------------------------------------------------- */

/*
 * Call rt_stall_tick() in a hot loop: it records the largest gap between
 * two consecutive ticks. When the VM is paused (or migrated) the gap
 * appears. Each vCPU has its own tracker; the runtime publishes the
 * largest gap of all trackers as the live value "max_stall_ns".
 *
 * That is the largest since the guest started, host noise included. So
 * the runtime also publishes "stall_epoch", which vmon rewrites when it
 * pauses a guest for a switchover: the first tick that sees a new epoch
 * records its gap, the stall of that switchover as the guest saw it, in
 * "switch_stall_ns" (the largest of the vCPUs'; vmon zeroes it with the
 * epoch). docs/guest-abi.md, "Hypercalls", after the table.
 */
struct rt_stall {
	uint64_t last;           /* TSC of the last tick                    */
	uint64_t max_tsc;        /* largest gap of this tracker, TSC ticks  */
	volatile uint64_t max_ns;/* the same in nanoseconds                 */
	uint64_t epoch;          /* rt_stall_epoch at the last tick         */
};

extern volatile uint64_t rt_max_stall_ns; /* published as "max_stall_ns" */
extern volatile uint64_t rt_stall_epoch;  /* "stall_epoch", vmon writes it */
extern volatile uint64_t rt_switch_stall_ns; /* "switch_stall_ns" */

void rt_stall_init(struct rt_stall *t);
/* The first gap after vmon wrote a new epoch. */
void rt__switch_note(struct rt_stall *t, uint64_t gap);

static inline void rt__stall_note(struct rt_stall *t, uint64_t gap)
{
	uint64_t ns = rt_tsc_to_ns(gap);
	uint64_t cur = __atomic_load_n(&rt_max_stall_ns, __ATOMIC_RELAXED);

	t->max_tsc = gap;
	t->max_ns = ns;
	while (ns > cur &&
	       !__atomic_compare_exchange_n(&rt_max_stall_ns, &cur, ns, 1,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Returns the TSC it read, so callers need not read it again. */
static inline uint64_t rt_stall_tick(struct rt_stall *t)
{
	uint64_t now = rt_rdtsc();
	uint64_t gap = now - t->last;

	t->last = now;
	if (rt_unlikely(t->epoch != rt_stall_epoch))
		rt__switch_note(t, gap);
	/* A TSC that went backwards is not a stall. */
	if (rt_unlikely(gap > t->max_tsc) && (int64_t)gap > 0)
		rt__stall_note(t, gap);
	return now;
}

/* Sleep ns with the sleep hypercall; the gap counts only what exceeds ns. */
void rt_stall_sleep_ns(struct rt_stall *t, uint64_t ns);
/* Wait until the TSC reaches deadline: sleep hypercalls of at most 10 ms
 * while it is more than 1 ms away, then spin (ticking). Returns the TSC. */
uint64_t rt_stall_wait_until(struct rt_stall *t, uint64_t deadline_tsc);

/* ---- spin barrier ----------------------------------------------------- */

struct rt_spin_barrier {
	volatile uint32_t count;
	volatile uint32_t gen;
} RT_ALIGNED(RT_CACHELINE);

/* Zero-initialised (.bss) is ready to use. Waits until n vCPUs arrived;
 * spins, then yields to the host. 0, or -1 after timeout_ns (0 = never;
 * the barrier is unusable after a timeout). */
int rt_barrier_wait(struct rt_spin_barrier *b, unsigned n, uint64_t timeout_ns);

/* ---- string functions (gcc may emit calls to the first four) --------- */

void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);

#endif
