/*
 * Parsing --disk: an absolute path, or nbd://HOST:PORT/EXPORT,lease=PATH
 * with an absolute PATH. Relative paths are refused rather than resolved:
 * a spec travels to a migration's destination, whose working directory is
 * not the source's, and the same name there may be another image.
 */
#include "storage/blk.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const struct blk_defaults blk_defaults = {
	.workers = 4,
	.reconnect_tries = 5,
	.reconnect_wait_ms = 200,
	.ring_poll_us = 200,
	.probe_wait_ms = 3000,
	.connect_wait_ms = 5000,
	.ack_wait_ms = 20000,
};

int blk_spec_parse(const char *s, struct blk_spec *out, char *err, size_t err_len)
{
	const char *comma;
	size_t tlen;

	memset(out, 0, sizeof(*out));
	if (!s || !*s || strlen(s) >= BLK_SPEC_MAX) {
		snprintf(err, err_len, "'%.64s': empty or longer than %d bytes", s ? s : "",
			 BLK_SPEC_MAX - 1);
		return -EINVAL;
	}
	snprintf(out->spec, sizeof(out->spec), "%s", s);
	if (strncmp(s, "nbd://", 6)) {
		/* A file: the whole argument is the path (commas allowed). */
		out->kind = BLK_FILE;
		snprintf(out->target, sizeof(out->target), "%s", s);
		if (strchr(s, '\n')) {
			snprintf(err, err_len, "path has a newline");
			return -EINVAL;
		}
		if (s[0] != '/') {
			snprintf(err, err_len, "'%.200s': the path must be absolute (a "
				 "migration's destination opens the same path)", s);
			return -EINVAL;
		}
		return 0;
	}
	out->kind = BLK_NBD;
	comma = strchr(s, ',');
	tlen = comma ? (size_t)(comma - s) : strlen(s);
	memcpy(out->target, s, tlen);
	out->target[tlen] = 0;
	if (tlen <= 6 || !strchr(out->target + 6, ':')) {
		snprintf(err, err_len, "'%.200s': expected nbd://HOST:PORT/EXPORT", out->target);
		return -EINVAL;
	}
	while (comma) {
		const char *opt = comma + 1, *next = strchr(opt, ',');
		size_t olen = next ? (size_t)(next - opt) : strlen(opt);

		if (olen > 6 && !strncmp(opt, "lease=", 6)) {
			memcpy(out->lease, opt + 6, olen - 6);
			out->lease[olen - 6] = 0;
		} else {
			snprintf(err, err_len, "unknown disk option '%.*s' (known: lease=PATH)",
				 (int)(olen > 64 ? 64 : olen), opt);
			return -EINVAL;
		}
		comma = next;
	}
	if (!out->lease[0]) {
		snprintf(err, err_len, "%.200s: an NBD disk needs ,lease=PATH (a file on "
			 "shared storage whose lock says who may write the export)", out->target);
		return -EINVAL;
	}
	if (out->lease[0] != '/') {
		snprintf(err, err_len, "lease=%.200s: the path must be absolute (a "
			 "migration's destination takes the same lease)", out->lease);
		return -EINVAL;
	}
	if (strchr(s, '\n')) {
		snprintf(err, err_len, "spec has a newline");
		return -EINVAL;
	}
	return 0;
}
