/*
 * migstream: check or list a Ferry migration stream or snapshot file
 * without the loader (docs/migration-stream.md, part 3). It creates no VM:
 * it reads every record, decodes every structured one, parses the disks'
 * and NICs' device states, checks the pages against the announced guest
 * and the END counts, and says what it found.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/stream.h"
#include "net/nic.h"
#include "storage/blk_state.h"
#include "stream.pb-c.h"

static const char usage[] =
"Usage: migstream verify FILE     check a stream or snapshot; exit 0 if sound\n"
"       migstream dump FILE       the same, listing every record\n"
"Exit status: 0 sound; 1 the stream is damaged (the message names the\n"
"offset and the record); 2 bad usage or unreadable file.\n";

struct summary {
	uint64_t by_type[32];
	uint64_t pages, zero_pages, data_pages, rounds, nr_pages;
	/* PAGE_HASHED: pages that failed their hash and have not come again. */
	uint64_t *owed, nr_owed, torn;
	unsigned vcpus, nr_vcpus, devices;
	char vm[64], model[64];
	bool have_digest;
	char paused[300];       /* "": the guest ran when it was saved */
	unsigned held;          /* disk requests held for storage that stalled */
};

/*
 * The device states whose text form we know, parsed by the very parsers
 * a loader uses (one form only: what they accept is what a writer
 * writes); the others are opaque here. 0, or -EBADMSG, said on stderr.
 */
static int check_device(const struct stream_reader *r, const Ferry__Mig__DeviceState *d,
			struct summary *s)
{
	static struct blk_state blk;
	static struct nic_state nic;
	char err[BLK_ERR_LEN] = "";
	int ret = 0;

	if (!strcmp(d->name, "blk")) {
		ret = blk_state_parse(d->version, d->data.data, d->data.len, &blk, err, sizeof(err));
		if (!ret)
			s->held += blk.nr_held;
	} else if (!strcmp(d->name, "net")) {
		ret = nic_state_parse(d->version, d->data.data, d->data.len, &nic, err, sizeof(err));
	}
	if (ret)
		fprintf(stderr, "migstream: DEVICE_STATE %s at offset %llu: %s\n", d->name,
			(unsigned long long)r->rec_off, err);
	return ret ? -EBADMSG : 0;
}

static int check_pb(struct stream_reader *r, const ProtobufCMessageDescriptor *d,
		    const void *body, uint64_t len, ProtobufCMessage **out)
{
	int ret = stream_pb_unpack(r, d, body, len, out);

	if (ret)
		fprintf(stderr, "migstream: %s\n", r->err);
	return ret;
}

