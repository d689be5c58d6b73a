/* VM creation, lifecycle (start, pause, resume, stop) and guest values. */
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/elf.h"
#include "core/kvm.h"
#include "core/log.h"
#include "core/util.h"
#include "core/x86_boot.h"

#define VM_IMAGE_MAX (256ull << 20)
#define VM_RING_ENTRIES_DEFAULT 65536u
#define VCPU_KICK_SIGNAL SIGUSR1

const char *vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_CREATED: return "created";
	case VM_RUNNING: return "running";
	case VM_PAUSED:  return "paused";
	case VM_STOPPED: return "stopped";
	case VM_CRASHED: return "crashed";
	}
	return "unknown";
}

void vm_config_init(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->name, "vm");
	cfg->nr_vcpus = 1;
	cfg->cpu_model = "host";
	cfg->dirty_mode = DIRTY_MODE_AUTO;
	cfg->mem_flags = MEM_PREALLOC;
	cfg->console_fd = STDOUT_FILENO;
}

/* The real KVM underneath the dirty tracker. */
static int vm_kvm_get_log(void *ctx, struct kvm_dirty_log *log)
{
	struct vm *vm = ctx;

	return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, log) ? -errno : 0;
}

static int vm_kvm_clear_log(void *ctx, struct kvm_clear_dirty_log *clear)
{
	struct vm *vm = ctx;

	return ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, clear) ? -errno : 0;
}

static int vm_kvm_reset_rings(void *ctx)
{
	struct vm *vm = ctx;

	return ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0 ? -errno : 0;
}

static int vm_kvm_set_logging(void *ctx, bool on)
{
	struct vm *vm = ctx;

	return mem_register(&vm->mem, vm->vm_fd, on);
}

static int vm_read_image(const char *path, void **buf, size_t *len, char *err)
{
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, VM_ERR_LEN, "guest %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err, VM_ERR_LEN, "guest %s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > VM_IMAGE_MAX) {
		ret = -EFBIG;
		snprintf(err, VM_ERR_LEN, "guest %s: %lld bytes is larger than the %llu MiB limit",
			 path, (long long)st.st_size, VM_IMAGE_MAX >> 20);
		goto out;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		ret = -ENOMEM;
		goto out;
	}
	ret = read_full(fd, *buf, *len);
	if (ret) {
		snprintf(err, VM_ERR_LEN, "guest %s: read: %s", path, strerror(-ret));
		free(*buf);
		*buf = NULL;
	}
out:
	close(fd);
	return ret;
}

static int vm_check_config(const struct vm_config *cfg, char *err)
{
	uint64_t host_mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	char a[32], b[32];

	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > GABI_MAX_VCPUS) {
		snprintf(err, VM_ERR_LEN, "vCPU count %u is outside 1..%u",
			 cfg->nr_vcpus, GABI_MAX_VCPUS);
		return -EINVAL;
	}
	if (cfg->mem_size < GABI_MIN_MEM || cfg->mem_size > GABI_MAX_MEM) {
		snprintf(err, VM_ERR_LEN, "memory size %s is outside %s..%s",
			 fmt_size(cfg->mem_size, a, sizeof(a)),
			 fmt_size(GABI_MIN_MEM, b, sizeof(b)),
			 fmt_size(GABI_MAX_MEM, a + 16, 16));
		return -EINVAL;
	}
	if (cfg->mem_size % MEM_ALIGN) {
		snprintf(err, VM_ERR_LEN, "memory size %llu bytes is not a multiple of 2 MiB",
			 (unsigned long long)cfg->mem_size);
		return -EINVAL;
	}
	if (cfg->mem_size > host_mem) {
		snprintf(err, VM_ERR_LEN, "memory size %s exceeds this host's memory (%s)",
			 fmt_size(cfg->mem_size, a, sizeof(a)),
			 fmt_size(host_mem, b, sizeof(b)));
		return -EINVAL;
	}
	if (cfg->args && strlen(cfg->args) >= GABI_ARGS_MAX) {
		snprintf(err, VM_ERR_LEN, "guest arguments are longer than %u bytes",
			 GABI_ARGS_MAX - 1);
		return -E2BIG;
	}
	return 0;
}

