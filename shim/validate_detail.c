/* SPDX-License-Identifier: Apache-2.0 */
/* validate_detail.c: the 422 detail entries in pydantic's words, with Python's text for the values. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/validate.h"

/* ---- Python's text for values, as pydantic's messages show them ---- */

/* Python's repr() of a float: the shortest text that reads back the same, in Python's layout. */
static void py_float_repr(char *out, size_t size, double d)
{
	if (isnan(d)) {
		snprintf(out, size, "nan");
		return;
	}
	if (isinf(d)) {
		snprintf(out, size, d < 0 ? "-inf" : "inf");
		return;
	}
	char sci[40];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec - 1, d);
		if (strtod(sci, NULL) == d)
			break;
	}
	/* sci is "[-]D[.DDD]e[+-]XX": split into sign, digits and decimal exponent. */
	const char *s = sci;
	bool neg = *s == '-';
	if (neg)
		s++;
	char digits[24];
	size_t nd = 0;
	for (; *s && *s != 'e'; s++)
		if (isdigit((unsigned char)*s) && nd + 1 < sizeof(digits))
			digits[nd++] = *s;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	int exp10 = *s == 'e' ? atoi(s + 1) : 0;

	struct kiln_buf b = KILN_BUF_INIT;
	if (neg)
		kiln_buf_puts(&b, "-");
	if (exp10 < -4 || exp10 >= 16) {
		kiln_buf_put(&b, digits, 1);
		if (nd > 1)
			kiln_buf_printf(&b, ".%s", digits + 1);
		kiln_buf_printf(&b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
	} else if (exp10 >= 0) {
		for (int i = 0; i <= exp10; i++)
			kiln_buf_put(&b, (size_t)i < nd ? &digits[i] : "0", 1);
		kiln_buf_printf(&b, ".%s", (size_t)exp10 + 1 < nd ? digits + exp10 + 1 : "0");
	} else {
		kiln_buf_puts(&b, "0.");
		for (int i = 0; i < -exp10 - 1; i++)
			kiln_buf_puts(&b, "0");
		kiln_buf_puts(&b, digits);
	}
	snprintf(out, size, "%s", b.ptr ? b.ptr : "");
	kiln_buf_release(&b);
}

/* Python's repr() of a str: single quotes unless it holds one and no double quote; escapes as Python's. */
static void py_str_repr(struct kiln_buf *b, const char *s)
{
	char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
	kiln_buf_put(b, &q, 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' || *p == (unsigned char)q)
			kiln_buf_printf(b, "\\%c", *p);
		else if (*p == '\n')
			kiln_buf_puts(b, "\\n");
		else if (*p == '\r')
			kiln_buf_puts(b, "\\r");
		else if (*p == '\t')
			kiln_buf_puts(b, "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			kiln_buf_printf(b, "\\x%02x", *p);
		else
			kiln_buf_put(b, p, 1);
	}
	kiln_buf_put(b, &q, 1);
}

void vpy_text(struct kiln_buf *b, const json_t *v, bool repr)
{
	char num[48];
	switch (json_typeof(v)) {
	case JSON_STRING:
		if (repr)
			py_str_repr(b, json_string_value(v));
		else
			kiln_buf_puts(b, json_string_value(v));
		break;
	case JSON_INTEGER:
		kiln_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		py_float_repr(num, sizeof(num), json_real_value(v));
		kiln_buf_puts(b, num);
		break;
	case JSON_TRUE:
		kiln_buf_puts(b, "True");
		break;
	case JSON_FALSE:
		kiln_buf_puts(b, "False");
		break;
	case JSON_NULL:
		kiln_buf_puts(b, "None");
		break;
	default: {
		char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		kiln_buf_puts(b, dump ? dump : "?");
		free(dump);
	}
	}
}

/* ---- the detail array ---- */

json_t *vloc_with_index(const json_t *loc, size_t index)
{
	json_t *l = json_copy((json_t *)loc);
	json_array_append_new(l, json_integer((json_int_t)index));
	return l;
}

void vadd_error(struct vctx *v, const json_t *loc, const char *msg, const char *type, json_t *ctx)
{
	json_t *e = json_pack("{s:o,s:s,s:s}", "loc", json_deep_copy(loc), "msg", msg, "type", type);
	if (e && ctx)
		json_object_set(e, "ctx", ctx);
	json_decref(ctx);
	json_array_append_new(v->detail, e);
}

void vadd_bound_error(struct vctx *v, const json_t *loc, const char *words, const char *code,
                      const json_t *limit)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	kiln_buf_printf(&msg, "ensure this value is %s ", words);
	vpy_text(&msg, limit, false);
	char type[64];
	snprintf(type, sizeof(type), "value_error.number.%s", code);
	vadd_error(v, loc, msg.ptr, type, json_pack("{s:O}", "limit_value", (json_t *)limit));
}

void vadd_length_error(struct vctx *v, const json_t *loc, const char *words, const json_t *limit,
                       const char *noun, const char *type)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	kiln_buf_printf(&msg, "ensure this value has %s ", words);
	vpy_text(&msg, limit, false);
	kiln_buf_printf(&msg, " %s", noun);
	vadd_error(v, loc, msg.ptr, type, json_pack("{s:O}", "limit_value", (json_t *)limit));
}

void vadd_enum_error(struct vctx *v, const json_t *loc, const json_t *members)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	kiln_buf_puts(&msg, "value is not a valid enumeration member; permitted: ");
	size_t i;
	const json_t *m;
	json_array_foreach(members, i, m)
	{
		if (i)
			kiln_buf_puts(&msg, ", ");
		vpy_text(&msg, m, true);
	}
	vadd_error(v, loc, msg.ptr, "type_error.enum", json_pack("{s:O}", "enum_values", (json_t *)members));
}
