/* SPDX-License-Identifier: Apache-2.0 */
/* error.h: the error object every fallible kiln function hands back to its caller. */
#ifndef KILN_ERROR_H
#define KILN_ERROR_H

#include <stdarg.h>

/* Error codes: 0 is success, every failure is negative. */
enum {
	KILN_EFAIL = -1,     /* generic failure */
	KILN_ENOTFOUND = -2, /* a file, key, tag or blob does not exist */
	KILN_EINVAL = -3,    /* bad input: manifest, reference, option value */
	KILN_EIO = -4,       /* reading or writing failed (the message has errno's words) */
	KILN_ECHANGED = -5,  /* a source file changed while or since it was read */
	KILN_EINTR = -6,     /* interrupted by a signal */
	KILN_ENOSPC = -7,    /* no space left on device */
	KILN_ENOTSUP = -8,   /* the other side does not do what was asked (a registry that gives no ranges) */
};

/*
 * An error: a code and a message that says what failed and on what. Messages follow git's style:
 * lowercase, no final period, quoted subject ("cannot open 'kiln.yaml': No such file or directory").
 */
struct kiln_error {
	int code;
	char *message;
};

/*
 * Set *err to a new error with CODE and a printf-style message, and return CODE. When err is NULL the
 * error is dropped. When *err is already set it is replaced.
 */
int kiln_error_set(struct kiln_error **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like kiln_error_set, appending ": strerror(errnum)"; the code is KILN_ENOSPC for ENOSPC, KILN_EINTR
 * for EINTR, KILN_ENOTFOUND for ENOENT, else KILN_EIO. */
int kiln_error_errno(struct kiln_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Put context in front of an existing error ("cannot build 'x': <old message>") and return its code. When
 * *err is NULL (the caller forgot to set it) a generic error with the context alone is made.
 */
int kiln_error_wrap(struct kiln_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void kiln_error_free(struct kiln_error *err);

/* Cleanup helper: `_cleanup_error_ struct kiln_error *err = NULL;` */
static inline void kiln_error_freep(struct kiln_error **e)
{
	kiln_error_free(*e);
}
#define _cleanup_error_ __attribute__((cleanup(kiln_error_freep)))

#endif
