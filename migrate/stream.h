/*
 * The record layer of the Ferry migration stream (docs/migration-stream.md,
 * part 1): the preamble, 8-byte aligned typed records with an XXH3-64
 * checksum, the order rules, and the PAGE_DATA body. The same code writes a
 * live migration to a socket and a snapshot to a file, so everything here
 * works on a plain fd and never seeks.
 *
 * Errors are 0 or a negative errno. A reader's failure also leaves one line
 * in r->err naming the offset and the record, e.g.
 *   stream: record PAGE_DATA at offset 4096: checksum mismatch
 */
#ifndef FERRY_MIGRATE_STREAM_H
#define FERRY_MIGRATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <protobuf-c/protobuf-c.h>

#define STREAM_MAGIC        "FERRYMIG"
#define STREAM_MAGIC_LEN    8u
#define STREAM_VERSION      1u
#define STREAM_PREAMBLE_LEN 16u
#define STREAM_HDR_LEN      24u
#define STREAM_ALIGN        8u

/* Preamble flags. */
#define STREAM_F_LIVE       (1u << 0)   /* 0: a snapshot file */

/* Record types. Bit 31 marks a record a reader may skip if it is unknown. */
#define STREAM_REC_OPTIONAL      0x80000000u
#define STREAM_REC_STREAM_HEADER 0x00000001u
#define STREAM_REC_VM_CONFIG     0x00000002u
#define STREAM_REC_CPU_MODEL     0x00000003u
#define STREAM_REC_PAGE_DATA     0x00000004u
#define STREAM_REC_VCPU_STATE    0x00000005u
#define STREAM_REC_CLOCK         0x00000006u
#define STREAM_REC_DEVICE_STATE  0x00000007u
#define STREAM_REC_FENCE         0x00000008u   /* live, parallel connections */
#define STREAM_REC_PAGE_HASHED   0x00000009u   /* live: pages hashed one by one */
#define STREAM_REC_SYNC          0x0000000Au   /* live: after a round, the source waits for SYNCED */
#define STREAM_REC_END           0x0000000Fu
#define STREAM_REC_ROUND         (STREAM_REC_OPTIONAL | 0x10u)
/* Live protocol messages (part 2), framed like records, never in a stream. */
#define STREAM_REC_HELLO         0x00000100u
#define STREAM_REC_VERDICT       0x00000101u
#define STREAM_REC_ACK           0x00000102u
#define STREAM_REC_COMMIT        0x00000103u
#define STREAM_REC_ABORT         0x00000104u
#define STREAM_REC_RESUMED       0x00000105u
#define STREAM_REC_PROBE         0x00000106u   /* dry run: link measurement */
#define STREAM_REC_JOIN          0x00000107u   /* first frame of a data connection */
#define STREAM_REC_SYNCED        0x00000108u   /* the destination caught up with SYNC */

/* Limits, in body bytes (padding excluded) or entries. */
#define STREAM_PAGE_SIZE      4096u
#define STREAM_PB_MAX         (1u << 20)
#define STREAM_PAGES_MAX      512u
#define STREAM_PAGE_HDR_LEN   16u
#define STREAM_PAGE_DATA_MAX  (STREAM_PAGE_HDR_LEN + STREAM_PAGES_MAX * 8u + \
			       STREAM_PAGES_MAX * STREAM_PAGE_SIZE)

/* PAGE_HASHED: PAGE_DATA plus an 8-byte hash per data page. */
#define STREAM_PAGE_HASHED_MAX (STREAM_PAGE_DATA_MAX + STREAM_PAGES_MAX * 8u)

/* A PAGE_DATA entry: bits 0..51 pfn, 52..59 reserved, 60..63 kind. */
#define STREAM_PAGE_PFN_MASK  ((1ull << 52) - 1)
#define STREAM_PAGE_RSVD_MASK (0xffull << 52)
#define STREAM_PAGE_KIND_SHIFT 60
#define STREAM_KIND_DATA      0u    /* 4096 bytes of contents follow */
#define STREAM_KIND_ZERO      1u    /* all zeros, nothing follows */

#define STREAM_ERR_LEN        256

/* The record header exactly as on the wire (little-endian host). */
struct stream_rec_hdr {
	uint32_t type;
	uint32_t flags;      /* reserved, 0 */
	uint64_t length;     /* body bytes, padding excluded */
	uint64_t checksum;   /* XXH3-64 of bytes 0..15, the body and padding */
};

/* The record's name ("PAGE_DATA"), or NULL for a type this code lacks. */
const char *stream_type_name(uint32_t type);
/* The largest body a record of this known type may have; 0 if unknown. */
uint64_t stream_type_max_len(uint32_t type);
/* XXH3-64 over h's first 16 bytes, then padded_len bytes of body. */
uint64_t stream_rec_checksum(const struct stream_rec_hdr *h, const void *body,
			     uint64_t padded_len);

