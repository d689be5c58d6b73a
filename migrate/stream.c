/*
 * The migration stream's record layer: types and limits, the order state
 * machine, the writer and the reader. PAGE_DATA bodies are in
 * stream_page.c. See docs/migration-stream.md, part 1.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/util.h"
#include "core/hash.h"
#include "migrate/stream.h"

/*
 * The stream is little-endian and Ferry runs only on x86-64, so headers are
 * copied as structs. This fails the build on a host where that is wrong.
 */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "the stream format assumes a little-endian host");
_Static_assert(sizeof(struct stream_rec_hdr) == STREAM_HDR_LEN,
	       "record header layout");

/* Unknown optional records are hashed through this much at a time. */
#define SKIP_CHUNK_BYTES 16384u

/*
 * Every type this code knows: its limit, and its place in the order
 * grammar (slot; -1 for live protocol messages, which have no place in a
 * stream).
 */
static const struct stream_type_info {
	uint32_t type;
	const char *name;
	uint64_t max_len;
	int slot;
} stream_types[] = {
	{ STREAM_REC_STREAM_HEADER, "STREAM_HEADER", STREAM_PB_MAX, 0 },
	{ STREAM_REC_VM_CONFIG,     "VM_CONFIG",     STREAM_PB_MAX, 1 },
	{ STREAM_REC_CPU_MODEL,     "CPU_MODEL",     STREAM_PB_MAX, 2 },
	{ STREAM_REC_PAGE_DATA,     "PAGE_DATA",     STREAM_PAGE_DATA_MAX, 3 },
	{ STREAM_REC_FENCE,         "FENCE",         STREAM_PB_MAX, 3 },
	{ STREAM_REC_PAGE_HASHED,   "PAGE_HASHED",   STREAM_PAGE_HASHED_MAX, 3 },
	{ STREAM_REC_ROUND,         "ROUND",         STREAM_PB_MAX, 3 },
	{ STREAM_REC_SYNC,          "SYNC",          STREAM_PB_MAX, 3 },
	{ STREAM_REC_VCPU_STATE,    "VCPU_STATE",    STREAM_PB_MAX, 4 },
	{ STREAM_REC_CLOCK,         "CLOCK",         STREAM_PB_MAX, 5 },
	{ STREAM_REC_DEVICE_STATE,  "DEVICE_STATE",  STREAM_PB_MAX, 6 },
	{ STREAM_REC_END,           "END",           STREAM_PB_MAX, 7 },
	{ STREAM_REC_HELLO,         "HELLO",         STREAM_PB_MAX, -1 },
	{ STREAM_REC_VERDICT,       "VERDICT",       STREAM_PB_MAX, -1 },
	{ STREAM_REC_ACK,           "ACK",           STREAM_PB_MAX, -1 },
	{ STREAM_REC_COMMIT,        "COMMIT",        STREAM_PB_MAX, -1 },
	{ STREAM_REC_ABORT,         "ABORT",         STREAM_PB_MAX, -1 },
	{ STREAM_REC_RESUMED,       "RESUMED",       STREAM_PB_MAX, -1 },
	{ STREAM_REC_PROBE,         "PROBE",         STREAM_PB_MAX, -1 },
	{ STREAM_REC_JOIN,          "JOIN",          STREAM_PB_MAX, -1 },
	{ STREAM_REC_SYNCED,        "SYNCED",        STREAM_PB_MAX, -1 },
};

/*
 * The grammar's slots in order; slot i done means phase i + 1. A slot may
 * repeat (many) and may be absent (optional); the type names it in
 * "X before Y" messages.
 */
static const struct order_slot {
	uint32_t type;
	bool many;
	bool optional;
} order_slots[] = {
	{ STREAM_REC_STREAM_HEADER, false, false },
	{ STREAM_REC_VM_CONFIG,     false, false },
	{ STREAM_REC_CPU_MODEL,     false, false },
	{ STREAM_REC_PAGE_DATA,     true,  true  },
	{ STREAM_REC_VCPU_STATE,    true,  false },
	{ STREAM_REC_CLOCK,         false, false },
	{ STREAM_REC_DEVICE_STATE,  true,  true  },
	{ STREAM_REC_END,           false, false },
};
_Static_assert(ARRAY_SIZE(order_slots) == STREAM_PH_END,
	       "one phase per slot");

