/*
 * The microguest ABI: memory layout, boot information and paravirtual
 * hypercalls shared by the monitor (core/) and the guests (tools/guests/).
 * docs/guest-abi.md is the prose version of this file; change both together.
 *
 * This header is included by freestanding guest code: only <stdint.h>.
 */
#ifndef FERRY_GUEST_ABI_H
#define FERRY_GUEST_ABI_H

#include <stdint.h>

#define GABI_VERSION 1u
#define GABI_PAGE_SIZE 4096ull

/*
 * Guest-physical layout. Guest virtual == guest physical (identity map).
 * Everything below GABI_IMAGE_MIN belongs to the monitor's conventions; the
 * ELF image must lie in [GABI_IMAGE_MIN, mem_size).
 */
#define GABI_GDT_GPA        0x00001000ull /* GDT, read-only to the guest   */
#define GABI_BOOT_GPA       0x00002000ull /* struct gabi_boot, read-only   */
#define GABI_SHARED_GPA     0x00003000ull /* one page, guest read/write    */
#define GABI_EXC_TSS_GPA    0x00004000ull /* vCPUs' TSSs, monitor's only   */
#define GABI_EXC_STACK_GPA  0x00005000ull /* exception stacks, likewise    */
#define GABI_HCALL_GPA      0x00010000ull /* one page per vCPU, read/write */
#define GABI_PT_GPA         0x00100000ull /* page tables, read-only        */
#define GABI_PT_END         0x00200000ull
#define GABI_STACK_GPA      0x00200000ull /* vCPU stacks                   */
#define GABI_STACK_SIZE     0x00010000ull /* 64 KiB per vCPU               */
#define GABI_IMAGE_MIN      0x00400000ull /* lowest address of the ELF     */

#define GABI_MAX_VCPUS      32u
#define GABI_MIN_MEM        (8ull << 20)
#define GABI_MAX_MEM        (128ull << 30)

/* Boot information, at GABI_BOOT_GPA, filled once by the monitor. */
#define GABI_BOOT_MAGIC 0x544f4f4259525246ull /* "FRRYBOOT" */
#define GABI_ARGS_MAX   1024u

struct gabi_boot {
	uint64_t magic;
	uint32_t version;
	uint32_t nr_vcpus;
	uint64_t mem_size;     /* bytes of guest RAM                         */
	uint64_t tsc_khz;      /* guest TSC frequency                        */
	uint64_t heap_start;   /* first free page after the image            */
	uint64_t heap_end;     /* == mem_size                                */
	uint64_t shared_gpa;   /* GABI_SHARED_GPA                            */
	uint64_t hcall_gpa;    /* page of vCPU i is hcall_gpa + i * 4096     */
	uint32_t args_len;     /* bytes in args, without the NUL             */
	uint32_t reserved;
	char args[GABI_ARGS_MAX]; /* NUL-terminated argument string          */
};

/*
 * Entry: every vCPU starts at the ELF entry point at CPL 3 with IOPL 3,
 *   rdi = vCPU index, rsi = GABI_BOOT_GPA, rsp = top of that vCPU's stack,
 *   rflags = 0x3002 (IOPL 3, interrupts off), all other GPRs zero.
 *
 * Hypercall: fill the calling vCPU's struct gabi_hcall (nr, args), then
 *   "outb %al, $GABI_DOORBELL_PORT" (the value is ignored). When the out
 *   instruction retires, ret holds the result: >= 0 on success, a negative
 *   errno value on failure.
 */
#define GABI_DOORBELL_PORT 0xf5u
/*
 * Exception landings (core/x86_exc.h): vector v's stub, at CPL 0, does
 * "outb %al, $(GABI_EXC_PORT_BASE + v)". Guests must not use these ports.
 */
#define GABI_EXC_PORT_BASE 0xc0u

enum gabi_hcall_nr {
	GABI_HC_CONSOLE_WRITE = 1, /* a0 = gpa, a1 = len; ret = bytes written */
	GABI_HC_EXIT          = 2, /* a0 = exit code (0..255); never returns  */
	GABI_HC_SLEEP         = 3, /* a0 = nanoseconds, 0 = yield; ret = 0    */
	GABI_HC_REPORT        = 4, /* a0 = name gpa, a1 = name len, a2 = value */
	GABI_HC_PUBLISH       = 5, /* a0 = name gpa, a1 = name len,
	                            * a2 = gpa of a live uint64_t the monitor
	                            * reads whenever it reports statistics    */
	GABI_HC_BLK_INFO      = 6, /* a0 = disk, a1 = gpa of gabi_blk_info     */
	GABI_HC_BLK_SUBMIT    = 7, /* a0 = disk, a1 = gpa of gabi_blk_req;
	                            * 0 = queued, completes later (done = 1)  */
	GABI_HC_BLK_RING      = 8, /* a0 = disk, a1 = gpa of gabi_blk_ring:
	                            * requests from then on without an exit   */
	GABI_HC_BLK_KICK      = 9, /* a0 = disk: wake its ring's poller (only
	                            * needed when the ring says need_kick)    */
	GABI_HC_NET_INFO      = 10, /* a0 = nic, a1 = gpa of gabi_net_info     */
	GABI_HC_NET_SEND      = 11, /* a0 = nic, a1 = gpa, a2 = frame length;
	                             * ret = length (the frame left)         */
	GABI_HC_NET_RECV      = 12, /* a0 = nic, a1 = gpa, a2 = buffer length;
	                             * ret = frame length, 0 = none waiting  */
	GABI_HC_NR_MAX
};

