/*
 * Writing a VM into a stream: the head (who, what, which CPU), pages, and
 * the tail that only a paused VM can give (vCPUs, clock, devices, END).
 * A snapshot is head + all pages + tail; a live migration sends the head,
 * rounds of pages while the guest runs, then the tail.
 */
#include "migrate/mig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/util.h"
#include "migrate/mig_state.h"

#define MIG_VMON_VERSION "0.1.0"

int mig_write_head(struct vm *vm, struct stream_writer *w, bool live, char *err)
{
	Ferry__Mig__StreamHeader h = FERRY__MIG__STREAM_HEADER__INIT;
	struct mig_config_pack *cp = NULL;
	struct mig_cpu_pack *pp = NULL;
	char host[256] = "";
	int ret;

	gethostname(host, sizeof(host) - 1);
	cp = calloc(1, sizeof(*cp));
	pp = calloc(1, sizeof(*pp));
	if (!cp || !pp) {
		ret = -ENOMEM;
		goto out;
	}
	ret = stream_write_preamble(w, live ? STREAM_F_LIVE : 0);
	if (ret)
		goto io;
	h.source_host = host;
	h.vm_name = vm->cfg.name;
	h.created_ns = realtime_ns();
	h.vmon_version = MIG_VMON_VERSION;
	h.purpose = live ? FERRY__MIG__PURPOSE__PURPOSE_LIVE : FERRY__MIG__PURPOSE__PURPOSE_SNAPSHOT;
	mig_pack_config(vm, cp);
	mig_pack_cpu(vm, pp);
	if ((ret = stream_write_pb(w, STREAM_REC_STREAM_HEADER, &h.base)) ||
	    (ret = stream_write_pb(w, STREAM_REC_VM_CONFIG, &cp->msg.base)) ||
	    (ret = stream_write_pb(w, STREAM_REC_CPU_MODEL, &pp->msg.base)))
		goto io;
	goto out;
io:
	snprintf(err, MIG_ERR_LEN, "write stream head: %s", strerror(-ret));
out:
	free(cp);
	free(pp);
	return ret;
}

int mig_write_set(struct vm *vm, struct stream_writer *w, const struct dirty_set *set,
		  char *err)
{
	uint64_t pfns[STREAM_PAGES_MAX];
	size_t n = 0;
	uint64_t pfn;
	int ret;

	dirty_set_for_each(set, pfn) {
		pfns[n++] = pfn;
		if (n < STREAM_PAGES_MAX)
			continue;
		ret = stream_write_pages(w, pfns, n, vm->mem.base);
		if (ret)
			goto fail;
		n = 0;
	}
	ret = n ? stream_write_pages(w, pfns, n, vm->mem.base) : 0;
	if (!ret)
		return 0;
fail:
	snprintf(err, MIG_ERR_LEN, "send pages: %s", strerror(-ret));
	return ret;
}

int mig_write_tail(struct vm *vm, struct stream_writer *w, const struct mig_tail_opts *o,
		   char *err)
{
	Ferry__Mig__ClockState clk = FERRY__MIG__CLOCK_STATE__INIT;
	Ferry__Mig__DeviceState dev;
	Ferry__Mig__StreamEnd end = FERRY__MIG__STREAM_END__INIT;
	struct mig_dev_states devs;
	struct mig_vcpu_pack *vp = calloc(1, sizeof(*vp));
	uint64_t tsc[GABI_MAX_VCPUS];
	struct kvm_clock_data kclock = { 0 };
	uint8_t digest[16], *devbuf = NULL;
	char reason[VM_ERR_LEN];
	int ret = -ENOMEM;

	if (!vp)
		goto fail;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu_state s;

		ret = vcpu_state_save(&vm->vcpus[i], &s);
		if (ret) {
			snprintf(err, MIG_ERR_LEN, "save vCPU %u: %s", i, strerror(-ret));
			goto out;
		}
		tsc[i] = s.tsc;
		mig_pack_vcpu(&s, i, vp);
		ret = stream_write_pb(w, STREAM_REC_VCPU_STATE, &vp->msg.base);
		vcpu_state_free(&s);
		if (ret)
			goto fail;
	}
	clk.n_tsc = vm->nr_vcpus;
	clk.tsc = tsc;
	clk.realtime_ns = realtime_ns();
	/* kvmclock, for guests that use it (Linux does; microguests read the TSC). */
	if (!ioctl(vm->vm_fd, KVM_GET_CLOCK, &kclock)) {
		clk.kvmclock.data = (uint8_t *)&kclock;
		clk.kvmclock.len = sizeof(kclock);
	}
	ret = stream_write_pb(w, STREAM_REC_CLOCK, &clk.base);
	if (ret)
		goto fail;
	ret = mig_pack_hcall(vm, &dev, &devbuf);
	if (!ret)
		ret = stream_write_pb(w, STREAM_REC_DEVICE_STATE, &dev.base);
	if (ret)
		goto fail;
	/* The VM's other devices (disks), so the destination opens the same ones. */
	ret = mig_dev_states_pack(vm, &devs);
	for (unsigned i = 0; !ret && i < devs.n; i++)
		ret = stream_write_pb(w, STREAM_REC_DEVICE_STATE, &devs.ds[i].base);
	mig_dev_states_free(&devs);
	if (ret)
		goto fail;

	end.records = w->records;
	end.bytes = w->off;
	end.pages = w->pages + (o ? o->lane_pages : 0);
	end.zero_pages = w->zero_pages + (o ? o->lane_zero_pages : 0);
	end.rounds = o ? o->rounds : 1;
	if (o && o->verify) {
		mig_ram_digest(vm, digest);
		end.ram_digest.data = digest;
		end.ram_digest.len = sizeof(digest);
	}
	/* Held paused by the operator or a device: it stays paused where it lands. */
	pthread_mutex_lock(&vm->lock);
	end.paused = vm->user_paused;
	snprintf(reason, sizeof(reason), "%s", vm->pause_reason);
	pthread_mutex_unlock(&vm->lock);
	end.pause_reason = reason;
	ret = stream_write_pb(w, STREAM_REC_END, &end.base);
	if (!ret)
		goto out;
fail:
	snprintf(err, MIG_ERR_LEN, "write stream tail: %s", strerror(-ret));
out:
	free(devbuf);
	free(vp);
	return ret;
}

int mig_save_snapshot(struct vm *vm, struct stream_writer *w, bool verify, char *err)
{
	struct mig_tail_opts o = { .verify = verify, .rounds = 1 };
	struct dirty_set all;
	int ret;

	ret = dirty_set_init(&all, mem_pages(&vm->mem));
	if (ret)
		return ret;
	for (uint64_t pfn = 0; pfn < all.nr_pages; pfn++)
		dirty_set_add(&all, pfn);
	ret = mig_write_head(vm, w, false, err);
	if (!ret)
		ret = mig_write_set(vm, w, &all, err);
	if (!ret)
		ret = mig_write_tail(vm, w, &o, err);
	dirty_set_free(&all);
	return ret;
}