static const struct stream_type_info *type_info(uint32_t type)
{
	for (size_t i = 0; i < ARRAY_SIZE(stream_types); i++)
		if (stream_types[i].type == type)
			return &stream_types[i];
	return NULL;
}

const char *stream_type_name(uint32_t type)
{
	const struct stream_type_info *t = type_info(type);

	return t ? t->name : NULL;
}

uint64_t stream_type_max_len(uint32_t type)
{
	const struct stream_type_info *t = type_info(type);

	return t ? t->max_len : 0;
}

/* The name, or the hex number of a type this code does not know. */
static const char *tname(uint32_t type, char buf[16])
{
	const char *n = stream_type_name(type);

	if (n)
		return n;
	snprintf(buf, 16, "0x%08x", type);
	return buf;
}

void stream_hash_start(XXH3_state_t *st, const struct stream_rec_hdr *h)
{
	XXH3_INITSTATE(st);
	XXH3_64bits_reset(st);
	/* Bytes 0..15: the checksum cannot cover itself. */
	XXH3_64bits_update(st, h, offsetof(struct stream_rec_hdr, checksum));
}

uint64_t stream_rec_checksum(const struct stream_rec_hdr *h, const void *body,
			     uint64_t padded_len)
{
	XXH3_state_t st;

	stream_hash_start(&st, h);
	if (padded_len)
		XXH3_64bits_update(&st, body, padded_len);
	return XXH3_64bits_digest(&st);
}

/* ---- order ---- */

void stream_order_init(struct stream_order *o)
{
	o->phase = STREAM_PH_START;
	o->last = 0;
}

static int order_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int order_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

int stream_order_check(struct stream_order *o, uint32_t type, uint64_t off,
		       char *err, size_t errlen)
{
	const struct stream_type_info *t = type_info(type);
	unsigned long long at = (unsigned long long)off;
	unsigned p = o->phase;
	char a[16], b[16];

	if (!t) {
		if (!(type & STREAM_REC_OPTIONAL))
			return order_fail(err, errlen,
				"stream: unknown mandatory record type 0x%08x at offset %llu",
				type, at);
		/* Skippable, but not where the spec pins the first and last. */
		if (p == STREAM_PH_START)
			return order_fail(err, errlen,
				"stream: %s before STREAM_HEADER at offset %llu",
				tname(type, a), at);
		if (p == STREAM_PH_END)
			return order_fail(err, errlen,
				"stream: %s after END at offset %llu",
				tname(type, a), at);
		return 0;
	}
	if (t->slot < 0)
		return order_fail(err, errlen,
			"stream: %s at offset %llu: a live protocol message inside the stream",
			t->name, at);

	unsigned s = (unsigned)t->slot;

	if (s + 1 == p && order_slots[s].many)
		goto accept;
	if (s >= p) {
		/* Only parts the grammar lets be absent may be jumped over. */
		for (unsigned i = p; i < s; i++)
			if (!order_slots[i].optional)
				return order_fail(err, errlen,
					"stream: %s before %s at offset %llu",
					t->name, tname(order_slots[i].type, a), at);
		goto accept;
	}
	if (s + 1 == p && type == o->last)
		return order_fail(err, errlen,
			"stream: second %s at offset %llu", t->name, at);
	return order_fail(err, errlen, "stream: %s after %s at offset %llu",
			  t->name, tname(o->last, b), at);
accept:
	o->phase = (enum stream_phase)(s + 1);
	o->last = type;
	return 0;
}

/* ---- writer ---- */

void stream_writer_init(struct stream_writer *w, int fd)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
}

/* The writer's sink: its io if it has one, else its fd. */
static int writev_full(int fd, struct iovec *iov, int cnt);

static int stream_outv(struct stream_writer *w, struct iovec *iov, int cnt)
{
	if (w->io)
		return w->io->writev(w->io->ctx, iov, cnt);
	return writev_full(w->fd, iov, cnt);
}

