/*
 * The migration stream as the loader reads it, without a KVM VM: the input
 * is a stream (a snapshot file or what came off a socket). The record layer
 * reads it from an fd (a memfd here), and every record gets the decoding
 * mig_load_stream gives it: the protobuf, then mig_unpack_* against a fake
 * VM, and PAGE_DATA validated and walked. Whatever is accepted must be safe
 * to apply: every page inside the guest and inside the record's body.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "migrate/mig_state.h"

#define FAKE_MEM_SIZE (64ull << 20)
#define DEFAULT_NR_PAGES 16384u

static volatile uint8_t sink;

static void check(int cond)
{
	if (!cond)
		abort();
}

/*
 * The hcall device's target. Its RAM is a reservation nobody may touch:
 * mig_unpack_hcall only asks mem_ptr whether a gpa is inside, and any real
 * access would fault.
 */
static struct vm fake_vm;

/*
 * Guest RAM for the direct read (stream_reader.page_ram), as the loader
 * gives it once the VM exists: every input is walked both ways.
 */
#define DIRECT_MEM_SIZE (64ull << 20)
static uint8_t *direct_ram;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	void *ram = mmap(NULL, FAKE_MEM_SIZE, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	check(ram != MAP_FAILED);
	fake_vm.mem.size = FAKE_MEM_SIZE;
	fake_vm.mem.base = ram;
	fake_vm.mem.memfd = -1;
	direct_ram = mmap(NULL, DIRECT_MEM_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	check(direct_ram != MAP_FAILED);
	return 0;
}

/* What the loader knows so far. */
struct fz_state {
	uint64_t nr_pages;
	unsigned nr_vcpus;
	bool have_config;
	bool have_vcpu[GABI_MAX_VCPUS];
	uint64_t tsc[GABI_MAX_VCPUS];
	uint64_t pages, zero_pages;
};

static int fz_config(struct stream_reader *r, struct fz_state *st, const void *body,
		     uint64_t len, char *err)
{
	struct vm_config cfg;
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, &ferry__mig__vm_config__descriptor, body, len, &m);

	if (ret)
		return ret;
	vm_config_init(&cfg);
	ret = mig_unpack_config((Ferry__Mig__VmConfig *)m, &cfg, err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (ret) {
		check(ret < 0 && err[0]); /* the loader reports err */
		return ret;
	}
	check(cfg.nr_vcpus >= 1 && cfg.nr_vcpus <= GABI_MAX_VCPUS);
	check(cfg.mem_size >= GABI_MIN_MEM && cfg.mem_size <= GABI_MAX_MEM);
	check(strnlen(cfg.name, sizeof(cfg.name)) < sizeof(cfg.name));
	st->nr_pages = cfg.mem_size / GABI_PAGE_SIZE;
	st->nr_vcpus = cfg.nr_vcpus;
	st->have_config = true;
	return 0;
}

static int fz_cpu(struct stream_reader *r, const void *body, uint64_t len, char *err)
{
	static struct cpuid_table cpuid;
	char model[32];
	uint64_t xcr0;
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, &ferry__mig__cpu_model__descriptor, body, len, &m);

	if (ret)
		return ret;
	ret = mig_unpack_cpu((Ferry__Mig__CpuModel *)m, &cpuid, &xcr0, model, sizeof(model),
			     err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (ret) {
		check(ret < 0 && err[0]);
		return ret;
	}
	check(cpuid.hdr.nent >= 1 && cpuid.hdr.nent <= CPUID_MAX_ENTRIES);
	check(xcr0 & 1);
	check(strnlen(model, sizeof(model)) < sizeof(model));
	return 0;
}

static int fz_pages(struct stream_reader *r, struct fz_state *st, const void *body,
		    uint64_t len)
{
	struct stream_page_run run;
	const uint8_t *b = body, *page;
	uint64_t pfn, n = 0, data = 0;
	int ret = stream_read_pages(r, body, len, st->nr_pages, &run);

	if (ret)
		return ret;
	while (stream_page_next(&run, &pfn, &page)) {
		check(pfn < st->nr_pages);
		if (page && r->direct) {
			/* Read into its own place in guest RAM, nowhere else. */
			check(r->page_ram == direct_ram && pfn < r->page_ram_pages &&
			      page == direct_ram + pfn * STREAM_PAGE_SIZE);
			data++;
			stream_page_intact(&run, page);
		} else if (page) {
			/* Every data page lies wholly inside the body. */
			check(page >= b + STREAM_PAGE_HDR_LEN &&
			      (uint64_t)(page - b) + STREAM_PAGE_SIZE <= len);
			data++;
			stream_page_intact(&run, page); /* reads only inside the body */
		} else {
			st->zero_pages++;
		}
		n++;
		st->pages++;
	}
	check(n == run.count && n >= 1 && n <= STREAM_PAGES_MAX && data == run.ndata);
	return 0;
}

static int fz_vcpu(struct stream_reader *r, struct fz_state *st, const void *body,
		   uint64_t len, char *err)
{
	struct vcpu_state s;
	unsigned idx = ~0u;
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, &ferry__mig__vcpu_state__descriptor, body, len, &m);

	if (ret)
		return ret;
	ret = mig_unpack_vcpu((Ferry__Mig__VcpuState *)m, st->nr_vcpus, &s, &idx, err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (ret) {
		check(ret < 0 && err[0]);
		vcpu_state_free(&s); /* harmless: the unpack leaves nothing on failure */
		return ret;
	}
	check(idx < st->nr_vcpus);
	check(s.xsave && s.xsave_len >= sizeof(struct kvm_xsave));
	check(s.nr_msrs <= VCPU_STATE_MAX_MSRS);
	check(s.exits_completed);
	/* Touch both ends of the copy: ASan checks its size. */
	sink = s.xsave[0] + s.xsave[s.xsave_len - 1];
	vcpu_state_free(&s);
	if (st->have_vcpu[idx])
		return -EBADMSG; /* the loader refuses a second state too */
	st->have_vcpu[idx] = true;
	return 0;
}

static int fz_clock(struct stream_reader *r, struct fz_state *st, const void *body,
		    uint64_t len)
{
	Ferry__Mig__ClockState *c;
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, &ferry__mig__clock_state__descriptor, body, len, &m);

	if (ret)
		return ret;
	c = (Ferry__Mig__ClockState *)m;
	if (c->n_tsc != st->nr_vcpus)
		ret = -EBADMSG;
	else
		memcpy(st->tsc, c->tsc, c->n_tsc * sizeof(uint64_t));
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

static int fz_device(struct stream_reader *r, const void *body, uint64_t len, char *err)
{
	Ferry__Mig__DeviceState *d;
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, &ferry__mig__device_state__descriptor, body, len, &m);

	if (ret)
		return ret;
	d = (Ferry__Mig__DeviceState *)m;
	if (d->name && !strcmp(d->name, MIG_DEVICE_HCALL)) {
		fake_vm.nr_values = 0;
		ret = mig_unpack_hcall(&fake_vm, d, err);
		check(ret <= 0 && (!ret || err[0]));
		if (!ret) {
			check(fake_vm.nr_values <= GABI_REPORTS_MAX);
			for (unsigned i = 0; i < fake_vm.nr_values; i++) {
				const struct vm_value *v = &fake_vm.values[i];

				check(v->name[0] && v->name[sizeof(v->name) - 1] == 0);
				check(v->live_gpa % 8 == 0 &&
				      v->live_gpa <= fake_vm.mem.size - 8);
			}
		}
	} else {
		ret = -EBADMSG;
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

static int fz_end(struct stream_reader *r, struct fz_state *st, const void *body,
		  uint64_t len)
{
	Ferry__Mig__StreamEnd *e;
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, &ferry__mig__stream_end__descriptor, body, len, &m);

	if (ret)
		return ret;
	e = (Ferry__Mig__StreamEnd *)m;
	if (e->pages != st->pages || e->zero_pages != st->zero_pages ||
	    e->records != r->records - 1 || e->bytes != r->rec_off)
		ret = -EBADMSG;
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

static int fz_pb(struct stream_reader *r, const ProtobufCMessageDescriptor *d,
		 const void *body, uint64_t len)
{
	ProtobufCMessage *m;
	int ret = stream_pb_unpack(r, d, body, len, &m);

	if (!ret)
		protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

/* The loader's walk over one stream. */
static void run_stream(const uint8_t *data, size_t size, bool direct)
{
	static struct fz_state st;
	struct stream_reader r;
	char err[MIG_ERR_LEN];
	uint32_t flags, type = 0;
	const void *body;
	uint64_t len;
	size_t done = 0;
	int fd, ret;

	fd = memfd_create("fuzz_stream", MFD_CLOEXEC);
	check(fd >= 0);
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);

		check(n > 0);
		done += (size_t)n;
	}
	check(lseek(fd, 0, SEEK_SET) == 0);

	memset(&st, 0, sizeof(st));
	st.nr_pages = DEFAULT_NR_PAGES;
	st.nr_vcpus = 1;
	stream_reader_init(&r, fd);
	ret = stream_read_preamble(&r, &flags);
	if (ret) {
		check(r.err[0] && ret < 0);
		goto out;
	}
	check(!(flags & ~STREAM_F_LIVE));
	for (;;) {
		err[0] = 0;
		ret = stream_read_record(&r, &type, &body, &len);
		if (ret) {
			check(r.err[0] && ret < 0);
			break;
		}
		check(body && len <= STREAM_PAGE_HASHED_MAX);
		check(r.off <= size && r.off % STREAM_ALIGN == 0);
		switch (type) {
		case STREAM_REC_STREAM_HEADER:
			ret = fz_pb(&r, &ferry__mig__stream_header__descriptor, body, len);
			break;
		case STREAM_REC_ROUND:
			ret = fz_pb(&r, &ferry__mig__round_info__descriptor, body, len);
			break;
		case STREAM_REC_VM_CONFIG:
			ret = fz_config(&r, &st, body, len, err);
			if (!ret && direct && st.nr_pages <= DIRECT_MEM_SIZE / STREAM_PAGE_SIZE) {
				r.page_ram = direct_ram;
				r.page_ram_pages = st.nr_pages;
			}
			break;
		case STREAM_REC_CPU_MODEL:
			check(st.have_config); /* the order rules */
			ret = fz_cpu(&r, body, len, err);
			break;
		case STREAM_REC_PAGE_DATA:
		case STREAM_REC_PAGE_HASHED:
			check(st.have_config);
			ret = fz_pages(&r, &st, body, len);
			break;
		case STREAM_REC_VCPU_STATE:
			check(st.have_config);
			ret = fz_vcpu(&r, &st, body, len, err);
			break;
		case STREAM_REC_CLOCK:
			ret = fz_clock(&r, &st, body, len);
			break;
		case STREAM_REC_DEVICE_STATE:
			ret = fz_device(&r, body, len, err);
			break;
		case STREAM_REC_END:
			ret = fz_end(&r, &st, body, len);
			break;
		case STREAM_REC_FENCE:
		case STREAM_REC_SYNC: {
			/* Live only: FENCE with parallel connections, SYNC after a
			 * round. A file has neither, and the loader refuses them
			 * without lanes or a peer to answer. */
			ProtobufCMessage *m;

			if (!stream_pb_unpack(&r, type == STREAM_REC_FENCE ?
					      &ferry__mig__fence__descriptor :
					      &ferry__mig__sync__descriptor, body, len, &m))
				protobuf_c_message_free_unpacked(m, NULL);
			ret = -EPROTO;
			break;
		}
		case STREAM_REC_ABORT: {
			/* A live source giving up mid-stream: decoded, then the end. */
			ProtobufCMessage *m;

			if (!stream_pb_unpack(&r, &ferry__mig__abort__descriptor, body, len, &m))
				protobuf_c_message_free_unpacked(m, NULL);
			ret = -ECONNABORTED;
			break;
		}
		default:
			abort(); /* the reader let through a type nobody decodes */
		}
		if (ret || type == STREAM_REC_END)
			break;
	}
	if (!ret && type == STREAM_REC_END) {
		/* Nothing may follow END. */
		ret = stream_read_record(&r, &type, &body, &len);
		check(ret < 0 && r.err[0]);
	}
out:
	stream_reader_destroy(&r);
	close(fd);
}

/*
 * Give every whole record in d its right checksum; true if any changed. A
 * mutation almost never keeps a 64-bit checksum right, so without this
 * pass the fuzzer would hardly get past "checksum mismatch".
 */
static bool fix_checksums(uint8_t *d, size_t size)
{
	bool changed = false;
	size_t off = STREAM_PREAMBLE_LEN;

	while (size >= STREAM_HDR_LEN && off <= size - STREAM_HDR_LEN) {
		struct stream_rec_hdr h;
		uint64_t padded, sum;

		memcpy(&h, d + off, sizeof(h));
		if (h.length > size - off - STREAM_HDR_LEN)
			break;
		padded = (h.length + STREAM_ALIGN - 1) & ~(uint64_t)(STREAM_ALIGN - 1);
		if (padded > size - off - STREAM_HDR_LEN)
			break;
		sum = stream_rec_checksum(&h, d + off + STREAM_HDR_LEN, padded);
		if (sum != h.checksum) {
			memcpy(d + off + offsetof(struct stream_rec_hdr, checksum), &sum,
			       sizeof(sum));
			changed = true;
		}
		off += STREAM_HDR_LEN + padded;
	}
	return changed;
}

/* The input as it is (framing, checksums), then with its checksums fixed
 * (everything behind them); each read buffered and direct. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (!fake_vm.mem.base)
		LLVMFuzzerInitialize(NULL, NULL);
	run_stream(data, size, false);
	run_stream(data, size, true);
	if (size <= STREAM_PREAMBLE_LEN)
		return 0;
	copy = malloc(size);
	check(copy != NULL);
	memcpy(copy, data, size);
	if (fix_checksums(copy, size)) {
		run_stream(copy, size, false);
		run_stream(copy, size, true);
	}
	free(copy);
	return 0;
}