#define GABI_HC_NARGS        6
#define GABI_NAME_MAX        32u   /* report/publish name length limit   */
#define GABI_CONSOLE_MAX     4096u /* one console write                  */
#define GABI_REPORTS_MAX     64u   /* distinct names per VM              */

struct gabi_hcall {
	uint64_t nr;
	uint64_t args[GABI_HC_NARGS];
	int64_t ret;
	uint8_t scratch[4096 - 8 * (GABI_HC_NARGS + 2)]; /* free for the guest */
};

/*
 * The shared page (GABI_SHARED_GPA): a host<->guest mailbox. The monitor
 * writes words 0..15 (tracked as monitor writes), the guest writes the rest.
 * Workloads give the words their own meaning (see tools/guests/).
 */
#define GABI_SHARED_HOST_WORDS 16u

/*
 * Block devices (docs/guest-abi.md, "Block devices"). blk_submit only
 * queues: the monitor fills result, then sets done = 1 when the storage
 * finished. The guest clears done before submitting and polls it.
 */
#define GABI_BLK_MAX_DISKS   8u
#define GABI_BLK_SECTOR      512u
#define GABI_BLK_MAX_IO      (1u << 20)
#define GABI_BLK_QUEUE_DEPTH 64u

enum gabi_blk_op {
	GABI_BLK_READ  = 1,
	GABI_BLK_WRITE = 2,
	GABI_BLK_FLUSH = 3,
};

struct gabi_blk_info {
	uint64_t size;
	uint32_t block_size;
	uint32_t max_io;
	uint32_t queue_depth;
	uint32_t nr_disks;
};

struct gabi_blk_req {
	uint32_t op;
	uint32_t flags;
	uint64_t offset;
	uint64_t len;
	uint64_t buf_gpa;
	uint64_t tag;
	int64_t result;
	uint32_t done;
	uint32_t reserved[3];
};

_Static_assert(sizeof(struct gabi_blk_req) == 64, "gabi_blk_req is 64 bytes");

/*
 * A disk's submission ring (docs/guest-abi.md, "The submission ring"): the
 * guest fills a slot, names it in sq[tail % GABI_BLK_RING_SIZE], then
 * raises tail; a monitor thread polls tail, so a request costs no exit.
 * After raising tail the guest fences (mfence) and reads need_kick: 1 means
 * the poller went to sleep and wants blk_kick. Completion is the slot's
 * done, as for blk_submit. Counters are free-running.
 */
#define GABI_BLK_RING_SIZE 64u

struct gabi_blk_ring {
	uint32_t tail;          /* guest: entries published */
	uint32_t head;          /* monitor: entries taken */
	uint32_t need_kick;     /* monitor: 1 = blk_kick after raising tail */
	uint32_t size;          /* monitor: GABI_BLK_RING_SIZE */
	uint32_t reserved[12];
	uint16_t sq[GABI_BLK_RING_SIZE];   /* guest: the slot of each entry */
	uint8_t pad[64];
	struct gabi_blk_req slot[GABI_BLK_RING_SIZE];
};

_Static_assert(sizeof(struct gabi_blk_ring) == 256 + 64 * 64, "gabi_blk_ring layout");

/*
 * Network interfaces (docs/guest-abi.md, "Network interfaces"): Ethernet
 * frames without the FCS, one per hypercall. net_recv never waits: 0 means
 * no frame is queued (the guest sleeps a little and asks again). A frame
 * longer than the buffer is dropped and reported as -EMSGSIZE. net_send
 * refuses (-EPERM) a frame whose source address is not the NIC's.
 */
#define GABI_NET_MAX_NICS   4u
#define GABI_NET_MIN_FRAME  14u     /* an Ethernet header                  */
#define GABI_NET_MAX_FRAME  1518u   /* 1500 bytes of payload + 802.1Q tag  */

struct gabi_net_info {
	uint8_t mac[6];
	uint16_t mtu;           /* 1500 */
	uint32_t max_frame;     /* GABI_NET_MAX_FRAME */
	uint32_t nr_nics;
	uint32_t reserved;
};

_Static_assert(sizeof(struct gabi_net_info) == 20, "gabi_net_info layout");

#endif