/*
 * The order rules as a state machine, shared by the reader and the verifier.
 * The phase names the last part of the grammar seen:
 *   STREAM_HEADER VM_CONFIG CPU_MODEL (PAGE_DATA|FENCE|ROUND)* VCPU_STATE+ CLOCK
 *   DEVICE_STATE* END
 */
enum stream_phase {
	STREAM_PH_START = 0,     /* nothing yet */
	STREAM_PH_HEADER,        /* STREAM_HEADER seen */
	STREAM_PH_VM_CONFIG,
	STREAM_PH_CPU_MODEL,
	STREAM_PH_PAGES,         /* PAGE_DATA, FENCE or ROUND */
	STREAM_PH_VCPUS,
	STREAM_PH_CLOCK,
	STREAM_PH_DEVICES,
	STREAM_PH_END,
};

struct stream_order {
	enum stream_phase phase;
	uint32_t last;           /* type of the last record accepted */
};

void stream_order_init(struct stream_order *o);
/*
 * Accept a record of this type at offset off, or return -EPROTO with the
 * reason in err (may be NULL). Unknown optional types are accepted without
 * moving the phase, except before STREAM_HEADER or after END.
 */
int stream_order_check(struct stream_order *o, uint32_t type, uint64_t off,
		       char *err, size_t errlen);

/*
 * Where a stream's bytes go and come from when it is not a plain fd (a TLS
 * connection, say). writev sends all of iov or fails; read returns len
 * bytes, fewer only at end of stream, or -errno.
 */
struct stream_io {
	void *ctx;
	int (*writev)(void *ctx, const struct iovec *iov, int iovcnt);
	ssize_t (*read)(void *ctx, void *buf, size_t len);
	/* Optional: all of iov (0), an early end (-EPIPE), or -errno. */
	int (*readv)(void *ctx, const struct iovec *iov, int iovcnt);
};

/* Writer. */
struct stream_writer {
	int fd;
	const struct stream_io *io; /* NULL: use fd */
	uint64_t off;            /* bytes written, preamble included */
	uint64_t records;        /* records written */
	uint64_t pages;          /* PAGE_DATA entries written, zero ones too */
	uint64_t zero_pages;     /* of those, ZERO entries */
	uint8_t *page_buf;       /* a PAGE_DATA body being built */
	bool hashed;             /* live: pages as PAGE_HASHED, not copied */
	/*
	 * Bit pfn clear: the page is known to be zero (dirty_written_map),
	 * so it becomes a ZERO entry without being read. NULL: read them all.
	 */
	const uint64_t *written;
};

void stream_writer_init(struct stream_writer *w, int fd);
void stream_writer_destroy(struct stream_writer *w);
int stream_write_preamble(struct stream_writer *w, uint32_t flags);
/* -EMSGSIZE, before writing anything, when len exceeds the type's limit. */
int stream_write_record(struct stream_writer *w, uint32_t type,
			const void *body, uint64_t len);
int stream_write_pb(struct stream_writer *w, uint32_t type,
		    const ProtobufCMessage *m);
/*
 * Write a record whose checksum the caller computed (XXH3-64 started with
 * stream_hash_start on the header, then the body and its padding): lets a
 * writer hash data while it is still in cache from building the body.
 */
int stream_write_hashed(struct stream_writer *w, uint32_t type, const void *body,
			uint64_t len, uint64_t checksum);
/* The same with the body gathered from iov[0..n), len bytes in all. */
int stream_write_gather(struct stream_writer *w, uint32_t type, const struct iovec *iov,
			int n, uint64_t len, uint64_t checksum);
struct XXH3_state_s;
void stream_hash_start(struct XXH3_state_s *st, const struct stream_rec_hdr *h);
/*
 * Write the pages pfns[0..n) of ram (guest RAM, page pfn at pfn * 4096) as
 * PAGE_DATA records of up to 512 entries; all-zero pages become ZERO
 * entries. Each page is copied before it is checked and checksummed, so a
 * guest that keeps writing cannot make the record disagree with its
 * checksum. -EINVAL, before writing, for a pfn that does not fit 52 bits.
 * With w->hashed, PAGE_HASHED records instead: each page hashed and sent
 * straight from ram, no copy; a page written meanwhile arrives torn, and
 * the reader keeps it owed until it comes again.
 */
int stream_write_pages(struct stream_writer *w, const uint64_t *pfns,
		       size_t n, const uint8_t *ram);

