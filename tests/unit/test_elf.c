/*
 * The microguest ELF loader against valid and hostile images. Images are
 * built in memory: a default two-segment executable (text + data/bss) that
 * each test bends in one place before serialising it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/elf.h"

#define MIN_GPA   0x400000ull
#define MEM_SIZE  (16ull << 20)

#define TEXT_OFF  0x200u
#define TEXT_SZ   0x100u
#define TEXT_GPA  0x400000ull
#define DATA_OFF  0x300u
#define DATA_SZ   0x80u
#define DATA_GPA  0x401000ull
#define DATA_MEM  0x1000u
#define ENTRY     (TEXT_GPA + 0x10)

#define TB_MAX_PH 20
#define TB_FILE   0x1000u

/* The test builder: headers kept as structs until tb_build lays them out. */
struct tb {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[TB_MAX_PH];
	uint8_t file[TB_FILE];
	size_t len;
};

static struct tb *tb_new(void)
{
	struct tb *t = calloc(1, sizeof(*t));
	unsigned i;

	assert_non_null(t);
	memcpy(t->eh.e_ident, ELFMAG, SELFMAG);
	t->eh.e_ident[EI_CLASS] = ELFCLASS64;
	t->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	t->eh.e_ident[EI_VERSION] = EV_CURRENT;
	t->eh.e_type = ET_EXEC;
	t->eh.e_machine = EM_X86_64;
	t->eh.e_version = EV_CURRENT;
	t->eh.e_entry = ENTRY;
	t->eh.e_phoff = sizeof(Elf64_Ehdr);
	t->eh.e_ehsize = sizeof(Elf64_Ehdr);
	t->eh.e_phentsize = sizeof(Elf64_Phdr);
	t->eh.e_phnum = 2;

	t->ph[0] = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_X,
		.p_offset = TEXT_OFF, .p_vaddr = TEXT_GPA, .p_paddr = TEXT_GPA,
		.p_filesz = TEXT_SZ, .p_memsz = TEXT_SZ, .p_align = 0x1000,
	};
	t->ph[1] = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_W,
		.p_offset = DATA_OFF, .p_vaddr = DATA_GPA, .p_paddr = DATA_GPA,
		.p_filesz = DATA_SZ, .p_memsz = DATA_MEM, .p_align = 0x1000,
	};
	/* A recognisable payload, so a copy from the wrong offset shows. */
	for (i = 0; i < TB_FILE; i++)
		t->file[i] = (uint8_t)(i * 7 + 1);
	t->len = 0x400;
	return t;
}

/* Append a PT_LOAD and return its index. */
static unsigned tb_add_load(struct tb *t, uint64_t gpa, uint64_t filesz,
			    uint64_t memsz, uint32_t flags)
{
	unsigned i = t->eh.e_phnum++;

	assert_true(i < TB_MAX_PH);
	t->ph[i] = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = flags, .p_offset = TEXT_OFF,
		.p_vaddr = gpa, .p_paddr = gpa, .p_filesz = filesz,
		.p_memsz = memsz, .p_align = 0x1000,
	};
	return i;
}

/* Lay the headers into t->file; e_phoff is honoured even when odd. */
static void tb_build(struct tb *t)
{
	unsigned n = t->eh.e_phnum < TB_MAX_PH ? t->eh.e_phnum : TB_MAX_PH;

	memcpy(t->file, &t->eh, sizeof(t->eh));
	/* Written as a subtraction: hostile e_phoff values must not wrap. */
	if (t->eh.e_phoff <= TB_FILE &&
	    n * sizeof(Elf64_Phdr) <= TB_FILE - t->eh.e_phoff)
		memcpy(t->file + t->eh.e_phoff, t->ph, n * sizeof(Elf64_Phdr));
}

static int tb_parse(struct tb *t, struct elf_image *img, char *why)
{
	tb_build(t);
	return elf_parse(t->file, t->len, MIN_GPA, MEM_SIZE, img, why);
}

