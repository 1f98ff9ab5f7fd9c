/* SPDX-License-Identifier: Apache-2.0 */
/* predictor.c: a native kiln predictor in C: counts of a text and its most frequent words or letters. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <kiln/predictor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The Input and Output schemas, in Cog's shape: the shim validates every request against Input. */
static const char SCHEMA[] =
    "{\"Input\": {\"type\": \"object\", \"required\": [\"text\"], \"properties\": {"
    "\"text\": {\"type\": \"string\", \"title\": \"Text\", \"description\": \"The text to count\", "
    "\"x-order\": 0},"
    "\"top\": {\"type\": \"integer\", \"title\": \"Top\", \"description\": \"How many of the most frequent "
    "items to list\", \"default\": 3, \"minimum\": 1, \"maximum\": 10, \"x-order\": 1},"
    "\"unit\": {\"allOf\": [{\"$ref\": \"#/components/schemas/unit\"}], \"description\": \"What the list "
    "counts: words, or the letters a-z\", \"default\": \"word\", \"x-order\": 2}}},"
    " \"unit\": {\"title\": \"unit\", \"description\": \"An enumeration.\", \"type\": \"string\", "
    "\"enum\": [\"word\", \"letter\"]},"
    " \"Output\": {\"type\": \"object\", \"title\": \"Output\", \"properties\": {"
    "\"bytes\": {\"type\": \"integer\"}, \"characters\": {\"type\": \"integer\"}, "
    "\"words\": {\"type\": \"integer\"}, \"lines\": {\"type\": \"integer\"}, "
    "\"top\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {"
    "\"item\": {\"type\": \"string\"}, \"count\": {\"type\": \"integer\"}}}}}}}";

/* One request's input, as the shim sends it (validated, defaults filled in). */
struct input {
	char *text; /* UTF-8, may hold NUL bytes: use text_len */
	size_t text_len;
	long top;
	int by_letter;
};

/* A run of bytes in the case-folded text and how often it occurs. */
struct item {
	const char *s;
	size_t len;
	size_t count;
};

/* A growing output string. */
struct buf {
	char *p;
	size_t len, cap;
	int failed;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->failed = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_long(struct buf *b, const char *fmt, long v)
{
	char tmp[64];
	int n = snprintf(tmp, sizeof(tmp), fmt, v);
	buf_add(b, tmp, (size_t)n);
}

/* S as a JSON string: quotes, backslashes and control bytes escaped, UTF-8 kept as it is. */
static void buf_json_string(struct buf *b, const char *s, size_t n)
{
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			buf_add(b, esc, 2);
		} else if (c < 0x20) {
			buf_long(b, "\\u%04lx", c);
		} else {
			buf_add(b, s + i, 1);
		}
	}
	buf_add(b, "\"", 1);
}

/* ---- reading the input: the few JSON forms a validated input object holds */

static void skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static int hex4(const char *p, unsigned *out)
{
	*out = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
		        : c >= 'a' && c <= 'f' ? c - 'a' + 10
		        : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                               : -1;
		if (d < 0)
			return -1;
		*out = *out * 16 + (unsigned)d;
	}
	return 0;
}

static void put_utf8(struct buf *b, unsigned cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
	} else {
		u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
	}
	buf_add(b, u, n);
}

/* The JSON string at *P (its opening quote), decoded into OUT; *P moves past it. 0, or -1 if malformed. */
static int read_string(const char **p, struct buf *out)
{
	const char *s = *p + 1;
	while (*s != '"') {
		if (*s == '\0')
			return -1;
		if (*s != '\\') {
			buf_add(out, s++, 1);
			continue;
		}
		s++;
		const char *plain = strchr("\"\\/bfnrt", *s);
		if (*s && plain) {
			static const char decoded[] = "\"\\/\b\f\n\r\t";
			buf_add(out, &decoded[plain - "\"\\/bfnrt"], 1);
			s++;
			continue;
		}
		unsigned cp, lo;
		if (*s != 'u' || hex4(s + 1, &cp) < 0)
			return -1;
		s += 5;
		if (cp >= 0xD800 && cp < 0xDC00 && s[0] == '\\' && s[1] == 'u' && hex4(s + 2, &lo) == 0 &&
		    lo >= 0xDC00 && lo < 0xE000) {
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			s += 6;
		}
		put_utf8(out, cp);
	}
	*p = s + 1;
	return out->failed ? -1 : 0;
}

/* Move *P past one JSON value of any kind. 0, or -1 if malformed. */
static int skip_value(const char **p)
{
	int depth = 0;
	do {
		skip_ws(p);
		if (**p == '"') {
			struct buf ignored = {0};
			int rc = read_string(p, &ignored);
			free(ignored.p);
			if (rc < 0)
				return -1;
		} else if (**p == '{' || **p == '[') {
			depth++, (*p)++;
		} else if (**p == '}' || **p == ']') {
			depth--, (*p)++;
		} else if (**p == ',' || **p == ':') {
			(*p)++;
		} else if (**p == '\0') {
			return -1;
		} else {
			while (**p && !strchr(" \t\r\n,:]}", **p))
				(*p)++;
		}
	} while (depth > 0);
	return depth == 0 ? 0 : -1;
}