static int stream_out(struct stream_writer *w, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return stream_outv(w, &iov, 1);
}

void stream_writer_destroy(struct stream_writer *w)
{
	free(w->page_buf);
	w->page_buf = NULL;
}

/* writev until everything is out: sockets take partial writes. */
static int writev_full(int fd, struct iovec *iov, int cnt)
{
	while (cnt) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int stream_write_preamble(struct stream_writer *w, uint32_t flags)
{
	uint8_t pre[STREAM_PREAMBLE_LEN];
	uint32_t version = STREAM_VERSION;
	int rc;

	if (flags & ~STREAM_F_LIVE)
		return -EINVAL;
	memcpy(pre, STREAM_MAGIC, STREAM_MAGIC_LEN);
	memcpy(pre + 8, &version, 4);
	memcpy(pre + 12, &flags, 4);
	rc = stream_out(w, pre, sizeof(pre));
	if (rc)
		return rc;
	w->off += sizeof(pre);
	return 0;
}

static const uint8_t stream_zeros[STREAM_ALIGN];

int stream_write_record(struct stream_writer *w, uint32_t type,
			const void *body, uint64_t len)
{
	struct stream_rec_hdr h = { .type = type, .flags = 0, .length = len };
	size_t pad = (size_t)(ALIGN_UP(len, STREAM_ALIGN) - len);
	XXH3_state_t st;

	stream_hash_start(&st, &h);
	if (len)
		XXH3_64bits_update(&st, body, len);
	if (pad)
		XXH3_64bits_update(&st, stream_zeros, pad);
	return stream_write_hashed(w, type, body, len, XXH3_64bits_digest(&st));
}

int stream_write_hashed(struct stream_writer *w, uint32_t type, const void *body,
			uint64_t len, uint64_t checksum)
{
	static const uint8_t *const zeros = stream_zeros;
	struct stream_rec_hdr h = { .type = type, .flags = 0, .length = len,
				    .checksum = checksum };
	uint64_t limit = stream_type_max_len(type);
	size_t pad = (size_t)(ALIGN_UP(len, STREAM_ALIGN) - len);
	struct iovec iov[3];
	int rc;

	/* Never write what a reader must refuse; unknown types are tests' or
	 * a future version's, and get the protobuf limit. */
	if (len > (limit ? limit : STREAM_PB_MAX))
		return -EMSGSIZE;

	iov[0] = (struct iovec){ &h, sizeof(h) };
	iov[1] = (struct iovec){ (void *)body, (size_t)len };
	iov[2] = (struct iovec){ (void *)zeros, pad };
	rc = stream_outv(w, iov, 3);
	if (rc)
		return rc;
	w->off += sizeof(h) + len + pad;
	w->records++;
	return 0;
}

int stream_write_gather(struct stream_writer *w, uint32_t type, const struct iovec *iov,
			int n, uint64_t len, uint64_t checksum)
{
	struct stream_rec_hdr h = { .type = type, .flags = 0, .length = len,
				    .checksum = checksum };
	struct iovec v[2 + STREAM_PAGES_MAX + 1];
	size_t pad = (size_t)(ALIGN_UP(len, STREAM_ALIGN) - len);
	int rc;

	if (n < 0 || n > (int)STREAM_PAGES_MAX + 1 || len > stream_type_max_len(type))
		return -EMSGSIZE;
	v[0] = (struct iovec){ &h, sizeof(h) };
	memcpy(v + 1, iov, (size_t)n * sizeof(*iov));
	v[n + 1] = (struct iovec){ (void *)stream_zeros, pad };
	rc = stream_outv(w, v, n + 2);
	if (rc)
		return rc;
	w->off += sizeof(h) + len + pad;
	w->records++;
	return 0;
}

int stream_write_pb(struct stream_writer *w, uint32_t type,
		    const ProtobufCMessage *m)
{
	size_t size = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;
	int rc;

	if (size > STREAM_PB_MAX)
		return -EMSGSIZE;
	buf = malloc(size ? size : 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf);
	rc = stream_write_record(w, type, buf, size);
	free(buf);
	return rc;
}

/* ---- reader ---- */

void stream_reader_init(struct stream_reader *r, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	stream_order_init(&r->order);
}

void stream_reader_destroy(struct stream_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
}

static int fail(struct stream_reader *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct stream_reader *r, int rc, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err, sizeof(r->err), "stream: ");

	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return rc;
}

