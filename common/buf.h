/* SPDX-License-Identifier: Apache-2.0 */
/* buf.h: a growable byte/string buffer, always NUL-terminated. */
#ifndef KILN_BUF_H
#define KILN_BUF_H

#include <stddef.h>

struct kiln_buf {
	char *ptr;
	size_t len;
	size_t cap;
};

#define KILN_BUF_INIT                                                                                        \
	{                                                                                                    \
		NULL, 0, 0                                                                                   \
	}

/* Each returns 0, or -1 when memory runs out (the buffer is left as it was). */
int kiln_buf_grow(struct kiln_buf *b, size_t extra);
int kiln_buf_put(struct kiln_buf *b, const void *data, size_t len);
int kiln_buf_puts(struct kiln_buf *b, const char *s);
int kiln_buf_printf(struct kiln_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Give the string to the caller (never NULL: an empty buffer gives ""), leaving b empty. */
char *kiln_buf_detach(struct kiln_buf *b);
void kiln_buf_release(struct kiln_buf *b);

static inline void kiln_buf_releasep(struct kiln_buf *b)
{
	kiln_buf_release(b);
}
#define _cleanup_buf_ __attribute__((cleanup(kiln_buf_releasep)))

#endif