static int verify(const char *path, bool dump)
{
	struct stream_reader r;
	struct summary s = { 0 };
	char torn[64];
	uint32_t flags, type;
	const void *body;
	uint64_t len;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "migstream: %s: %s\n", path, strerror(errno));
		return 2;
	}
	stream_reader_init(&r, fd);
	ret = stream_read_preamble(&r, &flags);
	if (ret) {
		fprintf(stderr, "migstream: %s\n", r.err);
		goto out;
	}
	if (dump)
		printf("%8u  preamble  version %u, %s\n", 0u, r.version,
		       flags & STREAM_F_LIVE ? "live" : "snapshot");
	for (;;) {
		ProtobufCMessage *m = NULL;

		ret = stream_read_record(&r, &type, &body, &len);
		if (ret) {
			fprintf(stderr, "migstream: %s\n", r.err);
			goto out;
		}
		s.by_type[type & 31]++;
		if (dump)
			printf("%8llu  %-13s %8llu bytes", (unsigned long long)r.rec_off,
			       stream_type_name(type), (unsigned long long)len);
		switch (type) {
		case STREAM_REC_VM_CONFIG:
			ret = check_pb(&r, &ferry__mig__vm_config__descriptor, body, len, &m);
			if (!ret) {
				Ferry__Mig__VmConfig *c = (Ferry__Mig__VmConfig *)m;

				s.nr_pages = c->nr_pages;
				free(s.owed);
				s.owed = calloc(c->nr_pages / 64 + 1, sizeof(uint64_t));
				if (!s.owed) {
					fprintf(stderr, "migstream: out of memory for %llu pages\n",
						(unsigned long long)c->nr_pages);
					ret = -ENOMEM;
				}
				s.nr_vcpus = c->nr_vcpus;
				snprintf(s.vm, sizeof(s.vm), "%s", c->name);
				if (dump)
					printf("  %s: %llu MiB, %u vCPUs", c->name,
					       (unsigned long long)(c->mem_bytes >> 20), c->nr_vcpus);
			}
			break;
		case STREAM_REC_CPU_MODEL:
			ret = check_pb(&r, &ferry__mig__cpu_model__descriptor, body, len, &m);
			if (!ret) {
				snprintf(s.model, sizeof(s.model), "%s",
					 ((Ferry__Mig__CpuModel *)m)->name);
				if (dump)
					printf("  model %s, %zu CPUID entries", s.model,
					       ((Ferry__Mig__CpuModel *)m)->n_cpuid);
			}
			break;
		case STREAM_REC_PAGE_DATA:
		case STREAM_REC_PAGE_HASHED: {
			struct stream_page_run run;
			const uint8_t *page;
			uint64_t pfn, n = 0, z = 0, t = 0;

			ret = stream_read_pages(&r, body, len, s.nr_pages, &run);
			if (ret) {
				fprintf(stderr, "migstream: %s\n", r.err);
				break;
			}
			while (stream_page_next(&run, &pfn, &page)) {
				uint64_t bit = 1ull << (pfn % 64), *o = &s.owed[pfn / 64];
				bool intact = stream_page_intact(&run, page);

				n++;
				z += !page;
				t += !intact;
				if (!intact && !(*o & bit))
					s.nr_owed++;
				else if (intact && (*o & bit))
					s.nr_owed--;
				*o = intact ? *o & ~bit : *o | bit;
			}
			s.pages += n;
			s.zero_pages += z;
			s.torn += t;
			if (dump)
				printf("  %llu pages, %llu zero%s", (unsigned long long)n,
				       (unsigned long long)z, t ? ", torn:" : "");
			if (dump && t)
				printf(" %llu", (unsigned long long)t);
			break;
		}
		case STREAM_REC_ROUND:
			ret = check_pb(&r, &ferry__mig__round_info__descriptor, body, len, &m);
			s.rounds++;
			break;
		case STREAM_REC_SYNC:
			/* Live only: the source waited here for the destination. */
			ret = check_pb(&r, &ferry__mig__sync__descriptor, body, len, &m);
			if (!ret && dump)
				printf("  round %u", ((Ferry__Mig__Sync *)m)->round);
			break;
		case STREAM_REC_STREAM_HEADER:
			ret = check_pb(&r, &ferry__mig__stream_header__descriptor, body, len, &m);
			if (!ret && dump)
				printf("  from %s", ((Ferry__Mig__StreamHeader *)m)->source_host);
			break;
		case STREAM_REC_VCPU_STATE:
			if (s.nr_owed) {
				/* The pages are over: a torn page never came again. */
				fprintf(stderr, "migstream: VCPU_STATE at offset %llu: %llu pages "
					"failed their checksum and never came again\n",
					(unsigned long long)r.rec_off, (unsigned long long)s.nr_owed);
				ret = -EBADMSG;
				break;
			}
			ret = check_pb(&r, &ferry__mig__vcpu_state__descriptor, body, len, &m);
			if (!ret) {
				Ferry__Mig__VcpuState *v = (Ferry__Mig__VcpuState *)m;

				if (v->index >= s.nr_vcpus || !v->exits_completed) {
					fprintf(stderr, "migstream: VCPU_STATE at offset %llu: vCPU %u "
						"of %u%s\n", (unsigned long long)r.rec_off, v->index,
						s.nr_vcpus, v->exits_completed ? "" :
						", saved with a pending exit");
					ret = -EBADMSG;
				}
				s.vcpus++;
			}
			break;
		case STREAM_REC_CLOCK:
			ret = check_pb(&r, &ferry__mig__clock_state__descriptor, body, len, &m);
			break;
		case STREAM_REC_DEVICE_STATE:
			ret = check_pb(&r, &ferry__mig__device_state__descriptor, body, len, &m);
			if (!ret)
				ret = check_device(&r, (Ferry__Mig__DeviceState *)m, &s);
			if (!ret && dump)
				printf("  %s version %u", ((Ferry__Mig__DeviceState *)m)->name,
				       ((Ferry__Mig__DeviceState *)m)->version);
			s.devices++;
			break;
		case STREAM_REC_END: {
			Ferry__Mig__StreamEnd *e;

			ret = check_pb(&r, &ferry__mig__stream_end__descriptor, body, len, &m);
			if (ret)
				break;
			e = (Ferry__Mig__StreamEnd *)m;
			s.have_digest = e->ram_digest.len == 16;
			if (e->paused || (e->pause_reason && *e->pause_reason))
				snprintf(s.paused, sizeof(s.paused), ", the guest paused (%.230s%s): "
					 "it stays paused where it is loaded", e->pause_reason &&
					 *e->pause_reason ? e->pause_reason : "by the operator",
					 s.held ? "; disk requests held" : "");
			if (e->pages != s.pages || e->zero_pages != s.zero_pages) {
				fprintf(stderr, "migstream: END at offset %llu counts %llu pages "
					"(%llu zero) but the stream has %llu (%llu)\n",
					(unsigned long long)r.rec_off, (unsigned long long)e->pages,
					(unsigned long long)e->zero_pages,
					(unsigned long long)s.pages, (unsigned long long)s.zero_pages);
				ret = -EBADMSG;
			} else if (e->records != r.records - 1 || e->bytes != r.rec_off) {
				fprintf(stderr, "migstream: END at offset %llu counts %llu records "
					"and %llu bytes before it, the stream has %llu and %llu: "
					"records were lost or added\n", (unsigned long long)r.rec_off,
					(unsigned long long)e->records, (unsigned long long)e->bytes,
					(unsigned long long)(r.records - 1),
					(unsigned long long)r.rec_off);
				ret = -EBADMSG;
			} else if (s.vcpus != s.nr_vcpus) {
				fprintf(stderr, "migstream: END after %u of %u vCPU states\n",
					s.vcpus, s.nr_vcpus);
				ret = -EBADMSG;
			}
			break;
		}
		default:
			break;
		}
		if (dump)
			putchar('\n');
		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
		if (ret)
			goto out;
		if (type == STREAM_REC_END)
			break;
	}
	snprintf(torn, sizeof(torn), ", %llu torn and sent again",
		 (unsigned long long)s.torn);
	printf("%s: sound: VM %s, model %s, %u vCPUs, %llu records, %llu bytes, %llu pages "
	       "(%llu zero%s) of %llu, %llu rounds, %u devices%s%s\n", path, s.vm, s.model,
	       s.vcpus, (unsigned long long)r.records, (unsigned long long)r.off,
	       (unsigned long long)s.pages, (unsigned long long)s.zero_pages,
	       s.torn ? torn : "",
	       (unsigned long long)s.nr_pages, (unsigned long long)s.rounds, s.devices,
	       s.have_digest ? ", RAM digest present" : "", s.paused);
out:
	free(s.owed);
	stream_reader_destroy(&r);
	close(fd);
	return ret ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc != 3 || (strcmp(argv[1], "verify") && strcmp(argv[1], "dump"))) {
		fputs(usage, stderr);
		return 2;
	}
	return verify(argv[2], !strcmp(argv[1], "dump"));
}
