#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

static struct {
	const char *ident;
	enum log_level level;
	bool syslog;
	pthread_mutex_t lock;
} log_cfg = {
	.ident = "ferry",
	.level = LOGL_WARN,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static const char *const log_names[] = {
	[LOGL_ERR] = "error", [LOGL_WARN] = "warning",
	[LOGL_INFO] = "info", [LOGL_DEBUG] = "debug",
};

void log_init(const char *ident, enum log_level level, bool use_syslog)
{
	log_cfg.ident = ident;
	log_cfg.level = level;
	log_cfg.syslog = use_syslog;
	if (use_syslog)
		openlog(ident, LOG_PID, LOG_DAEMON);
}

void log_set_level(enum log_level level)
{
	log_cfg.level = level;
}

enum log_level log_get_level(void)
{
	return log_cfg.level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (!strcasecmp(s, log_names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warn")) {
		*out = LOGL_WARN;
		return 0;
	}
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int prio[] = {
		[LOGL_ERR] = LOG_ERR, [LOGL_WARN] = LOG_WARNING,
		[LOGL_INFO] = LOG_INFO, [LOGL_DEBUG] = LOG_DEBUG,
	};
	char buf[1024];
	va_list ap;

	if (level > log_cfg.level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	if (log_cfg.syslog) {
		syslog(prio[level], "%s", buf);
		return;
	}
	/* One line per message even with several threads logging. */
	pthread_mutex_lock(&log_cfg.lock);
	fprintf(stderr, "%s: %s: %s\n", log_cfg.ident, log_names[level], buf);
	pthread_mutex_unlock(&log_cfg.lock);
}
