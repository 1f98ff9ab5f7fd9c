/* SPDX-License-Identifier: Apache-2.0 */
/* validate.c: check a prediction's input against Cog's Input schema, answering in pydantic v1's words. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/shim.h"

/*
 * What Cog does, and so what this file does (Cog's Python server: a pydantic v1 model built from predict()'s
 * signature, validated by FastAPI, errors returned as a 422 {"detail": [...]}):
 *
 * - Unknown input names are ignored: Cog's BaseInput keeps pydantic's default `extra = ignore`, so they are
 *   dropped from the normalized input, never reported (the newer Go runtime, coglet, rejects them instead).
 * - Fields are checked in declaration order ("x-order"); each field reports at most one problem (pydantic
 *   stops at a field's first failing validator), and every field is checked, so several fields can fail at
 *   once. Array items each report their own problem, with the index appended to "loc".
 * - Defaults are not validated (pydantic v1's validate_all is off) and are copied as they are. A field that
 *   is not required and has no default (Input(default=None): pydantic leaves "default" out of the schema)
 *   becomes null, as predict() receives None.
 * - null is accepted where pydantic would allow None: a "nullable" property, or one whose default is None.
 * - Coercions are pydantic v1's:
 *     integer: JSON integers; reals truncated toward zero (int(5.9) == 5); true/false as 1/0; strings that
 *              Python's int() reads (" 42", "-7", "1_000"), not "5.0".
 *     number:  integers and reals; true/false as 1.0/0.0; strings that Python's float() reads ("2.5",
 *              "1e3"). Always a JSON real afterwards (5 becomes 5.0, as float(5)).
 *     boolean: true/false; 1/0 (also 1.0/0.0); the strings "1" "on" "t" "true" "y" "yes" and "0" "off" "f"
 *              "false" "n" "no", in any case.
 *     string:  strings; numbers become Python's str() of them (1.5 -> "1.5", 1e16 -> "1e+16", true ->
 *              "True"); anything else is "str type expected".
 *     choices: string choices need the exact string; integer choices coerce like integer first (IntEnum).
 * - Where JSON cannot carry what Python would produce, the value is refused instead: integers beyond 64 bits,
 *   and "nan"/"inf" strings for a number. A File/Path that is not a string is refused as "str type expected"
 *   (Cog answers 500 there).
 */

/* Deepest chain of $ref/allOf/anyOf followed before giving up (a schema that refers to itself). */
#define MAX_DEPTH 16

struct vctx {
	const json_t *root; /* the whole OpenAPI document, where "$ref"s point */
	json_t *detail;     /* the 422 "detail" array being filled */
};

/* ---- schema lookups ---- */

/* The value at JSON pointer REF ("#/components/schemas/x") in ROOT, or NULL. */
static const json_t *resolve_ref(const json_t *root, const char *ref)
{
	if (!ref || ref[0] != '#')
		return NULL;
	const json_t *node = root;
	const char *p = ref + 1;
	while (*p == '/' && node) {
		p++;
		size_t len = strcspn(p, "/");
		char key[256];
		size_t k = 0;
		for (size_t i = 0; i < len && k + 1 < sizeof(key); i++) {
			if (p[i] == '~' && i + 1 < len && (p[i + 1] == '0' || p[i + 1] == '1')) {
				key[k++] = p[i + 1] == '0' ? '~' : '/';
				i++;
			} else {
				key[k++] = p[i];
			}
		}
		key[k] = '\0';
		node = json_is_array(node) ? json_array_get(node, strtoul(key, NULL, 10))
		                           : json_object_get(node, key);
		p += len;
	}
	return *p ? NULL : node;
}

static const json_t *lookup(const json_t *root, const json_t *schema, const char *key, int depth);

/*
 * The keyword KEY of SCHEMA, looking through what it refers to: the schema itself first, then its "$ref",
 * then each "allOf" member (Cog puts choices behind allOf: [{"$ref": ...}]). NULL when absent.
 */
