/* SPDX-License-Identifier: Apache-2.0 */
/* validate.c: check a prediction's input against Cog's Input schema, answering in pydantic v1's words. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/shim.h"
#include "shim/validate.h"

/*
 * What Cog does, and so what validate*.c do (Cog's Python server: a pydantic v1 model built from predict()'s
 * signature, validated by FastAPI, errors returned as a 422 {"detail": [...]}):
 *
 * - Unknown input names are refused, as Cog 0.22's server (coglet) refuses them: one error per name, after
 * the fields' own, {"loc": ["body", "input", NAME], "msg": "Unexpected field 'NAME'", "type":
 *   "value_error.extra"} (Cog's older Python server ignored them; a name kiln would drop is input ignored).
 * - Fields are checked in declaration order ("x-order"); each field reports at most one problem (pydantic
 *   stops at a field's first failing validator), and every field is checked, so several fields can fail at
 *   once. Array items each report their own problem, with the index appended to "loc".
 * - Defaults are not validated (pydantic v1's validate_all is off) and are copied as they are. A field that
 *   is not required and has no default (`x: Optional[int] = Input()`; an Optional's default=None is
 *   written as "default": null) becomes null, as predict() receives None.
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
 * - A union ("anyOf", Cog 0.22's `str | float` inputs) is checked as Cog's newer runtime checks it, strictly:
 *   the value must have one member's JSON type (an integer fits a number), no coercion between types.
 * - Where JSON cannot carry what Python would produce, the value is refused instead: integers beyond 64 bits,
 *   and "nan"/"inf" strings for a number. A File/Path that is not a string is refused as "str type expected"
 *   (Cog answers 500 there).
 */

/* Deepest chain of $ref/allOf/anyOf followed before giving up (a schema that refers to itself). */
#define MAX_DEPTH 16

/* ---- schema lookups ---- */

const json_t *shim_schema_resolve(const json_t *root, const char *ref)
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

const json_t *shim_schema_get(const json_t *root, const json_t *schema, const char *key)
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
	    (v = lookup(root, shim_schema_resolve(root, json_string_value(ref)), key, depth + 1)))
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
	const char *t = json_string_value(shim_schema_get(root, schema, "type"));
	return t ? t : "";
}

/* Whether SCHEMA says null is allowed ("nullable": true, OpenAPI 3.0's way, or Swagger's "x-nullable"). */
static bool schema_nullable(const json_t *root, const json_t *schema)
{
	return json_is_true(shim_schema_get(root, schema, "nullable")) ||
	       json_is_true(shim_schema_get(root, schema, "x-nullable"));
}

/* ---- checking one value ---- */

static json_t *check_value(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth);

/*
 * Whether VALUE has the JSON type of union member SCHEMA, as Cog's union inputs take them: strictly (a bool
 * is no number, "5" no integer), an integer also a number unless EXACT; an array's items each so.
 */
static bool member_fits(const json_t *root, const json_t *schema, const json_t *value, bool exact, int depth)
{
	const char *type = schema_type(root, schema);
	if (!strcmp(type, "string"))
		return json_is_string(value);
	if (!strcmp(type, "integer"))
		return json_is_integer(value);
	if (!strcmp(type, "number"))
		return exact ? json_is_real(value) : json_is_number(value);
	if (!strcmp(type, "boolean"))
		return json_is_boolean(value);
	if (!strcmp(type, "object"))
		return json_is_object(value);
	if (!strcmp(type, "array")) {
		const json_t *items = shim_schema_get(root, schema, "items");
		size_t i;
		const json_t *item;
		if (!json_is_array(value))
			return false;
		json_array_foreach(value, i, item)
		{
			if (items && depth < MAX_DEPTH && !member_fits(root, items, item, exact, depth + 1))
				return false;
		}
		return true;
	}
	return true; /* no type: Any */
}

