/* SPDX-License-Identifier: Apache-2.0 */
/* buf.c: growable NUL-terminated buffer. */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kiln_buf_grow(struct kiln_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->ptr, cap);
	if (p == NULL)
		return -1;
	b->ptr = p;
	b->cap = cap;
	return 0;
}

int kiln_buf_put(struct kiln_buf *b, const void *data, size_t len)
{
	if (kiln_buf_grow(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->ptr + b->len, data, len);
	b->len += len;
	b->ptr[b->len] = '\0';
	return 0;
}

int kiln_buf_puts(struct kiln_buf *b, const char *s)
{
	return kiln_buf_put(b, s, strlen(s));
}

int kiln_buf_printf(struct kiln_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || kiln_buf_grow(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *kiln_buf_detach(struct kiln_buf *b)
{
	char *p = b->ptr ? b->ptr : strdup("");
	b->ptr = NULL;
	b->len = b->cap = 0;
	return p;
}

void kiln_buf_release(struct kiln_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->cap = 0;
}