static const json_t *schema_get(const json_t *root, const json_t *schema, const char *key)
{
	return lookup(root, schema, key, 0);
}

static const json_t *lookup(const json_t *root, const json_t *schema, const char *key, int depth)
{
	if (!json_is_object(schema) || depth > MAX_DEPTH)
		return NULL;
	const json_t *v = json_object_get(schema, key);
	if (v)
		return v;
	const json_t *ref = json_object_get(schema, "$ref");
	if (json_is_string(ref) &&
	    (v = lookup(root, resolve_ref(root, json_string_value(ref)), key, depth + 1)))
		return v;
	const json_t *all = json_object_get(schema, "allOf");
	size_t i;
	const json_t *member;
	json_array_foreach(all, i, member)
	{
		if ((v = lookup(root, member, key, depth + 1)))
			return v;
	}
	return NULL;
}

/* The "type" of SCHEMA ("string", "integer", ...), or "" when it has none. */
static const char *schema_type(const json_t *root, const json_t *schema)
{
	const char *t = json_string_value(schema_get(root, schema, "type"));
	return t ? t : "";
}

/* Whether SCHEMA says null is allowed ("nullable": true, OpenAPI 3.0's way, or Swagger's "x-nullable"). */
static bool schema_nullable(const json_t *root, const json_t *schema)
{
	return json_is_true(schema_get(root, schema, "nullable")) ||
	       json_is_true(schema_get(root, schema, "x-nullable"));
}

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

/* Python's str() of a JSON scalar (repr() for strings when REPR), appended to B. */
static void py_text(struct kiln_buf *b, const json_t *v, bool repr)
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

/* LOC with INDEX appended (a new array; LOC itself is kept). */
static json_t *loc_with_index(const json_t *loc, size_t index)
{
	json_t *l = json_copy((json_t *)loc);
	json_array_append_new(l, json_integer((json_int_t)index));
	return l;
}

/* Add {"loc", "msg", "type"[, "ctx"]} to the detail array; CTX (may be NULL) is taken over. */
static void add_error(struct vctx *v, const json_t *loc, const char *msg, const char *type, json_t *ctx)
{
	json_t *e = json_pack("{s:o,s:s,s:s}", "loc", json_deep_copy(loc), "msg", msg, "type", type);
	if (e && ctx)
		json_object_set(e, "ctx", ctx);
	json_decref(ctx);
	json_array_append_new(v->detail, e);
}

/* A number-bound error: "ensure this value is WORDS LIMIT", type value_error.number.CODE, ctx limit_value. */
static void add_bound_error(struct vctx *v, const json_t *loc, const char *words, const char *code,
                            const json_t *limit)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	kiln_buf_printf(&msg, "ensure this value is %s ", words);
	py_text(&msg, limit, false);
	char type[64];
	snprintf(type, sizeof(type), "value_error.number.%s", code);
	add_error(v, loc, msg.ptr, type, json_pack("{s:O}", "limit_value", (json_t *)limit));
}

/* A length error: "ensure this value has at WORDS LIMIT NOUN", type TYPE, ctx limit_value. */
static void add_length_error(struct vctx *v, const json_t *loc, const char *words, const json_t *limit,
                             const char *noun, const char *type)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	kiln_buf_printf(&msg, "ensure this value has %s ", words);
	py_text(&msg, limit, false);
	kiln_buf_printf(&msg, " %s", noun);
	add_error(v, loc, msg.ptr, type, json_pack("{s:O}", "limit_value", (json_t *)limit));
}

/* ---- coercions (pydantic v1's int_validator, float_validator, bool_validator, str_validator) ---- */

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

/* VALUE as an integer the way pydantic v1's int_validator takes it: a new JSON integer, or NULL. */
static json_t *coerce_int(const json_t *value)
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

