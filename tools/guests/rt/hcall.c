/* Hypercall wrappers. */
#include "rt.h"

extern uint64_t rt_hcall_base;

int64_t rt_hcall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	volatile struct gabi_hcall *h = (volatile struct gabi_hcall *)
		(rt_hcall_base + (uint64_t)rt_cpu() * GABI_PAGE_SIZE);

	h->nr = nr;
	h->args[0] = a0;
	h->args[1] = a1;
	h->args[2] = a2;
	h->ret = -38; /* -ENOSYS, should the monitor not answer */
	/* "memory": every store above (and to any buffer a0 points to) is
	 * done before the out, and ret is read after it. */
	__asm__ __volatile__("outb %%al, %1"
			     : : "a"(0), "N"(GABI_DOORBELL_PORT) : "memory");
	return h->ret;
}

int64_t rt_console_write(const char *buf, size_t len)
{
	int64_t done = 0;

	while (len) {
		size_t n = len > GABI_CONSOLE_MAX ? GABI_CONSOLE_MAX : len;
		int64_t ret = rt_hcall(GABI_HC_CONSOLE_WRITE, (uint64_t)buf, n, 0);

		if (ret < 0)
			return done ? done : ret;
		done += (int64_t)n;
		buf += n;
		len -= n;
	}
	return done;
}

void rt_sleep_ns(uint64_t ns)
{
	rt_hcall(GABI_HC_SLEEP, ns, 0, 0);
}

void rt_yield(void)
{
	rt_hcall(GABI_HC_SLEEP, 0, 0, 0);
}

RT_NORETURN void rt_exit(int code)
{
	rt_flush();
	for (;;) {
		rt_hcall(GABI_HC_EXIT, (unsigned)code & 0xff, 0, 0);
		rt_cpu_relax();
	}
}

RT_NORETURN void rt_park(void)
{
	rt_flush();
	for (;;)
		rt_sleep_ns(RT_NS_PER_MS);
}

static uint32_t rt_dying;

RT_NORETURN void rt_die(int code, const char *fmt, ...)
{
	va_list ap;

	if (__atomic_exchange_n(&rt_dying, 1, __ATOMIC_ACQ_REL))
		rt_park();
	rt_flush();
	va_start(ap, fmt);
	rt_vprintf(fmt, ap);
	va_end(ap);
	rt_exit(code);
}

int rt_report(const char *name, uint64_t value)
{
	int64_t ret = rt_hcall(GABI_HC_REPORT, (uint64_t)name, strlen(name), value);

	if (ret < 0)
		rt_printf("rt: report %s failed: %ld\n", name, (long)ret);
	return (int)ret;
}

int rt_publish(const char *name, const volatile uint64_t *value)
{
	int64_t ret = rt_hcall(GABI_HC_PUBLISH, (uint64_t)name, strlen(name),
			       (uint64_t)value);

	if (ret < 0)
		rt_printf("rt: publish %s failed: %ld\n", name, (long)ret);
	return (int)ret;
}

/* Names stay in guest memory for good, whatever the monitor does with them. */
static char rt_names[GABI_REPORTS_MAX][GABI_NAME_MAX + 1];
static uint32_t rt_nr_names;

int rt_publishf(const volatile uint64_t *value, const char *fmt, ...)
{
	uint32_t i = __atomic_fetch_add(&rt_nr_names, 1, __ATOMIC_RELAXED);
	va_list ap;

	if (i >= GABI_REPORTS_MAX) {
		rt_printf("rt: publishf %s: out of name slots\n", fmt);
		return -28; /* -ENOSPC */
	}
	va_start(ap, fmt);
	rt_vsnprintf(rt_names[i], sizeof(rt_names[i]), fmt, ap);
	va_end(ap);
	return rt_publish(rt_names[i], value);
}
