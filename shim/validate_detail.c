/* SPDX-License-Identifier: Apache-2.0 */
/*
 * validate_detail.c: the 422 detail entries as Cog 0.22's server (coglet) writes them: its JSON Schema
 * validator's messages (jsonschema-rs), with the offending value shown as serde_json shows it.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/validate.h"

/* ---- values as serde_json's Display writes them: compact JSON, floats in their shortest form ---- */

/*
 * A JSON real as serde_json (ryu) writes it: the shortest digits that read back the same, "20.0" for a
 * whole number, and an exponent ("1e16", "1.5e-7") outside [1e-5, 1e16).
 */
static void real_text(struct kiln_buf *b, double d)
{
	if (!isfinite(d)) {
		kiln_buf_puts(b, "null"); /* serde_json has no text for them either */
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
	if (*s == '-') {
		kiln_buf_puts(b, "-");
		s++;
	}
	char digits[24];
	size_t nd = 0;
	for (; *s && *s != 'e'; s++)
		if (isdigit((unsigned char)*s) && nd + 1 < sizeof(digits))
			digits[nd++] = *s;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	int exp10 = *s == 'e' ? atoi(s + 1) : 0;
	if (exp10 < -5 || exp10 >= 16) {
		kiln_buf_put(b, digits, 1);
		if (nd > 1)
			kiln_buf_printf(b, ".%s", digits + 1);
		kiln_buf_printf(b, "e%d", exp10);
	} else if (exp10 >= 0) {
		for (int i = 0; i <= exp10; i++)
			kiln_buf_put(b, (size_t)i < nd ? &digits[i] : "0", 1);
		kiln_buf_printf(b, ".%s", (size_t)exp10 + 1 < nd ? digits + exp10 + 1 : "0");
	} else {
		kiln_buf_puts(b, "0.");
		for (int i = 0; i < -exp10 - 1; i++)
			kiln_buf_puts(b, "0");
		kiln_buf_puts(b, digits);
	}
}

void vjson_text(struct kiln_buf *b, const json_t *v)
{
	size_t i;
	const json_t *item;
	const char *key;
	switch (json_typeof(v)) {
	case JSON_REAL:
		real_text(b, json_real_value(v));
		return;
	case JSON_ARRAY:
		kiln_buf_puts(b, "[");
		json_array_foreach(v, i, item)
		{
			if (i)
				kiln_buf_puts(b, ",");
			vjson_text(b, item);
		}
		kiln_buf_puts(b, "]");
		return;
	case JSON_OBJECT: {
		/* serde_json's map is sorted by key (an insertion sort: inputs are small) */
		kiln_buf_puts(b, "{");
		size_t n = 0;
		_cleanup_free_ const char **keys = calloc(json_object_size(v) + 1, sizeof(*keys));
		json_object_foreach((json_t *)v, key, item)
		{
			if (keys)
				keys[n++] = key;
		}
		for (size_t a = 1; a < n; a++)
			for (size_t z = a; z > 0 && strcmp(keys[z - 1], keys[z]) > 0; z--) {
				const char *t = keys[z];
				keys[z] = keys[z - 1];
				keys[z - 1] = t;
			}
		for (size_t k = 0; k < n; k++) {
			json_auto_t *name = json_string(keys[k]);
			if (k)
				kiln_buf_puts(b, ",");
			vjson_text(b, name);
			kiln_buf_puts(b, ":");
			vjson_text(b, json_object_get(v, keys[k]));
		}
		kiln_buf_puts(b, "}");
		return;
	}
	default: {
		_cleanup_free_ char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		kiln_buf_puts(b, dump ? dump : "null");
	}
	}
}

/* ---- the detail array ---- */

json_t *vloc_with_index(const json_t *loc, size_t index)
{
	/* coglet names an item by its JSON pointer without the leading '/': "weights/1" */
	json_t *l = json_copy((json_t *)loc);
	size_t last = json_array_size(l) - 1;
	_cleanup_buf_ struct kiln_buf name = KILN_BUF_INIT;
	kiln_buf_printf(&name, "%s/%zu", json_string_value(json_array_get(l, last)), index);
	json_array_set_new(l, last, json_string(name.ptr ? name.ptr : ""));
	return l;
}

void vadd_error(struct vctx *v, const json_t *loc, const char *msg, const char *type)
{
	json_array_append_new(
	    v->detail, json_pack("{s:o,s:s,s:s}", "loc", json_deep_copy(loc), "msg", msg, "type", type));
}

/* VALUE, then TEXT, as one value_error entry. */
static void add_value_error(struct vctx *v, const json_t *loc, const json_t *value, const char *text)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	vjson_text(&msg, value);
	kiln_buf_puts(&msg, text);
	vadd_error(v, loc, msg.ptr ? msg.ptr : "", "value_error");
}

void vadd_type_error(struct vctx *v, const json_t *loc, const json_t *value, const char *type)
{
	_cleanup_buf_ struct kiln_buf text = KILN_BUF_INIT;
	kiln_buf_printf(&text, " is not of type \"%s\"", type);
	add_value_error(v, loc, value, text.ptr);
}

void vadd_bound_error(struct vctx *v, const json_t *loc, const json_t *value, const char *words,
                      const json_t *limit)
{
	_cleanup_buf_ struct kiln_buf text = KILN_BUF_INIT;
	kiln_buf_printf(&text, " is %s ", words);
	vjson_text(&text, limit);
	add_value_error(v, loc, value, text.ptr);
}

void vadd_count_error(struct vctx *v, const json_t *loc, const json_t *value, const char *words,
                      json_int_t limit, const char *noun)
{
	_cleanup_buf_ struct kiln_buf text = KILN_BUF_INIT;
	kiln_buf_printf(&text, " %s %" JSON_INTEGER_FORMAT " %s%s", words, limit, noun,
	                limit == 1 ? "" : "s");
	add_value_error(v, loc, value, text.ptr);
}

void vadd_enum_error(struct vctx *v, const json_t *loc, const json_t *value, const json_t *members)
{
	_cleanup_buf_ struct kiln_buf text = KILN_BUF_INIT;
	kiln_buf_puts(&text, " is not one of ");
	vjson_text(&text, members);
	add_value_error(v, loc, value, text.ptr);
}

void vadd_text_error(struct vctx *v, const json_t *loc, const json_t *value, const char *text)
{
	add_value_error(v, loc, value, text);
}
