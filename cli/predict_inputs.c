/* SPDX-License-Identifier: Apache-2.0 */
/*
 * predict_inputs.c: `kiln predict`'s input object as `cog predict` makes and checks it before the model
 * runs: --json's object (text, @FILE or @-, "@PATH" members read as files), -i's values (Cog's quotes
 * removed), unknown names, explicit nulls and the schema's rules, each refused in Cog's words.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/predict.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/shim.h"

bool predict_json_arg_ok(const char *arg)
{
	if (strcmp(arg, "-") == 0 || (arg[0] == '@' && arg[1]))
		return true;
	arg += strspn(arg, " \t\r\n");
	if (*arg == '{' || *arg == '[')
		return true;
	/* other JSON (a number, a string) is an input Cog refuses as JSON; a word is kiln's old flag */
	json_t *v = json_loads(arg, JSON_DECODE_ANY, NULL);
	json_decref(v);
	return v != NULL;
}

/* The whole of F as a string (NUL-terminated) into B; 0, or -1 with errno set. */
static int slurp(struct kiln_buf *b, FILE *f)
{
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (kiln_buf_put(b, chunk, n) < 0) {
			errno = ENOMEM;
			return -1;
		}
	return ferror(f) ? -1 : 0;
}

int predict_json_read(json_t **out, const char *arg, struct kiln_error **err)
{
	struct kiln_buf b = KILN_BUF_INIT;
	const char *text = arg;
	*out = NULL;
	if (strcmp(arg, "-") == 0 || strcmp(arg, "@-") == 0) {
		if (slurp(&b, stdin) < 0) {
			kiln_buf_release(&b);
			return kiln_error_errno(err, errno, "Failed to read JSON from stdin");
		}
		text = b.ptr ? b.ptr : "";
	} else if (arg[0] == '@') {
		FILE *f = fopen(arg + 1, "re");
		int rc = f ? slurp(&b, f) : -1;
		int e = errno;
		if (f)
			fclose(f);
		if (rc < 0) {
			kiln_buf_release(&b);
			return kiln_error_errno(err, e, "Failed to read JSON from file \"%s\"", arg + 1);
		}
		text = b.ptr ? b.ptr : "";
	}
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	kiln_buf_release(&b);
	if (!v)
		return kiln_error_set(err, KILN_EINVAL, "Failed to parse JSON: %s (line %d, column %d)",
		                      jerr.text, jerr.line, jerr.column);
	if (!json_is_object(v)) {
		json_decref(v);
		return kiln_error_set(err, KILN_EINVAL,
		                      "Failed to parse JSON: the inputs must be a JSON object of names");
	}
	*out = v;
	return 0;
}

/* Every member of INPUT that is a string "@PATH" becomes the file PATH as a data: URI (cog predict
 * --json's rule, whatever the input's type). */
static int read_json_files(json_t *input, struct kiln_error **err)
{
	const char *key;
	json_t *v;
	json_object_foreach(input, key, v)
	{
		const char *s = json_string_value(v);
		if (!s || s[0] != '@')
			continue;
		char *uri = NULL;
		if (shim_files_data_uri(&uri, s + 1, err) < 0)
			return kiln_error_wrap(err, "Failed to read file \"%s\"", s + 1);
		json_object_set_new(input, key, json_string(uri));
		free(uri);
	}
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of OBJ, sorted (borrowed strings; the array is the caller's to free), their count in *n. */
static const char **sorted_keys(const json_t *obj, size_t *n)
{
	*n = json_object_size(obj);
	const char **keys = calloc(*n + 1, sizeof(*keys));
	if (!keys)
		return NULL;
	size_t i = 0;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v) keys[i++] = key;
	qsort(keys, *n, sizeof(*keys), by_name);
	return keys;
}

static const json_t *input_properties(const json_t *schema)
{
	const json_t *in =
	    json_object_get(json_object_get(json_object_get(schema, "components"), "schemas"), "Input");
	return json_object_get(in, "properties");
}

/* Cog's refusal of the names in NAMES (an object's keys) that the schema's Input lacks. */
static int check_known(const json_t *schema, const json_t *names, struct kiln_error **err)
{
	const json_t *props = input_properties(schema);
	json_auto_t *unknown = json_object();
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)names, key, v) if (!json_object_get(props, key))
	    json_object_set(unknown, key, json_null());
	if (json_object_size(unknown) == 0)
		return 0;
	size_t nu, nv;
	_cleanup_free_ const char **u = sorted_keys(unknown, &nu);
	_cleanup_free_ const char **valid = sorted_keys(props, &nv);
	if (!u || !valid)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct kiln_buf b = KILN_BUF_INIT;
	kiln_buf_puts(&b, nu == 1 ? "unknown input " : "unknown inputs ");
	for (size_t i = 0; i < nu; i++)
		kiln_buf_printf(&b, "%s\"%s\"", i ? ", " : "", u[i]);
	if (nv == 0)
		kiln_buf_puts(&b, "; model does not accept inputs");
	else
		kiln_buf_puts(&b, "; valid inputs are: ");
	for (size_t i = 0; i < nv; i++)
		kiln_buf_printf(&b, "%s%s", i ? ", " : "", valid[i]);
	int rc = kiln_error_set(err, KILN_EINVAL, "%s", b.ptr ? b.ptr : "unknown input");
	kiln_buf_release(&b);
	return rc;
}

/* JSON's name for V's type, as Cog's messages give it. */
static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

