/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/validate.c: input validation: coercions, constraints, defaults and Cog's 422 details. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "shim/shim.h"

static json_t *schema;

/* Load tests/fixtures/schemas/NAME (a schema in Cog's OpenAPI shape) into `schema`. */
static void load(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/schemas/%s", KILN_FIXTURES, name);
	json_error_t jerr;
	json_decref(schema);
	schema = json_load_file(path, 0, &jerr);
	cr_assert_not_null(schema, "cannot load '%s': %s at line %d", path, jerr.text, jerr.line);
}

static void load_every_type(void)
{
	load("every_type.json");
}

static void drop_schema(void)
{
	json_decref(schema);
	schema = NULL;
}

TestSuite(validate, .init = load_every_type, .fini = drop_schema);

/* The loaded schema's components.schemas.Input (borrowed). */
static json_t *input_object(void)
{
	return json_object_get(json_object_get(json_object_get(schema, "components"), "schemas"), "Input");
}

/* The schema of input property NAME (borrowed). */
static json_t *property(const char *name)
{
	return json_object_get(json_object_get(input_object(), "properties"), name);
}

/* Parse TEXT as JSON (any value), failing the test if it is not. */
static json_t *js(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	cr_assert_not_null(j, "bad JSON in test: %s: %s", text, jerr.text);
	return j;
}

/* Fail unless GOT equals the JSON in WANT, showing both. */
static void assert_json(json_t *got, const char *want)
{
	json_t *w = js(want);
	char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	cr_assert(json_equal(got, w), "got  %s\nwant %s", g, ws);
	free(g);
	free(ws);
	json_decref(w);
}

/* Validate INPUT (JSON text), expecting success; returns the normalized input (caller frees). */
static json_t *ok(const char *input)
{
	json_t *in = js(input);
	json_t *norm = NULL, *detail = NULL;
	int rc = shim_validate_input(schema, in, &norm, &detail);
	char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
	cr_assert_eq(rc, 0, "input %s refused: %s", input, d ? d : "(no detail)");
	cr_assert_not_null(norm);
	cr_assert_null(detail);
	free(d);
	json_decref(in);
	return norm;
}

/* Validate INPUT, expecting a refusal whose detail array is exactly WANT. */
static void refused(const char *input, const char *want)
{
	json_t *in = js(input);
	json_t *norm = NULL, *detail = NULL;
	int rc = shim_validate_input(schema, in, &norm, &detail);
	cr_assert_eq(rc, -1, "input %s accepted", input);
	cr_assert_null(norm);
	cr_assert_not_null(detail);
	assert_json(detail, want);
	json_decref(detail);
	json_decref(in);
}

/* The value of NAME after validating INPUT. */
static void normalized_field(const char *input, const char *name, const char *want)
{
	json_t *norm = ok(input);
	json_t *v = json_object_get(norm, name);
	cr_assert_not_null(v, "'%s' missing from the normalized input", name);
	assert_json(v, want);
	json_decref(norm);
}

#define BASE "\"prompt\": \"a cat\", \"image\": \"https://example.com/cat.png\""

Test(validate, minimal_input_gets_every_default_and_nulls_for_optional_fields)
{
	json_t *norm = ok("{" BASE "}");
	assert_json(
	    norm,
	    "{\"prompt\": \"a cat\", \"image\": \"https://example.com/cat.png\", \"mask\": null,"
	    " \"steps\": 25, \"guidance\": 7.5, \"seed\": null, \"hd\": false, \"scheduler\": \"K_EULER\","
	    " \"num_outputs\": 1, \"code\": \"abc\", \"api_key\": null, \"tags\": null,"
	    " \"weights\": null, \"images\": null, \"style\": \"photo\"}");
	json_decref(norm);
}

