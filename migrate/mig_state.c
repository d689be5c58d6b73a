#include "migrate/mig_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hcall.h"
#include "core/vm_dev.h"
#include "core/util.h"
#include "core/hash.h"

void mig_pack_config(const struct vm *vm, struct mig_config_pack *p)
{
	ferry__mig__vm_config__init(&p->msg);
	p->msg.name = (char *)vm->cfg.name;
	p->msg.mem_bytes = vm->mem.size;
	p->msg.nr_pages = mem_pages(&vm->mem);
	p->msg.nr_vcpus = vm->nr_vcpus;
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		ferry__mig__region__init(&p->regions[i]);
		p->regions[i].slot = vm->mem.regions[i].slot;
		p->regions[i].gpa = vm->mem.regions[i].gpa;
		p->regions[i].size = vm->mem.regions[i].size;
		p->ptrs[i] = &p->regions[i];
	}
	p->msg.n_regions = vm->mem.nr_regions;
	p->msg.regions = p->ptrs;
	p->msg.guest_args = (char *)(vm->cfg.args ? vm->cfg.args : "");
	p->msg.guest_image = (char *)(vm->cfg.guest_path ? vm->cfg.guest_path : "");
	p->msg.guest_abi_version = GABI_VERSION;
	p->msg.dirty_mode = (char *)dirty_mode_name(vm->dirty_mode);
	p->msg.hugepages = !!(vm->cfg.mem_flags & MEM_HUGEPAGES);
}

void mig_pack_cpu(const struct vm *vm, struct mig_cpu_pack *p)
{
	size_t nfeat;
	const struct cpu_feature *f = cpu_features(&nfeat);

	ferry__mig__cpu_model__init(&p->msg);
	p->msg.name = (char *)vm->model_name;
	for (uint32_t i = 0; i < vm->cpuid.hdr.nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vm->cpuid.entries[i];
		Ferry__Mig__CpuidEntry *o = &p->entries[i];

		ferry__mig__cpuid_entry__init(o);
		o->function = e->function;
		o->index = e->index;
		o->flags = e->flags;
		o->eax = e->eax;
		o->ebx = e->ebx;
		o->ecx = e->ecx;
		o->edx = e->edx;
		p->ptrs[i] = o;
	}
	p->msg.n_cpuid = vm->cpuid.hdr.nent;
	p->msg.cpuid = p->ptrs;
	/* The named features, so a refusal can be explained without tables. */
	p->msg.n_features = 0;
	for (size_t i = 0; i < nfeat && p->msg.n_features < ARRAY_SIZE(p->features); i++)
		if (cpuid_has(&vm->cpuid, &f[i]))
			p->features[p->msg.n_features++] = f[i].name;
	p->msg.features = (char **)p->features;
	p->msg.xcr0 = vm->xcr0;
	p->msg.tsc_khz = vm->tsc_khz;
}

static ProtobufCBinaryData bin(const void *p, size_t len)
{
	ProtobufCBinaryData b = { .len = len, .data = (uint8_t *)p };

	return b;
}

void mig_pack_vcpu(const struct vcpu_state *s, unsigned index, struct mig_vcpu_pack *p)
{
	ferry__mig__vcpu_state__init(&p->msg);
	p->msg.index = index;
	p->msg.layout_version = VCPU_STATE_LAYOUT;
	p->msg.regs = bin(&s->regs, sizeof(s->regs));
	p->msg.sregs = bin(&s->sregs, sizeof(s->sregs));
	p->msg.xsave = bin(s->xsave, s->xsave_len);
	p->msg.xcr0 = s->xcrs.nr_xcrs ? s->xcrs.xcrs[0].value : 0;
	for (uint32_t i = 0; i < s->nr_msrs; i++) {
		ferry__mig__msr__init(&p->msrs[i]);
		p->msrs[i].index = s->msrs[i].index;
		p->msrs[i].value = s->msrs[i].data;
		p->ptrs[i] = &p->msrs[i];
	}
	p->msg.n_msrs = s->nr_msrs;
	p->msg.msrs = p->ptrs;
	p->msg.events = bin(&s->events, sizeof(s->events));
	p->msg.debugregs = bin(&s->debugregs, sizeof(s->debugregs));
	p->msg.exits_completed = s->exits_completed;
}

/* The hcall device's bytes: u32 count, u32 0, then count fixed entries. */
struct mig_hcall_entry {
	char name[GABI_NAME_MAX];    /* not NUL-terminated when 32 long */
	uint64_t value;
	uint64_t live_gpa;
};