/* The value at coglet's field name FIELD ("tags" or "tags/1") of INPUT, or NULL. */
static const json_t *value_at(const json_t *input, const char *field)
{
	_cleanup_free_ char *copy = strdup(field);
	const json_t *v = input;
	for (char *save = NULL, *part = copy ? strtok_r(copy, "/", &save) : NULL; part && v;
	     part = strtok_r(NULL, "/", &save))
		v = json_is_array(v) ? json_array_get(v, strtoul(part, NULL, 10)) : json_object_get(v, part);
	return v;
}

/*
 * One shim detail entry E (loc ["body", "input", FIELD], coglet's words) about INPUT, in Cog's CLI words,
 * into B: a missing input, a value of the wrong type, one that is no choice, else the shim's message.
 */
static void cog_message(struct kiln_buf *b, const json_t *e, const json_t *input)
{
	const char *field = json_string_value(json_array_get(json_object_get(e, "loc"), 2));
	const char *type = json_string_value(json_object_get(e, "type"));
	const char *msg = json_string_value(json_object_get(e, "msg"));
	field = field ? field : "";
	msg = msg ? msg : "invalid";
	/* an array item is "name/1": Cog's CLI names it "name.1" */
	_cleanup_free_ char *name = strdup(field);
	for (char *p = name; p && *p; p++)
		if (*p == '/')
			*p = '.';
	const char *n = name ? name : field;
	const char *of_type = strstr(msg, " is not of type \"");
	const char *one_of = strstr(msg, " is not one of [");
	json_auto_t *members = one_of ? json_loads(one_of + strlen(" is not one of "), 0, NULL) : NULL;
	if (type && strcmp(type, "value_error.missing") == 0) {
		kiln_buf_printf(b, "missing required input \"%s\"", n);
	} else if (of_type) {
		const char *want = of_type + strlen(" is not of type \"");
		const json_t *value = value_at(input, field);
		kiln_buf_printf(b, "invalid input \"%s\": expected %.*s, got %s", n, (int)strcspn(want, "\""),
		                want, value ? json_type_name(value) : "nothing");
	} else if (json_is_array(members)) {
		kiln_buf_printf(b, "invalid input \"%s\": must be one of: ", n);
		for (size_t i = 0; i < json_array_size(members); i++) {
			const json_t *m = json_array_get(members, i);
			_cleanup_free_ char *text = json_is_string(m) ? NULL : json_dumps(m, JSON_ENCODE_ANY);
			kiln_buf_printf(b, "%s%s", i ? ", " : "", text ? text : json_string_value(m));
		}
	} else {
		kiln_buf_printf(b, "invalid input \"%s\": %s", n, msg);
	}
}

/* INPUT against the schema's rules: explicit nulls, then the shim's own validation, in Cog's words. */
static int check_values(const json_t *schema, const json_t *input, struct kiln_error **err)
{
	size_t n;
	_cleanup_free_ const char **keys = sorted_keys(input, &n);
	for (size_t i = 0; keys && i < n; i++)
		if (json_is_null(json_object_get(input, keys[i])))
			return kiln_error_set(err, KILN_EINVAL,
			                      "invalid input \"%s\": must not be null (omit the input to use "
			                      "its default)",
			                      keys[i]);
	json_t *normalized = NULL, *detail = NULL;
	if (shim_validate_input(schema, input, &normalized, &detail) == 0) {
		json_decref(normalized);
		return 0;
	}
	struct kiln_buf b = KILN_BUF_INIT;
	size_t count = json_array_size(detail);
	if (count > 1)
		kiln_buf_puts(&b, "input validation failed:");
	for (size_t i = 0; i < count; i++) {
		if (count > 1)
			kiln_buf_puts(&b, "\n- ");
		cog_message(&b, json_array_get(detail, i), input);
	}
	json_decref(detail);
	int rc = kiln_error_set(err, KILN_EINVAL, "%s", b.ptr ? b.ptr : "invalid input");
	kiln_buf_release(&b);
	return rc;
}

/* The name -i ARG sets (shim_inputs_arg_name); NULL: none. */
static char *arg_name(const char *arg, const json_t *schema)
{
	const char *value;
	return shim_inputs_arg_name(arg, schema, &value);
}

/* ARG with Cog's surrounding double quotes taken off its value (NAME="a b" is NAME=a b), newly made. */
static char *unquote(const char *arg)
{
	const char *eq = strchr(arg, '=');
	const char *value = eq ? eq + 1 : arg;
	size_t len = strlen(value);
	if (len < 2 || value[0] != '"' || value[len - 1] != '"')
		return strdup(arg);
	char *out = NULL;
	return asprintf(&out, "%.*s%.*s", (int)(value - arg), arg, (int)(len - 2), value + 1) < 0 ? NULL
	                                                                                          : out;
}

int predict_inputs_prepare(json_t **out, const json_t *schema, json_t *base, bool base_files,
                           char *const *args, size_t n, struct kiln_error **err)
{
	*out = NULL;
	json_auto_t *names = base ? json_deep_copy(base) : json_object();
	char **plain = calloc(n + 1, sizeof(*plain));
	int rc = names && plain ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		_cleanup_free_ char *name = arg_name(args[i], schema);
		if (name)
			json_object_set(names, name, json_null());
		if (!(plain[i] = unquote(args[i])))
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	/* names first: a typo is named before any file is read */
	if (rc == 0)
		rc = check_known(schema, names, err);
	if (rc == 0 && base && base_files)
		rc = read_json_files(base, err);
	if (rc == 0)
		rc = shim_inputs_from_args(out, schema, base, plain, n, err);
	if (rc == 0 && (rc = check_values(schema, *out, err)) < 0) {
		json_decref(*out);
		*out = NULL;
	}
	for (size_t i = 0; plain && i < n; i++)
		free(plain[i]);
	free(plain);
	return rc;
}
