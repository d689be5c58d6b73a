/* Shared between vmon's run (vmon_main.c), ctl (vmon_ctl.c) and cpu (vmon_cpu.c) commands. */
#ifndef FERRY_VMON_H
#define FERRY_VMON_H

#define VMON_VERSION "0.1.0"

/* One line on stderr, "(see vmon --help)", exit status 2. */
void vmon_usage_error(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
/* vmon ctl SOCKET COMMAND ...: argv[0] is "ctl". */
int vmon_ctl_main(int argc, char **argv);
/* vmon cpu [--cpuid-hide LIST]: argv[0] is "cpu". */
int vmon_cpu_main(int argc, char **argv);

#endif