int mig_pack_hcall(const struct vm *vm, Ferry__Mig__DeviceState *d, uint8_t **buf)
{
	struct vm_value vals[GABI_REPORTS_MAX];
	unsigned n = vm_values((struct vm *)vm, vals, GABI_REPORTS_MAX);
	size_t len = 8 + n * sizeof(struct mig_hcall_entry);
	uint8_t *b = calloc(1, len);

	if (!b)
		return -ENOMEM;
	memcpy(b, &n, 4);
	for (unsigned i = 0; i < n; i++) {
		struct mig_hcall_entry e = { .value = vals[i].value, .live_gpa = vals[i].live_gpa };

		memcpy(e.name, vals[i].name, strnlen(vals[i].name, GABI_NAME_MAX));
		memcpy(b + 8 + i * sizeof(e), &e, sizeof(e));
	}
	ferry__mig__device_state__init(d);
	d->name = MIG_DEVICE_HCALL;
	d->version = MIG_DEVICE_HCALL_VERSION;
	d->data = bin(b, len);
	*buf = b;
	return 0;
}

int mig_unpack_config(const Ferry__Mig__VmConfig *m, struct vm_config *cfg, char *err)
{
	if (!m->name || !*m->name || strlen(m->name) >= VM_NAME_MAX) {
		snprintf(err, MIG_ERR_LEN, "VM_CONFIG: bad VM name");
		return -EBADMSG;
	}
	if (m->mem_bytes % MEM_ALIGN || m->mem_bytes < GABI_MIN_MEM ||
	    m->mem_bytes > GABI_MAX_MEM || m->nr_pages != m->mem_bytes / GABI_PAGE_SIZE) {
		snprintf(err, MIG_ERR_LEN, "VM_CONFIG: memory size %llu bytes / %llu pages "
			 "is not a valid guest", (unsigned long long)m->mem_bytes,
			 (unsigned long long)m->nr_pages);
		return -EBADMSG;
	}
	if (m->nr_vcpus < 1 || m->nr_vcpus > GABI_MAX_VCPUS) {
		snprintf(err, MIG_ERR_LEN, "VM_CONFIG: %u vCPUs", m->nr_vcpus);
		return -EBADMSG;
	}
	if (m->guest_abi_version != GABI_VERSION) {
		snprintf(err, MIG_ERR_LEN, "VM_CONFIG: guest ABI version %u, this vmon has %u",
			 m->guest_abi_version, GABI_VERSION);
		return -EBADMSG;
	}
	snprintf(cfg->name, sizeof(cfg->name), "%s", m->name);
	cfg->mem_size = m->mem_bytes;
	cfg->nr_vcpus = m->nr_vcpus;
	return 0;
}

int mig_unpack_cpu(const Ferry__Mig__CpuModel *m, struct cpuid_table *cpuid,
		   uint64_t *xcr0, char *model, size_t model_len, char *err)
{
	if (!m->n_cpuid || m->n_cpuid > CPUID_MAX_ENTRIES) {
		snprintf(err, MIG_ERR_LEN, "CPU_MODEL: %zu CPUID entries", m->n_cpuid);
		return -EBADMSG;
	}
	memset(cpuid, 0, sizeof(*cpuid));
	cpuid->hdr.nent = (uint32_t)m->n_cpuid;
	for (size_t i = 0; i < m->n_cpuid; i++) {
		const Ferry__Mig__CpuidEntry *e = m->cpuid[i];
		struct kvm_cpuid_entry2 *o = &cpuid->entries[i];

		o->function = e->function;
		o->index = e->index;
		o->flags = e->flags;
		o->eax = e->eax;
		o->ebx = e->ebx;
		o->ecx = e->ecx;
		o->edx = e->edx;
	}
	*xcr0 = m->xcr0;
	if (!(*xcr0 & 1)) {
		snprintf(err, MIG_ERR_LEN, "CPU_MODEL: XCR0 0x%llx lacks x87",
			 (unsigned long long)*xcr0);
		return -EBADMSG;
	}
	snprintf(model, model_len, "%s", m->name && *m->name ? m->name : "unnamed");
	return 0;
}

static int copy_exact(void *dst, size_t size, ProtobufCBinaryData b, const char *what,
		      char *err)
{
	if (b.len != size) {
		snprintf(err, MIG_ERR_LEN, "VCPU_STATE: %s is %zu bytes, expected %zu",
			 what, b.len, size);
		return -EBADMSG;
	}
	memcpy(dst, b.data, size);
	return 0;
}

int mig_unpack_vcpu(const Ferry__Mig__VcpuState *m, unsigned nr_vcpus,
		    struct vcpu_state *s, unsigned *index, char *err)
{
	int ret;

