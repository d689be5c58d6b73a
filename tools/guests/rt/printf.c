/* A small printf: one formatter, two sinks (a string, the console line). */
#include "rt.h"

struct sink {
	void (*put)(struct sink *s, char c);
	char *buf;
	size_t len;  /* characters produced so far */
	size_t cap;  /* string sink: bytes in buf  */
};

static void emit(struct sink *s, char c)
{
	s->put(s, c);
	s->len++;
}

static void emit_n(struct sink *s, char c, int n)
{
	while (n-- > 0)
		emit(s, c);
}

enum {
	F_LEFT  = 1 << 0,
	F_ZERO  = 1 << 1,
	F_PLUS  = 1 << 2,
	F_SPACE = 1 << 3,
	F_ALT   = 1 << 4,
};

static void emit_number(struct sink *s, uint64_t v, int neg, unsigned base,
			int upper, int flags, int width, int prec,
			const char *prefix)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, plen = 0, zeros, pad;
	char sign = 0;

	if (neg)
		sign = '-';
	else if (flags & F_PLUS)
		sign = '+';
	else if (flags & F_SPACE)
		sign = ' ';
	if (!(v == 0 && prec == 0)) {
		do {
			tmp[n++] = digits[v % base];
			v /= base;
		} while (v);
	}
	if (prefix)
		plen = (int)strlen(prefix);
	zeros = prec > n ? prec - n : 0;
	pad = width - n - zeros - plen - (sign ? 1 : 0);
	if ((flags & F_ZERO) && !(flags & F_LEFT) && prec < 0 && pad > 0) {
		zeros += pad;
		pad = 0;
	}
	if (!(flags & F_LEFT))
		emit_n(s, ' ', pad);
	if (sign)
		emit(s, sign);
	while (prefix && *prefix)
		emit(s, *prefix++);
	emit_n(s, '0', zeros);
	while (n)
		emit(s, tmp[--n]);
	if (flags & F_LEFT)
		emit_n(s, ' ', pad);
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		int flags = 0, width = 0, prec = -1, lng = 0;
		unsigned base = 10;
		int upper = 0, is_signed = 0;
		const char *prefix = NULL;
		uint64_t v;
		int neg = 0;

		if (*fmt != '%') {
			emit(s, *fmt);
			continue;
		}
		for (;;) {
			char f = *++fmt;

			if (f == '-')
				flags |= F_LEFT;
			else if (f == '0')
				flags |= F_ZERO;
			else if (f == '+')
				flags |= F_PLUS;
			else if (f == ' ')
				flags |= F_SPACE;
			else if (f == '#')
				flags |= F_ALT;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			if (width < 0) {
				flags |= F_LEFT;
				width = -width;
			}
			fmt++;
		} else {
			while (*fmt >= '0' && *fmt <= '9')
				width = width * 10 + (*fmt++ - '0');
		}
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			} else {
				while (*fmt >= '0' && *fmt <= '9')
					prec = prec * 10 + (*fmt++ - '0');
			}
		}
		/* lng: -2 hh, -1 h, 0 int, 1 long and the 64-bit ones */
		for (;; fmt++) {
			if (*fmt == 'h')
				lng--;
			else if (*fmt == 'l' || *fmt == 'z' || *fmt == 'j' ||
				 *fmt == 't')
				lng = 1;
			else
				break;
		}
		switch (*fmt) {
		case '\0':
			return;
		case '%':
			emit(s, '%');
			continue;
		case 'c': {
			int c = va_arg(ap, int);

			if (!(flags & F_LEFT))
				emit_n(s, ' ', width - 1);
			emit(s, (char)c);
			if (flags & F_LEFT)
				emit_n(s, ' ', width - 1);
			continue;
		}
		case 's': {
			const char *str = va_arg(ap, const char *);
			int n;

			if (!str)
				str = "(null)";
			n = (int)(prec >= 0 ? strnlen(str, (size_t)prec) : strlen(str));
			if (!(flags & F_LEFT))
				emit_n(s, ' ', width - n);
			for (int i = 0; i < n; i++)
				emit(s, str[i]);
			if (flags & F_LEFT)
				emit_n(s, ' ', width - n);
			continue;
		}
		case 'p':
			v = (uint64_t)va_arg(ap, void *);
			emit_number(s, v, 0, 16, 0, flags & ~F_ZERO & ~F_PLUS & ~F_SPACE,
				    width, prec, "0x");
			continue;
		case 'd':
		case 'i':
			is_signed = 1;
			break;
		case 'u':
			break;
		case 'X':
			upper = 1;
			/* fall through */
		case 'x':
			base = 16;
			if (flags & F_ALT)
				prefix = upper ? "0X" : "0x";
			break;
		case 'o':
			base = 8;
			if (flags & F_ALT)
				prefix = "0";
			break;
		default:
			/* Unknown conversion: print it as it was written. */
			emit(s, '%');
			emit(s, *fmt);
			continue;
		}
		if (is_signed) {
			int64_t sv;

			if (lng > 0)
				sv = va_arg(ap, long);
			else
				sv = va_arg(ap, int);
			if (lng == -1)
				sv = (short)sv;
			else if (lng <= -2)
				sv = (signed char)sv;
			neg = sv < 0;
			v = neg ? 0 - (uint64_t)sv : (uint64_t)sv;
		} else {
			if (lng > 0)
				v = va_arg(ap, unsigned long);
			else
				v = va_arg(ap, unsigned int);
			if (lng == -1)
				v = (unsigned short)v;
			else if (lng <= -2)
				v = (unsigned char)v;
			flags &= ~(F_PLUS | F_SPACE);
		}
		if (v == 0)
			prefix = NULL;
		emit_number(s, v, neg, base, upper, flags, width, prec, prefix);
	}
}

/* ---- string sink ---- */

static void put_str(struct sink *s, char c)
{
	if (s->len + 1 < s->cap)
		s->buf[s->len] = c;
}

int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sink s = { .put = put_str, .buf = buf, .cap = size };

	format(&s, fmt, ap);
	if (size)
		buf[s.len < size ? s.len : size - 1] = '\0';
	return (int)s.len;
}

int rt_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rt_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* ---- console sink: one line buffer per vCPU ---- */

#define RT_LINE_MAX 256

static struct rt_line {
	char buf[RT_LINE_MAX];
	uint32_t len;
} RT_ALIGNED(RT_CACHELINE) rt_lines[GABI_MAX_VCPUS];

static struct rt_line *my_line(void)
{
	unsigned cpu = rt_cpu();

	return &rt_lines[cpu < GABI_MAX_VCPUS ? cpu : 0];
}

static void line_flush(struct rt_line *l)
{
	if (l->len) {
		rt_console_write(l->buf, l->len);
		l->len = 0;
	}
}

static void put_line(struct sink *s, char c)
{
	struct rt_line *l = (struct rt_line *)s->buf;

	l->buf[l->len++] = c;
	if (c == '\n' || l->len == RT_LINE_MAX)
		line_flush(l);
}

void rt_flush(void)
{
	line_flush(my_line());
}

int rt_vprintf(const char *fmt, va_list ap)
{
	struct sink s = { .put = put_line, .buf = (char *)my_line() };

	format(&s, fmt, ap);
	return (int)s.len;
}

int rt_printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = rt_vprintf(fmt, ap);
	va_end(ap);
	return n;
}
