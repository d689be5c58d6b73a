/*
 * The NICs as a VM device: the net_* hypercalls, the announce after the VM
 * gains its NICs, and the state a migration carries (net/nic.h).
 */
#include "net/nic.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm.h"
#include "net/nic_carry.h"

/* Largest frame a tap hands over: its MTU could be raised up to 64 KiB. */
#define TAP_READ_MAX 65536

enum nic_counter {
	NC_RX_FRAMES, NC_RX_BYTES, NC_RX_TOO_LONG, NC_RX_STALE,
	NC_TX_FRAMES, NC_TX_BYTES, NC_TX_FAILED, NC_TX_REFUSED,
	NC_ANNOUNCES, NC_RX_CARRIED,
	NC_MAX
};

static const char *const nic_counter_names[NC_MAX] = {
	"rx_frames", "rx_bytes", "rx_too_long", "rx_stale",
	"tx_frames", "tx_bytes", "tx_failed", "tx_refused",
	"announces", "rx_carried",
};

struct nic {
	struct nic_spec spec;
	int fd;
	char ifname[IFNAMSIZ];
	uint64_t count[NC_MAX];
	bool warned;             /* a failed send is logged once */
};

struct nic_dev {
	struct vm *vm;
	unsigned n;
	struct nic nics[GABI_NET_MAX_NICS];
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* CLOCK_MONOTONIC */
	pthread_t thread;
	bool thread_started;
	bool stop;
	bool owned;              /* acquired, not released since */
	bool announce_due;       /* the next acquire announces */
	bool rounds_seen;        /* a destination: a pre-copy round ended */
	unsigned carry_hint;     /* carry.q_n, read without the lock */
	struct nic_carry carry;  /* under lock */
	struct nic_state scratch; /* under lock: the switchover's save and load */
	unsigned next_round;     /* NIC_ANNOUNCE_ROUNDS: no announce under way */
	uint64_t announce_t0;    /* now_ns() of round 0 */
};

static void count_add(struct nic *nic, enum nic_counter c, uint64_t v)
{
	__atomic_fetch_add(&nic->count[c], v, __ATOMIC_RELAXED);
}

static int64_t net_info(struct nic_dev *dev, const uint64_t *args)
{
	const struct nic *nic = &dev->nics[args[0]];
	struct gabi_net_info info = {
		.mtu = 1500,
		.max_frame = GABI_NET_MAX_FRAME,
		.nr_nics = dev->n,
	};

	memcpy(info.mac, nic->spec.mac, 6);
	return vm_write_guest(dev->vm, args[1], &info, sizeof(info));
}

static int64_t net_send(struct nic_dev *dev, const uint64_t *args)
{
	struct nic *nic = &dev->nics[args[0]];
	uint8_t frame[GABI_NET_MAX_FRAME];
	size_t len = args[2];
	ssize_t n;

	/* Copy first: the guest's other vCPUs may change the frame meanwhile. */
	memcpy(frame, mem_ptr(&dev->vm->mem, args[1], len), len);
	/* A guest speaks only for its own MAC (no forged transmits). */
	if (memcmp(frame + 6, nic->spec.mac, 6)) {
		count_add(nic, NC_TX_REFUSED, 1);
		return -EPERM;
	}
	n = write(nic->fd, frame, len);
	if (n != (ssize_t)len) {
		int e = n < 0 ? errno : EIO;

		count_add(nic, NC_TX_FAILED, 1);
		if (!__atomic_exchange_n(&nic->warned, true, __ATOMIC_RELAXED))
			log_warn("%s: net%u: sending on %s failed: %s (logged once)",
				 dev->vm->cfg.name, (unsigned)args[0], nic->ifname, strerror(e));
		return -e;
	}
	count_add(nic, NC_TX_FRAMES, 1);
	count_add(nic, NC_TX_BYTES, len);
	return (int64_t)len;
}

/* The oldest frame carried for NIC i into frame: its length, or 0. */
static ssize_t carry_take(struct nic_dev *dev, unsigned i, uint8_t *frame)
{
	size_t n;

	if (!__atomic_load_n(&dev->carry_hint, __ATOMIC_RELAXED))
		return 0;
	pthread_mutex_lock(&dev->lock);
	n = nic_carry_pop(&dev->carry, i, frame);
	__atomic_store_n(&dev->carry_hint, dev->carry.q_n, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&dev->lock);
	return (ssize_t)n;
}

