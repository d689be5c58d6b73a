/*
 * Paravirtual hypercalls (docs/guest-abi.md). The decoder is pure: it takes
 * a snapshot of the guest's hypercall page and the size of guest RAM and
 * validates the request completely, so handlers only ever see arguments
 * that are in range.
 */
#ifndef FERRY_HCALL_H
#define FERRY_HCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_abi.h"

#define HCALL_SLEEP_MAX_NS (60ull * 1000000000ull)

struct hcall_req {
	uint64_t nr;
	uint64_t args[GABI_HC_NARGS];
};

/* 0, or the negative errno the guest gets back (-ENOSYS, -EFAULT, ...). */
int hcall_decode(const struct gabi_hcall *page, uint64_t mem_size,
		 struct hcall_req *out);
/* Names: 1..GABI_NAME_MAX bytes of [A-Za-z0-9._-]. */
/*
 * A block request copied out of guest RAM (docs/guest-abi.md): 0 when it
 * may be queued, else -EINVAL (op, flags, alignment, length), -ERANGE
 * (beyond the disk) or -EFAULT (buffer outside guest RAM).
 */
int hcall_blk_req_check(const struct gabi_blk_req *q, uint64_t disk_size,
			uint64_t mem_size);
bool hcall_name_valid(const char *name, size_t len);
const char *hcall_name(uint64_t nr);

struct vcpu;
/* Run the hypercall the vCPU just rang the doorbell for. */
void hcall_handle(struct vcpu *v);

#endif
