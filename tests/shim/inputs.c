/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/inputs.c: kiln predict's -i NAME=VALUE typed by the schema, as cog predict types them. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/shim.h"

static json_t *schema;

static void load(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/schemas/every_type.json", KILN_FIXTURES);
	json_error_t jerr;
	schema = json_load_file(path, 0, &jerr);
	cr_assert_not_null(schema, "cannot load '%s': %s", path, jerr.text);
}

static void drop(void)
{
	json_decref(schema);
}

TestSuite(inputs, .init = load, .fini = drop);

/* The input object for ARGS (NULL-terminated) as compact JSON text, or the error's message. */
static char *run(const json_t *base, const char *const *args)
{
	size_t n = 0;
	while (args[n])
		n++;
	json_t *out = NULL;
	struct kiln_error *err = NULL;
	if (shim_inputs_from_args(&out, schema, base, (char *const *)args, n, &err) < 0) {
		char *msg = strdup(err->message);
		kiln_error_free(err);
		return msg;
	}
	char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(out);
	return text;
}

#define EXPECT(want, ...)                                                                                    \
	do {                                                                                                 \
		char *got = run(NULL, (const char *[]){__VA_ARGS__, NULL});                                  \
		cr_assert_str_eq(got, want);                                                                 \
		free(got);                                                                                   \
	} while (0)

Test(inputs, scalars_are_typed_by_the_schema)
{
	EXPECT("{\"guidance\":2.5,\"hd\":true,\"prompt\":\"a cat\",\"steps\":20}", "prompt=a cat", "steps=20",
	       "guidance=2.5", "hd=true");
	EXPECT("{\"hd\":false}", "hd=0");
	EXPECT("{\"hd\":true}", "hd=T");
	/* a string stays a string, digits or not; "=" inside the value is the value's */
	EXPECT("{\"code\":\"42=x\",\"prompt\":\"20\"}", "prompt=20", "code=42=x");
}

Test(inputs, choices_follow_their_ref)
{
	EXPECT("{\"num_outputs\":4,\"scheduler\":\"DDIM\"}", "num_outputs=4", "scheduler=DDIM");
}

Test(inputs, repeated_names_make_a_list_and_one_value_a_list_of_one)
{
	EXPECT("{\"tags\":[\"a\",\"b\"],\"weights\":[0.5,1.0]}", "tags=a", "weights=0.5", "tags=b",
	       "weights=1");
	EXPECT("{\"tags\":[\"only\"]}", "tags=only");
}

Test(inputs, a_value_without_a_name_is_the_first_input)
{
	EXPECT("{\"prompt\":\"hello\"}", "hello");
}

Test(inputs, at_file_becomes_a_data_uri)
{
	char path[] = "/tmp/kiln-inputs-XXXXXX.png";
	int fd = mkstemps(path, 4);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "hi", 2), 2);
	close(fd);
	char arg[4200], list[4200];
	snprintf(arg, sizeof(arg), "image=@%s", path);
	snprintf(list, sizeof(list), "images=@%s", path);
	EXPECT("{\"image\":\"data:image/png;base64,aGk=\",\"images\":[\"data:image/png;base64,aGk=\"]}", arg,
	       list);
	/* a string input takes "@..." as it is */
	EXPECT("{\"prompt\":\"@home\"}", "prompt=@home");
	unlink(path);
}

Test(inputs, base_members_stay_and_args_replace_theirs)
{
	json_t *base = json_pack("{s:s, s:i}", "prompt", "from json", "steps", 3);
	const char *args[] = {"steps=7", NULL};
	char *got = run(base, args);
	cr_assert_str_eq(got, "{\"prompt\":\"from json\",\"steps\":7}");
	free(got);
	json_decref(base);
}

#define EXPECT_ERROR(want, ...)                                                                              \
	do {                                                                                                 \
		char *got = run(NULL, (const char *[]){__VA_ARGS__, NULL});                                  \
		cr_assert(strstr(got, want), "'%s' does not say '%s'", got, want);                           \
		free(got);                                                                                   \
	} while (0)

Test(inputs, bad_values_are_named)
{
	EXPECT_ERROR("unknown input 'nope' (the model's inputs: prompt, image", "nope=1");
	EXPECT_ERROR("input 'steps': '2x' is not an integer", "steps=2x");
	EXPECT_ERROR("input 'steps': '' is not an integer", "steps=");
	EXPECT_ERROR("input 'guidance': 'fast' is not a number", "guidance=fast");
	EXPECT_ERROR("input 'hd': 'yes' is not a boolean", "hd=yes");
	EXPECT_ERROR("input 'prompt' is given twice", "prompt=a", "prompt=b");
	EXPECT_ERROR("input 'image': cannot open '/nonexistent/x.png'", "image=@/nonexistent/x.png");
}

/* The schema of tests/fixtures/schemas/union_inputs.json (kiln_schema.py's for `value: str | float`,
 * `count: Union[int, str]`, `nums: list[int] | list[float]`, `flag: bool | dict` and `options: dict`) in
 * place of every_type.json. */
static void load_unions(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/schemas/union_inputs.json", KILN_FIXTURES);
	json_decref(schema);
	schema = json_load_file(path, 0, NULL);
	cr_assert_not_null(schema, "cannot load '%s'", path);
}

Test(inputs, a_union_reads_a_number_where_it_takes_one_else_a_string)
{
	load_unions();
	EXPECT("{\"value\":2.5}", "value=2.5");
	EXPECT("{\"value\":3.0}", "value=3");
	EXPECT("{\"value\":\"abc\"}", "value=abc");
	EXPECT("{\"count\":7}", "count=7");
	EXPECT("{\"count\":\"7.5\"}", "count=7.5");
	EXPECT("{\"nums\":[1,2.5]}", "nums=1", "nums=2.5");
	EXPECT("{\"flag\":true}", "flag=true");
	EXPECT("{\"flag\":{\"a\":1}}", "flag={\"a\": 1}");
}

Test(inputs, a_dict_input_reads_json_and_refuses_what_is_no_object)
{
	load_unions();
	EXPECT("{\"options\":{\"size\":[1,2]}}", "options={\"size\": [1, 2]}");
	EXPECT("input 'options': '[1]' is not a JSON object", "options=[1]");
	EXPECT("input 'options': 'x' is not a JSON object", "options=x");
}