Test(validate, every_type_accepted_as_given)
{
	json_t *norm =
	    ok("{" BASE ", \"mask\": \"data:image/png;base64,iVBORw0KGgo=\", \"steps\": 50,"
	       " \"guidance\": 3.01, \"seed\": -1, \"hd\": true, \"scheduler\": \"DDIM\", \"num_outputs\": 4,"
	       " \"code\": \"xyz42\", \"api_key\": \"s3cret\", \"tags\": [\"a\", \"b\"],"
	       " \"weights\": [0, 0.5, 1], \"images\": [\"http://x/1.png\"], \"style\": \"anime\"}");
	assert_json(
	    norm,
	    "{\"prompt\": \"a cat\", \"image\": \"https://example.com/cat.png\","
	    " \"mask\": \"data:image/png;base64,iVBORw0KGgo=\", \"steps\": 50, \"guidance\": 3.01,"
	    " \"seed\": -1, \"hd\": true, \"scheduler\": \"DDIM\", \"num_outputs\": 4, \"code\": \"xyz42\","
	    " \"api_key\": \"s3cret\", \"tags\": [\"a\", \"b\"], \"weights\": [0.0, 0.5, 1.0],"
	    " \"images\": [\"http://x/1.png\"], \"style\": \"anime\"}");
	cr_assert(json_is_real(json_array_get(json_object_get(norm, "weights"), 0)));
	json_decref(norm);
}

Test(validate, unknown_fields_are_refused_like_coglet)
{
	refused("{" BASE ", \"negative_prompt\": \"dogs\", \"extra\": {\"x\": 1}}",
	        "[{\"loc\": [\"body\", \"input\", \"negative_prompt\"], \"msg\": \"Unexpected field "
	        "'negative_prompt'\", \"type\": \"value_error.extra\"},"
	        " {\"loc\": [\"body\", \"input\", \"extra\"], \"msg\": \"Unexpected field 'extra'\", "
	        "\"type\": \"value_error.extra\"}]");
}

Test(validate, missing_required_fields_are_field_required)
{
	refused("{}", "[{\"loc\": [\"body\", \"input\", \"prompt\"], \"msg\": \"field required\","
	              " \"type\": \"value_error.missing\"},"
	              " {\"loc\": [\"body\", \"input\", \"image\"], \"msg\": \"field required\","
	              " \"type\": \"value_error.missing\"}]");
}

Test(validate, null_or_absent_input_is_an_empty_object)
{
	json_t *norm = NULL, *detail = NULL;
	cr_assert_eq(shim_validate_input(schema, NULL, &norm, &detail), -1);
	cr_assert_eq(json_array_size(detail), 2);
	json_decref(detail);
	json_t *null = json_null();
	cr_assert_eq(shim_validate_input(schema, null, &norm, &detail), -1);
	cr_assert_eq(json_array_size(detail), 2);
	json_decref(detail);
	json_decref(null);
}

Test(validate, input_that_is_not_an_object_is_not_a_valid_dict)
{
	refused("[1, 2]", "[{\"loc\": [\"body\", \"input\"], \"msg\": \"value is not a valid dict\","
	                  " \"type\": \"type_error.dict\"}]");
}

Test(validate, integer_coerces_like_pydantic_v1)
{
	normalized_field("{" BASE ", \"steps\": \"42\"}", "steps", "42");
	normalized_field("{" BASE ", \"steps\": \" 7 \"}", "steps", "7");
	normalized_field("{" BASE ", \"steps\": \"1_0\"}", "steps", "10");
	normalized_field("{" BASE ", \"steps\": 5.9}", "steps", "5");
	normalized_field("{" BASE ", \"steps\": true}", "steps", "1");
	normalized_field("{" BASE ", \"seed\": -9223372036854775807}", "seed", "-9223372036854775807");
}

Test(validate, integer_refuses_what_int_cannot_read)
{
	const char *bad[] = {
	    "\"foo\"", "\"5.0\"", "\"\"", "\"1__0\"", "[1]", "{}", "\"99999999999999999999\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char input[256];
		snprintf(input, sizeof(input), "{" BASE ", \"seed\": %s}", bad[i]);
		refused(
		    input,
		    "[{\"loc\": [\"body\", \"input\", \"seed\"], \"msg\": \"value is not a valid integer\","
		    " \"type\": \"type_error.integer\"}]");
	}
}

Test(validate, number_coerces_to_a_real)
{
	normalized_field("{" BASE ", \"guidance\": 5}", "guidance", "5.0");
	normalized_field("{" BASE ", \"guidance\": \"12.5\"}", "guidance", "12.5");
	normalized_field("{" BASE ", \"guidance\": \"1e1\"}", "guidance", "10.0");
	json_t *norm = ok("{" BASE ", \"guidance\": 5}");
	cr_assert(json_is_real(json_object_get(norm, "guidance")));
	json_decref(norm);
}