/* The problem pydantic names for a value that is not of union member SCHEMA's type. */
static void add_member_error(struct vctx *v, const json_t *schema, const json_t *loc)
{
	static const char *const words[][3] = {
	    {"string", "str type expected", "type_error.str"},
	    {"integer", "value is not a valid integer", "type_error.integer"},
	    {"number", "value is not a valid float", "type_error.float"},
	    {"boolean", "value could not be parsed to a boolean", "type_error.bool"},
	    {"array", "value is not a valid list", "type_error.list"},
	    {"object", "value is not a valid dict", "type_error.dict"},
	};
	const char *type = schema_type(v->root, schema);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (!strcmp(type, words[i][0])) {
			vadd_error(v, loc, words[i][1], words[i][2], NULL);
			return;
		}
	}
}

/*
 * A union ("anyOf", Cog's `str | float` inputs, of JSON's own types): VALUE is taken as the first member
 * whose type it has exactly (5 an integer, 5.0 a number), else the first it fits (5 for a number), and
 * checked against that member's constraints; no coercion between types (Cog validates union inputs strictly).
 * When it fits none, each member's type problem is reported, all at LOC.
 */
static json_t *check_any_of(struct vctx *v, const json_t *members, const json_t *value, const json_t *loc,
                            int depth)
{
	size_t i;
	const json_t *m;
	if (json_is_null(value)) {
		vadd_error(v, loc, "none is not an allowed value", "type_error.none.not_allowed", NULL);
		return NULL;
	}
	for (int exact = 1; exact >= 0; exact--) {
		json_array_foreach(members, i, m)
		{
			if (member_fits(v->root, m, value, exact, depth))
				return check_value(v, m, value, loc, depth + 1);
		}
	}
	json_array_foreach(members, i, m)
	{
		add_member_error(v, m, loc);
	}
	return NULL;
}

/* A File or Path input ("format": "uri"): Cog's File.validate takes data:, http: and https: URLs only. */
static json_t *check_uri(struct vctx *v, const json_t *value, const json_t *loc)
{
	if (!json_is_string(value)) {
		vadd_error(v, loc, "str type expected", "type_error.str", NULL);
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
		vadd_error(v, loc, msg.ptr, "value_error", NULL);
		return NULL;
	}
	return json_incref((json_t *)value);
}

