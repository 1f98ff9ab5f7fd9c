/* SPDX-License-Identifier: Apache-2.0 */
/* manifest_yaml.c: positioned errors, scalar typing and YAML-to-JSON conversion for the manifest walk. */
#include "pkg/manifest_yaml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

int mfail_at(struct mparser *p, yaml_mark_t mark, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	return kiln_error_set(p->err, KILN_EINVAL, "%s:%zu:%zu: %s", p->m->path, mark.line + 1,
	                      mark.column + 1, msg ? msg : "out of memory");
}

int mwarn(struct mparser *p, yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	struct kiln_strv *w = &p->m->warnings;
	struct kiln_pos pos = mpos(n);
	char *line = NULL;
	char **v = realloc(w->v, (w->n + 1) * sizeof(*v));
	if (v != NULL)
		w->v = v;
	struct kiln_pos *ps = realloc(w->pos, (w->n + 1) * sizeof(*ps));
	if (ps != NULL)
		w->pos = ps;
	if (msg == NULL || v == NULL || ps == NULL ||
	    asprintf(&line, "%s:%d:%d: %s", p->m->path, pos.line, pos.column, msg) < 0)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	w->v[w->n] = line;
	w->pos[w->n++] = pos;
	return 0;
}

size_t mutf8_prefix(const char *text, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80)
		max--;
	return max;
}

struct mquote mquote(const char *text)
{
	struct mquote q;
	size_t len = strlen(text), n = mutf8_prefix(text, len, MANIFEST_QUOTE_MAX);
	memcpy(q.s, text, n);
	if (n < len)
		memcpy(q.s + n, "...", 4);
	else
		q.s[n] = '\0';
	return q;
}

int mfail_type(struct mparser *p, yaml_node_t *n, const char *where, const char *want)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return mfail(p, n, "%s: expected %s, got a list", where, want);
	if (n->type == YAML_MAPPING_NODE)
		return mfail(p, n, "%s: expected %s, got a map", where, want);
	const char *text = mtext(n);
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && text[0] == '\0')
		return mfail(p, n, "%s: expected %s, got an empty value", where, want);
	bool quoted = n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
	return mfail(p, n, "%s: expected %s, got %s'%s'", where, want, quoted ? "the string " : "",
	             mquote(text).s);
}

/* The line and column (0-based) of byte OFFSET of TEXT. */
static yaml_mark_t mark_of_offset(const char *text, size_t offset)
{
	yaml_mark_t mark = {offset, 0, 0};
	for (size_t i = 0; i < offset && text[i]; i++) {
		if (text[i] == '\n') {
			mark.line++;
			mark.column = 0;
		} else if (((unsigned char)text[i] & 0xC0) != 0x80) {
			mark.column++;
		}
	}
	return mark;
}

int mset_text(struct mparser *p, const char *text, size_t len)
{
	size_t n = 1;
	for (size_t i = 0; i < len; i++)
		n += text[i] == '\n';
	p->lines = malloc(n * sizeof(*p->lines));
	if (p->lines == NULL)
		return kiln_error_set(p->err, KILN_EFAIL, "out of memory");
	p->lines[0] = 0;
	p->nlines = 1;
	for (size_t i = 0; i < len; i++)
		if (text[i] == '\n')
			p->lines[p->nlines++] = i + 1;
	p->text = text;
	p->len = len;
	return 0;
}

void mrelease_text(struct mparser *p)
{
	free(p->lines);
	p->lines = NULL;
	p->nlines = 0;
}

const char *msource(struct mparser *p, yaml_mark_t mark)
{
	if (mark.line >= p->nlines)
		return "";
	const char *s = p->text + p->lines[mark.line];
	for (size_t col = 0; col < mark.column && *s && *s != '\n'; col++)
		do
			s++;
		while (((unsigned char)*s & 0xC0) == 0x80);
	return s;
}

void mmark_tagged(struct mparser *p)
{
	for (yaml_node_t *n = p->doc->nodes.start; n < p->doc->nodes.top; n++) {
		if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
		    n->tag == NULL || strcmp((const char *)n->tag, YAML_DEFAULT_SCALAR_TAG) != 0)
			continue;
		/* The node starts at its properties: an optional "&anchor", then the tag. */
		const char *s = msource(p, n->start_mark);
		if (*s == '&') {
			s += strcspn(s, " \t\r\n");
			s += strspn(s, " \t");
		}
		if (*s == '!')
			n->data.scalar.style = YAML_ANY_SCALAR_STYLE;
	}
}

