/*
 * The microguest ELF loader. Every field of the file is hostile until
 * checked: all reads go through memcpy from ranges already proven to lie
 * inside buf[0..len), and all address arithmetic is overflow-checked.
 *
 * Checks run in two stages so that the errno means something: first
 * everything that makes the file malformed (-ENOEXEC), then whether the
 * well-formed image fits the guest's window (-ERANGE). A file with both
 * problems therefore reports the malformation.
 *
 * "segment N" in a reason is the program header index N, as readelf -l
 * counts them, so a reason can be matched against the file directly.
 */
#include "core/elf.h"

#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* elf_seg.flags is p_flags masked, so the bits must be the same. */
_Static_assert(ELF_SEG_X == PF_X && ELF_SEG_W == PF_W && ELF_SEG_R == PF_R,
	       "ELF_SEG_* must match PF_*");

/* One accepted PT_LOAD plus where it came from, for the reasons. */
struct elf_load {
	struct elf_seg seg;
	unsigned phdr_idx;
};

struct elf_loads {
	unsigned nr;
	struct elf_load l[ELF_MAX_SEGS];
};

static int __attribute__((format(printf, 3, 4)))
elf_fail(char *why, int err, const char *fmt, ...)
{
	va_list ap;

	if (why) {
		va_start(ap, fmt);
		vsnprintf(why, ELF_WHY_LEN, fmt, ap);
		va_end(ap);
	}
	return err;
}

static uint64_t elf_seg_end(const struct elf_seg *s)
{
	/* Cannot wrap: elf_check_phdr rejected p_vaddr + p_memsz overflow. */
	return s->gpa + s->memsz;
}

static int elf_check_ident(const Elf64_Ehdr *eh, char *why)
{
	const unsigned char *id = eh->e_ident;

	if (memcmp(id, ELFMAG, SELFMAG))
		return elf_fail(why, -ENOEXEC,
				"not an ELF file (magic %02x %02x %02x %02x)",
				id[0], id[1], id[2], id[3]);
	if (id[EI_CLASS] != ELFCLASS64)
		return elf_fail(why, -ENOEXEC,
				"ELF class %u is not ELFCLASS64", id[EI_CLASS]);
	if (id[EI_DATA] != ELFDATA2LSB)
		return elf_fail(why, -ENOEXEC,
				"ELF data encoding %u is not little-endian",
				id[EI_DATA]);
	if (id[EI_VERSION] != EV_CURRENT)
		return elf_fail(why, -ENOEXEC,
				"ELF ident version %u is not EV_CURRENT",
				id[EI_VERSION]);
	return 0;
}

static int elf_check_ehdr(const Elf64_Ehdr *eh, size_t len, char *why)
{
	uint64_t tbl_size, tbl_end;
	int ret;

	ret = elf_check_ident(eh, why);
	if (ret)
		return ret;
	if (eh->e_version != EV_CURRENT)
		return elf_fail(why, -ENOEXEC,
				"e_version %u is not EV_CURRENT", eh->e_version);
	/* ET_DYN would need relocation, which a microguest never does. */
	if (eh->e_type != ET_EXEC)
		return elf_fail(why, -ENOEXEC,
				"ELF type %u is not ET_EXEC (static executable)",
				eh->e_type);
	if (eh->e_machine != EM_X86_64)
		return elf_fail(why, -ENOEXEC,
				"ELF machine %u is not EM_X86_64", eh->e_machine);
	/* Larger entries are legal ELF, but no x86-64 linker writes them. */
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return elf_fail(why, -ENOEXEC,
				"e_phentsize %u is not %zu", eh->e_phentsize,
				sizeof(Elf64_Phdr));
	if (eh->e_phnum == 0)
		return elf_fail(why, -ENOEXEC, "no program headers");
	/* The real count would live in section 0; no static guest needs it. */
	if (eh->e_phnum == PN_XNUM)
		return elf_fail(why, -ENOEXEC,
				"extended program header numbering (e_phnum 0x%x) not supported",
				PN_XNUM);

	tbl_size = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (__builtin_add_overflow(eh->e_phoff, tbl_size, &tbl_end))
		return elf_fail(why, -ENOEXEC,
				"program header table at 0x%llx + 0x%llx overflows",
				(unsigned long long)eh->e_phoff,
				(unsigned long long)tbl_size);
	if (tbl_end > len)
		return elf_fail(why, -ENOEXEC,
				"program header table [0x%llx, 0x%llx) beyond end of file (0x%zx)",
				(unsigned long long)eh->e_phoff,
				(unsigned long long)tbl_end, len);
	return 0;
}

