/* SPDX-License-Identifier: Apache-2.0 */
/* validate.c: check a prediction's input against Cog's Input schema, answering as Cog 0.22's coglet does. */
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
 * What Cog 0.22 does, and so what validate*.c do. Its server (coglet) checks a request's input against
 * the schema's Input with a JSON Schema validator (jsonschema-rs) before the model sees it, and answers a
 * failure 422 {"detail": [{"loc": ["body", "input", FIELD], "msg": ..., "type": ...}]}:
 *
 * - A missing required field is {"msg": "Field required", "type": "value_error.missing"}.
 * - Any other problem is jsonschema's message with "type": "value_error": `"abc" is not of type
 *   "integer"`, `0 is less than the minimum of 1`, `"ab" is shorter than 3 characters`, `"x" is not one of
 *   ["a","b"]`, `[] has less than 1 item`, `"1a" does not match "^[a-z]+"`, `5 is not valid under any of
 *   the schemas listed in the 'anyOf' keyword`; the value as serde_json writes it. An array item's FIELD is
 *   its JSON pointer without the leading '/' ("weights/1"); an input that is no object is "__root__".
 * - Types are JSON Schema's, strictly: no coercion ("5" is no integer, 1 no boolean, 5 no string); an
 *   integer-valued real is an integer (passed on as one), any number a number (passed on as a real, as
 *   float() gives predict()).
 * - Unknown input names are no error (coglet drops them since Cog 0.22 took Replicate's behaviour): they
 *   are left out of the normalized input; the caller tells the client (shim_validate_unknown).
 * - Fields are checked in declaration order ("x-order"); each reports its first problem (type, choices,
 *   bounds, lengths, pattern), and every field is checked, so several can fail at once.
 * - Defaults are not validated and are copied as they are. A field that is not required and has no
 *   default (`x: Optional[int] = Input()`) becomes null, as predict() receives None. null is accepted for a
 *   "nullable" property or one whose default is None.
 * - Where JSON cannot carry what Python would get, the value is refused: integers beyond 64 bits. A File or
 *   Path must be a data:, http: or https: URL (Cog's SDK refuses other schemes).
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
 * Whether VALUE has the JSON type of union member SCHEMA exactly (5 an integer, 5.0 a number), for picking
 * the member a value is taken as when it is valid under several.
 */
static bool member_exact(const json_t *root, const json_t *schema, const json_t *value)
{
	const char *type = schema_type(root, schema);
	if (!strcmp(type, "integer"))
		return json_is_integer(value);
	if (!strcmp(type, "number"))
		return json_is_real(value);
	return true;
}

/*
 * A union ("anyOf", Cog 0.22's `str | float` inputs): VALUE is valid when it is valid under one member,
 * and is taken as the first member whose type it has exactly, else the first it is valid under. When it
 * is valid under none, jsonschema's one message for the whole union.
 */
static json_t *check_any_of(struct vctx *v, const json_t *members, const json_t *value, const json_t *loc,
                            int depth)
{
	for (int exact = 1; exact >= 0; exact--) {
		size_t i;
		const json_t *m;
		json_array_foreach(members, i, m)
		{
			if (exact && !member_exact(v->root, m, value))
				continue;
			struct vctx scratch = {.root = v->root, .detail = json_array()};
			json_t *c = scratch.detail ? check_value(&scratch, m, value, loc, depth + 1) : NULL;
			json_decref(scratch.detail);
			if (c)
				return c;
		}
	}
	vadd_text_error(v, loc, value,
	                " is not valid under any of the schemas listed in the 'anyOf' keyword");
	return NULL;
}

/* A File or Path input ("format": "uri"): Cog's File.validate takes data:, http: and https: URLs only. */
static json_t *check_uri(struct vctx *v, const json_t *value, const json_t *loc)
{
	if (!json_is_string(value)) {
		vadd_type_error(v, loc, value, "string");
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
		vadd_error(v, loc, msg.ptr, "value_error");
		return NULL;
	}
	return json_incref((json_t *)value);
}

/* An array: each item against "items" (LOC "name/INDEX"), then minItems/maxItems. */
static json_t *check_array(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth)
{
	if (!json_is_array(value)) {
		vadd_type_error(v, loc, value, "array");
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
	json_int_t count = (json_int_t)json_array_size(value);
	if (ok && json_is_integer(min) && count < json_integer_value(min)) {
		vadd_count_error(v, loc, value, "has less than", json_integer_value(min), "item");
		ok = false;
	} else if (ok && json_is_integer(max) && count > json_integer_value(max)) {
		vadd_count_error(v, loc, value, "has more than", json_integer_value(max), "item");
		ok = false;
	}
	if (!ok) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/*
 * VALUE as JSON Schema type TYPE takes it, strictly (no coercion: "5" is no integer, 1 no boolean), as a
 * new reference: an integer-valued real for "integer" becomes that integer, any number for "number" a real
 * (what Python's int() and float() give predict()). NULL when VALUE is not of TYPE.
 */
static json_t *typed(const char *type, const json_t *value)
{
	if (!strcmp(type, "string"))
		return json_is_string(value) ? json_incref((json_t *)value) : NULL;
	if (!strcmp(type, "integer")) {
		if (json_is_integer(value))
			return json_incref((json_t *)value);
		double d = json_is_real(value) ? json_real_value(value) : NAN;
		/* within the range a JSON integer of 64 bits holds exactly */
		if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
			return json_integer((json_int_t)d);
		return NULL;
	}
	if (!strcmp(type, "number"))
		return json_is_number(value) ? json_real(json_number_value(value)) : NULL;
	if (!strcmp(type, "boolean"))
		return json_is_boolean(value) ? json_incref((json_t *)value) : NULL;
	if (!strcmp(type, "object"))
		return json_is_object(value) ? json_deep_copy(value) : NULL;
	return json_deep_copy(value); /* no type: Any, or choices of mixed types */
}

/*
 * Check VALUE against SCHEMA: its type, then choices, bounds, lengths and pattern; a field reports its
 * first problem only. Returns the value to run with (a new reference), or NULL after adding the problem to
 * v->detail at LOC.
 */
static json_t *check_value(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc,
                           int depth)
{
	if (depth > MAX_DEPTH)
		return json_deep_copy(value);
	const json_t *any_of = shim_schema_get(v->root, schema, "anyOf");
	if (json_is_array(any_of) && json_array_size(any_of) > 0)
		return check_any_of(v, any_of, value, loc, depth);
	if (json_is_null(value) && schema_nullable(v->root, schema))
		return json_null();

	const char *type = schema_type(v->root, schema);
	if (!strcmp(type, "array"))
		return check_array(v, schema, value, loc, depth);
	const char *format = json_string_value(shim_schema_get(v->root, schema, "format"));
	if (!strcmp(type, "string") && format && !strcmp(format, "uri"))
		return check_uri(v, value, loc);
	json_t *out = typed(type, value);
	if (!out) {
		vadd_type_error(v, loc, value, type);
		return NULL;
	}
	const json_t *members = shim_schema_get(v->root, schema, "enum");
	if (json_is_array(members) && !venum_has(members, out)) {
		vadd_enum_error(v, loc, value, members);
		goto fail;
	}
	if (json_is_number(out) && !vcheck_bounds(v, schema, value, loc))
		goto fail;
	if (json_is_string(out) && !vcheck_string(v, schema, out, loc))
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
			vadd_error(v, loc, "Field required", "value_error.missing");
		else
			json_object_set_new(out, f->name, def ? json_deep_copy(def) : json_null());
	} else if (json_is_null(value) &&
	           (schema_nullable(v->root, f->schema) || (!req && (!def || json_is_null(def))))) {
		/* None is allowed where the type is Optional, and a None default makes it so. */
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

char *shim_validate_unknown(const json_t *schema, const json_t *input)
{
	const json_t *in = input_schema(schema);
	const json_t *props = in ? json_object_get(in, "properties") : NULL;
	if (!in || !json_is_object(input))
		return NULL;
	_cleanup_buf_ struct kiln_buf names = KILN_BUF_INIT;
	const char *name;
	const json_t *value;
	json_object_foreach((json_t *)input, name, value)
	{
		if (!json_object_get(props, name))
			kiln_buf_printf(&names, "%s'%s'", names.len ? ", " : "", name);
	}
	return names.len ? kiln_buf_detach(&names) : NULL;
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
		/* coglet names the whole input "__root__" */
		json_t *loc = json_pack("[s,s,s]", "body", "input", "__root__");
		vadd_type_error(&v, loc, input, "object");
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