Test(validate, number_refuses_text_and_non_finite_values)
{
	const char *bad[] = {"\"abc\"", "\"nan\"", "\"inf\"", "\"0x10\"", "[]", "\"1e\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char input[256];
		snprintf(input, sizeof(input), "{" BASE ", \"guidance\": %s}", bad[i]);
		refused(
		    input,
		    "[{\"loc\": [\"body\", \"input\", \"guidance\"], \"msg\": \"value is not a valid float\","
		    " \"type\": \"type_error.float\"}]");
	}
}

Test(validate, boolean_takes_pydantic_v1_words_and_numbers)
{
	const char *yes[] = {"true", "1", "1.0", "\"yes\"", "\"On\"", "\"t\"", "\"TRUE\"", "\"y\"", "\"1\""};
	const char *no[] = {"false", "0", "\"no\"", "\"off\"", "\"F\"", "\"false\"", "\"n\"", "\"0\""};
	char input[256];
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(input, sizeof(input), "{" BASE ", \"hd\": %s}", yes[i]);
		normalized_field(input, "hd", "true");
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		snprintf(input, sizeof(input), "{" BASE ", \"hd\": %s}", no[i]);
		normalized_field(input, "hd", "false");
	}
}

Test(validate, boolean_refuses_other_values)
{
	const char *bad[] = {"2", "\"maybe\"", "\" true\"", "[]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char input[256];
		snprintf(input, sizeof(input), "{" BASE ", \"hd\": %s}", bad[i]);
		refused(
		    input,
		    "[{\"loc\": [\"body\", \"input\", \"hd\"],"
		    " \"msg\": \"value could not be parsed to a boolean\", \"type\": \"type_error.bool\"}]");
	}
}

Test(validate, string_takes_numbers_as_python_str_of_them)
{
	normalized_field("{\"prompt\": 42, \"image\": \"http://x\"}", "prompt", "\"42\"");
	normalized_field("{\"prompt\": 1.5, \"image\": \"http://x\"}", "prompt", "\"1.5\"");
	normalized_field("{\"prompt\": 0.1, \"image\": \"http://x\"}", "prompt", "\"0.1\"");
	normalized_field("{\"prompt\": 1e16, \"image\": \"http://x\"}", "prompt", "\"1e+16\"");
	normalized_field("{\"prompt\": 1e15, \"image\": \"http://x\"}", "prompt", "\"1000000000000000.0\"");
	normalized_field("{\"prompt\": 0.00001, \"image\": \"http://x\"}", "prompt", "\"1e-05\"");
	normalized_field("{\"prompt\": 0.0001, \"image\": \"http://x\"}", "prompt", "\"0.0001\"");
	normalized_field("{\"prompt\": -2.5e-7, \"image\": \"http://x\"}", "prompt", "\"-2.5e-07\"");
	normalized_field("{\"prompt\": true, \"image\": \"http://x\"}", "prompt", "\"True\"");
}

Test(validate, string_refuses_objects_and_arrays)
{
	refused("{\"prompt\": {\"a\": 1}, \"image\": \"http://x\"}",
	        "[{\"loc\": [\"body\", \"input\", \"prompt\"], \"msg\": \"str type expected\","
	        " \"type\": \"type_error.str\"}]");
}

Test(validate, minimum_and_maximum_report_the_limit)
{
	refused("{" BASE ", \"steps\": 0}",
	        "[{\"loc\": [\"body\", \"input\", \"steps\"], \"msg\": \"ensure this value is greater than "
	        "or equal to 1\","
	        " \"type\": \"value_error.number.not_ge\", \"ctx\": {\"limit_value\": 1}}]");
	refused("{" BASE ", \"steps\": 101}",
	        "[{\"loc\": [\"body\", \"input\", \"steps\"], \"msg\": \"ensure this value is less than or "
	        "equal to 100\","
	        " \"type\": \"value_error.number.not_le\", \"ctx\": {\"limit_value\": 100}}]");
	refused("{" BASE ", \"guidance\": 2}",
	        "[{\"loc\": [\"body\", \"input\", \"guidance\"],"
	        " \"msg\": \"ensure this value is greater than or equal to 3.01\","
	        " \"type\": \"value_error.number.not_ge\", \"ctx\": {\"limit_value\": 3.01}}]");
	refused("{" BASE ", \"guidance\": 20.5}",
	        "[{\"loc\": [\"body\", \"input\", \"guidance\"],"
	        " \"msg\": \"ensure this value is less than or equal to 20.0\","
	        " \"type\": \"value_error.number.not_le\", \"ctx\": {\"limit_value\": 20.0}}]");
	normalized_field("{" BASE ", \"steps\": 100}", "steps", "100");
	normalized_field("{" BASE ", \"steps\": 1}", "steps", "1");
}