static void expect_reject(struct tb *t, int err, const char *needle)
{
	struct elf_image img;
	char why[ELF_WHY_LEN];
	int ret;

	memset(why, 'x', sizeof(why));
	ret = tb_parse(t, &img, why);
	if (ret != err)
		fail_msg("expected %d, got %d (why: \"%.*s\")", err, ret,
			 (int)sizeof(why), why);
	assert_non_null(memchr(why, '\0', sizeof(why)));
	assert_true(strlen(why) > 0);
	assert_null(strchr(why, '\n'));
	if (!strstr(why, needle))
		fail_msg("reason \"%s\" lacks \"%s\"", why, needle);
	free(t);
}

static void expect_accept(struct tb *t, struct elf_image *img)
{
	char why[ELF_WHY_LEN];
	int ret;

	ret = tb_parse(t, img, why);
	if (ret)
		fail_msg("rejected (%d): %s", ret, why);
}

/* --- valid images ------------------------------------------------------ */

static void test_valid_parse(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;

	expect_accept(t, &img);
	assert_int_equal(img.entry, ENTRY);
	assert_int_equal(img.nr_segs, 2);
	assert_int_equal(img.lo, TEXT_GPA);
	assert_int_equal(img.hi, DATA_GPA + DATA_MEM);
	assert_int_equal(img.segs[0].gpa, TEXT_GPA);
	assert_int_equal(img.segs[0].offset, TEXT_OFF);
	assert_int_equal(img.segs[0].filesz, TEXT_SZ);
	assert_int_equal(img.segs[0].memsz, TEXT_SZ);
	assert_int_equal(img.segs[0].flags, ELF_SEG_R | ELF_SEG_X);
	assert_int_equal(img.segs[1].gpa, DATA_GPA);
	assert_int_equal(img.segs[1].filesz, DATA_SZ);
	assert_int_equal(img.segs[1].memsz, DATA_MEM);
	assert_int_equal(img.segs[1].flags, ELF_SEG_R | ELF_SEG_W);
	free(t);
}

static void test_valid_copy(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;
	uint8_t *ram = malloc(MEM_SIZE);
	uint64_t i;

	assert_non_null(ram);
	memset(ram, 0xaa, MEM_SIZE);
	expect_accept(t, &img);
	elf_copy(t->file, &img, ram);

	assert_memory_equal(ram + TEXT_GPA, t->file + TEXT_OFF, TEXT_SZ);
	assert_memory_equal(ram + DATA_GPA, t->file + DATA_OFF, DATA_SZ);
	for (i = DATA_SZ; i < DATA_MEM; i++)
		assert_int_equal(ram[DATA_GPA + i], 0);
	/* Neighbours of every segment stay untouched. */
	assert_int_equal(ram[TEXT_GPA - 1], 0xaa);
	assert_int_equal(ram[TEXT_GPA + TEXT_SZ], 0xaa);
	assert_int_equal(ram[DATA_GPA - 1], 0xaa);
	assert_int_equal(ram[DATA_GPA + DATA_MEM], 0xaa);
	free(ram);
	free(t);
}

/* Only non-empty PT_LOADs count; other types are not ours to load. */
static void test_ignores_other_phdrs(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;
	unsigned i;

	i = t->eh.e_phnum++;
	t->ph[i] = (Elf64_Phdr){ .p_type = PT_GNU_STACK, .p_flags = PF_R | PF_W };
	i = t->eh.e_phnum++;
	t->ph[i] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = ~0ull,
				 .p_filesz = ~0ull, .p_memsz = 1 };
	/* Empty PT_LOAD with garbage elsewhere: occupies nothing. */
	tb_add_load(t, ~0ull, 0, 0, PF_R);
	expect_accept(t, &img);
	assert_int_equal(img.nr_segs, 2);
	free(t);
}

/* Headers at an odd offset must be read without unaligned casts. */
static void test_unaligned_phdrs(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;

	t->eh.e_phoff = sizeof(Elf64_Ehdr) + 3;
	expect_accept(t, &img);
	assert_int_equal(img.nr_segs, 2);
	free(t);
}

/* A segment ending exactly at mem_size and one starting at min_gpa fit. */
static void test_window_edges(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;

	tb_add_load(t, MEM_SIZE - 0x1000, 0, 0x1000, PF_R | PF_W);
	expect_accept(t, &img);
	assert_int_equal(img.lo, MIN_GPA);
	assert_int_equal(img.hi, MEM_SIZE);
	free(t);
}