int mfail_syntax(struct mparser *p, yaml_parser_t *y)
{
	if (y->error == YAML_MEMORY_ERROR)
		return kiln_error_set(p->err, KILN_EFAIL, "%s: out of memory", p->m->path);
	const char *problem = y->problem ? y->problem : "cannot parse";
	if (y->error == YAML_READER_ERROR) {
		yaml_mark_t mark = mark_of_offset(p->text, y->problem_offset);
		if (y->problem_value != -1)
			return mfail_at(p, mark, "syntax error: %s (byte 0x%02x)", problem, y->problem_value);
		return mfail_at(p, mark, "syntax error: %s", problem);
	}
	/* A tab where indentation belongs is the usual cause of "cannot start any token": say so. */
	bool tab = *msource(p, y->problem_mark) == '\t' && strstr(problem, "tab") == NULL;
	const char *hint = tab ? "; indent with spaces, not tabs" : "";
	yaml_mark_t at = y->problem_mark, ctx = y->context_mark;
	if (y->context && (ctx.line != at.line || ctx.column != at.column))
		return mfail_at(p, at, "syntax error: %s (%s at line %zu, column %zu)%s", problem, y->context,
		                ctx.line + 1, ctx.column + 1, hint);
	if (y->context)
		return mfail_at(p, at, "syntax error: %s (%s)%s", problem, y->context, hint);
	return mfail_at(p, at, "syntax error: %s%s", problem, hint);
}

yaml_node_t *mnode(struct mparser *p, int i)
{
	return yaml_document_get_node(p->doc, i);
}

static bool one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static bool all_digits(const char *s, const char *digits)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!strchr(digits, *s))
			return false;
	return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_float_text(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	size_t ip = strspn(s, "0123456789");
	s += ip;
	size_t fp = 0;
	if (*s == '.') {
		s++;
		fp = strspn(s, "0123456789");
		s += fp;
	}
	if (ip == 0 && fp == 0)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		size_t ep = strspn(s, "0123456789");
		if (ep == 0)
			return false;
		s += ep;
	}
	return *s == '\0';
}

/* Type TEXT by YAML 1.2's core schema; infinities and NaN stay strings (JSON has no such numbers). */
void mresolve_text(const char *text, struct mvalue *out)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	memset(out, 0, sizeof(*out));
	out->type = MSCALAR_STRING;
	if (one_of(text, nulls)) {
		out->type = MSCALAR_NULL;
		return;
	}
	if (one_of(text, trues) || one_of(text, falses)) {
		out->type = MSCALAR_BOOL;
		out->b = text[0] == 't' || text[0] == 'T';
		return;
	}
	int base = 0;
	const char *digits = NULL;
	const char *sign = text + (text[0] == '-' || text[0] == '+');
	if (strncmp(text, "0o", 2) == 0 && all_digits(text + 2, "01234567")) {
		base = 8;
		digits = text + 2;
	} else if (strncmp(text, "0x", 2) == 0 && all_digits(text + 2, "0123456789abcdefABCDEF")) {
		base = 16;
		digits = text + 2;
	} else if (all_digits(sign, "0123456789")) {
		base = 10;
		digits = text;
	}
	if (base) {
		errno = 0;
		long long v = strtoll(digits, NULL, base);
		if (errno == 0) {
			out->type = MSCALAR_INT;
			out->i = v;
			return;
		}
		if (base != 10)
			return; /* out of range: keep the text */
	}
	if (is_float_text(text)) {
		double d = strtod(text, NULL);
		if (isfinite(d)) {
			out->type = MSCALAR_FLOAT;
			out->d = d;
		}
	}
}

void mresolve(yaml_node_t *n, struct mvalue *out)
{
	const char *tag = (const char *)n->tag;
	bool core_tag = tag && (strcmp(tag, YAML_NULL_TAG) == 0 || strcmp(tag, YAML_BOOL_TAG) == 0 ||
	                        strcmp(tag, YAML_INT_TAG) == 0 || strcmp(tag, YAML_FLOAT_TAG) == 0);
	bool plain_untagged = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	                      (tag == NULL || strcmp(tag, YAML_DEFAULT_SCALAR_TAG) == 0);
	if (core_tag || plain_untagged) {
		mresolve_text(mtext(n), out);
		return;
	}
	memset(out, 0, sizeof(*out));
	out->type = MSCALAR_STRING;
}

bool mresolve_bool11(yaml_node_t *n, bool *out)
{
	static const char *const yes[] = {"yes", "Yes", "YES", "on", "On", "ON", NULL};
	static const char *const no[] = {"no", "No", "NO", "off", "Off", "OFF", NULL};
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	if (one_of(mtext(n), yes))
		*out = true;
	else if (one_of(mtext(n), no))
		*out = false;
	else
		return false;
	return true;
}

/* After snprintf cut BUF (N bytes asked for) to MANIFEST_WHERE_MAX - 1 bytes: drop a last character cut in
 * half. */
static void where_cut(char *buf, int n)
{
	if (n < MANIFEST_WHERE_MAX)
		return;
	size_t end = MANIFEST_WHERE_MAX - 1, i = end;
	while (i > 0 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0 || (unsigned char)buf[i - 1] < 0xC0)
		return;
	unsigned char lead = (unsigned char)buf[i - 1];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
	if (i - 1 + need > end)
		buf[i - 1] = '\0';
}