/* The host's CPUID as KVM offers it, with --cpuid-hide applied. */
static int vm_host_cpuid(struct vm *vm, struct cpuid_table *host, char *err)
{
	char why[128];
	int ret;

	ret = kvm_supported_cpuid(vm->kvm_fd, host);
	if (ret) {
		snprintf(err, VM_ERR_LEN, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
		return ret;
	}
	if (vm->cfg.cpuid_hide && *vm->cfg.cpuid_hide) {
		ret = cpuid_mask_features(host, vm->cfg.cpuid_hide, why, sizeof(why));
		if (ret) {
			snprintf(err, VM_ERR_LEN, "--cpuid-hide: %s", why);
			return ret;
		}
	}
	return 0;
}

/* Host CPUID turned into the model's. */
static int vm_setup_cpuid(struct vm *vm, char *err)
{
	struct cpuid_table host;
	char missing[CPUMODEL_MISSING_LEN];
	int ret;

	ret = vm_host_cpuid(vm, &host, err);
	if (ret)
		return ret;
	ret = cpumodel_apply(vm->model, &host, &vm->cpuid, missing);
	if (ret == -ENOTSUP) {
		snprintf(err, VM_ERR_LEN, "CPU model %s needs features this host lacks: %.400s",
			 cpumodel_name(vm->model), missing);
		return ret;
	}
	if (ret) {
		snprintf(err, VM_ERR_LEN, "CPU model %s: %s", cpumodel_name(vm->model),
			 strerror(-ret));
		return ret;
	}
	vm->xcr0 = cpumodel_xcr0(vm->model, &host);
	snprintf(vm->model_name, sizeof(vm->model_name), "%s", cpumodel_name(vm->model));
	return 0;
}

static int vm_setup_dirty_mode(struct vm *vm, char *err)
{
	enum dirty_mode mode = vm->cfg.dirty_mode;
	uint32_t cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	int ring_max = kvm_cap(vm->vm_fd, cap);
	int manual = kvm_cap(vm->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	int ret;

	if (ring_max <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		ring_max = kvm_cap(vm->vm_fd, cap);
	}
	/*
	 * The bitmap where KVM lets us re-protect pages by hand: the
	 * dirty-rate sampler then re-protects a stripe at a time and a busy
	 * guest does not pay a write fault on every page it writes, every
	 * interval, for as long as it runs (dirty_sample()). A ring's reset
	 * re-protects all it collected. Migration does as well with either.
	 */
	if (mode == DIRTY_MODE_AUTO)
		mode = manual & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE ? DIRTY_MODE_BITMAP :
		       ring_max > 0 ? DIRTY_MODE_RING : DIRTY_MODE_BITMAP;

	if (mode == DIRTY_MODE_RING) {
		uint32_t entries = vm->cfg.dirty_ring_entries ?
				   vm->cfg.dirty_ring_entries : VM_RING_ENTRIES_DEFAULT;
		uint64_t bytes;

		if (ring_max <= 0) {
			snprintf(err, VM_ERR_LEN, "dirty ring requested but KVM does not offer it");
			return -ENOTSUP;
		}
		while ((uint64_t)entries * sizeof(struct kvm_dirty_gfn) > (uint64_t)ring_max)
			entries /= 2;
		bytes = (uint64_t)entries * sizeof(struct kvm_dirty_gfn);
		ret = kvm_enable_cap(vm->vm_fd, cap, bytes);
		if (ret) {
			snprintf(err, VM_ERR_LEN, "enable dirty ring (%llu bytes): %s",
				 (unsigned long long)bytes, strerror(-ret));
			return ret;
		}
		vm->cfg.dirty_ring_entries = entries;
	} else {
		if (!(manual & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
			snprintf(err, VM_ERR_LEN, "KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
			return -ENOTSUP;
		}
		/*
		 * INITIALLY_SET spares the write-protection of all of memory
		 * when tracking starts; the first harvest reports every page,
		 * which is our contract anyway.
		 */
		ret = kvm_enable_cap(vm->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				     (uint64_t)manual & (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
							KVM_DIRTY_LOG_INITIALLY_SET));
		if (ret) {
			snprintf(err, VM_ERR_LEN, "enable manual dirty log protect: %s",
				 strerror(-ret));
			return ret;
		}
	}
	vm->dirty_mode = mode;
	return 0;
}

static int vm_create_vcpu(struct vm *vm, unsigned i, bool boot, char *err)
{
	struct vcpu *v = &vm->vcpus[i];
	bool osxsave = cpuid_has(&vm->cpuid, cpu_feature_find("xsave"));
	bool nx = cpuid_has(&vm->cpuid, cpu_feature_find("nx"));
	int ret;

	v->vm = vm;
	v->index = i;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0) {
		ret = -errno;
		snprintf(err, VM_ERR_LEN, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		return ret;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		ret = -errno;
		snprintf(err, VM_ERR_LEN, "mmap kvm_run of vCPU %u: %s", i, strerror(errno));
		return ret;
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, &vm->cpuid)) {
		ret = -errno;
		snprintf(err, VM_ERR_LEN, "KVM_SET_CPUID2 on vCPU %u: %s", i, strerror(errno));
		return ret;
	}
	ret = boot ? x86_vcpu_setup(v->fd, i, vm->entry, vm->xcr0, osxsave, nx) : 0;
	if (ret) {
		snprintf(err, VM_ERR_LEN, "vCPU %u register setup: %s", i, strerror(-ret));
		return ret;
	}
	if (vm->dirty_mode == DIRTY_MODE_RING) {
		long psz = sysconf(_SC_PAGESIZE);

		v->ring_bytes = (size_t)vm->cfg.dirty_ring_entries * sizeof(struct kvm_dirty_gfn);
		v->ring = mmap(NULL, v->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
			       v->fd, KVM_DIRTY_LOG_PAGE_OFFSET * psz);
		if (v->ring == MAP_FAILED) {
			v->ring = NULL;
			ret = -errno;
			snprintf(err, VM_ERR_LEN, "mmap dirty ring of vCPU %u: %s", i,
				 strerror(errno));
			return ret;
		}
	}
	return 0;
}

static int vm_setup_dirty(struct vm *vm, char *err)
{
	struct dirty_slot slots[MEM_MAX_REGIONS];
	struct dirty_kvm kvm = {
		.ctx = vm,
		.get_log = vm_kvm_get_log,
		.clear_log = vm_kvm_clear_log,
		.reset_rings = vm_kvm_reset_rings,
		.set_logging = vm_kvm_set_logging,
	};
	int ret;

	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		slots[i].slot = vm->mem.regions[i].slot;
		slots[i].first_pfn = vm->mem.regions[i].gpa >> MEM_PAGE_SHIFT;
		slots[i].nr_pages = vm->mem.regions[i].size >> MEM_PAGE_SHIFT;
	}
	ret = dirty_create(&vm->dirty, vm->dirty_mode, &kvm, slots, vm->mem.nr_regions);
	if (ret) {
		snprintf(err, VM_ERR_LEN, "dirty tracker: %s", strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < vm->nr_vcpus && vm->dirty_mode == DIRTY_MODE_RING; i++) {
		ret = dirty_attach_ring(vm->dirty, i, vm->vcpus[i].ring,
					vm->cfg.dirty_ring_entries);
		if (ret) {
			snprintf(err, VM_ERR_LEN, "dirty ring of vCPU %u: %s", i,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static struct vm *vm_alloc(const struct vm_config *cfg)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.memfd = -1;
	vm->state = VM_CREATED;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->console_lock, NULL);
	cond_init_monotonic(&vm->cond);
	return vm;
}

static int vm_open_kvm(struct vm *vm, char *err)
{
	vm->kvm_fd = kvm_open();
	if (vm->kvm_fd < 0) {
		int ret = vm->kvm_fd == -ENOENT ? -ENODEV : vm->kvm_fd;

		snprintf(err, VM_ERR_LEN, "%s: %s", KVM_DEV_PATH, strerror(-vm->kvm_fd));
		return ret;
	}
	return 0;
}

/* KVM VM, dirty mode, RAM and vCPUs: what every VM needs, booted or not. */
static int vm_build(struct vm *vm, const void *image, const struct elf_image *img,
		    char *err)
{
	const struct vm_config *cfg = &vm->cfg;
	int ret;

	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0 || vm->run_size <= 0) {
		ret = -errno;
		snprintf(err, VM_ERR_LEN, "KVM_CREATE_VM: %s", strerror(errno));
		return ret;
	}
	ret = vm_setup_dirty_mode(vm, err);
	if (ret)
		return ret;

	if (cfg->premade && cfg->premade->size == cfg->mem_size && cfg->premade->base) {
		vm->mem = *cfg->premade;
		memset(cfg->premade, 0, sizeof(*cfg->premade));
		cfg->premade->memfd = -1;
		vm->cfg.premade = NULL;
		ret = 0;
	} else {
		ret = mem_create(&vm->mem, cfg->mem_size, cfg->mem_flags);
	}
	if (ret) {
		snprintf(err, VM_ERR_LEN, "guest RAM (%llu MiB%s): %s%s",
			 (unsigned long long)(cfg->mem_size >> 20),
			 (cfg->mem_flags & MEM_HUGEPAGES) ? ", huge pages" : "",
			 strerror(-ret),
			 (cfg->mem_flags & MEM_HUGEPAGES) && ret == -ENOMEM ?
			 " (reserve 2 MiB pages in /proc/sys/vm/nr_hugepages)" : "");
		return ret;
	}
	ret = mem_register(&vm->mem, vm->vm_fd, false);
	if (ret) {
		snprintf(err, VM_ERR_LEN, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
		return ret;
	}
	if (image)
		elf_copy(image, img, vm->mem.base);

	vm->nr_vcpus = cfg->nr_vcpus;
	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vm_create_vcpu(vm, i, image != NULL, err);
		if (ret)
			return ret;
	}
	ret = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	vm->tsc_khz = ret > 0 ? (uint64_t)ret : 0;

	if (image) {
		struct x86_boot_params bp = {
			.nr_vcpus = vm->nr_vcpus,
			.tsc_khz = vm->tsc_khz,
			.heap_start = ALIGN_UP(img->hi, GABI_PAGE_SIZE),
			.args = cfg->args,
		};

		ret = x86_boot_setup(&vm->mem, &bp);
		if (ret) {
			snprintf(err, VM_ERR_LEN, "boot setup: %s", strerror(-ret));
			return ret;
		}
	}
	return vm_setup_dirty(vm, err);
}

int vm_create(const struct vm_config *cfg, struct vm **out, char *err)
{
	struct elf_image img;
	char why[ELF_WHY_LEN];
	void *image = NULL;
	size_t image_len = 0;
	struct vm *vm;
	int ret;

	err[0] = 0;
	ret = vm_check_config(cfg, err);
	if (ret)
		return ret;
	vm = vm_alloc(cfg);
	if (!vm)
		return -ENOMEM;

	vm->model = cpumodel_find(cfg->cpu_model ? cfg->cpu_model : "host");
	if (!vm->model) {
		ret = -EINVAL;
		snprintf(err, VM_ERR_LEN, "unknown CPU model '%s' (known: %s)",
			 cfg->cpu_model, cpumodel_list());
		goto fail;
	}
	ret = vm_read_image(cfg->guest_path, &image, &image_len, err);
	if (ret)
		goto fail;
	ret = elf_parse(image, image_len, GABI_IMAGE_MIN, cfg->mem_size, &img, why);
	if (ret) {
		snprintf(err, VM_ERR_LEN, "guest %s: %s", cfg->guest_path, why);
		goto fail;
	}
	vm->entry = img.entry;
	ret = vm_open_kvm(vm, err);
	if (ret)
		goto fail;
	ret = vm_setup_cpuid(vm, err);
	if (ret)
		goto fail;
	ret = vm_build(vm, image, &img, err);
	if (ret)
		goto fail;
	free(image);
	*out = vm;
	return 0;

fail:
	free(image);
	vm_destroy(vm);
	return ret;
}

int vm_create_incoming(const struct vm_config *cfg, const char *model_name,
		       const struct cpuid_table *cpuid, uint64_t xcr0,
		       struct vm **out, char *err)
{
	char missing[CPUMODEL_MISSING_LEN];
	struct cpuid_table host;
	uint64_t host_xcr0;
	struct vm *vm;
	int ret;

	err[0] = 0;
	ret = vm_check_config(cfg, err);
	if (ret)
		return ret;
	if (cpuid->hdr.nent > CPUID_MAX_ENTRIES)
		return -EINVAL;
	vm = vm_alloc(cfg);
	if (!vm)
		return -ENOMEM;
	snprintf(vm->model_name, sizeof(vm->model_name), "%s", model_name);
	ret = vm_open_kvm(vm, err);
	if (ret)
		goto fail;
	ret = vm_host_cpuid(vm, &host, err);
	if (ret)
		goto fail;
	/* The guest keeps the CPU it had: every feature it saw must be here. */
	ret = cpuid_check_supported(cpuid, &host, missing);
	if (ret) {
		snprintf(err, VM_ERR_LEN, "lacks CPU features %.300s required by model %s",
			 missing, model_name);
		goto fail;
	}
	host_xcr0 = cpumodel_xcr0(cpumodel_find("host"), &host);
	if (xcr0 & ~host_xcr0) {
		ret = -ENOTSUP;
		snprintf(err, VM_ERR_LEN, "lacks XSAVE components 0x%llx required "
			 "by model %s", (unsigned long long)(xcr0 & ~host_xcr0), model_name);
		goto fail;
	}
	vm->cpuid = *cpuid;
	vm->xcr0 = xcr0;
	ret = vm_build(vm, NULL, NULL, err);
	if (ret)
		goto fail;
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	/* Devices first: their I/O threads write into guest RAM. */
	vm_devs_wait_pause(vm);
	vm_devs_destroy(vm);
	dirty_destroy(vm->dirty);
	for (unsigned i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->ring)
			munmap(v->ring, v->ring_bytes);
		if (v->run)
			munmap(v->run, (size_t)vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
	free(vm->vcpus);
	mem_destroy(&vm->mem);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->console_lock);
	free(vm);
}

static void vcpu_kick_handler(int sig)
{
	(void)sig; /* only there to make KVM_RUN return with EINTR */
}

/* Make every vCPU leave KVM_RUN soon. Caller holds vm->lock. */
static void vm_kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		v->run->immediate_exit = 1;
		if (v->thread_started && !pthread_equal(v->thread, pthread_self()))
			pthread_kill(v->thread, VCPU_KICK_SIGNAL);
	}
	pthread_cond_broadcast(&vm->cond);
}

int vm_take_devs(struct vm *vm, char *why, size_t len)
{
	int ret = vm_devs_acquire(vm, why, len);

	if (ret) {
		pthread_mutex_lock(&vm->lock);
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", why);
		pthread_mutex_unlock(&vm->lock);
	}
	return ret;
}

int vm_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	char why[VM_ERR_LEN];
	int ret = 0;

	/* A VM runs only where it owns its disks (a migration's destination too). */
	ret = vm_take_devs(vm, why, sizeof(why));
	if (ret) {
		log_err("%s: cannot start: %s", vm->cfg.name, why);
		return ret;
	}
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: KVM_RUN must come back with EINTR. */
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL))
		return -errno;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_CREATED) {
		ret = -EALREADY;
		goto out;
	}
	vm->start_ns = now_ns();
	vm->state = VM_RUNNING;
	pthread_cond_broadcast(&vm->cond);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (ret) {
			vm->stop_req = true;
			vm->state = VM_CRASHED;
			vm->exit_status = VM_EXIT_INTERNAL;
			snprintf(vm->reason, sizeof(vm->reason), "cannot start vCPU thread %u", i);
			vm_kick_all(vm);
			break;
		}
		vm->vcpus[i].thread_started = true;
		vm->nr_running++;
	}
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_pause_held(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED)
		goto out;
	if (vm->state != VM_RUNNING) {
		ret = -EINVAL;
		goto out;
	}
	vm->pause_req = true;
	vm_kick_all(vm);
	while (vm->nr_parked < vm->nr_running && !vm->stop_req)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (vm->stop_req)
		ret = -ESHUTDOWN;
	else
		vm->state = VM_PAUSED;