/* The malformation checks of one PT_LOAD with p_memsz != 0. */
static int elf_check_phdr(const Elf64_Phdr *ph, unsigned i, size_t len,
			  char *why)
{
	uint64_t end;

	if (ph->p_filesz > ph->p_memsz)
		return elf_fail(why, -ENOEXEC,
				"segment %u: p_filesz 0x%llx > p_memsz 0x%llx", i,
				(unsigned long long)ph->p_filesz,
				(unsigned long long)ph->p_memsz);
	/* A pure-bss segment reads nothing, so its p_offset does not matter. */
	if (ph->p_filesz) {
		if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &end))
			return elf_fail(why, -ENOEXEC,
					"segment %u: file range 0x%llx + 0x%llx overflows",
					i, (unsigned long long)ph->p_offset,
					(unsigned long long)ph->p_filesz);
		if (end > len)
			return elf_fail(why, -ENOEXEC,
					"segment %u: file range [0x%llx, 0x%llx) beyond end of file (0x%zx)",
					i, (unsigned long long)ph->p_offset,
					(unsigned long long)end, len);
	}
	if (__builtin_add_overflow(ph->p_vaddr, ph->p_memsz, &end))
		return elf_fail(why, -ENOEXEC,
				"segment %u: memory range 0x%llx + 0x%llx overflows",
				i, (unsigned long long)ph->p_vaddr,
				(unsigned long long)ph->p_memsz);
	return 0;
}

static int elf_add_load(struct elf_loads *lo, const Elf64_Phdr *ph,
			unsigned i, char *why)
{
	struct elf_load *l;

	if (lo->nr == ELF_MAX_SEGS)
		return elf_fail(why, -ENOEXEC,
				"segment %u at 0x%llx: more than %u PT_LOAD segments",
				i, (unsigned long long)ph->p_vaddr, ELF_MAX_SEGS);
	l = &lo->l[lo->nr++];
	/*
	 * p_vaddr, not p_paddr: the guest runs identity-mapped, so the
	 * address the code was linked for is where it must sit.
	 */
	l->seg.gpa = ph->p_vaddr;
	l->seg.offset = ph->p_offset;
	l->seg.filesz = ph->p_filesz;
	l->seg.memsz = ph->p_memsz;
	l->seg.flags = ph->p_flags & (ELF_SEG_R | ELF_SEG_W | ELF_SEG_X);
	l->phdr_idx = i;
	return 0;
}

static int elf_collect(const uint8_t *p, size_t len, const Elf64_Ehdr *eh,
		       struct elf_loads *lo, char *why)
{
	Elf64_Phdr ph;
	unsigned i;
	int ret;

	for (i = 0; i < eh->e_phnum; i++) {
		/* memcpy: e_phoff need not be aligned for Elf64_Phdr. */
		memcpy(&ph, p + eh->e_phoff + (uint64_t)i * sizeof(ph),
		       sizeof(ph));
		if (ph.p_type == PT_INTERP)
			return elf_fail(why, -ENOEXEC,
					"segment %u: PT_INTERP: not a static executable",
					i);
		/* An empty PT_LOAD occupies nothing and copies nothing. */
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		ret = elf_check_phdr(&ph, i, len, why);
		if (ret)
			return ret;
		ret = elf_add_load(lo, &ph, i, why);
		if (ret)
			return ret;
	}
	if (lo->nr == 0)
		return elf_fail(why, -ENOEXEC, "no PT_LOAD segment");
	return 0;
}

/* n <= ELF_MAX_SEGS, so pairwise is cheap and keeps file order intact. */
static int elf_check_overlap(const struct elf_loads *lo, char *why)
{
	const struct elf_seg *a, *b;
	unsigned i, j;

	for (i = 1; i < lo->nr; i++) {
		a = &lo->l[i].seg;
		for (j = 0; j < i; j++) {
			b = &lo->l[j].seg;
			if (a->gpa < elf_seg_end(b) && b->gpa < elf_seg_end(a))
				return elf_fail(why, -ENOEXEC,
						"segment %u [0x%llx, 0x%llx) overlaps segment %u [0x%llx, 0x%llx)",
						lo->l[i].phdr_idx,
						(unsigned long long)a->gpa,
						(unsigned long long)elf_seg_end(a),
						lo->l[j].phdr_idx,
						(unsigned long long)b->gpa,
						(unsigned long long)elf_seg_end(b));
		}
	}
	return 0;
}

