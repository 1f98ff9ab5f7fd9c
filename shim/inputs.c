/* SPDX-License-Identifier: Apache-2.0 */
/*
 * inputs.c: a prediction's input object from command-line arguments (kiln predict -i NAME=VALUE), each
 * value typed by the predictor's OpenAPI schema as `cog predict` types it: integers, numbers and booleans
 * parsed, a dict input's value read as JSON, a union's as the first of its types the text reads as, repeated
 * names (or an array input) gathered into a list, "@PATH" for a file read into a data: URI.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/shim.h"

/* The schema of input NAME: its property in components.schemas.Input, through an allOf/$ref (choices). */
static const json_t *property(const json_t *doc, const char *name)
{
	const json_t *schemas = json_object_get(json_object_get(doc, "components"), "schemas");
	return json_object_get(json_object_get(json_object_get(schemas, "Input"), "properties"), name);
}

/* The "type" of input schema P (through its $ref or allOf: Cog's choices), or "". */
static const char *type_of(const json_t *doc, const json_t *p)
{
	const char *t = json_string_value(shim_schema_get(doc, p, "type"));
	return t ? t : "";
}

/* Whether P takes a file: a string of format "uri". */
static bool is_file(const json_t *doc, const json_t *p)
{
	const char *format = json_string_value(shim_schema_get(doc, p, "format"));
	return strcmp(type_of(doc, p), "string") == 0 && format && strcmp(format, "uri") == 0;
}

/* Go's strconv.ParseBool, as cog predict reads booleans. -1 when VALUE is none of its spellings. */
static int parse_bool(const char *v)
{
	static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(v, yes[i]) == 0)
			return 1;
		if (strcmp(v, no[i]) == 0)
			return 0;
	}
	return -1;
}

/* Whether union P ("anyOf") has a member of type TYPE. */
static bool union_has(const json_t *doc, const json_t *p, const char *type)
{
	size_t i;
	const json_t *m;
	json_array_foreach(shim_schema_get(doc, p, "anyOf"), i, m)
	{
		if (strcmp(type_of(doc, m), type) == 0)
			return true;
	}
	return false;
}

/*
 * The type VALUE is read as for union P (`str | float`), as cog predict reads it: a number where the union
 * takes one and VALUE reads as one, a boolean where it takes booleans but no strings, else a string (or an
 * object, for a union of dicts).
 */
static const char *union_type(const json_t *doc, const json_t *p, const char *value)
{
	char *end = NULL;
	if (union_has(doc, p, "integer") && *value && (strtoll(value, &end, 10), !*end))
		return "integer";
	if (union_has(doc, p, "number") && *value && (strtod(value, &end), !*end))
		return "number";
	if (union_has(doc, p, "boolean") && !union_has(doc, p, "string") && parse_bool(value) >= 0)
		return "boolean";
	if (union_has(doc, p, "object") && !union_has(doc, p, "string"))
		return "object";
	return "string";
}

/*
 * For a union of lists (`list[int] | list[float]`), a union of their items' schemas, for each -i of it to be
 * read as an item; NULL for any other input.
 */
static json_t *union_items(const json_t *doc, const json_t *p)
{
	const json_t *members = shim_schema_get(doc, p, "anyOf");
	json_t *items = json_array();
	size_t i;
	const json_t *m;
	json_array_foreach(members, i, m)
	{
		if (strcmp(type_of(doc, m), "array") == 0 && shim_schema_get(doc, m, "items"))
			json_array_append(items, (json_t *)shim_schema_get(doc, m, "items"));
	}
	if (json_array_size(items) == 0 || json_array_size(items) != json_array_size(members)) {
		json_decref(items);
		return NULL;
	}
	return json_pack("{s:o}", "anyOf", items);
}