/* Parse the input object JSON into IN. 0, or -1 with *ERROR set. */
static int read_input(const char *json, struct input *in, char **error)
{
	const char *p = json;
	struct buf key = {0};
	in->top = 3;
	skip_ws(&p);
	if (*p++ != '{')
		goto bad;
	for (skip_ws(&p); *p != '}'; skip_ws(&p)) {
		key.len = 0;
		if (key.p)
			key.p[0] = '\0';
		if (*p != '"' || read_string(&p, &key) < 0)
			goto bad;
		skip_ws(&p);
		if (*p++ != ':')
			goto bad;
		skip_ws(&p);
		if (key.p && strcmp(key.p, "text") == 0 && *p == '"') {
			struct buf text = {0};
			if (read_string(&p, &text) < 0) {
				free(text.p);
				goto bad;
			}
			free(in->text);
			in->text = text.p ? text.p : strdup("");
			in->text_len = text.len;
		} else if (key.p && strcmp(key.p, "top") == 0) {
			char *end;
			in->top = strtol(p, &end, 10);
			p = end;
		} else if (key.p && strcmp(key.p, "unit") == 0 && *p == '"') {
			in->by_letter = strncmp(p, "\"letter\"", 8) == 0;
			if (skip_value(&p) < 0)
				goto bad;
		} else if (skip_value(&p) < 0) {
			goto bad;
		}
		skip_ws(&p);
		if (*p == ',')
			p++;
	}
	free(key.p);
	if (!in->text) {
		*error = strdup("no text in the input");
		return -1;
	}
	return 0;
bad:
	free(key.p);
	*error = strdup("malformed input JSON");
	return -1;
}

/* ---- counting */

static int is_word_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80;
}

static int by_text(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int by_count(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return by_text(a, b);
}

/* The output object for IN, in OUT. 0, or -1 when out of memory. */
static int count(const struct input *in, struct buf *out)
{
	size_t n = in->text_len, chars = 0, lines = 0, words = 0, nitems = 0;
	char *folded = malloc(n + 1);
	struct item *items = malloc((n + 1) * sizeof(*items));
	if (!folded || !items) {
		free(folded);
		free(items);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in->text[i];
		folded[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		chars += (c & 0xC0) != 0x80;
		lines += c == '\n';
	}
	lines += n > 0 && in->text[n - 1] != '\n';

	/* Words: runs of letters, digits, apostrophes and non-ASCII characters, trimmed of apostrophes. */
	for (size_t i = 0; i < n;) {
		if (!is_word_byte((unsigned char)folded[i])) {
			i++;
			continue;
		}
		size_t start = i;
		while (i < n && is_word_byte((unsigned char)folded[i]))
			i++;
		size_t end = i;
		while (start < end && folded[start] == '\'')
			start++;
		while (end > start && folded[end - 1] == '\'')
			end--;
		if (end == start)
			continue;
		words++;
		if (!in->by_letter)
			items[nitems++] = (struct item){folded + start, end - start, 1};
	}
	if (in->by_letter)
		for (size_t i = 0; i < n; i++)
			if (folded[i] >= 'a' && folded[i] <= 'z')
				items[nitems++] = (struct item){folded + i, 1, 1};

	/* Merge equal items, then order by count (most first), ties by their bytes. */
	qsort(items, nitems, sizeof(*items), by_text);
	size_t distinct = 0;
	for (size_t i = 0; i < nitems; i++) {
		if (distinct > 0 && by_text(&items[distinct - 1], &items[i]) == 0)
			items[distinct - 1].count++;
		else
			items[distinct++] = items[i];
	}
	qsort(items, distinct, sizeof(*items), by_count);

	buf_long(out, "{\"bytes\": %ld", (long)n);
	buf_long(out, ", \"characters\": %ld", (long)chars);
	buf_long(out, ", \"words\": %ld", (long)words);
	buf_long(out, ", \"lines\": %ld", (long)lines);
	buf_puts(out, ", \"top\": [");
	for (size_t i = 0; i < distinct && i < (size_t)in->top; i++) {
		buf_puts(out, i ? ", {\"item\": " : "{\"item\": ");
		buf_json_string(out, items[i].s, items[i].len);
		buf_long(out, ", \"count\": %ld}", (long)items[i].count);
	}
	buf_puts(out, "]}");
	free(folded);
	free(items);
	return out->failed ? -1 : 0;
}

/* ---- the ABI */

KILN_PREDICTOR_EXPORT int kiln_predictor_abi_version(void)
{
	return KILN_PREDICTOR_ABI_VERSION;
}

KILN_PREDICTOR_EXPORT const char *kiln_predictor_schema(void)
{
	return SCHEMA;
}

KILN_PREDICTOR_EXPORT int kiln_predictor_setup(const char *project_dir, char **error)
{
	printf("textstats: ready in %s\n", project_dir);
	return 0;
}

/* Thread-safe: no state outside the call, so concurrency.max may be raised. */
KILN_PREDICTOR_EXPORT int kiln_predictor_predict(const char *input_json, char **output_json, char **error)
{
	struct input in = {0};
	struct buf out = {0};
	if (read_input(input_json, &in, error) < 0)
		return 1;
	printf("textstats: %zu bytes, top %ld %ss\n", in.text_len, in.top, in.by_letter ? "letter" : "word");
	int rc = count(&in, &out);
	free(in.text);
	if (rc < 0) {
		free(out.p);
		*error = strdup("out of memory");
		return 1;
	}
	*output_json = out.p;
	return 0;
}

KILN_PREDICTOR_EXPORT void kiln_predictor_free(void *p)
{
	free(p);
}