static int64_t net_recv(struct nic_dev *dev, const uint64_t *args)
{
	struct nic *nic = &dev->nics[args[0]];
	uint8_t frame[TAP_READ_MAX];
	ssize_t n = carry_take(dev, (unsigned)args[0], frame);
	int ret;

	if (!n)
		n = read(nic->fd, frame, sizeof(frame));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n > GABI_NET_MAX_FRAME) {
		count_add(nic, NC_RX_TOO_LONG, 1);
		return -EMSGSIZE;
	}
	/* Through the monitor's dirty map: a migration must see this write. */
	ret = vm_write_guest(dev->vm, args[1], frame, (uint64_t)n);
	if (ret)
		return ret;
	/* A switchover names what the guest read (nic_carry.h). */
	pthread_mutex_lock(&dev->lock);
	nic_carry_log(&dev->carry, (unsigned)args[0], frame, (size_t)n);
	pthread_mutex_unlock(&dev->lock);
	count_add(nic, NC_RX_FRAMES, 1);
	count_add(nic, NC_RX_BYTES, (uint64_t)n);
	return n;
}

static int64_t nic_hcall(void *ctx, struct vcpu *v, uint64_t nr, const uint64_t *args)
{
	struct nic_dev *dev = ctx;

	if (args[0] >= dev->n)
		return -ENODEV;
	switch (nr) {
	case GABI_HC_NET_INFO:
		return net_info(dev, args);
	case GABI_HC_NET_SEND:
		return net_send(dev, args);
	case GABI_HC_NET_RECV:
		return net_recv(dev, args);
	}
	return -ENOSYS;
}

/* Under dev->lock. */
static void announce_round(struct nic_dev *dev)
{
	uint8_t frame[NIC_RARP_LEN];

	for (unsigned i = 0; i < dev->n; i++) {
		struct nic *nic = &dev->nics[i];

		nic_rarp_frame(nic->spec.mac, frame);
		if (write(nic->fd, frame, sizeof(frame)) == (ssize_t)sizeof(frame))
			count_add(nic, NC_ANNOUNCES, 1);
	}
	dev->next_round++;
}

static void *nic_announcer(void *arg)
{
	struct nic_dev *dev = arg;

	pthread_mutex_lock(&dev->lock);
	while (!dev->stop) {
		uint64_t due, now = now_ns();
		struct timespec ts;

		if (dev->next_round >= NIC_ANNOUNCE_ROUNDS) {
			pthread_cond_wait(&dev->cond, &dev->lock);
			continue;
		}
		due = dev->announce_t0 + nic_announce_at_ms[dev->next_round] * 1000000ull;
		if (now >= due) {
			announce_round(dev);
			continue;
		}
		ts.tv_sec = (time_t)(due / 1000000000ull);
		ts.tv_nsec = (long)(due % 1000000000ull);
		pthread_cond_timedwait(&dev->cond, &dev->lock, &ts);
	}
	pthread_mutex_unlock(&dev->lock);
	return NULL;
}

/*
 * Read NIC i's tap: each frame a guest could take to keep(dev, i, frame,
 * len), until the tap is empty or keep says stop (nonzero).
 */
static void tap_drain(struct nic_dev *dev, unsigned i,
		      int (*keep)(struct nic_dev *, unsigned, const uint8_t *, size_t))
{
	struct nic *nic = &dev->nics[i];
	uint8_t frame[TAP_READ_MAX];
	ssize_t n;

	while ((n = read(nic->fd, frame, sizeof(frame))) > 0) {
		if (n > GABI_NET_MAX_FRAME)
			count_add(nic, NC_RX_TOO_LONG, 1);
		else if (n >= 14 && keep(dev, i, frame, (size_t)n))
			break;
	}
}

static int keep_none(struct nic_dev *dev, unsigned i, const uint8_t *f, size_t len)
{
	(void)f;
	(void)len;
	count_add(&dev->nics[i], NC_RX_STALE, 1);
	return 0;
}

static int keep_held(struct nic_dev *dev, unsigned i, const uint8_t *f, size_t len)
{
	count_add(&dev->nics[i], NC_RX_STALE, nic_carry_hold(&dev->carry, i, f, len));
	return 0;
}