/*
 * Read up to len bytes, stopping early only at end of file: the caller
 * needs to know how far it got to tell "between records" from "inside".
 */
static ssize_t read_upto(int fd, void *buf, size_t len);

/* The reader's source: its io if it has one, else its fd. */
static ssize_t stream_in(struct stream_reader *r, void *buf, size_t len)
{
	if (r->io)
		return r->io->read(r->io->ctx, buf, len);
	return read_upto(r->fd, buf, len);
}

static ssize_t read_upto(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int stream_read_preamble(struct stream_reader *r, uint32_t *flags)
{
	uint8_t pre[STREAM_PREAMBLE_LEN];
	uint32_t version, fl;
	ssize_t n = stream_in(r, pre, sizeof(pre));

	if (n < 0)
		return fail(r, (int)n, "preamble at offset 0: %s",
			    strerror((int)-n));
	r->off += (uint64_t)n;
	if (n == 0)
		return fail(r, -EPIPE, "truncated: empty, no preamble at offset 0");
	if ((size_t)n < sizeof(pre))
		return fail(r, -EPIPE,
			    "preamble at offset 0: truncated (%zd of %u bytes)",
			    n, STREAM_PREAMBLE_LEN);
	if (memcmp(pre, STREAM_MAGIC, STREAM_MAGIC_LEN))
		return fail(r, -EBADMSG,
			    "preamble at offset 0: bad magic, not a Ferry migration stream");
	memcpy(&version, pre + 8, 4);
	memcpy(&fl, pre + 12, 4);
	if (version > STREAM_VERSION)
		return fail(r, -EPROTONOSUPPORT,
			    "version %u is newer than this vmon (%u)",
			    version, STREAM_VERSION);
	if (version == 0)
		return fail(r, -EBADMSG,
			    "preamble at offset 8: version 0 does not exist");
	if (fl & ~STREAM_F_LIVE)
		return fail(r, -EBADMSG,
			    "preamble at offset 12: unknown flags 0x%08x", fl);
	r->version = version;
	r->preamble_done = true;
	if (flags)
		*flags = fl;
	return 0;
}

/* How reading a body went, besides a negative errno. */
enum { BODY_OK = 0, BODY_SHORT = 1, BODY_BAD_SUM = 2, BODY_BAD = 3 /* r->err set */ };

/* r->buf of at least size bytes; it grows to the largest record seen. */
static int buf_reserve(struct stream_reader *r, uint64_t size)
{
	/* Allocate even for an empty body: callers get a real pointer. */
	if (size > r->cap || !r->buf) {
		uint64_t cap = MAX(size, (uint64_t)STREAM_PAGE_SIZE);
		uint8_t *b = realloc(r->buf, cap);

		if (!b)
			return -ENOMEM;
		r->buf = b;
		r->cap = cap;
	}
	return 0;
}

/* len more bytes of the body into r->buf at at; BODY_OK, BODY_SHORT or -errno. */
static int read_body_part(struct stream_reader *r, uint64_t at, uint64_t len)
{
	ssize_t n = stream_in(r, r->buf + at, len);

	if (n < 0)
		return (int)n;
	r->off += (uint64_t)n;
	return (uint64_t)n == len ? BODY_OK : BODY_SHORT;
}

/* Body and padding into r->buf. */
static int read_body(struct stream_reader *r, uint64_t padded)
{
	int rc = buf_reserve(r, padded);

	return rc ? rc : read_body_part(r, 0, padded);
}

/* Scattered reads: all of iov (BODY_OK), BODY_SHORT, or a negative errno. */
static int stream_in_v(struct stream_reader *r, const struct iovec *iov, int n)
{
	if (r->io && r->io->readv) {
		int rc = r->io->readv(r->io->ctx, iov, n);

		return rc == -EPIPE ? BODY_SHORT : rc;
	}
	for (int i = 0; i < n; i++) {
		ssize_t got = stream_in(r, iov[i].iov_base, iov[i].iov_len);

		if (got < 0)
			return (int)got;
		if ((size_t)got < iov[i].iov_len)
			return BODY_SHORT;
	}
	return BODY_OK;
}

/* Data pages per readv in a direct read: hashed right after, while in cache. */
#define DIRECT_CHUNK_PAGES 32u

/*
 * Straight into RAM only where pages may come in the order (a stream
 * reader past CPU_MODEL, not yet at the vCPUs): anything else goes the
 * buffered way and fails there as it would without page_ram.
 */
static bool direct_ok(const struct stream_reader *r, const struct stream_rec_hdr *h)
{
	return r->page_ram && h->type == STREAM_REC_PAGE_HASHED &&
	       h->length >= STREAM_PAGE_HDR_LEN &&
	       (r->order.phase == STREAM_PH_CPU_MODEL || r->order.phase == STREAM_PH_PAGES);
}

/*
 * PAGE_HASHED with its data pages straight into r->page_ram. Nothing
 * touches RAM before the prefix (counts, entries, hashes) passed the
 * record checksum and every entry its checks: BODY_BAD with r->err set
 * when one did not. A page that fails its own hash lands all the same
 * and is marked not intact; the loader keeps it owed.
 */
static int read_hashed_direct(struct stream_reader *r, const struct stream_rec_hdr *h)
{
	struct stream_page_run *run = &r->direct_run;
	unsigned long long atl = (unsigned long long)r->rec_off;
	struct iovec iov[DIRECT_CHUNK_PAGES];
	uint64_t prefix;
	uint32_t d = 0;
	char why[160];
	int rc;

	/* The largest prefix: every entry and every hash. */
	rc = buf_reserve(r, STREAM_PAGE_HDR_LEN + 16ull * STREAM_PAGES_MAX);
	if (!rc)
		rc = read_body_part(r, 0, STREAM_PAGE_HDR_LEN);
	if (rc)
		return rc;
	prefix = stream_page_hashed_covered(r->buf, h->length);
	if (!prefix) {
		fail(r, -EBADMSG, "record PAGE_HASHED at offset %llu: count or ndata disagree "
		     "with the length %llu", atl, (unsigned long long)h->length);
		return BODY_BAD;
	}
	rc = read_body_part(r, STREAM_PAGE_HDR_LEN, prefix - STREAM_PAGE_HDR_LEN);
	if (rc)
		return rc;
	if (stream_rec_checksum(h, r->buf, prefix) != h->checksum)
		return BODY_BAD_SUM;
	if (h->flags) {
		fail(r, -EBADMSG, "record PAGE_HASHED at offset %llu: reserved flags 0x%08x set",
		     atl, h->flags);
		return BODY_BAD;
	}
	if (stream_page_hashed_parse(r->buf, h->length, r->page_ram_pages, run, why,
				     sizeof(why))) {
		fail(r, -EBADMSG, "record PAGE_HASHED at offset %llu: %s", atl, why);
		return BODY_BAD;
	}
	run->data = NULL;
	run->ram = r->page_ram;
	memset(run->intact, 0, sizeof(run->intact));
	for (uint32_t i = 0; i < run->count; ) {
		uint32_t k = 0;

		for (; i < run->count && k < DIRECT_CHUNK_PAGES; i++) {
			uint64_t e;

			memcpy(&e, run->entries + 8u * i, 8);
			if ((e >> STREAM_PAGE_KIND_SHIFT) != STREAM_KIND_DATA)
				continue;
			iov[k++] = (struct iovec){
				r->page_ram + (e & STREAM_PAGE_PFN_MASK) * STREAM_PAGE_SIZE,
				STREAM_PAGE_SIZE };
		}
		if (!k)
			continue;
		rc = stream_in_v(r, iov, (int)k);
		if (rc)
			return rc;
		r->off += (uint64_t)k * STREAM_PAGE_SIZE;
		for (uint32_t j = 0; j < k; j++, d++) {
			uint64_t want;

			memcpy(&want, run->hashes + 8u * d, 8);
			if (XXH3_64bits(iov[j].iov_base, STREAM_PAGE_SIZE) == want)
				run->intact[d / 64] |= 1ull << (d % 64);
		}
	}
	r->direct = true;
	return BODY_OK;
}

/* Hash an unknown optional record's body away without holding it. */
static int skip_body(struct stream_reader *r, XXH3_state_t *st, uint64_t len,
		     uint64_t padded, bool *pad_zero)
{
	uint8_t chunk[SKIP_CHUNK_BYTES];
	uint64_t done = 0;

	*pad_zero = true;
	while (done < padded) {
		size_t want = (size_t)MIN(padded - done, (uint64_t)sizeof(chunk));
		ssize_t n = stream_in(r, chunk, want);

		if (n < 0)
			return (int)n;
		r->off += (uint64_t)n;
		XXH3_64bits_update(st, chunk, (size_t)n);
		for (ssize_t i = 0; i < n; i++)
			if (done + (uint64_t)i >= len && chunk[i])
				*pad_zero = false;
		done += (uint64_t)n;
		if ((size_t)n < want)
			return BODY_SHORT;
	}
	return BODY_OK;
}

/*
 * One record's framing: header, limit, body, checksum, padding and flags.
 * Returns 0 with the record in r->buf (*skipped for an unknown optional
 * one), 1 at end of file exactly between records, or a negative errno.
 */
static int read_frame(struct stream_reader *r, bool *skipped)
{
	struct stream_rec_hdr h;
	uint64_t at = r->off, padded, limit;
	unsigned long long atl = (unsigned long long)at;
	const char *name;
	bool known, pad_zero = true;
	char nb[16];
	XXH3_state_t st;
	ssize_t n;
	int rc;

	*skipped = false;
	r->rec_off = at;
	n = stream_in(r, &h, sizeof(h));
	if (n < 0)
		return fail(r, (int)n, "record at offset %llu: %s", atl,
			    strerror((int)-n));
	r->off += (uint64_t)n;
	if (n == 0)
		return 1;
	if ((size_t)n < sizeof(h)) {
		if (n >= 4)
			return fail(r, -EPIPE,
				    "record %s at offset %llu: truncated inside the header (%zd of %u bytes)",
				    tname(h.type, nb), atl, n, STREAM_HDR_LEN);
		return fail(r, -EPIPE,
			    "record at offset %llu: truncated inside the header (%zd of %u bytes)",
			    atl, n, STREAM_HDR_LEN);
	}
	r->type = h.type;
	r->len = h.length;
	name = tname(h.type, nb);
	known = type_info(h.type) != NULL;
	if (!known && !(h.type & STREAM_REC_OPTIONAL))
		return fail(r, -EPROTO,
			    "unknown mandatory record type 0x%08x at offset %llu",
			    h.type, atl);
	/*
	 * An unknown optional body is hashed through a small buffer, never
	 * held, so it needs no limit; a corrupt length there ends as
	 * "truncated" at end of file.
	 */
	limit = known ? stream_type_max_len(h.type) : UINT64_MAX - STREAM_ALIGN;
	if (h.length > limit)
		return fail(r, -EMSGSIZE,
			    "record %s at offset %llu: length %llu exceeds the limit %llu",
			    name, atl, (unsigned long long)h.length,
			    (unsigned long long)limit);
	padded = ALIGN_UP(h.length, (uint64_t)STREAM_ALIGN);

	r->direct = false;
	if (known && direct_ok(r, &h)) {
		rc = read_hashed_direct(r, &h);
		if (rc == BODY_BAD)
			return -EBADMSG;
	} else if (known) {
		rc = read_body(r, padded);
		if (rc == BODY_OK) {
			/* PAGE_HASHED: the pages have their own hashes. */
			uint64_t covered = h.type == STREAM_REC_PAGE_HASHED ?
				stream_page_hashed_covered(r->buf, h.length) : padded;

			if (!covered && h.type == STREAM_REC_PAGE_HASHED)
				return fail(r, -EBADMSG, "record %s at offset %llu: count or "
					    "ndata disagree with the length %llu", name, atl,
					    (unsigned long long)h.length);
			if (stream_rec_checksum(&h, r->buf, covered) != h.checksum)
				rc = BODY_BAD_SUM;
			for (uint64_t i = h.length; i < padded; i++)
				if (r->buf[i])
					pad_zero = false;
		}
	} else {
		stream_hash_start(&st, &h);
		rc = skip_body(r, &st, h.length, padded, &pad_zero);
		if (rc == BODY_OK && XXH3_64bits_digest(&st) != h.checksum)
			rc = BODY_BAD_SUM;
	}
	if (rc < 0)
		return fail(r, rc, "record %s at offset %llu: %s", name, atl,
			    strerror(-rc));
	if (rc == BODY_SHORT)
		return fail(r, -EPIPE,
			    "record %s at offset %llu: truncated inside the body (%llu of %llu bytes)",
			    name, atl,
			    (unsigned long long)(r->off - at - STREAM_HDR_LEN),
			    (unsigned long long)padded);
	/* The checksum first: until it matches, no byte can be trusted. */
	if (rc == BODY_BAD_SUM)
		return fail(r, -EBADMSG, "record %s at offset %llu: checksum mismatch",
			    name, atl);
	if (!pad_zero)
		return fail(r, -EBADMSG, "record %s at offset %llu: nonzero padding",
			    name, atl);
	if (h.flags)
		return fail(r, -EBADMSG,
			    "record %s at offset %llu: reserved flags 0x%08x set",
			    name, atl, h.flags);
	r->records++;
	if (!known) {
		r->skipped++;
		*skipped = true;
	}
	return 0;
}

int stream_read_frame(struct stream_reader *r, uint32_t *type,
		      const void **body, uint64_t *len)
{
	bool skipped;
	int rc;

	do {
		rc = read_frame(r, &skipped);
		if (rc == 1)
			return fail(r, -EPIPE, "end of stream at offset %llu",
				    (unsigned long long)r->off);
		if (rc < 0)
			return rc;
	} while (skipped);
	*type = r->type;
	*body = r->buf;
	*len = r->len;
	return 0;
}

int stream_read_record(struct stream_reader *r, uint32_t *type,
		       const void **body, uint64_t *len)
{
	bool skipped;
	int rc;

	if (!r->preamble_done)
		return fail(r, -EINVAL, "record at offset %llu read before the preamble",
			    (unsigned long long)r->off);
	do {
		rc = read_frame(r, &skipped);
		if (rc == 1 && r->order.phase == STREAM_PH_END)
			return fail(r, -ENODATA, "nothing after END at offset %llu",
				    (unsigned long long)r->off);
		if (rc == 1) {
			char nb[16];

			return fail(r, -EPIPE, "truncated at offset %llu after %s: no END",
				    (unsigned long long)r->off,
				    r->order.phase == STREAM_PH_START ?
				    "the preamble" : tname(r->order.last, nb));
		}
		if (rc < 0)
			return rc;
		/*
		 * A live source that gives up says so with an ABORT frame in
		 * the middle of the stream: hand it over rather than call it
		 * a malformed stream.
		 */
		if (r->type == STREAM_REC_ABORT && !skipped)
			break;
		/* Writes its own "stream: ..." line into r->err. */
		rc = stream_order_check(&r->order, r->type, r->rec_off, r->err,
					sizeof(r->err));
		if (rc)
			return rc;
	} while (skipped);
	*type = r->type;
	*body = r->buf;
	*len = r->len;
	return 0;
}

int stream_pb_unpack(struct stream_reader *r,
		     const ProtobufCMessageDescriptor *desc, const void *body,
		     uint64_t len, ProtobufCMessage **out)
{
	char nb[16];

	*out = protobuf_c_message_unpack(desc, NULL, (size_t)len, body);
	if (!*out)
		return fail(r, -EBADMSG, "record %s at offset %llu: not a valid %s",
			    tname(r->type, nb), (unsigned long long)r->rec_off,
			    desc->name);
	return 0;
}
