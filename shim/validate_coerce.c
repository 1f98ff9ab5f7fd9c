/* SPDX-License-Identifier: Apache-2.0 */
/* validate_coerce.c: pydantic v1's coercions of input values to integer, float, boolean and string. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/validate.h"

/* S without leading and trailing ASCII white space, copied into OUT (size OUTSIZE); false if too long. */
static bool strip_copy(char *out, size_t outsize, const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (len + 1 > outsize)
		return false;
	memcpy(out, s, len);
	out[len] = '\0';
	return true;
}

/*
 * Remove the underscores Python allows between digits ("1_000") from S in place; false when an underscore
 * is anywhere else (Python rejects "_1", "1__0", "1_").
 */
static bool drop_digit_underscores(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r == '_') {
			if (r == s || !isdigit((unsigned char)r[-1]) || !isdigit((unsigned char)r[1]))
				return false;
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
	return true;
}

/* Python's int() of a string, into *out; false if Python would refuse it or it needs more than 64 bits. */
static bool parse_py_int(const char *s, json_int_t *out)
{
	char t[128];
	if (!strip_copy(t, sizeof(t), s) || !drop_digit_underscores(t))
		return false;
	const char *p = t;
	if (*p == '+' || *p == '-')
		p++;
	if (!*p)
		return false;
	for (const char *q = p; *q; q++)
		if (!isdigit((unsigned char)*q))
			return false;
	errno = 0;
	long long n = strtoll(t, NULL, 10);
	if (errno == ERANGE)
		return false;
	*out = n;
	return true;
}

/* Python's float() of a string, into *out; false if Python would refuse it or it is not finite. */
static bool parse_py_float(const char *s, double *out)
{
	char t[128];
	if (!strip_copy(t, sizeof(t), s) || !drop_digit_underscores(t))
		return false;
	/* [+-] (D+ [. D*] | . D+) [(e|E) [+-] D+]: the decimal form; strtod alone would take hex too. */
	const char *p = t;
	if (*p == '+' || *p == '-')
		p++;
	size_t before = strspn(p, "0123456789");
	p += before;
	size_t after = 0;
	if (*p == '.') {
		after = strspn(p + 1, "0123456789");
		p += 1 + after;
	}
	if (before + after == 0)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		size_t exp = strspn(p, "0123456789");
		if (!exp)
			return false;
		p += exp;
	}
	if (*p)
		return false;
	double d = strtod(t, NULL);
	if (!isfinite(d))
		return false;
	*out = d;
	return true;
}

json_t *vcoerce_int(const json_t *value)
{
	json_int_t n;
	switch (json_typeof(value)) {
	case JSON_INTEGER:
		return json_integer(json_integer_value(value));
	case JSON_REAL: {
		/* The conversion truncates toward zero, as Python's int(5.9) does. */
		double d = json_real_value(value);
		if (!isfinite(d) || d <= -9223372036854775809.0 || d >= 9223372036854775808.0)
			return NULL;
		return json_integer((json_int_t)d);
	}
	case JSON_TRUE:
		return json_integer(1);
	case JSON_FALSE:
		return json_integer(0);
	case JSON_STRING:
		return parse_py_int(json_string_value(value), &n) ? json_integer(n) : NULL;
	default:
		return NULL;
	}
}

json_t *vcoerce_float(const json_t *value)
{
	double d;
	switch (json_typeof(value)) {
	case JSON_INTEGER:
	case JSON_REAL:
		return json_real(json_number_value(value));
	case JSON_TRUE:
		return json_real(1.0);
	case JSON_FALSE:
		return json_real(0.0);
	case JSON_STRING:
		return parse_py_float(json_string_value(value), &d) ? json_real(d) : NULL;
	default:
		return NULL;
	}
}

json_t *vcoerce_bool(const json_t *value)
{
	static const char *const yes[] = {"1", "on", "t", "true", "y", "yes"};
	static const char *const no[] = {"0", "off", "f", "false", "n", "no"};
	switch (json_typeof(value)) {
	case JSON_TRUE:
	case JSON_FALSE:
		return json_incref((json_t *)value);
	case JSON_INTEGER:
	case JSON_REAL: {
		double d = json_number_value(value);
		return d == 1 ? json_true() : d == 0 ? json_false() : NULL;
	}
	case JSON_STRING: {
		const char *s = json_string_value(value);
		for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			if (!strcasecmp(s, yes[i]))
				return json_true();
			if (!strcasecmp(s, no[i]))
				return json_false();
		}
		return NULL;
	}
	default:
		return NULL;
	}
}

json_t *vcoerce_str(const json_t *value)
{
	if (json_is_string(value))
		return json_incref((json_t *)value);
	if (!json_is_number(value) && !json_is_boolean(value))
		return NULL;
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	vpy_text(&b, value, false);
	return json_string(b.ptr);
}