/* Touching segments ([a, b) then [b, c)) do not overlap. */
static void test_adjacent_segments(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;

	tb_add_load(t, TEXT_GPA + TEXT_SZ, 0, DATA_GPA - TEXT_GPA - TEXT_SZ,
		    PF_R);
	expect_accept(t, &img);
	assert_int_equal(img.nr_segs, 3);
	free(t);
}

static void test_max_segments(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;
	unsigned i;

	for (i = 2; i < ELF_MAX_SEGS; i++)
		tb_add_load(t, 0x500000 + i * 0x1000ull, 0, 0x1000, PF_R);
	expect_accept(t, &img);
	assert_int_equal(img.nr_segs, ELF_MAX_SEGS);
	free(t);
}

/* A bss-only segment reads nothing, whatever its p_offset says. */
static void test_bss_only_offset(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;
	unsigned i;

	i = tb_add_load(t, 0x500000, 0, 0x2000, PF_R | PF_W);
	t->ph[i].p_offset = ~0ull;
	expect_accept(t, &img);
	assert_int_equal(img.nr_segs, 3);
	free(t);
}

static void test_null_why(void **state)
{
	struct tb *t = tb_new();
	struct elf_image img;

	t->eh.e_machine = EM_386;
	tb_build(t);
	assert_int_equal(elf_parse(t->file, t->len, MIN_GPA, MEM_SIZE, &img,
				   NULL), -ENOEXEC);
	free(t);
}

/* --- the ELF header ---------------------------------------------------- */

static void test_truncated(void **state)
{
	struct elf_image img;
	char why[ELF_WHY_LEN];
	struct tb *t = tb_new();
	size_t len;

	tb_build(t);
	for (len = 0; len < sizeof(Elf64_Ehdr); len++) {
		assert_int_equal(elf_parse(t->file, len, MIN_GPA, MEM_SIZE,
					   &img, why), -ENOEXEC);
		assert_non_null(strstr(why, "shorter than an ELF64 header"));
	}
	/* Header complete, program headers cut off. */
	assert_int_equal(elf_parse(t->file, sizeof(Elf64_Ehdr) + 10, MIN_GPA,
				   MEM_SIZE, &img, why), -ENOEXEC);
	assert_non_null(strstr(why, "program header table"));
	/* Headers complete, segment contents cut off. */
	assert_int_equal(elf_parse(t->file, DATA_OFF + 1, MIN_GPA, MEM_SIZE,
				   &img, why), -ENOEXEC);
	assert_non_null(strstr(why, "segment 1: file range [0x300, 0x380)"));
	free(t);
}

static void test_bad_magic(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_ident[EI_MAG3] = 'G';
	expect_reject(t, -ENOEXEC, "not an ELF file");
}

static void test_bad_class(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_ident[EI_CLASS] = ELFCLASS32;
	expect_reject(t, -ENOEXEC, "ELFCLASS64");
}

static void test_bad_data(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_ident[EI_DATA] = ELFDATA2MSB;
	expect_reject(t, -ENOEXEC, "little-endian");
}

static void test_bad_ident_version(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_ident[EI_VERSION] = EV_NONE;
	expect_reject(t, -ENOEXEC, "ident version 0");
}

static void test_bad_version(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_version = 2;
	expect_reject(t, -ENOEXEC, "e_version 2");
}

static void test_bad_type(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_type = ET_DYN;
	expect_reject(t, -ENOEXEC, "not ET_EXEC");
}

static void test_bad_machine(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_machine = EM_AARCH64;
	expect_reject(t, -ENOEXEC, "not EM_X86_64");
}

static void test_bad_phentsize(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_phentsize = sizeof(Elf32_Phdr);
	expect_reject(t, -ENOEXEC, "e_phentsize 32");
}

static void test_no_phdrs(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_phnum = 0;
	expect_reject(t, -ENOEXEC, "no program headers");
}

static void test_pn_xnum(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_phnum = PN_XNUM;
	expect_reject(t, -ENOEXEC, "extended program header numbering");
}

static void test_phoff_beyond_file(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_phoff = 0x10000;
	expect_reject(t, -ENOEXEC,
		      "program header table [0x10000, 0x10070) beyond end of file (0x400)");
}