/* Up to NIC_CARRY_MAX; once full, no more is read: the rest stays queued. */
static int keep_carried(struct nic_dev *dev, unsigned i, const uint8_t *f, size_t len)
{
	if (nic_carry_push(&dev->carry, NIC_CARRY_MAX, i, f, len)) {
		count_add(&dev->nics[i], NC_RX_STALE, 1);
		return 1;
	}
	count_add(&dev->nics[i], NC_RX_CARRIED, 1);
	return dev->carry.q_n >= NIC_CARRY_MAX;
}

static void count_stale(struct nic_dev *dev, const uint64_t *stale)
{
	for (unsigned i = 0; i < dev->n; i++)
		count_add(&dev->nics[i], NC_RX_STALE, stale[i]);
}

/*
 * After each pre-copy round (the ROUND record). A source notes it: what
 * its guest reads from here on is named at the switchover. A destination
 * keeps what queued on its taps in this round, some of which the source's
 * guest may not have read, and drops what it kept before.
 */
static void nic_round_end(void *ctx)
{
	struct nic_dev *dev = ctx;
	uint64_t stale[GABI_NET_MAX_NICS] = { 0 };

	pthread_mutex_lock(&dev->lock);
	if (dev->owned) {
		nic_carry_round(&dev->carry);
	} else {
		nic_carry_hold_drop(&dev->carry, stale);
		count_stale(dev, stale);
		for (unsigned i = 0; i < dev->n; i++)
			tap_drain(dev, i, keep_held);
		dev->rounds_seen = true;
	}
	pthread_mutex_unlock(&dev->lock);
}

/*
 * A source at switchover, its vCPUs paused: what its taps hold now reached
 * this host, and its guest never read it (unicast the bridge still sends
 * here, broadcasts of a stall). The state carries it; should the
 * migration fail, the guest here reads it first.
 */