/* VALUE as a float the way pydantic v1's float_validator takes it: a new JSON real, or NULL. */
static json_t *coerce_float(const json_t *value)
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

/* VALUE as a boolean the way pydantic v1's bool_validator takes it: a new JSON boolean, or NULL. */
static json_t *coerce_bool(const json_t *value)
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

/* VALUE as a string the way pydantic v1's str_validator takes it (numbers become str() of them), or NULL. */
static json_t *coerce_str(const json_t *value)
{
	if (json_is_string(value))
		return json_incref((json_t *)value);
	if (!json_is_number(value) && !json_is_boolean(value))
		return NULL;
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	py_text(&b, value, false);
	return json_string(b.ptr);
}

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
 * Whether S matches PATTERN the way pydantic v1 checks constr(regex=...): Python's re.match, which anchors
 * at the start only ("[a-z]+" accepts "abc123"). The pattern is compiled as a POSIX extended regex
 * (regcomp with REG_EXTENDED | REG_NOSUB, wrapped as "^(PATTERN)"), which is not Python's dialect: there
 * are no lazy quantifiers (*?), lookarounds, (?:...) or (?i) groups, and inside [...] a backslash is a
 * literal. \d and \D outside brackets are rewritten to [0-9] and [^0-9]; glibc understands \w \W \s \S \b
 * itself. Returns 1 on a match, 0 on none, and -1 when PATTERN does not compile as POSIX: the caller then
 * leaves the check to the Python runner rather than refusing every request.
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

/* ---- checking one value ---- */

static json_t *check_value(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth);

/* Whether VALUE is one of ENUM's members; numbers compare by value (1 == 1.0, as in Python). */
static bool enum_has(const json_t *members, const json_t *value)
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

/* The EnumMemberError: "value is not a valid enumeration member; permitted: 'a', 'b'", ctx enum_values. */
static void add_enum_error(struct vctx *v, const json_t *loc, const json_t *members)
{
	_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
	kiln_buf_puts(&msg, "value is not a valid enumeration member; permitted: ");
	size_t i;
	const json_t *m;
	json_array_foreach(members, i, m)
	{
		if (i)
			kiln_buf_puts(&msg, ", ");
		py_text(&msg, m, true);
	}
	add_error(v, loc, msg.ptr, "type_error.enum", json_pack("{s:O}", "enum_values", (json_t *)members));
}

/*
 * A union ("anyOf", Cog's Union[...] inputs): the first member VALUE validates against wins, as in pydantic
 * v1; when none does, every member's errors are reported, all at LOC.
 */
static json_t *check_any_of(struct vctx *v, const json_t *members, const json_t *value, const json_t *loc,
                            int depth)
{
	json_t *errors = json_array();
	size_t i;
	const json_t *m;
	json_array_foreach(members, i, m)
	{
		struct vctx trial = {.root = v->root, .detail = json_array()};
		json_t *out = check_value(&trial, m, value, loc, depth + 1);
		if (out) {
			json_decref(trial.detail);
			json_decref(errors);
			return out;
		}
		json_array_extend(errors, trial.detail);
		json_decref(trial.detail);
	}
	json_array_extend(v->detail, errors);
	json_decref(errors);
	return NULL;
}

/* A File or Path input ("format": "uri"): Cog's File.validate takes data:, http: and https: URLs only. */
static json_t *check_uri(struct vctx *v, const json_t *value, const json_t *loc)
{
	if (!json_is_string(value)) {
		add_error(v, loc, "str type expected", "type_error.str", NULL);
		return NULL;
	}
	/* urllib.parse.urlparse's scheme: letters first, then letters, digits, '+', '-', '.', before ':'. */
	const char *s = json_string_value(value);
	char scheme[32] = "";
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
	if (n > 0 && s[n] == ':' && isalpha((unsigned char)s[0]) && n < sizeof(scheme)) {
		for (size_t i = 0; i < n; i++)
			scheme[i] = (char)tolower((unsigned char)s[i]);
		scheme[n] = '\0';
	}
	if (strcmp(scheme, "data") && strcmp(scheme, "http") && strcmp(scheme, "https")) {
		_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
		kiln_buf_printf(
		    &msg, "'%s' is not a valid URL scheme. 'data', 'http', or 'https' is supported.", scheme);
		add_error(v, loc, msg.ptr, "value_error", NULL);
		return NULL;
	}
	return json_incref((json_t *)value);
}

