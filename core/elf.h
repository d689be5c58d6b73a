/*
 * The microguest loader: a static x86-64 ELF executable (ET_EXEC, EM_X86_64,
 * ELFCLASS64, little-endian) whose PT_LOAD segments are placed at their
 * physical == virtual addresses in guest RAM.
 *
 * Parsing is separate from copying so that a hostile file is rejected
 * before a single byte lands in guest memory.
 */
#ifndef FERRY_ELF_H
#define FERRY_ELF_H

#include <stddef.h>
#include <stdint.h>

#define ELF_MAX_SEGS 16
#define ELF_WHY_LEN  160

/* Segment permission bits, as in p_flags. */
#define ELF_SEG_X 1u
#define ELF_SEG_W 2u
#define ELF_SEG_R 4u

struct elf_seg {
	uint64_t gpa;     /* p_vaddr: where it goes in the guest             */
	uint64_t offset;  /* p_offset in the file                            */
	uint64_t filesz;  /* bytes copied from the file                      */
	uint64_t memsz;   /* bytes occupied; memsz - filesz are zeroed       */
	uint32_t flags;   /* ELF_SEG_*                                       */
};

struct elf_image {
	uint64_t entry;
	uint64_t lo, hi;  /* lowest and one-past-highest byte of all segments */
	unsigned nr_segs;
	struct elf_seg segs[ELF_MAX_SEGS];
};

/*
 * Validate buf[0..len) as a loadable image for a guest whose loadable window
 * is [min_gpa, mem_size). Checks, at least: header magic, class, data,
 * machine, type, header and program-header sizes and bounds; every PT_LOAD
 * has filesz <= memsz, its file range inside the file, its memory range
 * inside the window with no arithmetic overflow; segments do not overlap;
 * there is at least one PT_LOAD and at most ELF_MAX_SEGS; the entry point
 * lies inside an executable segment.
 *
 * Returns 0 and fills *img, or -ENOEXEC (not a valid image for us) or
 * -ERANGE (valid ELF that does not fit the guest) with a one-line reason in
 * why[ELF_WHY_LEN], e.g. "segment 1 [0x400000, 0x1400000) ends beyond guest
 * memory (0x1000000)". "segment N" is program header N, as readelf -l
 * numbers them. Malformations win over misfits: -ERANGE means the file is
 * otherwise sound. PT_LOADs with p_memsz 0 are ignored; a PT_INTERP is
 * refused. why may be NULL; *img is zeroed on failure.
 */
int elf_parse(const void *buf, size_t len, uint64_t min_gpa, uint64_t mem_size,
	      struct elf_image *img, char *why);

/*
 * Copy the segments of a parsed image into guest RAM mapped at ram (guest
 * physical 0 == ram[0]) and zero their bss parts. img must come from
 * elf_parse on the same buf with a window inside the mapping.
 */
void elf_copy(const void *buf, const struct elf_image *img, uint8_t *ram);

#endif
