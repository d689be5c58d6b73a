/*
 * One-line errors into a caller's buffer, as every cl_ function with an
 * (err, err_len) pair writes them.
 */
#ifndef FERRY_CL_ERR_H
#define FERRY_CL_ERR_H

#include <stddef.h>

/* snprintf into err; a NULL err or a zero err_len is allowed. */
void cl_errf(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