static int nic_quiesce(void *ctx, char *err, size_t len)
{
	struct nic_dev *dev = ctx;

	(void)err;
	(void)len;
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < dev->n && dev->carry.q_n < NIC_CARRY_MAX; i++)
		tap_drain(dev, i, keep_carried);
	__atomic_store_n(&dev->carry_hint, dev->carry.q_n, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

/*
 * The VM gains its NICs: at its first start, on a migration's destination,
 * and on a source that takes them back. Frames queued while nobody read
 * the tap are stale (the guest ran elsewhere, or not yet), unless a
 * migration's rounds sorted them (nic_round_end, nic_load); then the first
 * announce goes out before any vCPU runs, the rest from the announcer.
 */
static int nic_acquire(void *ctx, char *err, size_t len)
{
	struct nic_dev *dev = ctx;
	uint64_t stale[GABI_NET_MAX_NICS] = { 0 };

	pthread_mutex_lock(&dev->lock);
	/* Held for a switchover that did not come (load takes it otherwise). */
	nic_carry_hold_drop(&dev->carry, stale);
	count_stale(dev, stale);
	if (!dev->owned && dev->announce_due) {
		/* Without a round's end, all of it is from before. */
		for (unsigned i = 0; !dev->rounds_seen && i < dev->n; i++)
			tap_drain(dev, i, keep_none);
		dev->next_round = 0;
		dev->announce_t0 = now_ns();
		announce_round(dev);
		dev->announce_due = false;
		pthread_cond_signal(&dev->cond);
	}
	dev->owned = true;
	dev->rounds_seen = false;
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

/* Handed over: the destination announces now; ours would undo it. */
static void nic_release(void *ctx)
{
	struct nic_dev *dev = ctx;

	pthread_mutex_lock(&dev->lock);
	if (dev->owned)
		dev->announce_due = true;
	dev->owned = false;
	dev->next_round = NIC_ANNOUNCE_ROUNDS;
	pthread_mutex_unlock(&dev->lock);
}

static int nic_save(void *ctx, uint32_t *version, uint8_t **buf, size_t *len)
{
	struct nic_dev *dev = ctx;
	struct nic_state *st = &dev->scratch;
	int ret;

	pthread_mutex_lock(&dev->lock);
	st->n = dev->n;
	for (unsigned i = 0; i < dev->n; i++)
		st->nics[i] = dev->nics[i].spec;
	nic_carry_save(&dev->carry, st);
	*version = NIC_STATE_VERSION;
	ret = nic_state_format(st, buf, len);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

static unsigned nic_stats(void *ctx, struct vm_dev_stat *out, unsigned max)
{
	struct nic_dev *dev = ctx;
	unsigned k = 0;

	for (unsigned i = 0; i < dev->n; i++)
		for (unsigned c = 0; c < NC_MAX && k < max; c++, k++) {
			snprintf(out[k].name, sizeof(out[k].name), "net%u.%s", i,
				 nic_counter_names[c]);
			out[k].value = __atomic_load_n(&dev->nics[i].count[c], __ATOMIC_RELAXED);
		}
	return k;
}

static void nic_destroy(void *ctx)
{
	struct nic_dev *dev = ctx;

	pthread_mutex_lock(&dev->lock);
	dev->stop = true;
	pthread_cond_signal(&dev->cond);
	pthread_mutex_unlock(&dev->lock);
	if (dev->thread_started)
		pthread_join(dev->thread, NULL);
	/* The taps go with their fds, and with them the bridges' entries. */
	for (unsigned i = 0; i < dev->n; i++)
		if (dev->nics[i].fd >= 0)
			close(dev->nics[i].fd);
	pthread_cond_destroy(&dev->cond);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

static const struct vm_dev_ops nic_dev_ops = {
	.name = NIC_DEV_NAME,
	.hc_first = GABI_HC_NET_INFO,
	.hc_last = GABI_HC_NET_RECV,
	.hcall = nic_hcall,
	.quiesce = nic_quiesce,
	.acquire = nic_acquire,
	.round_end = nic_round_end,
	.release = nic_release,
	.save = nic_save,
	.stats = nic_stats,
	.destroy = nic_destroy,
};

static struct nic_dev *nic_dev_alloc(struct vm *vm)
{
	struct nic_dev *dev = malloc(sizeof(*dev));

	if (!dev)
		return NULL;
	/*
	 * Touched now, not calloc's untouched pages: the carry and the scratch
	 * state are first used in the downtime, where faulting their pages in
	 * cost 30-50 us here.
	 */
	memset(dev, 0, sizeof(*dev));
	dev->vm = vm;
	dev->announce_due = true;
	dev->next_round = NIC_ANNOUNCE_ROUNDS;
	for (unsigned i = 0; i < GABI_NET_MAX_NICS; i++)
		dev->nics[i].fd = -1;
	pthread_mutex_init(&dev->lock, NULL);
	cond_init_monotonic(&dev->cond);
	return dev;
}

int nic_dev_create(struct vm *vm, const struct nic_spec *specs, unsigned n, char *err,
		   size_t len)
{
	struct nic_dev *dev;
	int ret;

	if (!n)
		return 0;
	if (n > GABI_NET_MAX_NICS) {
		snprintf(err, len, "at most %u NICs", GABI_NET_MAX_NICS);
		return -E2BIG;
	}
	dev = nic_dev_alloc(vm);
	if (!dev) {
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		struct nic *nic = &dev->nics[i];
		char why[NIC_ERR_LEN], mac[18];

		nic->spec = specs[i];
		if (!nic->spec.mac_set) {
			nic_mac_derive(vm->cfg.name, i, nic->spec.mac);
			nic->spec.mac_set = 1;
		}
		for (unsigned j = 0; j < i; j++)
			if (!memcmp(dev->nics[j].spec.mac, nic->spec.mac, 6)) {
				nic_mac_format(nic->spec.mac, mac);
				snprintf(err, len, "net%u: MAC %s is net%u's too", i, mac, j);
				ret = -EINVAL;
				goto fail;
			}
		ret = nic_tap_open(nic->spec.bridge, &nic->fd, nic->ifname, why, sizeof(why));
		if (ret) {
			snprintf(err, len, "net%u: %s", i, why);
			goto fail;
		}
		dev->n++;
		nic_mac_format(nic->spec.mac, mac);
		log_info("%s: net%u: MAC %s on tap %s, a port of bridge %s", vm->cfg.name, i,
			 mac, nic->ifname, nic->spec.bridge);
	}
	ret = -pthread_create(&dev->thread, NULL, nic_announcer, dev);
	if (ret) {
		snprintf(err, len, "cannot start the announce thread: %s", strerror(-ret));
		goto fail;
	}
	dev->thread_started = true;
	ret = vm_dev_attach(vm, &nic_dev_ops, dev);
	if (ret) {
		snprintf(err, len, "too many devices");
		goto fail;
	}
	return 0;
fail:
	nic_destroy(dev);
	return ret;
}

static struct nic_dev *nic_dev_of(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devs; i++)
		if (vm->devs[i].ops == &nic_dev_ops)
			return vm->devs[i].ctx;
	return NULL;
}

/* A VM whose NICs the stream makes (a restore, or no precheck). */
static int nic_load_new(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
			char *err, size_t err_len)
{
	struct nic_state *st = malloc(sizeof(*st));
	int ret = st ? nic_state_parse(version, data, len, st, err, err_len) : -ENOMEM;

	if (ret == -ENOMEM)
		snprintf(err, err_len, "out of memory");
	if (!ret)
		ret = nic_dev_create(vm, st->nics, st->n, err, err_len);
	free(st);
	return ret;
}

static int nic_load(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
		    char *err, size_t err_len)
{
	uint64_t stale[GABI_NET_MAX_NICS] = { 0 };
	struct nic_dev *dev = nic_dev_of(vm);
	struct nic_state *st;
	bool same;
	int ret;

	/* A restore: frames saved with a snapshot are long stale. */
	if (!dev)
		return nic_load_new(vm, version, data, len, err, err_len);
	pthread_mutex_lock(&dev->lock);
	st = &dev->scratch;
	ret = nic_state_parse(version, data, len, st, err, err_len);
	if (ret)
		goto out;
	/* Made at the precheck (nic_prepare): it must be what the source has. */
	same = dev->n == st->n;
	for (unsigned i = 0; same && i < st->n; i++)
		same = !memcmp(dev->nics[i].spec.mac, st->nics[i].mac, 6) &&
		       !strcmp(dev->nics[i].spec.bridge, st->nics[i].bridge);
	if (!same) {
		snprintf(err, err_len, "the VM's NICs changed during the migration");
		ret = -EBADMSG;
		goto out;
	}
	/*
	 * The source's frames first, then what reached us in our last round
	 * and since that the source's guest did not read (nic_carry.h).
	 */
	for (unsigned i = 0; dev->rounds_seen && i < dev->n; i++)
		tap_drain(dev, i, keep_held);
	nic_carry_merge(&dev->carry, st, stale);
	count_stale(dev, stale);
	for (unsigned f = 0; f < st->nframes; f++)
		count_add(&dev->nics[st->frames[f].nic], NC_RX_CARRIED, 1);
	__atomic_store_n(&dev->carry_hint, dev->carry.q_n, __ATOMIC_RELAXED);
out:
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

static int nic_prepare(struct vm *vm, uint32_t version, const uint8_t *data, size_t len,
		       char *err, size_t err_len)
{
	struct nic_state st;
	int ret = nic_state_parse(version, data, len, &st, err, err_len);

	/* A second "net" state in one HELLO would make a second set of taps. */
	if (!ret && nic_dev_of(vm)) {
		snprintf(err, err_len, "the NICs' state came twice");
		ret = -EBADMSG;
	}
	return ret ? ret : nic_dev_create(vm, st.nics, st.n, err, err_len);
}

/* Before a page moves: every bridge the VM's NICs sit on exists here. */
static int nic_precheck(uint32_t version, const uint8_t *data, size_t len, char *err,
			size_t err_len)
{
	struct nic_state st;
	char why[NIC_ERR_LEN];
	int ret = nic_state_parse(version, data, len, &st, err, err_len);

	for (unsigned i = 0; !ret && i < st.n; i++) {
		ret = nic_bridge_check(st.nics[i].bridge, why, sizeof(why));
		if (ret)
			snprintf(err, err_len, "net%u: %s", i, why);
	}
	return ret;
}

const struct vm_dev_type nic_dev_type = {
	.name = NIC_DEV_NAME,
	.what = "network",
	.load = nic_load,
	.precheck = nic_precheck,
	.prepare = nic_prepare,
};