Test(validate, string_length_counts_characters_not_bytes)
{
	refused("{\"prompt\": \"\", \"image\": \"http://x\"}",
	        "[{\"loc\": [\"body\", \"input\", \"prompt\"], \"msg\": \"ensure this value has at least 1 "
	        "characters\","
	        " \"type\": \"value_error.any_str.min_length\", \"ctx\": {\"limit_value\": 1}}]");
	refused("{\"prompt\": \"abcdefghijklmnopqrstu\", \"image\": \"http://x\"}",
	        "[{\"loc\": [\"body\", \"input\", \"prompt\"], \"msg\": \"ensure this value has at most 20 "
	        "characters\","
	        " \"type\": \"value_error.any_str.max_length\", \"ctx\": {\"limit_value\": 20}}]");
	/* 20 characters, 40 bytes. */
	normalized_field("{\"prompt\": \"éééééééééééééééééééé\", \"image\": \"http://x\"}", "prompt",
	                 "\"éééééééééééééééééééé\"");
}

Test(validate, pattern_is_anchored_at_the_start_only_like_re_match)
{
	normalized_field("{" BASE ", \"code\": \"abc123\"}", "code", "\"abc123\"");
	normalized_field("{" BASE ", \"code\": \"abc-trailing\"}", "code", "\"abc-trailing\"");
	refused("{" BASE ", \"code\": \"1abc\"}",
	        "[{\"loc\": [\"body\", \"input\", \"code\"], \"msg\": \"string does not match regex "
	        "\\\"[a-z]+[0-9]*\\\"\","
	        " \"type\": \"value_error.str.regex\", \"ctx\": {\"pattern\": \"[a-z]+[0-9]*\"}}]");
}

Test(validate, pattern_understands_backslash_d_and_alternation)
{
	json_object_set_new(property("code"), "pattern", json_string("\\d{3}-\\d{4}|x"));
	normalized_field("{" BASE ", \"code\": \"555-1234\"}", "code", "\"555-1234\"");
	normalized_field("{" BASE ", \"code\": \"xyz\"}", "code", "\"xyz\"");
	refused("{" BASE ", \"code\": \"55-1234\"}",
	        "[{\"loc\": [\"body\", \"input\", \"code\"], \"msg\": \"string does not match regex "
	        "\\\"\\\\d{3}-\\\\d{4}|x\\\"\","
	        " \"type\": \"value_error.str.regex\", \"ctx\": {\"pattern\": \"\\\\d{3}-\\\\d{4}|x\"}}]");
}

Test(validate, choices_behind_allof_ref)
{
	normalized_field("{" BASE ", \"scheduler\": \"DPMSolverMultistep\"}", "scheduler",
	                 "\"DPMSolverMultistep\"");
	refused("{" BASE ", \"scheduler\": \"ddim\"}",
	        "[{\"loc\": [\"body\", \"input\", \"scheduler\"],"
	        " \"msg\": \"value is not a valid enumeration member; permitted: 'DDIM', 'K_EULER', "
	        "'DPMSolverMultistep'\","
	        " \"type\": \"type_error.enum\", \"ctx\": {\"enum_values\": [\"DDIM\", \"K_EULER\", "
	        "\"DPMSolverMultistep\"]}}]");
	/* A str Enum takes no str() first: 1 is not "1". */
	refused("{" BASE ", \"style\": 1}",
	        "[{\"loc\": [\"body\", \"input\", \"style\"],"
	        " \"msg\": \"value is not a valid enumeration member; permitted: 'photo', 'anime'\","
	        " \"type\": \"type_error.enum\", \"ctx\": {\"enum_values\": [\"photo\", \"anime\"]}}]");
}

