/*
 * The hypercall decoder takes whatever a guest wrote into its hypercall
 * page. Input: 8 bytes of guest memory size, then the page. Whatever it
 * accepts must be safe for the handlers: every range inside guest memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hcall.h"

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gabi_hcall page;
	struct hcall_req r;
	uint64_t mem;

	if (size < sizeof(mem))
		return 0;
	memcpy(&mem, data, sizeof(mem));
	data += sizeof(mem);
	size -= sizeof(mem);
	memset(&page, 0, sizeof(page));
	memcpy(&page, data, size < sizeof(page) ? size : sizeof(page));

	hcall_name_valid((const char *)data, size < 64 ? size : 64);
	if (hcall_decode(&page, mem, &r))
		return 0;
	switch (r.nr) {
	case GABI_HC_CONSOLE_WRITE:
		check(r.args[1] <= GABI_CONSOLE_MAX);
		check(r.args[0] <= mem && r.args[1] <= mem - r.args[0]);
		break;
	case GABI_HC_EXIT:
		check(r.args[0] <= 255);
		break;
	case GABI_HC_SLEEP:
		check(r.args[0] <= HCALL_SLEEP_MAX_NS);
		break;
	case GABI_HC_PUBLISH:
		check(r.args[2] % 8 == 0 && r.args[2] <= mem && 8 <= mem - r.args[2]);
		__attribute__((fallthrough)); /* a name too */
	case GABI_HC_REPORT:
		check(r.args[1] >= 1 && r.args[1] <= GABI_NAME_MAX);
		check(r.args[0] <= mem && r.args[1] <= mem - r.args[0]);
		break;
	case GABI_HC_BLK_INFO:
		check(r.args[0] < GABI_BLK_MAX_DISKS && r.args[1] % 8 == 0);
		check(r.args[1] <= mem && sizeof(struct gabi_blk_info) <= mem - r.args[1]);
		break;
	case GABI_HC_BLK_SUBMIT: {
		struct gabi_blk_req q;

		check(r.args[0] < GABI_BLK_MAX_DISKS && r.args[1] % 64 == 0);
		check(r.args[1] <= mem && sizeof(q) <= mem - r.args[1]);
		/* The request itself: fuzz its checker with the scratch bytes. */
		memcpy(&q, page.scratch, sizeof(q));
		if (!hcall_blk_req_check(&q, r.args[2], mem) && q.op != GABI_BLK_FLUSH) {
			check(q.len && q.len <= GABI_BLK_MAX_IO && q.offset + q.len <= r.args[2]);
			check(q.offset + q.len >= q.offset);
			check(q.buf_gpa <= mem && q.len <= mem - q.buf_gpa);
		}
		break;
	}
	case GABI_HC_BLK_RING:
		check(r.args[0] < GABI_BLK_MAX_DISKS && r.args[1] % 64 == 0);
		check(r.args[1] <= mem && sizeof(struct gabi_blk_ring) <= mem - r.args[1]);
		break;
	case GABI_HC_BLK_KICK:
		check(r.args[0] < GABI_BLK_MAX_DISKS);
		break;
	case GABI_HC_NET_INFO:
		check(r.args[0] < GABI_NET_MAX_NICS && r.args[1] % 4 == 0);
		check(r.args[1] <= mem && sizeof(struct gabi_net_info) <= mem - r.args[1]);
		break;
	case GABI_HC_NET_SEND:
		check(r.args[0] < GABI_NET_MAX_NICS);
		check(r.args[2] >= GABI_NET_MIN_FRAME && r.args[2] <= GABI_NET_MAX_FRAME);
		check(r.args[1] <= mem && r.args[2] <= mem - r.args[1]);
		break;
	case GABI_HC_NET_RECV:
		/* Whatever frame comes fits: the handler writes up to the largest. */
		check(r.args[0] < GABI_NET_MAX_NICS && r.args[2] >= GABI_NET_MAX_FRAME);
		check(r.args[1] <= mem && GABI_NET_MAX_FRAME <= mem - r.args[1]);
		break;
	default:
		abort(); /* decoded a number it should have refused */
	}
	return 0;
}
