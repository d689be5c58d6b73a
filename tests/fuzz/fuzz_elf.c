/*
 * Fuzz target for the microguest ELF loader: whatever elf_parse accepts
 * must be safe for elf_copy into a guest of the same size, and whatever it
 * rejects must say why. Broken promises abort, so libFuzzer reports them
 * like a crash.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/elf.h"

#define FUZZ_MIN_GPA  0x400000ull
#define FUZZ_MEM_SIZE (64ull << 20)

#define fuzz_assert(c) do { if (!(c)) __builtin_trap(); } while (0)

static void fuzz_check_image(const struct elf_image *img, size_t size)
{
	const struct elf_seg *s;
	bool entry_ok = false;
	unsigned i;

	fuzz_assert(img->nr_segs >= 1 && img->nr_segs <= ELF_MAX_SEGS);
	fuzz_assert(img->lo >= FUZZ_MIN_GPA && img->lo < img->hi);
	fuzz_assert(img->hi <= FUZZ_MEM_SIZE);
	for (i = 0; i < img->nr_segs; i++) {
		s = &img->segs[i];
		fuzz_assert(s->filesz <= s->memsz && s->memsz);
		fuzz_assert(s->gpa >= img->lo && s->gpa + s->memsz <= img->hi);
		fuzz_assert(!s->filesz || (s->offset <= size &&
					   s->filesz <= size - s->offset));
		if (img->entry >= s->gpa && img->entry < s->gpa + s->memsz &&
		    (s->flags & ELF_SEG_X))
			entry_ok = true;
	}
	fuzz_assert(entry_ok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* One guest for all runs: allocating 64 MiB per input is the bottleneck. */
	static uint8_t *ram;
	struct elf_image img;
	char why[ELF_WHY_LEN];
	int ret;

	if (!ram) {
		ram = malloc(FUZZ_MEM_SIZE);
		fuzz_assert(ram);
	}
	memset(why, 'x', sizeof(why));
	ret = elf_parse(data, size, FUZZ_MIN_GPA, FUZZ_MEM_SIZE, &img, why);
	if (ret) {
		fuzz_assert(ret == -ENOEXEC || ret == -ERANGE);
		fuzz_assert(memchr(why, '\0', sizeof(why)));
		fuzz_assert(why[0] != '\0' && !strchr(why, '\n'));
		return 0;
	}
	fuzz_check_image(&img, size);
	elf_copy(data, &img, ram);
	return 0;
}