/* A parsed PAGE_DATA or PAGE_HASHED body; it points into the body. */
struct stream_page_run {
	uint32_t count;          /* entries */
	uint32_t ndata;          /* entries of kind DATA */
	const uint8_t *entries;
	const uint8_t *hashes;   /* PAGE_HASHED: ndata hashes; else NULL */
	const uint8_t *data;     /* ndata pages, in entry order */
	uint32_t pos, dpos;      /* iteration */
	/*
	 * Read straight into RAM (stream_reader.page_ram): the pages are
	 * already at ram + pfn * 4096, data is NULL, and bit i of intact says
	 * whether data page i matched its hash.
	 */
	uint8_t *ram;
	uint64_t intact[STREAM_PAGES_MAX / 64];
};

/* Reader. */
struct stream_reader {
	int fd;
	const struct stream_io *io; /* NULL: use fd */
	uint64_t off;            /* bytes consumed from fd */
	uint64_t rec_off;        /* header offset of the last record read */
	uint32_t type;           /* type of the last record read */
	uint64_t len;            /* its body length, padding excluded */
	uint64_t records;        /* complete records read, skipped ones too */
	uint64_t skipped;        /* unknown optional records skipped */
	uint32_t version;        /* from the preamble */
	bool preamble_done;
	struct stream_order order;
	uint8_t *buf;            /* body of the last record, with padding */
	uint64_t cap;
	char err[STREAM_ERR_LEN];
	/*
	 * Live destination: PAGE_HASHED data pages are read straight into
	 * this RAM (page pfn at pfn * 4096, page_ram_pages of them), each
	 * checked against its hash on arrival, instead of into buf; only
	 * after the prefix (entries and hashes) passed its checksum and every
	 * pfn is in range. A torn page lands too, and is marked not intact.
	 * NULL: whole bodies into buf.
	 */
	uint8_t *page_ram;
	uint64_t page_ram_pages;
	bool direct;             /* the last record was read that way */
	struct stream_page_run direct_run;
};

void stream_reader_init(struct stream_reader *r, int fd);
void stream_reader_destroy(struct stream_reader *r);
/* -EBADMSG: not a stream; -EPROTONOSUPPORT: newer version; -EPIPE: short. */
int stream_read_preamble(struct stream_reader *r, uint32_t *flags);
/*
 * The next stream record, checked: limit (-EMSGSIZE, before allocating),
 * checksum, padding and reserved flags (-EBADMSG), order and unknown
 * mandatory types (-EPROTO). Unknown optional records are skipped. A stream
 * that ends before END is -EPIPE. *body stays valid until the next read.
 * After END nothing may follow: end of file there is -ENODATA, a record
 * -EPROTO. A reader on a socket therefore stops at END.
 * An ABORT frame (a live source giving up) is returned as it is, whatever
 * the order: the caller decides what a stream that stops means.
 * On success, the END record's counts are checked with
 *   end->records == r->records - 1 && end->bytes == r->rec_off.
 */
int stream_read_record(struct stream_reader *r, uint32_t *type,
		       const void **body, uint64_t *len);
/* One frame (live protocol): the checks above except the order. */
int stream_read_frame(struct stream_reader *r, uint32_t *type,
		      const void **body, uint64_t *len);
/* Unpack the body of the last record; -EBADMSG if it does not parse. */
int stream_pb_unpack(struct stream_reader *r,
		     const ProtobufCMessageDescriptor *desc, const void *body,
		     uint64_t len, ProtobufCMessage **out);


/*
 * Validate a PAGE_DATA body against a guest of nr_pages pages: count
 * 1..512, reserved fields and bits zero, kinds DATA or ZERO, every pfn
 * below nr_pages, and the exact length. -EBADMSG with the reason in why.
 */
int stream_page_data_parse(const void *body, uint64_t len, uint64_t nr_pages,
			   struct stream_page_run *out, char *why,
			   size_t whylen);
/* The same for a PAGE_HASHED body. */
int stream_page_hashed_parse(const void *body, uint64_t len, uint64_t nr_pages,
			     struct stream_page_run *out, char *why, size_t whylen);
/* The bytes of a PAGE_HASHED body its record checksum covers; 0: bad. */
uint64_t stream_page_hashed_covered(const void *body, uint64_t len);
/* The same for the reader's last record (by its type), the reason in r->err. */
int stream_read_pages(struct stream_reader *r, const void *body, uint64_t len,
		      uint64_t nr_pages, struct stream_page_run *out);
/* Next entry: true with its pfn and page, NULL for a zero page. */
bool stream_page_next(struct stream_page_run *run, uint64_t *pfn,
		      const uint8_t **page);
/*
 * After stream_page_next gave a data page: does it match its own hash?
 * Always true for PAGE_DATA (its record checksum covered it).
 */
bool stream_page_intact(const struct stream_page_run *run, const uint8_t *page);

#endif
