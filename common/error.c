/* SPDX-License-Identifier: Apache-2.0 */
/* error.c: creation, wrapping and release of struct kiln_error. */
#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

static int replace(struct kiln_error **err, int code, char *message)
{
	if (err == NULL) {
		free(message);
		return code;
	}
	if (*err == NULL) {
		*err = calloc(1, sizeof(**err));
		if (*err == NULL) {
			free(message);
			return code;
		}
	} else {
		free((*err)->message);
	}
	(*err)->code = code;
	(*err)->message = message ? message : strdup("out of memory");
	return code;
}

int kiln_error_set(struct kiln_error **err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = vformat(fmt, ap);
	va_end(ap);
	return replace(err, code, m);
}

int kiln_error_errno(struct kiln_error **err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = vformat(fmt, ap);
	va_end(ap);
	int code = errnum == ENOSPC   ? KILN_ENOSPC
	           : errnum == EINTR  ? KILN_EINTR
	           : errnum == ENOENT ? KILN_ENOTFOUND
	                              : KILN_EIO;
	char *full = NULL;
	if (m && asprintf(&full, "%s: %s", m, strerror(errnum)) < 0)
		full = NULL;
	free(m);
	return replace(err, code, full);
}

int kiln_error_wrap(struct kiln_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *ctx = vformat(fmt, ap);
	va_end(ap);
	if (err == NULL) {
		free(ctx);
		return KILN_EFAIL;
	}
	if (*err == NULL)
		return replace(err, KILN_EFAIL, ctx);
	char *full = NULL;
	if (ctx && asprintf(&full, "%s: %s", ctx, (*err)->message) < 0)
		full = NULL;
	free(ctx);
	if (full) {
		free((*err)->message);
		(*err)->message = full;
	}
	return (*err)->code;
}

void kiln_error_free(struct kiln_error *err)
{
	if (err == NULL)
		return;
	free(err->message);
	free(err);
}
