/* SPDX-License-Identifier: Apache-2.0 */
/* validate_constraints.c: the checks beyond type: bounds, lengths, patterns (POSIX regex), choices. */
#include <regex.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/validate.h"

/* The length of UTF-8 text S in code points, as Python's len() counts a str. */
static size_t utf8_length(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* ---- patterns ---- */

/*
 * Whether S matches PATTERN the way Cog's SDK checks Input(regex=...) after coglet's JSON Schema check:
 * Python's re.match, which anchors at the start only ("[a-z]+" accepts "abc123"; JSON Schema's unanchored
 * search would accept "123abc" too, which the SDK then refuses, so kiln refuses it at once). The pattern is
 * compiled as a POSIX extended regex (regcomp with REG_EXTENDED | REG_NOSUB, wrapped as "^(PATTERN)"), which
 * is not Python's dialect: there are no lazy quantifiers (*?), lookarounds, (?:...) or (?i) groups, and
 * inside [...] a backslash is a literal. \d and \D outside brackets are rewritten to [0-9] and [^0-9]; glibc
 * understands \w \W \s \S \b itself. Returns 1 on a match, 0 on none, and -1 when PATTERN does not compile as
 * POSIX: the caller then leaves the check to the Python runner rather than refusing every request.
 */
static int pattern_match(const char *pattern, const char *s)
{
	_cleanup_buf_ struct kiln_buf re = KILN_BUF_INIT;
	kiln_buf_puts(&re, "^(");
	bool in_bracket = false;
	for (const char *p = pattern; *p; p++) {
		if (in_bracket) {
			kiln_buf_put(&re, p, 1);
			if (*p == ']')
				in_bracket = false;
		} else if (*p == '[') {
			/* "[]...]" and "[^]...]": a ']' right after the opening is a member, not the end. */
			in_bracket = true;
			kiln_buf_put(&re, p, 1);
			if (p[1] == '^')
				kiln_buf_put(&re, ++p, 1);
			if (p[1] == ']')
				kiln_buf_put(&re, ++p, 1);
		} else if (*p == '\\' && (p[1] == 'd' || p[1] == 'D')) {
			kiln_buf_puts(&re, p[1] == 'd' ? "[0-9]" : "[^0-9]");
			p++;
		} else if (*p == '\\' && p[1]) {
			kiln_buf_put(&re, p, 2);
			p++;
		} else {
			kiln_buf_put(&re, p, 1);
		}
	}
	kiln_buf_puts(&re, ")");
	if (!re.ptr)
		return -1;
	regex_t rx;
	if (regcomp(&rx, re.ptr, REG_EXTENDED | REG_NOSUB) != 0)
		return -1;
	int rc = regexec(&rx, s, 0, NULL, 0);
	regfree(&rx);
	return rc == 0 ? 1 : 0;
}

bool venum_has(const json_t *members, const json_t *value)
{
	size_t i;
	const json_t *m;
	json_array_foreach(members, i, m)
	{
		if (json_is_number(m) && json_is_number(value) && !json_is_boolean(value)) {
			if (json_number_value(m) == json_number_value(value))
				return true;
		} else if (json_equal((json_t *)m, (json_t *)value)) {
			return true;
		}
	}
	return false;
}

bool vcheck_bounds(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc)
{
	double x = json_number_value(value);
	const json_t *gt = shim_schema_get(v->root, schema, "exclusiveMinimum");
	const json_t *ge = shim_schema_get(v->root, schema, "minimum");
	const json_t *lt = shim_schema_get(v->root, schema, "exclusiveMaximum");
	const json_t *le = shim_schema_get(v->root, schema, "maximum");
	if (json_is_number(gt) && !(x > json_number_value(gt)))
		vadd_bound_error(v, loc, value, "less than or equal to the minimum of", gt);
	else if (json_is_number(ge) && !(x >= json_number_value(ge)))
		vadd_bound_error(v, loc, value, "less than the minimum of", ge);
	else if (json_is_number(lt) && !(x < json_number_value(lt)))
		vadd_bound_error(v, loc, value, "greater than or equal to the maximum of", lt);
	else if (json_is_number(le) && !(x <= json_number_value(le)))
		vadd_bound_error(v, loc, value, "greater than the maximum of", le);
	else
		return true;
	return false;
}

bool vcheck_string(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc)
{
	const char *s = json_string_value(value);
	const json_t *min = shim_schema_get(v->root, schema, "minLength");
	const json_t *max = shim_schema_get(v->root, schema, "maxLength");
	const json_t *pattern = shim_schema_get(v->root, schema, "pattern");
	size_t len = utf8_length(s);
	if (json_is_integer(min) && (json_int_t)len < json_integer_value(min)) {
		vadd_count_error(v, loc, value, "is shorter than", json_integer_value(min), "character");
		return false;
	}
	if (json_is_integer(max) && (json_int_t)len > json_integer_value(max)) {
		vadd_count_error(v, loc, value, "is longer than", json_integer_value(max), "character");
		return false;
	}
	if (json_is_string(pattern) && pattern_match(json_string_value(pattern), s) == 0) {
		_cleanup_buf_ struct kiln_buf text = KILN_BUF_INIT;
		kiln_buf_printf(&text, " does not match \"%s\"", json_string_value(pattern));
		vadd_text_error(v, loc, value, text.ptr);
		return false;
	}
	return true;
}