Test(validate, integer_choices_coerce_first_like_int_enum)
{
	normalized_field("{" BASE ", \"num_outputs\": \"2\"}", "num_outputs", "2");
	normalized_field("{" BASE ", \"num_outputs\": 4.0}", "num_outputs", "4");
	refused("{" BASE ", \"num_outputs\": 3}",
	        "[{\"loc\": [\"body\", \"input\", \"num_outputs\"],"
	        " \"msg\": \"value is not a valid enumeration member; permitted: 1, 2, 4\","
	        " \"type\": \"type_error.enum\", \"ctx\": {\"enum_values\": [1, 2, 4]}}]");
	refused(
	    "{" BASE ", \"num_outputs\": \"two\"}",
	    "[{\"loc\": [\"body\", \"input\", \"num_outputs\"], \"msg\": \"value is not a valid integer\","
	    " \"type\": \"type_error.integer\"}]");
}

Test(validate, file_inputs_need_data_or_http_urls)
{
	normalized_field("{\"prompt\": \"p\", \"image\": \"HTTPS://example.com/a.png\"}", "image",
	                 "\"HTTPS://example.com/a.png\"");
	refused("{\"prompt\": \"p\", \"image\": \"foo\"}",
	        "[{\"loc\": [\"body\", \"input\", \"image\"],"
	        " \"msg\": \"'' is not a valid URL scheme. 'data', 'http', or 'https' is supported.\","
	        " \"type\": \"value_error\"}]");
	refused("{\"prompt\": \"p\", \"image\": \"file:///etc/passwd\"}",
	        "[{\"loc\": [\"body\", \"input\", \"image\"],"
	        " \"msg\": \"'file' is not a valid URL scheme. 'data', 'http', or 'https' is supported.\","
	        " \"type\": \"value_error\"}]");
	refused("{\"prompt\": \"p\", \"image\": 5}",
	        "[{\"loc\": [\"body\", \"input\", \"image\"], \"msg\": \"str type expected\","
	        " \"type\": \"type_error.str\"}]");
}

Test(validate, array_items_are_checked_one_by_one_with_their_index)
{
	normalized_field("{" BASE ", \"tags\": [\"a\", 2]}", "tags", "[\"a\", \"2\"]");
	refused("{" BASE ", \"weights\": [0.5, \"x\", 2]}",
	        "[{\"loc\": [\"body\", \"input\", \"weights\", 1], \"msg\": \"value is not a valid float\","
	        " \"type\": \"type_error.float\"},"
	        " {\"loc\": [\"body\", \"input\", \"weights\", 2], \"msg\": \"ensure this value is less than "
	        "or equal to 1\","
	        " \"type\": \"value_error.number.not_le\", \"ctx\": {\"limit_value\": 1}}]");
	refused("{" BASE ", \"images\": [\"ftp://x\"]}",
	        "[{\"loc\": [\"body\", \"input\", \"images\", 0],"
	        " \"msg\": \"'ftp' is not a valid URL scheme. 'data', 'http', or 'https' is supported.\","
	        " \"type\": \"value_error\"}]");
	refused("{" BASE ", \"tags\": \"a\"}",
	        "[{\"loc\": [\"body\", \"input\", \"tags\"], \"msg\": \"value is not a valid list\","
	        " \"type\": \"type_error.list\"}]");
}

Test(validate, null_is_allowed_only_where_python_allows_none)
{
	normalized_field("{" BASE ", \"seed\": null}", "seed", "null");
	normalized_field("{" BASE ", \"mask\": null}", "mask", "null");
	refused("{\"prompt\": null, \"image\": \"http://x\"}",
	        "[{\"loc\": [\"body\", \"input\", \"prompt\"], \"msg\": \"none is not an allowed value\","
	        " \"type\": \"type_error.none.not_allowed\"}]");
	refused("{" BASE ", \"steps\": null}",
	        "[{\"loc\": [\"body\", \"input\", \"steps\"], \"msg\": \"none is not an allowed value\","
	        " \"type\": \"type_error.none.not_allowed\"}]");
	refused("{" BASE ", \"tags\": [\"a\", null]}",
	        "[{\"loc\": [\"body\", \"input\", \"tags\", 1], \"msg\": \"none is not an allowed value\","
	        " \"type\": \"type_error.none.not_allowed\"}]");
}

