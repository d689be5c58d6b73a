/*
 * Reading a stream into a VM. The loader trusts nothing: the record layer
 * has checked framing, checksums and order; here every message is checked
 * against the VM it describes, and vCPU state is only loaded once END has
 * arrived and every count (and, in verify mode, the RAM digest) matched.
 */
#include "migrate/mig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "migrate/mig_state.h"

struct mig_loader {
	struct stream_reader *r;
	const struct mig_load_opts *o;
	struct vm *vm;
	bool created;           /* we made vm: we destroy it on failure */
	struct vm_config cfg;
	bool have_config;
	struct vcpu_state vcpus[GABI_MAX_VCPUS];
	bool have_vcpu[GABI_MAX_VCPUS];
	uint64_t tsc[GABI_MAX_VCPUS];
	uint64_t realtime_ns;
	bool have_clock;
	struct kvm_clock_data kvmclock;
	bool have_kvmclock;
	struct mig_load_result *res;
	char *err;
	struct mig_page_sink sink;
	bool final_fence;       /* data connections: all their pages are in */
	bool pages_done;
	bool recv_decided;      /* straight into RAM or buffered: chosen once */
	uint32_t sync_round;    /* the last SYNC answered: rounds only grow */
};

static int mig_unpack(struct mig_loader *l, const ProtobufCMessageDescriptor *d,
		      const void *body, uint64_t len, ProtobufCMessage **out)
{
	int ret = stream_pb_unpack(l->r, d, body, len, out);

	if (ret)
		snprintf(l->err, MIG_ERR_LEN, "%s", l->r->err);
	return ret;
}

void mig_load_opts_apply(const struct mig_load_opts *o, struct vm_config *cfg)
{
	if (o->name)
		snprintf(cfg->name, sizeof(cfg->name), "%s", o->name);
	cfg->dirty_mode = o->dirty_mode;
	cfg->mem_flags = o->mem_flags;
	cfg->console_fd = o->console_fd;
	cfg->cpuid_hide = o->cpuid_hide;
}