/* An array: each item against "items" (LOC plus its index), then minItems/maxItems. */
static json_t *check_array(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth)
{
	if (!json_is_array(value)) {
		vadd_error(v, loc, "value is not a valid list", "type_error.list", NULL);
		return NULL;
	}
	const json_t *items = shim_schema_get(v->root, schema, "items");
	json_t *out = json_array();
	bool ok = true;
	size_t i;
	const json_t *item;
	json_array_foreach(value, i, item)
	{
		json_t *item_loc = vloc_with_index(loc, i);
		json_t *c = items ? check_value(v, items, item, item_loc, depth + 1) : json_deep_copy(item);
		json_decref(item_loc);
		if (c)
			json_array_append_new(out, c);
		else
			ok = false;
	}
	const json_t *min = shim_schema_get(v->root, schema, "minItems");
	const json_t *max = shim_schema_get(v->root, schema, "maxItems");
	if (ok && json_is_integer(min) && (json_int_t)json_array_size(value) < json_integer_value(min)) {
		vadd_length_error(v, loc, "at least", min, "items", "value_error.list.min_items");
		ok = false;
	} else if (ok && json_is_integer(max) &&
	           (json_int_t)json_array_size(value) > json_integer_value(max)) {
		vadd_length_error(v, loc, "at most", max, "items", "value_error.list.max_items");
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
	const json_t *any_of = shim_schema_get(v->root, schema, "anyOf");
	if (json_is_array(any_of) && json_array_size(any_of) > 0)
		return check_any_of(v, any_of, value, loc, depth);
	if (json_is_null(value)) {
		if (schema_nullable(v->root, schema))
			return json_null();
		vadd_error(v, loc, "none is not an allowed value", "type_error.none.not_allowed", NULL);
		return NULL;
	}

	const char *type = schema_type(v->root, schema);
	const json_t *members = shim_schema_get(v->root, schema, "enum");
	if (!json_is_array(members))
		members = NULL;
	json_t *out = NULL;

	if (!strcmp(type, "string") && members) {
		/* A str Enum: pydantic looks the value up as it is, no str() first. */
		if (!json_is_string(value) || !venum_has(members, value)) {
			vadd_enum_error(v, loc, members);
			return NULL;
		}
		return json_incref((json_t *)value);
	} else if (!strcmp(type, "string")) {
		const char *format = json_string_value(shim_schema_get(v->root, schema, "format"));
		if (format && !strcmp(format, "uri"))
			return check_uri(v, value, loc);
		if (!(out = vcoerce_str(value))) {
			vadd_error(v, loc, "str type expected", "type_error.str", NULL);
			return NULL;
		}
		if (!vcheck_string(v, schema, json_string_value(out), loc))
			goto fail;
		return out;
	} else if (!strcmp(type, "integer")) {
		if (!(out = vcoerce_int(value))) {
			vadd_error(v, loc, "value is not a valid integer", "type_error.integer", NULL);
			return NULL;
		}
	} else if (!strcmp(type, "number")) {
		if (!(out = vcoerce_float(value))) {
			vadd_error(v, loc, "value is not a valid float", "type_error.float", NULL);
			return NULL;
		}
	} else if (!strcmp(type, "boolean")) {
		if (!(out = vcoerce_bool(value))) {
			vadd_error(v, loc, "value could not be parsed to a boolean", "type_error.bool", NULL);
			return NULL;
		}
	} else if (!strcmp(type, "array")) {
		return check_array(v, schema, value, loc, depth);
	} else if (!strcmp(type, "object")) {
		if (!json_is_object(value)) {
			vadd_error(v, loc, "value is not a valid dict", "type_error.dict", NULL);
			return NULL;
		}
		return json_deep_copy(value);
	} else {
		/* No type (Any, or choices of mixed types): taken as it is. */
		out = json_deep_copy(value);
	}

	if (members) {
		if (!venum_has(members, out)) {
			vadd_enum_error(v, loc, members);
			goto fail;
		}
		return out;
	}
	if (json_is_number(out) && !vcheck_bounds(v, schema, json_number_value(out), loc))
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
	const json_t *in = shim_schema_resolve(schema, "#/components/schemas/Input");
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
			vadd_error(v, loc, "field required", "value_error.missing", NULL);
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
	const json_t *value;
	json_object_foreach((json_t *)input, name, value)
	{
		if (json_object_get(props, name))
			continue;
		_cleanup_free_ char *msg = NULL;
		json_t *loc = json_pack("[s,s,s]", "body", "input", name);
		if (loc && asprintf(&msg, "Unexpected field '%s'", name) >= 0)
			vadd_error(v, loc, msg, "value_error.extra", NULL);
		json_decref(loc);
	}
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
		vadd_error(&v, loc, "value is not a valid dict", "type_error.dict", NULL);
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

json_t *shim_schema_for_training(const json_t *doc)
{
	const json_t *schemas = json_object_get(json_object_get(doc, "components"), "schemas");
	json_t *training = json_object_get(schemas, "TrainingInput");
	if (!json_is_object(training))
		return NULL;
	json_t *view = json_copy((json_t *)doc);
	json_t *components = json_copy(json_object_get(doc, "components"));
	json_t *copy = json_copy((json_t *)schemas);
	if (!view || !components || !copy || json_object_set(copy, "Input", training) < 0) {
		json_decref(view);
		json_decref(components);
		json_decref(copy);
		return NULL;
	}
	/* set_new takes its value even when it fails */
	if (json_object_set_new(components, "schemas", copy) < 0) {
		json_decref(components);
		json_decref(view);
		return NULL;
	}
	if (json_object_set_new(view, "components", components) < 0) {
		json_decref(view);
		return NULL;
	}
	return view;
}