/* minimum/maximum (ge/le) and exclusiveMinimum/exclusiveMaximum (gt/lt), in pydantic's order. */
static bool check_bounds(struct vctx *v, const json_t *schema, double x, const json_t *loc)
{
	const json_t *gt = schema_get(v->root, schema, "exclusiveMinimum");
	const json_t *ge = schema_get(v->root, schema, "minimum");
	const json_t *lt = schema_get(v->root, schema, "exclusiveMaximum");
	const json_t *le = schema_get(v->root, schema, "maximum");
	if (json_is_number(gt) && !(x > json_number_value(gt)))
		add_bound_error(v, loc, "greater than", "not_gt", gt);
	else if (json_is_number(ge) && !(x >= json_number_value(ge)))
		add_bound_error(v, loc, "greater than or equal to", "not_ge", ge);
	else if (json_is_number(lt) && !(x < json_number_value(lt)))
		add_bound_error(v, loc, "less than", "not_lt", lt);
	else if (json_is_number(le) && !(x <= json_number_value(le)))
		add_bound_error(v, loc, "less than or equal to", "not_le", le);
	else
		return true;
	return false;
}

/* minLength, maxLength, then pattern (constr's order), on string S. */
static bool check_string(struct vctx *v, const json_t *schema, const char *s, const json_t *loc)
{
	const json_t *min = schema_get(v->root, schema, "minLength");
	const json_t *max = schema_get(v->root, schema, "maxLength");
	const json_t *pattern = schema_get(v->root, schema, "pattern");
	size_t len = utf8_length(s);
	if (json_is_integer(min) && (json_int_t)len < json_integer_value(min)) {
		add_length_error(v, loc, "at least", min, "characters", "value_error.any_str.min_length");
		return false;
	}
	if (json_is_integer(max) && (json_int_t)len > json_integer_value(max)) {
		add_length_error(v, loc, "at most", max, "characters", "value_error.any_str.max_length");
		return false;
	}
	if (json_is_string(pattern) && pattern_match(json_string_value(pattern), s) == 0) {
		_cleanup_buf_ struct kiln_buf msg = KILN_BUF_INIT;
		kiln_buf_printf(&msg, "string does not match regex \"%s\"", json_string_value(pattern));
		add_error(v, loc, msg.ptr, "value_error.str.regex",
		          json_pack("{s:O}", "pattern", (json_t *)pattern));
		return false;
	}
	return true;
}