Test(validate, several_errors_come_back_together_in_field_order)
{
	refused(
	    "{\"image\": \"nope\", \"hd\": \"maybe\", \"steps\": 0, \"scheduler\": \"X\", \"unknown\": 1}",
	    "[{\"loc\": [\"body\", \"input\", \"prompt\"], \"msg\": \"field required\", \"type\": "
	    "\"value_error.missing\"},"
	    " {\"loc\": [\"body\", \"input\", \"image\"],"
	    " \"msg\": \"'' is not a valid URL scheme. 'data', 'http', or 'https' is supported.\", \"type\": "
	    "\"value_error\"},"
	    " {\"loc\": [\"body\", \"input\", \"steps\"], \"msg\": \"ensure this value is greater than or "
	    "equal to 1\","
	    " \"type\": \"value_error.number.not_ge\", \"ctx\": {\"limit_value\": 1}},"
	    " {\"loc\": [\"body\", \"input\", \"hd\"], \"msg\": \"value could not be parsed to a boolean\","
	    " \"type\": \"type_error.bool\"},"
	    " {\"loc\": [\"body\", \"input\", \"scheduler\"],"
	    " \"msg\": \"value is not a valid enumeration member; permitted: 'DDIM', 'K_EULER', "
	    "'DPMSolverMultistep'\","
	    " \"type\": \"type_error.enum\", \"ctx\": {\"enum_values\": [\"DDIM\", \"K_EULER\", "
	    "\"DPMSolverMultistep\"]}},"
	    " {\"loc\": [\"body\", \"input\", \"unknown\"], \"msg\": \"Unexpected field 'unknown'\","
	    " \"type\": \"value_error.extra\"}]");
}

Test(validate, defaults_are_copied_not_validated)
{
	json_t *norm = ok("{" BASE "}");
	json_t *def = json_object_get(property("steps"), "default");
	cr_assert(json_object_get(norm, "steps") != def, "the default must be a copy");
	json_decref(norm);
}

Test(validate, predictor_without_inputs_takes_none)
{
	load("no_input.json");
	json_t *norm = ok("{}");
	assert_json(norm, "{}");
	json_decref(norm);
	refused("{\"anything\": 1}", "[{\"loc\": [\"body\", \"input\", \"anything\"], \"msg\": \"Unexpected "
	                             "field 'anything'\", \"type\": \"value_error.extra\"}]");
}

Test(validate, union_takes_the_member_of_the_value_s_type_strictly_else_reports_all)
{
	load("union.json");
	normalized_field("{\"args\": 123}", "args", "123");
	normalized_field("{\"args\": [1, 2]}", "args", "[1, 2]");
	const char *both =
	    "[{\"loc\": [\"body\", \"input\", \"args\"], \"msg\": \"value is not a valid integer\","
	    " \"type\": \"type_error.integer\"},"
	    " {\"loc\": [\"body\", \"input\", \"args\"], \"msg\": \"value is not a valid list\","
	    " \"type\": \"type_error.list\"}]";
	/* Cog 0.22 checks union inputs strictly: no "2" for an integer, no true, no 2.5 */
	refused("{\"args\": \"abc\"}", both);
	refused("{\"args\": \"2\"}", both);
	refused("{\"args\": true}", both);
	refused("{\"args\": 2.5}", both);
	refused("{\"args\": [1, \"2\"]}", both);
	refused("{\"args\": null}",
	        "[{\"loc\": [\"body\", \"input\", \"args\"], \"msg\": \"none is not an allowed "
	        "value\", \"type\": \"type_error.none.not_allowed\"}]");
}

Test(validate, nullable_property_takes_null_despite_its_default)
{
	load("union.json");
	normalized_field("{\"args\": 1, \"label\": null}", "label", "null");
	normalized_field("{\"args\": 1}", "label", "\"none\"");
}

Test(validate, bare_input_schema_is_accepted_too)
{
	json_t *bare = json_deep_copy(input_object());
	json_decref(schema);
	schema = bare;
	json_t *norm = ok("{" BASE ", \"steps\": \"3\"}");
	cr_assert_eq(json_integer_value(json_object_get(norm, "steps")), 3);
	json_decref(norm);
}

Test(validate, python_only_pattern_is_left_to_the_runner)
{
	/* (?i) does not compile as POSIX: the check is skipped rather than every request refused. */
	json_object_set_new(property("code"), "pattern", json_string("(?i)abc"));
	normalized_field("{" BASE ", \"code\": \"ABC\"}", "code", "\"ABC\"");
	normalized_field("{" BASE ", \"code\": \"zzz\"}", "code", "\"zzz\"");
}
