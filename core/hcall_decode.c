#include "core/hcall.h"

#include <errno.h>
#include <string.h>

#include "core/util.h"

static bool range_ok(uint64_t gpa, uint64_t len, uint64_t mem_size)
{
	return gpa <= mem_size && len <= mem_size - gpa;
}

static int check_console(const struct hcall_req *r, uint64_t mem)
{
	if (r->args[1] > GABI_CONSOLE_MAX)
		return -E2BIG;
	return range_ok(r->args[0], r->args[1], mem) ? 0 : -EFAULT;
}

static int check_exit(const struct hcall_req *r, uint64_t mem)
{
	return r->args[0] <= 255 ? 0 : -EINVAL;
}

static int check_sleep(const struct hcall_req *r, uint64_t mem)
{
	return r->args[0] <= HCALL_SLEEP_MAX_NS ? 0 : -EINVAL;
}

static int check_name(const struct hcall_req *r, uint64_t mem)
{
	if (!r->args[1] || r->args[1] > GABI_NAME_MAX)
		return -EINVAL;
	return range_ok(r->args[0], r->args[1], mem) ? 0 : -EFAULT;
}

static int check_publish(const struct hcall_req *r, uint64_t mem)
{
	int ret = check_name(r, mem);

	if (ret)
		return ret;
	if (r->args[2] % 8)
		return -EINVAL;
	return range_ok(r->args[2], 8, mem) ? 0 : -EFAULT;
}

static int check_blk(const struct hcall_req *r, uint64_t mem, uint64_t align,
		     uint64_t size)
{
	if (r->args[0] >= GABI_BLK_MAX_DISKS)
		return -ENODEV;
	if (r->args[1] % align)
		return -EINVAL;
	return range_ok(r->args[1], size, mem) ? 0 : -EFAULT;
}

static int check_blk_info(const struct hcall_req *r, uint64_t mem)
{
	return check_blk(r, mem, 8, sizeof(struct gabi_blk_info));
}

static int check_blk_submit(const struct hcall_req *r, uint64_t mem)
{
	return check_blk(r, mem, 64, sizeof(struct gabi_blk_req));
}

static int check_blk_ring(const struct hcall_req *r, uint64_t mem)
{
	return check_blk(r, mem, 64, sizeof(struct gabi_blk_ring));
}

static int check_blk_kick(const struct hcall_req *r, uint64_t mem)
{
	return r->args[0] < GABI_BLK_MAX_DISKS ? 0 : -ENODEV;
}

static int check_net_info(const struct hcall_req *r, uint64_t mem)
{
	if (r->args[0] >= GABI_NET_MAX_NICS)
		return -ENODEV;
	if (r->args[1] % 4)
		return -EINVAL;
	return range_ok(r->args[1], sizeof(struct gabi_net_info), mem) ? 0 : -EFAULT;
}

static int check_net_send(const struct hcall_req *r, uint64_t mem)
{
	if (r->args[0] >= GABI_NET_MAX_NICS)
		return -ENODEV;
	if (r->args[2] < GABI_NET_MIN_FRAME || r->args[2] > GABI_NET_MAX_FRAME)
		return -EINVAL;
	return range_ok(r->args[1], r->args[2], mem) ? 0 : -EFAULT;
}

static int check_net_recv(const struct hcall_req *r, uint64_t mem)
{
	if (r->args[0] >= GABI_NET_MAX_NICS)
		return -ENODEV;
	/* Any frame may be the largest: a smaller buffer is a guest bug. */
	if (r->args[2] < GABI_NET_MAX_FRAME)
		return -EINVAL;
	return range_ok(r->args[1], GABI_NET_MAX_FRAME, mem) ? 0 : -EFAULT;
}

static const struct {
	const char *name;
	int (*check)(const struct hcall_req *r, uint64_t mem_size);
} hcall_table[GABI_HC_NR_MAX] = {
	[GABI_HC_CONSOLE_WRITE] = { "console_write", check_console },
	[GABI_HC_EXIT]          = { "exit",          check_exit },
	[GABI_HC_SLEEP]         = { "sleep",         check_sleep },
	[GABI_HC_REPORT]        = { "report",        check_name },
	[GABI_HC_PUBLISH]       = { "publish",       check_publish },
	[GABI_HC_BLK_INFO]      = { "blk_info",      check_blk_info },
	[GABI_HC_BLK_SUBMIT]    = { "blk_submit",    check_blk_submit },
	[GABI_HC_BLK_RING]      = { "blk_ring",      check_blk_ring },
	[GABI_HC_BLK_KICK]      = { "blk_kick",      check_blk_kick },
	[GABI_HC_NET_INFO]      = { "net_info",      check_net_info },
	[GABI_HC_NET_SEND]      = { "net_send",      check_net_send },
	[GABI_HC_NET_RECV]      = { "net_recv",      check_net_recv },
};

const char *hcall_name(uint64_t nr)
{
	if (nr < GABI_HC_NR_MAX && hcall_table[nr].name)
		return hcall_table[nr].name;
	return "unknown";
}

int hcall_decode(const struct gabi_hcall *page, uint64_t mem_size,
		 struct hcall_req *out)
{
	struct hcall_req r;

	/* One copy: the guest's other vCPUs may change the page under us. */
	memcpy(&r.nr, &page->nr, sizeof(r.nr));
	memcpy(r.args, page->args, sizeof(r.args));
	if (r.nr >= GABI_HC_NR_MAX || !hcall_table[r.nr].check)
		return -ENOSYS;
	*out = r;
	return hcall_table[r.nr].check(&r, mem_size);
}

bool hcall_name_valid(const char *name, size_t len)
{
	if (!len || len > GABI_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int hcall_blk_req_check(const struct gabi_blk_req *q, uint64_t disk_size,
			uint64_t mem_size)
{
	if (q->flags)
		return -EINVAL;
	switch (q->op) {
	case GABI_BLK_FLUSH:
		return q->len || q->offset ? -EINVAL : 0;
	case GABI_BLK_READ:
	case GABI_BLK_WRITE:
		break;
	default:
		return -EINVAL;
	}
	if (!q->len || q->len > GABI_BLK_MAX_IO || q->len % GABI_BLK_SECTOR ||
	    q->offset % GABI_BLK_SECTOR)
		return -EINVAL;
	if (q->offset > disk_size || q->len > disk_size - q->offset)
		return -ERANGE;
	return range_ok(q->buf_gpa, q->len, mem_size) ? 0 : -EFAULT;
}
