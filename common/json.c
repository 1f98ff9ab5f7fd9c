/* SPDX-License-Identifier: Apache-2.0 */
/* json.c: JSON text with floats in their shortest round-trip form, as Python (and so Cog) prints them. */
#include "common/json.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

int kiln_json_real(char *out, double d)
{
	/* the fewest significant digits that read back as D (17 always do) */
	char e[KILN_JSON_REAL_MAX];
	for (int p = 1; p <= 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, d);
		if (strtod(e, NULL) == d)
			break;
	}
	/* E is "[-]D[.DDD]e(+|-)XX": its digits and decimal exponent, laid out as Python's repr() does */
	const char *s = e;
	char digits[20];
	size_t n = 0;
	bool negative = *s == '-';
	if (negative)
		s++;
	for (; *s && *s != 'e'; s++)
		if (*s != '.')
			digits[n++] = *s;
	while (n > 1 && digits[n - 1] == '0')
		n--;
	digits[n] = '\0';
	int x = atoi(s + 1);
	char *o = out;
	if (negative)
		*o++ = '-';
	if (x < -4 || x >= 16) {
		*o++ = digits[0];
		if (n > 1) {
			*o++ = '.';
			memcpy(o, digits + 1, n - 1);
			o += n - 1;
		}
		o += sprintf(o, "e%c%02d", x < 0 ? '-' : '+', abs(x));
	} else if (x < 0) {
		o += sprintf(o, "0.%.*s%s", -x - 1, "0000", digits);
	} else if ((size_t)x + 1 >= n) {
		o += sprintf(o, "%s%.*s.0", digits, (int)((size_t)x + 1 - n), "0000000000000000");
	} else {
		o += sprintf(o, "%.*s.%s", x + 1, digits, digits + x + 1);
	}
	return (int)(o - out);
}

/* A scalar (string, integer, true, false, null) as jansson writes it. */
static int put_scalar(struct kiln_buf *b, const json_t *v, size_t flags)
{
	size_t f = (flags & (JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH)) | JSON_ENCODE_ANY;
	size_t n = json_dumpb(v, NULL, 0, f);
	if (n == 0 || kiln_buf_grow(b, n + 1) < 0)
		return -1;
	json_dumpb(v, b->ptr + b->len, n, f);
	b->len += n;
	b->ptr[b->len] = '\0';
	return 0;
}

/* What jansson writes between members: a newline and DEPTH levels of indent, or SPACE's blank. */
static int put_indent(struct kiln_buf *b, size_t flags, int depth, bool space)
{
	int indent = (int)(flags & 0x1F);
	if (indent > 0)
		return kiln_buf_printf(b, "\n%*s", depth * indent, "");
	return space && !(flags & JSON_COMPACT) ? kiln_buf_puts(b, " ") : 0;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_value(struct kiln_buf *b, const json_t *v, size_t flags, int depth);

static int put_object(struct kiln_buf *b, const json_t *v, size_t flags, int depth)
{
	size_t count = json_object_size(v);
	if (count == 0)
		return kiln_buf_puts(b, "{}");
	_cleanup_free_ const char **keys = malloc(count * sizeof(*keys));
	if (!keys)
		return -1;
	size_t n = 0;
	const char *key;
	json_t *member;
	json_object_foreach((json_t *)v, key, member) keys[n++] = key;
	if (flags & JSON_SORT_KEYS)
		qsort(keys, n, sizeof(*keys), key_cmp);
	if (kiln_buf_puts(b, "{") < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		json_t *k = json_string(keys[i]);
		bool failed = (i > 0 && kiln_buf_puts(b, ",") < 0) ||
		              put_indent(b, flags, depth + 1, i > 0) < 0 || !k ||
		              put_scalar(b, k, flags) < 0 ||
		              kiln_buf_puts(b, flags & JSON_COMPACT ? ":" : ": ") < 0 ||
		              put_value(b, json_object_get(v, keys[i]), flags, depth + 1) < 0;
		json_decref(k);
		if (failed)
			return -1;
	}
	return put_indent(b, flags, depth, false) < 0 ? -1 : kiln_buf_puts(b, "}");
}

static int put_value(struct kiln_buf *b, const json_t *v, size_t flags, int depth)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return put_object(b, v, flags, depth);
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		if (n == 0)
			return kiln_buf_puts(b, "[]");
		if (kiln_buf_puts(b, "[") < 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			if ((i > 0 && kiln_buf_puts(b, ",") < 0) ||
			    put_indent(b, flags, depth + 1, i > 0) < 0 ||
			    put_value(b, json_array_get(v, i), flags, depth + 1) < 0)
				return -1;
		return put_indent(b, flags, depth, false) < 0 ? -1 : kiln_buf_puts(b, "]");
	}
	case JSON_REAL: {
		char text[KILN_JSON_REAL_MAX];
		int n = kiln_json_real(text, json_real_value(v));
		return kiln_buf_put(b, text, (size_t)n);
	}
	default:
		return put_scalar(b, v, flags);
	}
}

int kiln_json_dumpb(struct kiln_buf *b, const json_t *v, size_t flags)
{
	size_t len = b->len;
	if (!v || put_value(b, v, flags, 0) < 0) {
		b->len = len;
		if (b->ptr)
			b->ptr[len] = '\0';
		return -1;
	}
	return 0;
}

char *kiln_json_dumps(const json_t *v, size_t flags)
{
	struct kiln_buf b = KILN_BUF_INIT;
	if (kiln_json_dumpb(&b, v, flags) < 0) {
		kiln_buf_release(&b);
		return NULL;
	}
	return kiln_buf_detach(&b);
}

int kiln_json_dumpf(const json_t *v, FILE *f, size_t flags)
{
	_cleanup_free_ char *text = kiln_json_dumps(v, flags);
	return text && fputs(text, f) != EOF ? 0 : -1;
}