static int elf_check_entry(const struct elf_loads *lo, uint64_t entry,
			   char *why)
{
	const struct elf_seg *s;
	unsigned i;

	for (i = 0; i < lo->nr; i++) {
		s = &lo->l[i].seg;
		if (entry < s->gpa || entry >= elf_seg_end(s))
			continue;
		if (s->flags & ELF_SEG_X)
			return 0;
		return elf_fail(why, -ENOEXEC,
				"entry point 0x%llx lies in segment %u [0x%llx, 0x%llx), which is not executable",
				(unsigned long long)entry, lo->l[i].phdr_idx,
				(unsigned long long)s->gpa,
				(unsigned long long)elf_seg_end(s));
	}
	return elf_fail(why, -ENOEXEC,
			"entry point 0x%llx is not inside any PT_LOAD segment",
			(unsigned long long)entry);
}

static int elf_check_window(const struct elf_loads *lo, uint64_t min_gpa,
			    uint64_t mem_size, char *why)
{
	const struct elf_seg *s;
	unsigned i;

	for (i = 0; i < lo->nr; i++) {
		s = &lo->l[i].seg;
		if (s->gpa < min_gpa)
			return elf_fail(why, -ERANGE,
					"segment %u [0x%llx, 0x%llx) starts below the image window (0x%llx)",
					lo->l[i].phdr_idx,
					(unsigned long long)s->gpa,
					(unsigned long long)elf_seg_end(s),
					(unsigned long long)min_gpa);
		if (elf_seg_end(s) > mem_size)
			return elf_fail(why, -ERANGE,
					"segment %u [0x%llx, 0x%llx) ends beyond guest memory (0x%llx)",
					lo->l[i].phdr_idx,
					(unsigned long long)s->gpa,
					(unsigned long long)elf_seg_end(s),
					(unsigned long long)mem_size);
	}
	return 0;
}

static void elf_fill(const struct elf_loads *lo, uint64_t entry,
		     struct elf_image *img)
{
	const struct elf_seg *s;
	unsigned i;

	memset(img, 0, sizeof(*img));
	img->entry = entry;
	img->lo = UINT64_MAX;
	img->nr_segs = lo->nr;
	for (i = 0; i < lo->nr; i++) {
		s = &lo->l[i].seg;
		img->segs[i] = *s;
		if (s->gpa < img->lo)
			img->lo = s->gpa;
		if (elf_seg_end(s) > img->hi)
			img->hi = elf_seg_end(s);
	}
}

int elf_parse(const void *buf, size_t len, uint64_t min_gpa, uint64_t mem_size,
	      struct elf_image *img, char *why)
{
	struct elf_loads lo = { 0 };
	Elf64_Ehdr eh;
	int ret;

	if (why)
		why[0] = '\0';
	memset(img, 0, sizeof(*img));

	if (len < sizeof(eh))
		return elf_fail(why, -ENOEXEC,
				"file is 0x%zx bytes, shorter than an ELF64 header (0x%zx)",
				len, sizeof(eh));
	/* memcpy: buf carries no alignment promise. */
	memcpy(&eh, buf, sizeof(eh));

	ret = elf_check_ehdr(&eh, len, why);
	if (ret)
		return ret;
	ret = elf_collect(buf, len, &eh, &lo, why);
	if (ret)
		return ret;
	ret = elf_check_overlap(&lo, why);
	if (ret)
		return ret;
	ret = elf_check_entry(&lo, eh.e_entry, why);
	if (ret)
		return ret;
	ret = elf_check_window(&lo, min_gpa, mem_size, why);
	if (ret)
		return ret;

	elf_fill(&lo, eh.e_entry, img);
	return 0;
}

void elf_copy(const void *buf, const struct elf_image *img, uint8_t *ram)
{
	const struct elf_seg *s;
	unsigned i;

	for (i = 0; i < img->nr_segs; i++) {
		s = &img->segs[i];
		/* Skipped when empty: a bss-only p_offset may point anywhere. */
		if (s->filesz)
			memcpy(ram + s->gpa, (const uint8_t *)buf + s->offset,
			       s->filesz);
		memset(ram + s->gpa + s->filesz, 0, s->memsz - s->filesz);
	}
}
