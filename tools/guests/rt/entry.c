/* rt_entry: validate the boot page, set the runtime up, run guest_main. */
#include "rt.h"

_Static_assert(offsetof(struct gabi_boot, hcall_gpa) == 56,
	       "start.S hard-codes offsetof(struct gabi_boot, hcall_gpa)");
_Static_assert(offsetof(struct gabi_hcall, args) == 8 &&
	       offsetof(struct gabi_hcall, ret) == 56 &&
	       sizeof(struct gabi_hcall) == 4096,
	       "start.S hard-codes the struct gabi_hcall layout");

const struct gabi_boot *rt_boot;
uint64_t rt_hcall_base = GABI_HCALL_GPA;

void rt_time_init(uint64_t tsc_khz);
unsigned rt_entry(uint64_t cpu, const struct gabi_boot *boot);

/*
 * Every vCPU runs this at the same time; they all store the same values,
 * so the duplicate stores are harmless.
 */
unsigned rt_entry(uint64_t cpu, const struct gabi_boot *boot)
{
	int rc;

	rt_boot = boot;
	if (boot->magic != GABI_BOOT_MAGIC)
		rt_die(5, "rt: bad boot magic 0x%lx at %p\n",
		       (unsigned long)boot->magic, (const void *)boot);
	if (boot->hcall_gpa && !(boot->hcall_gpa % GABI_PAGE_SIZE))
		rt_hcall_base = boot->hcall_gpa;
	if (boot->version != GABI_VERSION)
		rt_die(5, "rt: boot version %u, expected %u\n", boot->version,
		       GABI_VERSION);
	if (!boot->nr_vcpus || boot->nr_vcpus > GABI_MAX_VCPUS ||
	    cpu >= boot->nr_vcpus)
		rt_die(5, "rt: vCPU %lu of %u (max %u)\n", (unsigned long)cpu,
		       boot->nr_vcpus, GABI_MAX_VCPUS);
	if (rt_cpu() != cpu)
		rt_die(5, "rt: vCPU %lu runs on the stack of vCPU %u\n",
		       (unsigned long)cpu, rt_cpu());
	if (boot->heap_start < (uint64_t)__image_end ||
	    boot->heap_end < boot->heap_start || boot->heap_end > boot->mem_size)
		rt_die(5, "rt: bad heap [0x%lx, 0x%lx) (image ends at %p, mem 0x%lx)\n",
		       (unsigned long)boot->heap_start,
		       (unsigned long)boot->heap_end, (void *)__image_end,
		       (unsigned long)boot->mem_size);
	if (!boot->tsc_khz && cpu == 0)
		rt_printf("rt: tsc_khz is 0, assuming 1 GHz\n");
	rt_time_init(boot->tsc_khz ? boot->tsc_khz : 1000000);

	rc = guest_main((unsigned)cpu, boot);
	rt_flush();
	return (unsigned)rc & 0xff;
}
