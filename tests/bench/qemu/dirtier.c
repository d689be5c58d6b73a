/*
 * The QEMU peer's guest: migrate_bench's dirtier, for a PC that QEMU boots
 * with -kernel (multiboot 1, 32-bit protected mode, paging off). It lets
 * migrate_bench migrate the same workload with QEMU in the same run.
 *
 * Args (the multiboot command line): fillsz=N (bytes from 16 MiB filled
 * with addr ^ FILL_XOR, as the microguest fills them), ws=N (then write one
 * 32-bit word per 4 KiB page of the first N bytes of that, cyclically, flat
 * out; 0: idle, halting between 1 kHz timer ticks). k/M/G suffixes.
 *
 * On COM1: "tsc_khz=N" (calibrated against the PIT), "filled" once the fill
 * is done, and "stall_us=N" each time a gap between two looks at the TSC is
 * the longest yet (and over 1.5 ms): the largest on the destination's COM1
 * is the vmon dirtier's max_stall_ns, the longest gap since the start.
 * An idle guest looks at every tick; a dirtying one after every page.
 */
#include <stdint.h>

#define HEAP_START   (16u << 20)
#define FILL_XOR     0xa5a5a5a5u
#define STALL_US     1500u
#define PIT_HZ       1193182u
#define MB_MAGIC     0x1badb002u
#define MB_FLAGS     0x00000003u   /* modules page-aligned, memory info */

struct mb_header {
	uint32_t magic, flags, checksum;
};

__attribute__((section(".multiboot"), used, aligned(4)))
static const struct mb_header mb_header = {
	MB_MAGIC, MB_FLAGS, (uint32_t)-(MB_MAGIC + MB_FLAGS),
};

static uint8_t stack[16384] __attribute__((aligned(16), used));

void guest_main(uint32_t magic, const uint32_t *info);

/* Multiboot enters with flat 4 GiB segments, interrupts off, no stack. */
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
	"	mov $stack + 16384, %esp\n"
	"	push %ebx\n"
	"	push %eax\n"
	"	call guest_main\n"
	"1:	cli\n"
	"	hlt\n"
	"	jmp 1b\n");

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static void putc_com1(char c)
{
	while (!(inb(0x3f8 + 5) & 0x20))
		;
	outb(0x3f8, (uint8_t)c);
}

static void puts_com1(const char *s)
{
	while (*s)
		putc_com1(*s++);
}

/* Numbers are 32-bit: clang turns 64-bit division into __udivdi3 calls. */
static void put_u32(uint32_t v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_com1(buf + i);
}

static void say(const char *key, uint32_t v)
{
	puts_com1(key);
	putc_com1('=');
	put_u32(v);
	putc_com1('\n');
}

/* n / d by the CPU's 64-by-32 divide; UINT32_MAX where it would not fit. */
static uint32_t div_u64(uint64_t n, uint32_t d)
{
	uint32_t q, r, hi = (uint32_t)(n >> 32), lo = (uint32_t)n;

	if (hi >= d)
		return UINT32_MAX;
	__asm__("divl %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(d));
	(void)r;
	return q;
}

/* TSC ticks in 10 ms of PIT channel 2 (the classic gate-and-count way). */
static uint32_t tsc_khz_calibrate(void)
{
	const uint16_t count = PIT_HZ / 100;
	uint64_t t0, t1;

	outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
	outb(0x43, 0xb0);                 /* channel 2, lo/hi, mode 0 */
	outb(0x42, count & 0xff);
	outb(0x42, count >> 8);
	t0 = rdtsc();
	while (!(inb(0x61) & 0x20))
		;
	t1 = rdtsc();
	return div_u64(t1 - t0, 10);
}

/* A tick source for the idle loop: PIT channel 0 at 1 kHz on IRQ 0. */
struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t zero, type;
	uint16_t off_hi;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(8)));

void tick_isr(void);
__asm__(".text\n"
	".globl tick_isr\n"
	"tick_isr:\n"
	"	push %eax\n"
	"	mov $0x20, %al\n"
	"	outb %al, $0x20\n"     /* EOI to the master PIC */
	"	pop %eax\n"
	"	iret\n");

static void ticks_start(void)
{
	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint32_t)idt };
	uint16_t cs;
	const uint16_t div = PIT_HZ / 1000;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[32] = (struct idt_gate){ (uint16_t)(uint32_t)tick_isr, cs, 0, 0x8e,
				     (uint16_t)((uint32_t)tick_isr >> 16) };
	__asm__ volatile("lidt %0" : : "m"(idtr));
	/* PIC: IRQs 0-7 at vectors 32-39, 8-15 at 40-47; only IRQ 0 open. */
	outb(0x20, 0x11); outb(0xa0, 0x11);
	outb(0x21, 32);   outb(0xa1, 40);
	outb(0x21, 4);    outb(0xa1, 2);
	outb(0x21, 1);    outb(0xa1, 1);
	outb(0x21, 0xfe); outb(0xa1, 0xff);
	outb(0x43, 0x34);                 /* channel 0, lo/hi, rate generator */
	outb(0x40, div & 0xff);
	outb(0x40, div >> 8);
	__asm__ volatile("sti");
}

static uint64_t max_gap;

static void look(uint64_t *last, uint32_t khz)
{
	uint64_t now = rdtsc();

	if (now - *last > max_gap) {
		max_gap = now - *last;
		say("stall_us", div_u64(max_gap * 1000, khz));
	}
	*last = now;
}

static int arg(const char *cmdline, const char *key, uint32_t *out)
{
	for (const char *p = cmdline; p && *p; p++) {
		const char *k = key, *q = p;

		if (p != cmdline && p[-1] != ' ')
			continue;
		while (*k && *q == *k)
			k++, q++;
		if (*k || *q != '=')
			continue;
		uint32_t v = 0;

		for (q++; *q >= '0' && *q <= '9'; q++)
			v = v * 10 + (uint32_t)(*q - '0');
		if (*q == 'k' || *q == 'K')
			v <<= 10;
		else if (*q == 'M')
			v <<= 20;
		else if (*q == 'G')
			v <<= 30;
		*out = v;
		return 1;
	}
	return 0;
}

void guest_main(uint32_t magic, const uint32_t *info)
{
	const char *cmdline = "";
	uint32_t fillsz = 0, ws = 0, khz;
	uint64_t last;

	if (magic == 0x2badb002u && (info[0] & 4))
		cmdline = (const char *)info[4];
	arg(cmdline, "fillsz", &fillsz);
	arg(cmdline, "ws", &ws);
	if (ws > fillsz)
		ws = fillsz & ~0xfffu;
	khz = tsc_khz_calibrate();
	say("tsc_khz", khz);
	max_gap = div_u64((uint64_t)khz * STALL_US, 1000);

	for (uint32_t a = HEAP_START; a < HEAP_START + fillsz; a += 4)
		*(volatile uint32_t *)a = a ^ FILL_XOR;
	puts_com1("filled\n");

	if (!ws)
		ticks_start();
	last = rdtsc();
	for (uint32_t pass = 1;; pass++) {
		if (!ws) {
			__asm__ volatile("hlt");
		} else {
			for (uint32_t a = HEAP_START; a < HEAP_START + ws; a += 4096) {
				*(volatile uint32_t *)a = (pass << 20) | (a >> 12);
				look(&last, khz);
			}
			continue;
		}
		look(&last, khz);
	}
}