out:
	pthread_mutex_unlock(&vm->lock);
	/* A paused VM has no I/O in flight: completions land before we return. */
	if (!ret)
		vm_devs_drain(vm);
	return ret;
}

int vm_pause(struct vm *vm)
{
	int ret = vm_pause_held(vm);

	if (!ret) {
		pthread_mutex_lock(&vm->lock);
		vm->own_pauses++;
		pthread_mutex_unlock(&vm->lock);
	}
	return ret;
}

int vm_pause_user(struct vm *vm)
{
	int ret = vm_pause_held(vm);

	if (!ret) {
		pthread_mutex_lock(&vm->lock);
		vm->user_paused = true;
		pthread_mutex_unlock(&vm->lock);
	}
	return ret;
}

bool vm_held(struct vm *vm, char *why, size_t len)
{
	bool held;

	pthread_mutex_lock(&vm->lock);
	held = vm->user_paused || vm->pause_reason[0];
	if (why)
		snprintf(why, len, "%s", vm->pause_reason[0] ? vm->pause_reason :
			 vm->user_paused ? "paused by the operator" : "");
	pthread_mutex_unlock(&vm->lock);
	return held;
}

int vm_resume(struct vm *vm)
{
	enum vm_state st = vm_get_state(vm);
	char why[VM_ERR_LEN];
	unsigned own;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	own = vm->own_pauses;
	pthread_mutex_unlock(&vm->lock);
	if (own)
		return -EBUSY;

	/*
	 * Devices first: a disk that went away is reconnected (the VM stays
	 * paused with the reason if it cannot be), held requests run again,
	 * and a failed migration's source takes its lease back before its
	 * guest runs again. A VM that arrived paused (or whose migration's
	 * commit never came) has not run here yet: the same, then it starts.
	 */
	if (st == VM_PAUSED || st == VM_CREATED) {
		/*
		 * A held request the devices run again may fail again at once
		 * (the disk is still full) while the VM is still paused: the
		 * pause it asks for waits until this resume is through, or
		 * the VM would run on with that request held for ever.
		 */
		pthread_mutex_lock(&vm->lock);
		vm->resuming = true;
		pthread_mutex_unlock(&vm->lock);
		ret = vm_devs_acquire(vm, why, sizeof(why));
		if (!ret)
			ret = vm_devs_resume(vm, why, sizeof(why));
		if (ret) {
			pthread_mutex_lock(&vm->lock);
			snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", why);
			vm->resuming = false;
			pthread_cond_broadcast(&vm->cond);
			pthread_mutex_unlock(&vm->lock);
			log_err("%s: cannot resume: %s", vm->cfg.name, why);
			return ret;
		}
	}
	if (st == VM_CREATED) {
		pthread_mutex_lock(&vm->lock);
		vm->user_paused = false;
		vm->pause_reason[0] = 0;
		pthread_mutex_unlock(&vm->lock);
		ret = vm_start(vm);
		pthread_mutex_lock(&vm->lock);
		vm->resuming = false;
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		return ret;
	}
	pthread_mutex_lock(&vm->lock);
	vm->resuming = false;
	pthread_cond_broadcast(&vm->cond);
	if (vm->state == VM_RUNNING)
		goto out;
	if (vm->state != VM_PAUSED) {
		ret = -EINVAL;
		goto out;
	}
	/* A switchover or a snapshot paused it since we looked: it is theirs now. */
	if (vm->own_pauses) {
		ret = -EBUSY;
		goto out;
	}
	vm->pause_req = false;
	vm->state = VM_RUNNING;
	vm->user_paused = false;
	vm->pause_reason[0] = 0;
	pthread_cond_broadcast(&vm->cond);
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_resume_own(struct vm *vm)
{
	char why[VM_ERR_LEN];
	unsigned left;

	pthread_mutex_lock(&vm->lock);
	if (vm->own_pauses)
		vm->own_pauses--;
	left = vm->own_pauses;
	pthread_mutex_unlock(&vm->lock);
	if (left)
		return 0;   /* another of our own pauses is still in force */
	if (vm_held(vm, why, sizeof(why))) {
		log_warn("%s: stays paused: %s", vm->cfg.name, why);
		return 0;
	}
	return vm_resume(vm);
}

void vm_finish(struct vm *vm, enum vm_state state, int status, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	/* The first reason wins: it is the cause, later ones are fallout. */
	if (!vm->stop_req) {
		vm->stop_req = true;
		vm->state = state;
		vm->exit_status = status;
		va_start(ap, fmt);
		vsnprintf(vm->reason, sizeof(vm->reason), fmt, ap);
		va_end(ap);
		vm_kick_all(vm);
	}
	pthread_mutex_unlock(&vm->lock);
}

void vm_stop(struct vm *vm, const char *reason)
{
	__atomic_store_n(&vm->exit_asked, true, __ATOMIC_RELEASE);
	vm_finish(vm, VM_STOPPED, 0, "%s", reason);
}

int vm_wait(struct vm *vm)
{
	/* Not started yet (awaiting a commit, say): wait for a start or a stop. */
	pthread_mutex_lock(&vm->lock);
	while (vm->state == VM_CREATED && !vm->stop_req)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
	return vm->exit_status;
}

enum vm_state vm_get_state(struct vm *vm)
{
	enum vm_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

int vm_write_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = mem_ptr(&vm->mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	/* Mark after the write: a harvest in between must not miss it. */
	dirty_mark(vm->dirty, gpa, len);
	return 0;
}

int vm_value_gpa(struct vm *vm, const char *name, uint64_t *gpa)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_values; i++)
		if (vm->values[i].live_gpa && !strcmp(vm->values[i].name, name)) {
			*gpa = vm->values[i].live_gpa;
			ret = 0;
			break;
		}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

unsigned vm_values(struct vm *vm, struct vm_value *out, unsigned max)
{
	unsigned n;

	pthread_mutex_lock(&vm->lock);
	n = MIN(max, vm->nr_values);
	memcpy(out, vm->values, n * sizeof(*out));
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < n; i++) {
		const uint64_t *p;

		if (!out[i].live_gpa)
			continue;
		p = mem_ptr(&vm->mem, out[i].live_gpa, sizeof(uint64_t));
		out[i].value = p ? __atomic_load_n(p, __ATOMIC_RELAXED) : 0;
	}
	return n;
}