static void test_phoff_overflow(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_phoff = UINT64_MAX - 0x10;
	expect_reject(t, -ENOEXEC, "overflows");
}

static void test_phnum_beyond_file(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_phnum = 1000;
	expect_reject(t, -ENOEXEC, "beyond end of file");
}

static void test_interp(void **state)
{
	struct tb *t = tb_new();
	unsigned i = t->eh.e_phnum++;

	t->ph[i] = (Elf64_Phdr){ .p_type = PT_INTERP, .p_offset = 0x40,
				 .p_filesz = 0x1c, .p_memsz = 0x1c };
	expect_reject(t, -ENOEXEC, "segment 2: PT_INTERP");
}

/* --- program headers: malformed (-ENOEXEC) ----------------------------- */

static void test_filesz_gt_memsz(void **state)
{
	struct tb *t = tb_new();

	t->ph[1].p_memsz = DATA_SZ - 1;
	expect_reject(t, -ENOEXEC,
		      "segment 1: p_filesz 0x80 > p_memsz 0x7f");
}

static void test_file_range_beyond(void **state)
{
	struct tb *t = tb_new();

	t->ph[0].p_offset = 0x3c0;
	t->ph[0].p_filesz = 0x41;
	expect_reject(t, -ENOEXEC,
		      "segment 0: file range [0x3c0, 0x401) beyond end of file (0x400)");
}

static void test_file_range_overflow(void **state)
{
	struct tb *t = tb_new();

	t->ph[1].p_offset = UINT64_MAX - 0x10;
	expect_reject(t, -ENOEXEC,
		      "segment 1: file range 0xffffffffffffffef + 0x80 overflows");
}

static void test_mem_range_overflow(void **state)
{
	struct tb *t = tb_new();

	t->ph[1].p_vaddr = UINT64_MAX - 0x100;
	expect_reject(t, -ENOEXEC,
		      "segment 1: memory range 0xfffffffffffffeff + 0x1000 overflows");
}

static void test_overlap_partial(void **state)
{
	struct tb *t = tb_new();

	tb_add_load(t, DATA_GPA + 0xfff, 0, 0x10, PF_R);
	expect_reject(t, -ENOEXEC,
		      "segment 2 [0x401fff, 0x40200f) overlaps segment 1 [0x401000, 0x402000)");
}

static void test_overlap_contained(void **state)
{
	struct tb *t = tb_new();

	/* A big segment first, a small one inside it later. */
	t->ph[1].p_vaddr = 0x500000;
	t->ph[1].p_memsz = 0x100000;
	tb_add_load(t, 0x540000, 0, 0x10, PF_R);
	expect_reject(t, -ENOEXEC, "segment 2 [0x540000, 0x540010) overlaps segment 1");
}

static void test_overlap_identical(void **state)
{
	struct tb *t = tb_new();

	tb_add_load(t, TEXT_GPA, TEXT_SZ, TEXT_SZ, PF_R | PF_X);
	expect_reject(t, -ENOEXEC, "overlaps segment 0");
}

static void test_no_load(void **state)
{
	struct tb *t = tb_new();

	t->ph[0].p_type = PT_NOTE;
	t->ph[1].p_type = PT_NOTE;
	expect_reject(t, -ENOEXEC, "no PT_LOAD segment");
}

static void test_only_empty_loads(void **state)
{
	struct tb *t = tb_new();

	t->ph[0].p_filesz = t->ph[0].p_memsz = 0;
	t->ph[1].p_filesz = t->ph[1].p_memsz = 0;
	expect_reject(t, -ENOEXEC, "no PT_LOAD segment");
}

static void test_too_many_segments(void **state)
{
	struct tb *t = tb_new();
	unsigned i;

	for (i = 2; i <= ELF_MAX_SEGS; i++)
		tb_add_load(t, 0x500000 + i * 0x1000ull, 0, 0x1000, PF_R);
	expect_reject(t, -ENOEXEC,
		      "segment 16 at 0x510000: more than 16 PT_LOAD segments");
}

static void test_entry_outside(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_entry = 0x300000;
	expect_reject(t, -ENOEXEC,
		      "entry point 0x300000 is not inside any PT_LOAD");
}

static void test_entry_at_segment_end(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_entry = TEXT_GPA + TEXT_SZ;
	expect_reject(t, -ENOEXEC, "entry point 0x400100 is not inside");
}