void mwhere_key(char *buf, const char *parent, const char *key)
{
	where_cut(buf, snprintf(buf, MANIFEST_WHERE_MAX, "%s%s%s", parent, parent[0] ? "." : "", key));
}

void mwhere_index(char *buf, const char *parent, size_t i)
{
	where_cut(buf, snprintf(buf, MANIFEST_WHERE_MAX, "%s[%zu]", parent, i));
}

yaml_node_t *mmap_get(struct mparser *p, yaml_node_t *n, const char *key)
{
	if (n == NULL || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = mnode(p, pair->key);
		if (k->type == YAML_SCALAR_NODE && strcmp(mtext(k), key) == 0)
			return mnode(p, pair->value);
	}
	return NULL;
}

int mvisit(struct mparser *p, yaml_node_t *n, const char *where)
{
	size_t len = n->type == YAML_SCALAR_NODE ? n->data.scalar.length : 0;
	if (--p->budget < 0 || len > p->text_budget)
		return mfail(p, n, "%s%stoo many values (aliases expand to more than the manifest may hold)",
		             where, where[0] ? ": " : "");
	p->text_budget -= len;
	return 0;
}

int mcheck_key(struct mparser *p, yaml_node_t *n, yaml_node_pair_t *pair, const char *where, json_t *seen)
{
	yaml_node_t *k = mnode(p, pair->key);
	int rc = mvisit(p, k, where);
	if (rc < 0)
		return rc;
	if (k->type != YAML_SCALAR_NODE)
		return mfail(p, k, "%s%sexpected a key name, got a %s", where, where[0] ? ": " : "",
		             k->type == YAML_SEQUENCE_NODE ? "list" : "map");
	if (json_object_get(seen, mtext(k)) == NULL)
		return 0;
	for (yaml_node_pair_t *prev = n->data.mapping.pairs.start; prev < pair; prev++) {
		yaml_node_t *pk = mnode(p, prev->key);
		if (pk->type != YAML_SCALAR_NODE || strcmp(mtext(pk), mtext(k)) != 0)
			continue;
		if (where[0])
			return mfail(p, k, "duplicate key '%s' in '%s' (first set on line %zu)",
			             mquote(mtext(k)).s, where, pk->start_mark.line + 1);
		return mfail(p, k, "duplicate key '%s' (first set on line %zu)", mquote(mtext(k)).s,
		             pk->start_mark.line + 1);
	}
	return 0;
}

static json_t *scalar_to_json(yaml_node_t *n)
{
	struct mvalue v;
	mresolve(n, &v);
	switch (v.type) {
	case MSCALAR_NULL:
		return json_null();
	case MSCALAR_BOOL:
		return json_boolean(v.b);
	case MSCALAR_INT:
		return json_integer(v.i);
	case MSCALAR_FLOAT:
		return json_real(v.d);
	case MSCALAR_STRING:
		break;
	}
	return json_stringn(mtext(n), n->data.scalar.length);
}

int mto_json(struct mparser *p, yaml_node_t *n, const char *where, int depth, json_t **out)
{
	if (depth > MANIFEST_MAX_DEPTH)
		return mfail(p, n, "%s: nested more than %d levels deep", where, MANIFEST_MAX_DEPTH);
	int rc = mvisit(p, n, where);
	if (rc < 0)
		return rc;
	char sub[MANIFEST_WHERE_MAX];
	json_t *j = NULL;
	switch (n->type) {
	case YAML_SCALAR_NODE:
		j = scalar_to_json(n);
		if (j == NULL)
			return mfail(p, n, "%s: value is not valid UTF-8", where);
		break;
	case YAML_SEQUENCE_NODE:
		j = json_array();
		for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
		     it++) {
			json_t *item = NULL;
			mwhere_index(sub, where, (size_t)(it - n->data.sequence.items.start));
			if ((rc = mto_json(p, mnode(p, *it), sub, depth + 1, &item)) < 0) {
				json_decref(j);
				return rc;
			}
			json_array_append_new(j, item);
		}
		break;
	case YAML_MAPPING_NODE:
		j = json_object();
		for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
		     pair++) {
			json_t *val = NULL;
			if ((rc = mcheck_key(p, n, pair, where, j)) < 0) {
				json_decref(j);
				return rc;
			}
			const char *key = mtext(mnode(p, pair->key));
			mwhere_key(sub, where, key);
			if ((rc = mto_json(p, mnode(p, pair->value), sub, depth + 1, &val)) < 0) {
				json_decref(j);
				return rc;
			}
			json_object_set_new(j, key, val);
		}
		break;
	default:
		return mfail(p, n, "%s: empty node", where);
	}
	*out = j;
	return 0;
}