/* An array: each item against "items" (LOC plus its index), then minItems/maxItems. */
static json_t *check_array(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth)
{
	if (!json_is_array(value)) {
		add_error(v, loc, "value is not a valid list", "type_error.list", NULL);
		return NULL;
	}
	const json_t *items = schema_get(v->root, schema, "items");
	json_t *out = json_array();
	bool ok = true;
	size_t i;
	const json_t *item;
	json_array_foreach(value, i, item)
	{
		json_t *item_loc = loc_with_index(loc, i);
		json_t *c = items ? check_value(v, items, item, item_loc, depth + 1) : json_deep_copy(item);
		json_decref(item_loc);
		if (c)
			json_array_append_new(out, c);
		else
			ok = false;
	}
	const json_t *min = schema_get(v->root, schema, "minItems");
	const json_t *max = schema_get(v->root, schema, "maxItems");
	if (ok && json_is_integer(min) && (json_int_t)json_array_size(value) < json_integer_value(min)) {
		add_length_error(v, loc, "at least", min, "items", "value_error.list.min_items");
		ok = false;
	} else if (ok && json_is_integer(max) &&
	           (json_int_t)json_array_size(value) > json_integer_value(max)) {
		add_length_error(v, loc, "at most", max, "items", "value_error.list.max_items");
		ok = false;
	}
	if (!ok) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/*
 * Check VALUE (not null-checked by the caller for top-level fields) against SCHEMA. Returns the coerced
 * value (a new reference), or NULL after adding the problem to v->detail at LOC.
 */
static json_t *check_value(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth)
{
	if (depth > MAX_DEPTH)
		return json_deep_copy(value);
	const json_t *any_of = schema_get(v->root, schema, "anyOf");
	if (json_is_array(any_of) && json_array_size(any_of) > 0)
		return check_any_of(v, any_of, value, loc, depth);
	if (json_is_null(value)) {
		if (schema_nullable(v->root, schema))
			return json_null();
		add_error(v, loc, "none is not an allowed value", "type_error.none.not_allowed", NULL);
		return NULL;
	}

	const char *type = schema_type(v->root, schema);
	const json_t *members = schema_get(v->root, schema, "enum");
	if (!json_is_array(members))
		members = NULL;
	json_t *out = NULL;

	if (!strcmp(type, "string") && members) {
		/* A str Enum: pydantic looks the value up as it is, no str() first. */
		if (!json_is_string(value) || !enum_has(members, value)) {
			add_enum_error(v, loc, members);
			return NULL;
		}
		return json_incref((json_t *)value);
	} else if (!strcmp(type, "string")) {
		const char *format = json_string_value(schema_get(v->root, schema, "format"));
		if (format && !strcmp(format, "uri"))
			return check_uri(v, value, loc);
		if (!(out = coerce_str(value))) {
			add_error(v, loc, "str type expected", "type_error.str", NULL);
			return NULL;
		}
		if (!check_string(v, schema, json_string_value(out), loc))
			goto fail;
		return out;
	} else if (!strcmp(type, "integer")) {
		if (!(out = coerce_int(value))) {
			add_error(v, loc, "value is not a valid integer", "type_error.integer", NULL);
			return NULL;
		}
	} else if (!strcmp(type, "number")) {
		if (!(out = coerce_float(value))) {
			add_error(v, loc, "value is not a valid float", "type_error.float", NULL);
			return NULL;
		}
	} else if (!strcmp(type, "boolean")) {
		if (!(out = coerce_bool(value))) {
			add_error(v, loc, "value could not be parsed to a boolean", "type_error.bool", NULL);
			return NULL;
		}
	} else if (!strcmp(type, "array")) {
		return check_array(v, schema, value, loc, depth);
	} else if (!strcmp(type, "object")) {
		if (!json_is_object(value)) {
			add_error(v, loc, "value is not a valid dict", "type_error.dict", NULL);
			return NULL;
		}
		return json_deep_copy(value);
	} else {
		/* No type (Any, or choices of mixed types): taken as it is. */
		out = json_deep_copy(value);
	}

	if (members) {
		if (!enum_has(members, out)) {
			add_enum_error(v, loc, members);
			goto fail;
		}
		return out;
	}
	if (json_is_number(out) && !check_bounds(v, schema, json_number_value(out), loc))
		goto fail;
	return out;
fail:
	json_decref(out);
	return NULL;
}

/* ---- the Input object ---- */

struct field {
	const char *name;
	const json_t *schema;
	double order; /* "x-order", else after every ordered field */
	size_t index; /* position in "properties", to keep the sort stable */
};

static int field_cmp(const void *a, const void *b)
{
	const struct field *x = a, *y = b;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* components.schemas.Input of SCHEMA; a bare object schema with "properties" is taken as the Input itself. */
static const json_t *input_schema(const json_t *schema)
{
	const json_t *in = resolve_ref(schema, "#/components/schemas/Input");
	if (json_is_object(in))
		return in;
	if (json_is_object(json_object_get(schema, "properties")))
		return schema;
	return NULL;
}

/* Whether NAME is in the schema's "required" array. */
static bool is_required(const json_t *required, const char *name)
{
	size_t i;
	const json_t *r;
	json_array_foreach(required, i, r)
	{
		if (json_is_string(r) && !strcmp(json_string_value(r), name))
			return true;
	}
	return false;
}

/* One top-level field: missing, null, or a value to check; its normalized value goes into OUT. */
static void check_field(struct vctx *v, const json_t *required, const struct field *f, const json_t *input,
                        json_t *out)
{
	json_t *loc = json_pack("[s,s,s]", "body", "input", f->name);
	const json_t *value = json_object_get(input, f->name);
	const json_t *def = json_object_get(f->schema, "default");
	bool req = is_required(required, f->name);

	if (!value) {
		if (req)
			add_error(v, loc, "field required", "value_error.missing", NULL);
		else
			json_object_set_new(out, f->name, def ? json_deep_copy(def) : json_null());
	} else if (json_is_null(value) &&
	           (schema_nullable(v->root, f->schema) || (!req && (!def || json_is_null(def))))) {
		/* pydantic allows None where the type is Optional, and a None default makes it so. */
		json_object_set_new(out, f->name, json_null());
	} else {
		json_t *c = check_value(v, f->schema, value, loc, 0);
		if (c)
			json_object_set_new(out, f->name, c);
	}
	json_decref(loc);
}

/* Check every field of the Input schema IN against INPUT (an object), in "x-order" order, into OUT. */
static int check_fields(struct vctx *v, const json_t *in, const json_t *input, json_t *out)
{
	const json_t *props = json_object_get(in, "properties");
	const json_t *required = json_object_get(in, "required");
	size_t n = json_object_size(props);
	_cleanup_free_ struct field *fields = calloc(n ? n : 1, sizeof(*fields));
	if (!fields)
		return -1;
	const char *name;
	const json_t *prop;
	size_t i = 0;
	json_object_foreach((json_t *)props, name, prop)
	{
		const json_t *order = json_object_get(prop, "x-order");
		fields[i] = (struct field){name, prop,
		                           json_is_number(order) ? json_number_value(order) : HUGE_VAL, i};
		i++;
	}
	qsort(fields, n, sizeof(*fields), field_cmp);
	for (i = 0; i < n; i++)
		check_field(v, required, &fields[i], input, out);
	return 0;
}

int shim_validate_input(const json_t *schema, const json_t *input, json_t **normalized, json_t **detail)
{
	*normalized = NULL;
	*detail = NULL;
	const json_t *in = input_schema(schema);
	if (!in) {
		/* Nothing to check against: pass the input through. */
		*normalized = json_is_object(input) ? json_deep_copy(input) : json_object();
		return 0;
	}
	struct vctx v = {.root = schema, .detail = json_array()};
	json_t *out = json_object();
	int rc = v.detail && out ? 0 : -1;
	if (rc == 0 && input && !json_is_null(input) && !json_is_object(input)) {
		json_t *loc = json_pack("[s,s]", "body", "input");
		add_error(&v, loc, "value is not a valid dict", "type_error.dict", NULL);
		json_decref(loc);
	} else if (rc == 0) {
		rc = check_fields(&v, in, input, out);
	}
	if (rc < 0) {
		/* Out of memory: still answer in the detail shape the caller expects. */
		json_decref(v.detail);
		json_decref(out);
		*detail = json_pack("[{s:[s,s],s:s,s:s}]", "loc", "body", "input", "msg", "out of memory",
		                    "type", "value_error");
		return -1;
	}
	if (json_array_size(v.detail) > 0) {
		json_decref(out);
		*detail = v.detail;
		return -1;
	}
	json_decref(v.detail);
	*normalized = out;
	return 0;
}