static void test_entry_not_exec(void **state)
{
	struct tb *t = tb_new();

	t->eh.e_entry = DATA_GPA + 8;
	expect_reject(t, -ENOEXEC,
		      "entry point 0x401008 lies in segment 1 [0x401000, 0x402000), which is not executable");
}

/* --- well-formed but does not fit (-ERANGE) ---------------------------- */

static void test_below_window(void **state)
{
	struct tb *t = tb_new();

	tb_add_load(t, MIN_GPA - 0x1000, 0, 0x1000, PF_R);
	expect_reject(t, -ERANGE,
		      "segment 2 [0x3ff000, 0x400000) starts below the image window (0x400000)");
}

static void test_beyond_memory(void **state)
{
	struct tb *t = tb_new();

	t->ph[1].p_memsz = MEM_SIZE;
	expect_reject(t, -ERANGE,
		      "segment 1 [0x401000, 0x1401000) ends beyond guest memory (0x1000000)");
}

static void test_beyond_memory_by_one(void **state)
{
	struct tb *t = tb_new();

	tb_add_load(t, MEM_SIZE - 0x1000, 0, 0x1001, PF_R);
	expect_reject(t, -ERANGE, "ends beyond guest memory");
}

static void test_huge_memsz(void **state)
{
	struct tb *t = tb_new();

	t->ph[1].p_memsz = 1ull << 63;
	expect_reject(t, -ERANGE,
		      "segment 1 [0x401000, 0x8000000000401000) ends beyond guest memory");
}

static void test_huge_filesz(void **state)
{
	struct tb *t = tb_new();

	t->ph[1].p_filesz = t->ph[1].p_memsz = 1ull << 63;
	expect_reject(t, -ENOEXEC, "beyond end of file");
}

/* A file that is malformed and also too big says it is malformed. */
static void test_enoexec_wins(void **state)
{
	struct tb *t = tb_new();

	t->ph[0].p_vaddr = 0x1000;
	t->eh.e_entry = 0x1010;
	t->ph[1].p_memsz = DATA_SZ - 1;
	expect_reject(t, -ENOEXEC, "segment 1: p_filesz");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_parse),
		cmocka_unit_test(test_valid_copy),
		cmocka_unit_test(test_ignores_other_phdrs),
		cmocka_unit_test(test_unaligned_phdrs),
		cmocka_unit_test(test_window_edges),
		cmocka_unit_test(test_adjacent_segments),
		cmocka_unit_test(test_max_segments),
		cmocka_unit_test(test_bss_only_offset),
		cmocka_unit_test(test_null_why),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_bad_class),
		cmocka_unit_test(test_bad_data),
		cmocka_unit_test(test_bad_ident_version),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_type),
		cmocka_unit_test(test_bad_machine),
		cmocka_unit_test(test_bad_phentsize),
		cmocka_unit_test(test_no_phdrs),
		cmocka_unit_test(test_pn_xnum),
		cmocka_unit_test(test_phoff_beyond_file),
		cmocka_unit_test(test_phoff_overflow),
		cmocka_unit_test(test_phnum_beyond_file),
		cmocka_unit_test(test_interp),
		cmocka_unit_test(test_filesz_gt_memsz),
		cmocka_unit_test(test_file_range_beyond),
		cmocka_unit_test(test_file_range_overflow),
		cmocka_unit_test(test_mem_range_overflow),
		cmocka_unit_test(test_overlap_partial),
		cmocka_unit_test(test_overlap_contained),
		cmocka_unit_test(test_overlap_identical),
		cmocka_unit_test(test_no_load),
		cmocka_unit_test(test_only_empty_loads),
		cmocka_unit_test(test_too_many_segments),
		cmocka_unit_test(test_entry_outside),
		cmocka_unit_test(test_entry_at_segment_end),
		cmocka_unit_test(test_entry_not_exec),
		cmocka_unit_test(test_below_window),
		cmocka_unit_test(test_beyond_memory),
		cmocka_unit_test(test_beyond_memory_by_one),
		cmocka_unit_test(test_huge_memsz),
		cmocka_unit_test(test_huge_filesz),
		cmocka_unit_test(test_enoexec_wins),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