static int load_config(struct mig_loader *l, const void *body, uint64_t len)
{
	ProtobufCMessage *m;
	int ret = mig_unpack(l, &ferry__mig__vm_config__descriptor, body, len, &m);

	if (ret)
		return ret;
	vm_config_init(&l->cfg);
	ret = mig_unpack_config((Ferry__Mig__VmConfig *)m, &l->cfg, l->err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (ret)
		return ret;
	mig_load_opts_apply(l->o, &l->cfg);
	if (l->vm && (l->vm->mem.size != l->cfg.mem_size || l->vm->nr_vcpus != l->cfg.nr_vcpus)) {
		snprintf(l->err, MIG_ERR_LEN, "VM_CONFIG does not match the announced VM "
			 "(%llu bytes, %u vCPUs)", (unsigned long long)l->cfg.mem_size,
			 l->cfg.nr_vcpus);
		return -EBADMSG;
	}
	l->have_config = true;
	return 0;
}

static int load_cpu(struct mig_loader *l, const void *body, uint64_t len)
{
	struct cpuid_table cpuid;
	char model[32], why[VM_ERR_LEN];
	uint64_t xcr0;
	ProtobufCMessage *m;
	int ret = mig_unpack(l, &ferry__mig__cpu_model__descriptor, body, len, &m);

	if (ret)
		return ret;
	ret = mig_unpack_cpu((Ferry__Mig__CpuModel *)m, &cpuid, &xcr0, model, sizeof(model),
			     l->err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (ret)
		return ret;
	if (l->vm) {
		if (l->vm->cpuid.hdr.nent != cpuid.hdr.nent ||
		    memcmp(l->vm->cpuid.entries, cpuid.entries,
			   cpuid.hdr.nent * sizeof(cpuid.entries[0])) || l->vm->xcr0 != xcr0) {
			snprintf(l->err, MIG_ERR_LEN, "CPU_MODEL differs from the announced one");
			return -EBADMSG;
		}
		return 0;
	}
	ret = vm_create_incoming(&l->cfg, model, &cpuid, xcr0, &l->vm, why);
	if (ret) {
		snprintf(l->err, MIG_ERR_LEN, "%s", why);
		return ret;
	}
	l->created = true;
	return 0;
}

void mig_page_sink_apply(struct mig_page_sink *s, struct stream_page_run *run)
{
	const uint8_t *page;
	uint64_t pfn;

	while (stream_page_next(run, &pfn, &page)) {
		uint8_t *dst = s->ram + (pfn << MEM_PAGE_SHIFT);
		uint64_t bit = 1ull << (pfn % 64), *owed = &s->owed[pfn / 64];

		s->pages++;
		/* Read straight into RAM (run->ram): already in place, torn or not. */
		if (run->ram && page)
			s->touched[pfn / 64] |= bit;
		if (!stream_page_intact(run, page)) {
			/* Torn (or damaged): not used; it must come again. */
			s->torn++;
			if (!(*owed & bit)) {
				*owed |= bit;
				s->nr_owed++;
			}
			continue;
		}
		if (*owed & bit) {
			*owed &= ~bit;
			s->nr_owed--;
		}
		if (page && page != dst) {
			memcpy(dst, page, MEM_PAGE_SIZE);
			s->touched[pfn / 64] |= bit;
		} else if (!page) {
			if (s->touched[pfn / 64] & bit)
				memset(dst, 0, MEM_PAGE_SIZE);
			s->zero_pages++;
		}
	}
}

static int load_pages(struct mig_loader *l, const void *body, uint64_t len)
{
	struct stream_page_run run;
	int ret;

	ret = stream_read_pages(l->r, body, len, mem_pages(&l->vm->mem), &run);
	if (ret) {
		snprintf(l->err, MIG_ERR_LEN, "%s", l->r->err);
		return ret;
	}
	if (!l->sink.touched) {
		l->sink.ram = l->vm->mem.base;
		l->sink.touched = calloc((mem_pages(&l->vm->mem) + 63) / 64, sizeof(uint64_t));
		l->sink.owed = calloc((mem_pages(&l->vm->mem) + 63) / 64, sizeof(uint64_t));
		if (!l->sink.touched || !l->sink.owed)
			return -ENOMEM;
	}
	mig_page_sink_apply(&l->sink, &run);
	return 0;
}

/* The pages are over (the first VCPU_STATE): nothing may be owed. */
static int pages_done(struct mig_loader *l)
{
	l->pages_done = true;
	l->res->pages += l->sink.pages;
	l->res->zero_pages += l->sink.zero_pages;
	l->res->torn_pages += l->sink.torn;
	if (l->sink.nr_owed) {
		snprintf(l->err, MIG_ERR_LEN, "%llu page%s failed %s checksum and never came "
			 "again", (unsigned long long)l->sink.nr_owed, l->sink.nr_owed == 1 ? "" : "s",
			 l->sink.nr_owed == 1 ? "its" : "their");
		return -EBADMSG;
	}
	return 0;
}

/* Live protocol 2: a round's pages came on the data connections. */
static int load_fence(struct mig_loader *l, const void *body, uint64_t len)
{
	uint64_t pages = 0, zero = 0, torn = 0;
	bool final = false;
	int ret;

	if (!l->o->lanes) {
		snprintf(l->err, MIG_ERR_LEN, "FENCE in a stream without data connections");
		return -EBADMSG;
	}
	if (l->final_fence) {
		snprintf(l->err, MIG_ERR_LEN, "FENCE after the final one");
		return -EBADMSG;
	}
	ret = l->o->lanes->fence(l->o->lanes->ctx, body, len, &final, &pages, &zero, &torn,
				     l->err);
	if (ret)
		return ret;
	if (final) {
		l->final_fence = true;
		l->res->pages += pages;
		l->res->zero_pages += zero;
		l->res->torn_pages += torn;
	}
	return 0;
}

/*
 * The source waits, its guest still running, until we have loaded all it
 * sent: whatever queued in the sockets and the cipher behind a slower
 * reader is read now rather than inside the downtime.
 */
static int load_sync(struct mig_loader *l, const void *body, uint64_t len)
{
	Ferry__Mig__Sync reply = FERRY__MIG__SYNC__INIT;
	ProtobufCMessage *m;
	int ret;

	if (!l->o->reply) {
		snprintf(l->err, MIG_ERR_LEN, "SYNC outside a live migration");
		return -EBADMSG;
	}
	ret = mig_unpack(l, &ferry__mig__sync__descriptor, body, len, &m);
	if (ret)
		return ret;
	reply.round = ((Ferry__Mig__Sync *)m)->round;
	protobuf_c_message_free_unpacked(m, NULL);
	if (reply.round <= l->sync_round) {
		snprintf(l->err, MIG_ERR_LEN, "SYNC of round %u after round %u", reply.round,
			 l->sync_round);
		return -EBADMSG;
	}
	l->sync_round = reply.round;
	ret = stream_write_pb(l->o->reply, STREAM_REC_SYNCED, &reply.base);
	if (ret)
		snprintf(l->err, MIG_ERR_LEN, "cannot answer SYNC: %s", strerror(-ret));
	return ret;
}

static int load_vcpu(struct mig_loader *l, const void *body, uint64_t len)
{
	struct vcpu_state s;
	unsigned idx;
	ProtobufCMessage *m;
	int ret = mig_unpack(l, &ferry__mig__vcpu_state__descriptor, body, len, &m);

	if (ret)
		return ret;
	ret = mig_unpack_vcpu((Ferry__Mig__VcpuState *)m, l->vm->nr_vcpus, &s, &idx, l->err);
	protobuf_c_message_free_unpacked(m, NULL);
	if (ret)
		return ret;
	if (l->have_vcpu[idx]) {
		vcpu_state_free(&s);
		snprintf(l->err, MIG_ERR_LEN, "VCPU_STATE for vCPU %u twice", idx);
		return -EBADMSG;
	}
	l->vcpus[idx] = s;
	l->have_vcpu[idx] = true;
	return 0;
}

static int load_clock(struct mig_loader *l, const void *body, uint64_t len)
{
	Ferry__Mig__ClockState *c;
	ProtobufCMessage *m;
	int ret = mig_unpack(l, &ferry__mig__clock_state__descriptor, body, len, &m);

	if (ret)
		return ret;
	c = (Ferry__Mig__ClockState *)m;
	if (c->n_tsc != l->vm->nr_vcpus) {
		snprintf(l->err, MIG_ERR_LEN, "CLOCK has %zu TSCs for %u vCPUs", c->n_tsc,
			 l->vm->nr_vcpus);
		ret = -EBADMSG;
	} else {
		memcpy(l->tsc, c->tsc, c->n_tsc * sizeof(uint64_t));
		l->realtime_ns = c->realtime_ns;
		l->have_clock = true;
		if (c->kvmclock.len == sizeof(l->kvmclock)) {
			memcpy(&l->kvmclock, c->kvmclock.data, sizeof(l->kvmclock));
			l->have_kvmclock = true;
		} else if (c->kvmclock.len) {
			snprintf(l->err, MIG_ERR_LEN, "CLOCK: kvmclock is %zu bytes, expected %zu",
				 c->kvmclock.len, sizeof(l->kvmclock));
			ret = -EBADMSG;
		}
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

static int load_device(struct mig_loader *l, const void *body, uint64_t len)
{
	Ferry__Mig__DeviceState *d;
	ProtobufCMessage *m;
	int ret = mig_unpack(l, &ferry__mig__device_state__descriptor, body, len, &m);

	if (ret)
		return ret;
	d = (Ferry__Mig__DeviceState *)m;
	if (d->name && !strcmp(d->name, MIG_DEVICE_HCALL)) {
		ret = mig_unpack_hcall(l->vm, d, l->err);
	} else if (d->name && vm_dev_type_find(d->name)) {
		/* A device this vmon links (disks): it opens what the source had. */
		ret = vm_dev_type_find(d->name)->load(l->vm, d->version, d->data.data,
						      d->data.len, l->err, MIG_ERR_LEN);
		if (ret && ret != -EBADMSG)
			ret = -ENOTSUP;
	} else {
		snprintf(l->err, MIG_ERR_LEN, "DEVICE_STATE for unknown device '%.64s'",
			 d->name ? d->name : "");
		ret = -EBADMSG;
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

/*
 * ns * khz / 1e6 without the product: at 3 GHz that overflows 64 bits
 * after 102 minutes, and a snapshot restored later would hand the guest a
 * wrapped TSC jump.
 */
static uint64_t ns_to_tsc(uint64_t ns, uint64_t khz)
{
	return ns / 1000000ull * khz + ns % 1000000ull * khz / 1000000ull;
}

/* END arrived: check it, then make the vCPUs what they were. */
static int load_end(struct mig_loader *l, const void *body, uint64_t len)
{
	Ferry__Mig__StreamEnd *e;
	ProtobufCMessage *m;
	uint64_t t0 = now_ns(), now, delta = 0;
	uint8_t digest[16];
	int ret = mig_unpack(l, &ferry__mig__stream_end__descriptor, body, len, &m);

	if (ret)
		return ret;
	e = (Ferry__Mig__StreamEnd *)m;
	for (unsigned i = 0; i < l->vm->nr_vcpus; i++) {
		if (!l->have_vcpu[i]) {
			snprintf(l->err, MIG_ERR_LEN, "END before the state of vCPU %u", i);
			ret = -EBADMSG;
			goto out;
		}
	}
	if (!l->have_clock) {
		snprintf(l->err, MIG_ERR_LEN, "END without CLOCK");
		ret = -EBADMSG;
		goto out;
	}
	if (e->pages != l->res->pages || e->zero_pages != l->res->zero_pages) {
		snprintf(l->err, MIG_ERR_LEN, "END counts %llu pages (%llu zero), %llu (%llu) arrived",
			 (unsigned long long)e->pages, (unsigned long long)e->zero_pages,
			 (unsigned long long)l->res->pages, (unsigned long long)l->res->zero_pages);
		ret = -EBADMSG;
		goto out;
	}
	/* Each record is checksummed alone: only these counts show that a
	 * whole record (a DEVICE_STATE, say) went missing in between. */
	if (e->records != l->r->records - 1 || e->bytes != l->r->rec_off) {
		snprintf(l->err, MIG_ERR_LEN, "END counts %llu records in %llu bytes before it, "
			 "%llu in %llu arrived", (unsigned long long)e->records,
			 (unsigned long long)e->bytes, (unsigned long long)(l->r->records - 1),
			 (unsigned long long)l->r->rec_off);
		ret = -EBADMSG;
		goto out;
	}
	if (e->ram_digest.len) {
		mig_ram_digest(l->vm, digest);
		if (e->ram_digest.len != sizeof(digest) || memcmp(digest, e->ram_digest.data, 16)) {
			snprintf(l->err, MIG_ERR_LEN, "verify: guest RAM differs from the source's "
				 "(digest mismatch)");
			ret = -EBADMSG;
			goto out;
		}
		l->res->verified = true;
	}
	l->res->rounds = e->rounds;
	/* The guest's clock ran on while it was away: it sees the gap. */
	now = realtime_ns();
	if (now > l->realtime_ns)
		delta = ns_to_tsc(now - l->realtime_ns, l->vm->tsc_khz);
	for (unsigned i = 0; i < l->vm->nr_vcpus; i++) {
		l->vcpus[i].tsc = l->tsc[i];
		ret = vcpu_state_load(&l->vm->vcpus[i], &l->vcpus[i], delta);
		if (ret) {
			snprintf(l->err, MIG_ERR_LEN, "load vCPU %u state: %s", i, strerror(-ret));
			goto out;
		}
	}
	/* kvmclock runs on by the time that passed, like the TSC. */
	if (l->have_kvmclock) {
		struct kvm_clock_data kc = { .clock = l->kvmclock.clock };

		if (now > l->realtime_ns)
			kc.clock += now - l->realtime_ns;
		if (ioctl(l->vm->vm_fd, KVM_SET_CLOCK, &kc)) {
			ret = -errno;
			snprintf(l->err, MIG_ERR_LEN, "KVM_SET_CLOCK: %s", strerror(errno));
			goto out;
		}
	}
	/* Held paused where it was saved: held here too, until vmon ctl resume. */
	pthread_mutex_lock(&l->vm->lock);
	l->vm->user_paused = e->paused;
	if (e->pause_reason && *e->pause_reason)
		snprintf(l->vm->pause_reason, sizeof(l->vm->pause_reason), "%s", e->pause_reason);
	for (char *c = l->vm->pause_reason; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';   /* it is shown as one line of status */
	pthread_mutex_unlock(&l->vm->lock);
	l->res->load_ns = now_ns() - t0;
out:
	protobuf_c_message_free_unpacked(m, NULL);
	return ret;
}

bool mig_recv_buffered(const struct guest_mem *mem)
{
	const char *v = getenv("FERRY_MIG_RECV_BUFFERED");

	if (v && (!strcmp(v, "1") || !strcmp(v, "0")))
		return *v == '1';
	return mem->cold_write_ns > MIG_RECV_COLD_NS_MAX;
}

int mig_load_stream(struct stream_reader *r, const struct mig_load_opts *o,
		    struct vm **vmp, struct mig_load_result *res, char *err)
{
	struct mig_loader *l = calloc(1, sizeof(*l));
	uint32_t flags, type;
	const void *body;
	uint64_t len;
	int ret = -ENOMEM;

	if (!l)
		return ret;
	memset(res, 0, sizeof(*res));
	l->r = r;
	l->o = o;
	l->vm = *vmp;
	l->res = res;
	l->err = err;
	err[0] = 0;
	if (!r->preamble_done) {
		ret = stream_read_preamble(r, &flags);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "%s", r->err);
			goto out;
		}
	}
	for (;;) {
		ret = stream_read_record(r, &type, &body, &len);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "%s", r->err);
			goto out;
		}
		switch (type) {
		case STREAM_REC_STREAM_HEADER:
			ret = 0; /* informational */
			break;
		case STREAM_REC_ROUND:
			/* The source ended a round: the NICs sort their input. */
			if (l->vm)
				vm_devs_round_end(l->vm);
			ret = 0;
			break;
		case STREAM_REC_VM_CONFIG:
			ret = load_config(l, body, len);
			break;
		case STREAM_REC_CPU_MODEL:
			ret = l->have_config ? load_cpu(l, body, len) : -EBADMSG;
			break;
		case STREAM_REC_PAGE_DATA:
		case STREAM_REC_PAGE_HASHED:
			if (o->lanes) {
				snprintf(err, MIG_ERR_LEN, "page records on the control connection "
					 "of a migration with data connections");
				ret = -EBADMSG;
				break;
			}
			ret = load_pages(l, body, len);
			break;
		case STREAM_REC_FENCE:
			ret = load_fence(l, body, len);
			break;
		case STREAM_REC_SYNC:
			ret = load_sync(l, body, len);
			break;
		case STREAM_REC_VCPU_STATE:
			if (o->lanes && !l->final_fence) {
				snprintf(err, MIG_ERR_LEN, "VCPU_STATE before the final FENCE: "
					 "pages may still be on their way");
				ret = -EBADMSG;
				break;
			}
			ret = l->pages_done ? 0 : pages_done(l);
			if (!ret)
				ret = load_vcpu(l, body, len);
			break;
		case STREAM_REC_CLOCK:
			ret = load_clock(l, body, len);
			break;
		case STREAM_REC_DEVICE_STATE:
			ret = load_device(l, body, len);
			break;
		case STREAM_REC_ABORT: {
			ProtobufCMessage *m;

			if (!stream_pb_unpack(r, &ferry__mig__abort__descriptor, body, len, &m)) {
				Ferry__Mig__Abort *a = (Ferry__Mig__Abort *)m;

				snprintf(err, MIG_ERR_LEN, "the source stopped the migration during "
					 "%.32s: %.400s", a->phase, a->message);
				protobuf_c_message_free_unpacked(m, NULL);
			} else {
				snprintf(err, MIG_ERR_LEN, "the source stopped the migration");
			}
			ret = -ECONNABORTED;
			goto out;
		}
		case STREAM_REC_END:
			ret = load_end(l, body, len);
			if (!ret) {
				res->records = r->records;
				res->bytes = r->off;
				*vmp = l->vm;
				goto out;
			}
			break;
		default:
			snprintf(err, MIG_ERR_LEN, "unexpected record type 0x%x", type);
			ret = -EBADMSG;
		}
		/* The pages of a single connection: straight into guest RAM? */
		if (!ret && l->vm && !o->lanes && !l->recv_decided) {
			l->recv_decided = true;
			if (mig_recv_buffered(&l->vm->mem)) {
				log_info("incoming: pages go through a buffer (a first write to "
					 "this RAM costs the kernel %lld ns a page)",
					 (long long)l->vm->mem.cold_write_ns);
			} else {
				r->page_ram = l->vm->mem.base;
				r->page_ram_pages = mem_pages(&l->vm->mem);
			}
		}
		if (ret) {
			char what[MIG_ERR_LEN];

			snprintf(what, sizeof(what), "%s", err);
			snprintf(err, MIG_ERR_LEN, "stream: record %s at offset %llu: %.400s",
				 stream_type_name(type) ? stream_type_name(type) : "?",
				 (unsigned long long)r->rec_off, what);
			goto out;
		}
	}
out:
	r->page_ram = NULL;  /* the VM may be gone below */
	r->direct = false;
	for (unsigned i = 0; i < GABI_MAX_VCPUS; i++)
		vcpu_state_free(&l->vcpus[i]);
	free(l->sink.touched);
	free(l->sink.owed);
	if (ret && l->created) {
		vm_destroy(l->vm);
		*vmp = NULL;
	}
	free(l);
	return ret;
}
