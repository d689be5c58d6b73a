/* boot->args: words separated by blanks, each "key=value". */
#include "rt.h"

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Calls fn for each word; stops and returns fn's value when it is not 0. */
static int for_each_word(int (*fn)(const char *w, size_t len, void *ctx),
			 void *ctx)
{
	const char *a = rt_boot->args;
	size_t n = rt_boot->args_len, i = 0;

	if (n > GABI_ARGS_MAX - 1)
		n = GABI_ARGS_MAX - 1;
	n = strnlen(a, n);
	while (i < n) {
		size_t start;
		int ret;

		while (i < n && is_blank(a[i]))
			i++;
		if (i == n)
			break;
		start = i;
		while (i < n && !is_blank(a[i]))
			i++;
		ret = fn(a + start, i - start, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

struct find {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
};

static int find_word(const char *w, size_t len, void *ctx)
{
	struct find *f = ctx;

	/* The last occurrence wins, like a command line. */
	if (len > f->key_len && w[f->key_len] == '=' &&
	    !memcmp(w, f->key, f->key_len)) {
		f->val = w + f->key_len + 1;
		f->val_len = len - f->key_len - 1;
	}
	return 0;
}

int rt_arg(const char *key, const char **val, size_t *len)
{
	struct find f = { .key = key, .key_len = strlen(key) };

	for_each_word(find_word, &f);
	if (!f.val)
		return 0;
	*val = f.val;
	*len = f.val_len;
	return 1;
}

int rt_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	unsigned base = 10;
	size_t i = 0, digits = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	for (; i < len; i++, digits++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		if (v > (UINT64_MAX - d) / base)
			return -1;
		v = v * base + d;
	}
	if (!digits)
		return -1;
	if (i < len) {
		switch (s[i]) {
		case 'k': case 'K': mult = 1ull << 10; break;
		case 'm': case 'M': mult = 1ull << 20; break;
		case 'g': case 'G': mult = 1ull << 30; break;
		case 't': case 'T': mult = 1ull << 40; break;
		default: return -1;
		}
		i++;
		if (i < len && s[i] == 'i')
			i++;
		if (i < len && s[i] == 'B')
			i++;
		if (i != len)
			return -1;
		if (v > UINT64_MAX / mult)
			return -1;
		v *= mult;
	}
	*out = v;
	return 0;
}

uint64_t rt_arg_u64(const char *key, uint64_t def)
{
	const char *val;
	size_t len;
	uint64_t v;

	if (!rt_arg(key, &val, &len))
		return def;
	if (rt_parse_u64(val, len, &v))
		rt_die(2, "bad argument %s=%.*s: expected an integer (k/M/G/T suffixes allowed)\n",
		       key, (int)len, val);
	return v;
}

const char *rt_arg_str(const char *key, char *buf, size_t size,
		       const char *def)
{
	const char *val;
	size_t len;

	if (!rt_arg(key, &val, &len)) {
		val = def;
		len = strlen(def);
	}
	if (len >= size)
		rt_die(2, "value of %s too long: \"%.*s\"\n", key, (int)len, val);
	memcpy(buf, val, len);
	buf[len] = '\0';
	return buf;
}

struct check {
	const char *prog;
	const char *const *known;
};

static int check_word(const char *w, size_t len, void *ctx)
{
	struct check *c = ctx;
	size_t klen = 0;

	while (klen < len && w[klen] != '=')
		klen++;
	if (klen == len || klen == 0)
		rt_die(2, "%s: bad argument \"%.*s\": expected key=value\n",
		       c->prog, (int)len, w);
	for (const char *const *k = c->known; *k; k++)
		if (strlen(*k) == klen && !memcmp(*k, w, klen))
			return 0;
	rt_die(2, "%s: unknown argument \"%.*s\"\n", c->prog, (int)klen, w);
}

void rt_args_check(const char *prog, const char *const *known)
{
	struct check c = { .prog = prog, .known = known };

	for_each_word(check_word, &c);
}