	memset(s, 0, sizeof(*s));
	if (m->index >= nr_vcpus || m->layout_version != VCPU_STATE_LAYOUT) {
		snprintf(err, MIG_ERR_LEN, "VCPU_STATE: vCPU %u (layout %u) of %u",
			 m->index, m->layout_version, nr_vcpus);
		return -EBADMSG;
	}
	if (!m->exits_completed) {
		snprintf(err, MIG_ERR_LEN, "VCPU_STATE: vCPU %u saved with a pending exit",
			 m->index);
		return -EBADMSG;
	}
	if (m->n_msrs > VCPU_STATE_MAX_MSRS || m->xsave.len < sizeof(struct kvm_xsave) ||
	    m->xsave.len > (1u << 20)) {
		snprintf(err, MIG_ERR_LEN, "VCPU_STATE: vCPU %u: %zu MSRs, %zu bytes of XSAVE",
			 m->index, m->n_msrs, m->xsave.len);
		return -EBADMSG;
	}
	if ((ret = copy_exact(&s->regs, sizeof(s->regs), m->regs, "regs", err)) ||
	    (ret = copy_exact(&s->sregs, sizeof(s->sregs), m->sregs, "sregs", err)) ||
	    (ret = copy_exact(&s->events, sizeof(s->events), m->events, "events", err)) ||
	    (ret = copy_exact(&s->debugregs, sizeof(s->debugregs), m->debugregs,
			      "debugregs", err)))
		return ret;
	s->xsave = malloc(m->xsave.len);
	if (!s->xsave)
		return -ENOMEM;
	memcpy(s->xsave, m->xsave.data, m->xsave.len);
	s->xsave_len = (uint32_t)m->xsave.len;
	s->xcrs.nr_xcrs = 1;
	s->xcrs.xcrs[0].xcr = 0;
	s->xcrs.xcrs[0].value = m->xcr0;
	for (size_t i = 0; i < m->n_msrs; i++) {
		s->msrs[i].index = m->msrs[i]->index;
		s->msrs[i].data = m->msrs[i]->value;
	}
	s->nr_msrs = (uint32_t)m->n_msrs;
	s->exits_completed = true;
	*index = m->index;
	return 0;
}

int mig_unpack_hcall(struct vm *vm, const Ferry__Mig__DeviceState *d, char *err)
{
	uint32_t n;

	if (d->version != MIG_DEVICE_HCALL_VERSION || d->data.len < 8) {
		snprintf(err, MIG_ERR_LEN, "DEVICE_STATE hcall: version %u, %zu bytes",
			 d->version, d->data.len);
		return -EBADMSG;
	}
	memcpy(&n, d->data.data, 4);
	if (n > GABI_REPORTS_MAX || d->data.len != 8 + n * sizeof(struct mig_hcall_entry)) {
		snprintf(err, MIG_ERR_LEN, "DEVICE_STATE hcall: %u values in %zu bytes",
			 n, d->data.len);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct mig_hcall_entry e;
		size_t len;

		memcpy(&e, d->data.data + 8 + i * sizeof(e), sizeof(e));
		len = strnlen(e.name, GABI_NAME_MAX);
		if (!hcall_name_valid(e.name, len) ||
		    (e.live_gpa && (e.live_gpa % 8 || !mem_ptr(&vm->mem, e.live_gpa, 8)))) {
			snprintf(err, MIG_ERR_LEN, "DEVICE_STATE hcall: value %u is not valid", i);
			return -EBADMSG;
		}
		memset(&vm->values[i], 0, sizeof(vm->values[i]));
		memcpy(vm->values[i].name, e.name, len);
		vm->values[i].value = e.value;
		vm->values[i].live_gpa = e.live_gpa;
	}
	vm->nr_values = n;
	return 0;
}

void mig_ram_digest(const struct vm *vm, uint8_t out[16])
{
	XXH128_hash_t h = XXH3_128bits(vm->mem.base, vm->mem.size);
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(out, c.digest, 16);
}

int mig_dev_states_pack(const struct vm *vm, struct mig_dev_states *s)
{
	int ret = 0;

	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < vm->nr_devs && i < VM_DEVS_MAX; i++) {
		const struct vm_dev *d = &vm->devs[i];
		Ferry__Mig__DeviceState *ds = &s->ds[s->n];
		uint8_t *buf = NULL;
		size_t len = 0;

		if (!d->ops->save)
			continue;
		ferry__mig__device_state__init(ds);
		ret = d->ops->save(d->ctx, &ds->version, &buf, &len);
		if (ret)
			break;
		ds->name = (char *)d->ops->name;
		ds->data.data = buf;
		ds->data.len = len;
		s->ptrs[s->n++] = ds;
	}
	if (ret)
		mig_dev_states_free(s);
	return ret;
}

void mig_dev_states_free(struct mig_dev_states *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->ds[i].data.data);
	s->n = 0;
}