/* VALUE for input NAME, typed by P (an item's schema for arrays). */
static int coerce(json_t **out, const json_t *doc, const json_t *p, const char *name, const char *value,
                  struct kiln_error **err)
{
	const char *type = type_of(doc, p);
	if (!*type && json_is_array(shim_schema_get(doc, p, "anyOf")))
		type = union_type(doc, p, value);
	if (value[0] == '@' && (is_file(doc, p) || !*type)) {
		char *uri = NULL;
		if (shim_files_data_uri(&uri, value + 1, err) < 0)
			return kiln_error_wrap(err, "input '%s'", name);
		*out = json_string(uri);
		free(uri);
		return *out ? 0
		            : kiln_error_set(err, KILN_EINVAL, "input '%s': '%s' is not UTF-8", name, value);
	}
	char *end = NULL;
	errno = 0;
	if (strcmp(type, "integer") == 0) {
		long long n = strtoll(value, &end, 10);
		if (!*value || *end || errno)
			return kiln_error_set(err, KILN_EINVAL, "input '%s': '%s' is not an integer", name,
			                      value);
		*out = json_integer(n);
	} else if (strcmp(type, "number") == 0) {
		double d = strtod(value, &end);
		if (!*value || *end || errno || !isfinite(d))
			return kiln_error_set(err, KILN_EINVAL, "input '%s': '%s' is not a number", name,
			                      value);
		*out = json_real(d);
	} else if (strcmp(type, "boolean") == 0) {
		int b = parse_bool(value);
		if (b < 0)
			return kiln_error_set(err, KILN_EINVAL,
			                      "input '%s': '%s' is not a boolean (true or false)", name,
			                      value);
		*out = json_boolean(b);
	} else if (strcmp(type, "object") == 0) {
		/* a dict input: the value is JSON text ({"a": 1}) */
		*out = json_loads(value, JSON_DECODE_ANY, NULL);
		if (!json_is_object(*out)) {
			json_decref(*out);
			return kiln_error_set(err, KILN_EINVAL, "input '%s': '%s' is not a JSON object", name,
			                      value);
		}
	} else {
		*out = json_string(value);
	}
	return *out ? 0 : kiln_error_set(err, KILN_EINVAL, "input '%s': '%s' is not UTF-8", name, value);
}

/* The name of the first input (the lowest x-order), or NULL when the schema has none. */
static const char *first_input(const json_t *doc)
{
	const json_t *props = json_object_get(
	    json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "Input"),
	    "properties");
	const char *best = NULL, *key;
	json_int_t order = 0;
	json_t *v;
	json_object_foreach((json_t *)props, key, v)
	{
		json_int_t o = json_integer_value(json_object_get(v, "x-order"));
		if (!best || o < order) {
			best = key;
			order = o;
		}
	}
	return best;
}

char *shim_inputs_arg_name(const char *arg, const json_t *schema, const char **value)
{
	const char *eq = strchr(arg, '=');
	*value = arg;
	if (eq && eq > arg && strcspn(arg, "@") > (size_t)(eq - arg)) {
		*value = eq + 1;
		return strndup(arg, (size_t)(eq - arg));
	}
	const char *first = first_input(schema); /* as cog predict: -i VALUE is the first input */
	if (!first) {
		errno = ENOENT;
		return NULL;
	}
	return strdup(first);
}

/* "a, b and c": the input names the schema has, for messages. */
static char *input_names(const json_t *doc)
{
	const json_t *props = json_object_get(
	    json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "Input"),
	    "properties");
	struct kiln_buf b = KILN_BUF_INIT;
	size_t i = 0, n = json_object_size(props);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)props, key, v)
	{
		kiln_buf_printf(&b, "%s%s", i == 0 ? "" : i + 1 == n ? " and " : ", ", key);
		i++;
	}
	return n ? kiln_buf_detach(&b) : (kiln_buf_release(&b), strdup("none"));
}

int shim_inputs_from_args(json_t **out, const json_t *schema, const json_t *base, char *const *args, size_t n,
                          struct kiln_error **err)
{
	json_auto_t *input = base ? json_deep_copy(base) : json_object();
	if (!json_is_object(input))
		return kiln_error_set(err, KILN_EINVAL, "the input JSON is not an object");
	json_auto_t *given = json_object(); /* names set by ARGS: their lists start afresh */
	for (size_t i = 0; i < n; i++) {
		const char *arg = args[i];
		const char *value = arg;
		_cleanup_free_ char *name = shim_inputs_arg_name(arg, schema, &value);
		if (!name && errno == ENOENT)
			return kiln_error_set(err, KILN_EINVAL, "-i %s: the model takes no input", arg);
		if (!name)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		const json_t *p = property(schema, name);
		if (!p) {
			_cleanup_free_ char *names = input_names(schema);
			return kiln_error_set(err, KILN_EINVAL, "unknown input '%s' (the model's inputs: %s)",
			                      name, names ? names : "?");
		}
		bool array = strcmp(type_of(schema, p), "array") == 0;
		json_auto_t *items = array ? json_incref((json_t *)shim_schema_get(schema, p, "items"))
		                           : union_items(schema, p);
		array = array || items;
		json_t *v = NULL;
		if (coerce(&v, schema, array ? items : p, name, value, err) < 0)
			return -1;
		if (!array) {
			if (json_object_get(given, name)) {
				json_decref(v);
				return kiln_error_set(err, KILN_EINVAL,
				                      "input '%s' is given twice and is not a list", name);
			}
			json_object_set_new(input, name, v);
		} else {
			json_t *list = json_object_get(given, name) ? json_object_get(input, name) : NULL;
			if (!list) {
				list = json_array();
				json_object_set_new(input, name, list);
			}
			json_array_append_new(list, v);
		}
		json_object_set_new(given, name, json_true());
	}
	*out = json_incref(input);
	return 0;
}
