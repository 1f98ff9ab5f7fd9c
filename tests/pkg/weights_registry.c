/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for an image's registry weights read from its labels and from its weights list. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/image.h"
#include "pkg/weights_cache.h"
#include "pkg/weights_registry.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

/* An image config whose labels say MODE and hold the weights label TEXT (NULL: none). */
static json_t *config_with(const char *mode, const char *text)
{
	json_t *labels = json_object();
	if (mode)
		json_object_set_new(labels, KILN_LABEL_WEIGHTS_MODE, json_string(mode));
	if (text)
		json_object_set_new(labels, KILN_LABEL_WEIGHTS, json_string(text));
	return json_pack("{s:{s:o}}", "config", "Labels", labels);
}

/* kiln_weights_registry_of's error for the weights label TEXT (mode registry); the caller frees it. */
static char *label_error(const char *text)
{
	json_t *config = config_with("registry", text);
	json_t *list = NULL;
	struct kiln_error *err = NULL;
	int rc = kiln_weights_registry_of(&list, config, &err);
	json_decref(config);
	cr_assert_lt(rc, 0, "label %s was taken", text);
	cr_assert_null(list);
	cr_assert_not_null(err);
	char *msg = strdup(err->message);
	kiln_error_free(err);
	return msg;
}

Test(weights_registry, a_registry_label_reads_as_paths_under_src)
{
	json_t *config =
	    config_with("registry", "[{\"path\":\"w/a.bin\",\"layer\":\"" D1 "\",\"size\":5},"
	                            "{\"path\":\"b.bin\",\"layer\":\"" D2 "\",\"size\":0,\"files\":1}]");
	json_t *list = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_weights_registry_of(&list, config, &err), 0, "%s", err ? err->message : "");
	cr_assert_eq(json_array_size(list), 2);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "path")), "/src/w/a.bin");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "digest")), D1);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(list, 0), "size")), 5);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "path")), "/src/b.bin");
	json_decref(list);
	json_decref(config);
}

Test(weights_registry, an_image_whose_weights_are_layers_has_no_list)
{
	const char *modes[] = {NULL, "image"};
	for (size_t i = 0; i < 2; i++) {
		json_t *config = config_with(modes[i], "[{\"path\":\"a\",\"layer\":\"" D1 "\",\"size\":1}]");
		json_t *list = json_object(); /* overwritten */
		json_t *was = list;
		cr_assert_eq(kiln_weights_registry_of(&list, config, NULL), 0);
		cr_assert_null(list);
		json_decref(was);
		json_decref(config);
	}
}

Test(weights_registry, a_bad_label_is_refused_naming_the_entry)
{
	struct {
		const char *text, *want;
	} cases[] = {
	    {NULL, "label dev.kiln.weights is not a list of weights"},
	    {"{\"path\":\"a\"}", "label dev.kiln.weights is not a list of weights"},
	    {"not json", "label dev.kiln.weights is not a list of weights"},
	    {"[{\"path\":\"../etc/passwd\",\"layer\":\"" D1 "\",\"size\":1}]",
	     "dev.kiln.weights: entry 0 has no absolute 'path' without '..'"},
	    {"[{\"path\":\"a/../../x\",\"layer\":\"" D1 "\",\"size\":1}]", "entry 0 has no absolute 'path'"},
	    {"[{\"path\":\"\",\"layer\":\"" D1 "\",\"size\":1}]", "entry 0 has no absolute 'path'"},
	    {"[{\"path\":\"/abs\",\"layer\":\"" D1 "\",\"size\":1}]", "entry 0 has no absolute 'path'"},
	    {"[{\"layer\":\"" D1 "\",\"size\":1}]", "entry 0 has no absolute 'path'"},
	    {"[{\"path\":\"a\",\"layer\":\"" D1
	     "\",\"size\":1},{\"path\":\"b\",\"layer\":\"md5:x\",\"size\":1}]",
	     "entry 1 has no valid sha256 'digest'"},
	    {"[{\"path\":\"a\",\"layer\":\"" D1 "\",\"size\":-1}]",
	     "entry 0 has no 'size' of 0 or more bytes"},
	    {"[{\"path\":\"a\",\"layer\":\"" D1 "\",\"size\":\"1\"}]", "entry 0 has no 'size'"},
	    {"[7]", "entry 0 has no absolute 'path'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *msg = label_error(cases[i].text);
		cr_expect(strstr(msg, cases[i].want) != NULL, "label %s: '%s' lacks '%s'", cases[i].text, msg,
		          cases[i].want);
		free(msg);
	}
}

Test(weights_registry, names_with_two_dots_that_are_no_parent_are_taken)
{
	json_t *config =
	    config_with("registry", "[{\"path\":\"w/a..b/..c\",\"layer\":\"" D1 "\",\"size\":1}]");
	json_t *list = NULL;
	cr_assert_eq(kiln_weights_registry_of(&list, config, NULL), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "path")),
	                 "/src/w/a..b/..c");
	json_decref(list);
	json_decref(config);
}

Test(weights_registry, the_shims_list_gives_blobs_and_their_total)
{
	json_t *list = json_pack("[{s:s,s:s,s:i},{s:s,s:s,s:i}]", "path", "/src/a", "digest", D1, "size", 3,
	                         "path", "/src/b", "digest", D2, "size", 4);
	struct kiln_weight_blob *b = NULL;
	size_t n = 0;
	uint64_t bytes = 0;
	cr_assert_eq(kiln_weights_list_blobs(list, "weights.json", &b, &n, &bytes, NULL), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(bytes, 7);
	cr_assert_str_eq(b[1].name, "/src/b");
	cr_assert_str_eq(b[1].digest, D2);
	cr_assert_eq(b[1].size, 4);
	free(b);
	json_decref(list);
}

Test(weights_registry, a_bad_shim_list_names_the_file_and_entry)
{
	json_t *list = json_pack("[{s:s,s:s,s:i},{s:s,s:s,s:I}]", "path", "/src/a", "digest", D1, "size", 3,
	                         "path", "/src/b", "digest", D2, "size", (json_int_t)INT64_MAX);
	struct kiln_weight_blob *b = NULL;
	size_t n = 9;
	uint64_t bytes = 9;
	struct kiln_error *err = NULL;
	json_array_append_new(
	    list, json_pack("{s:s,s:s,s:I}", "path", "/src/c", "digest", D1, "size", (json_int_t)INT64_MAX));
	cr_assert_lt(kiln_weights_list_blobs(list, "/.kiln/weights.json", &b, &n, &bytes, &err), 0);
	cr_assert_str_eq(err->message, "/.kiln/weights.json: entry 2 makes the weights' size overflow");
	cr_assert_null(b);
	cr_assert_eq(n, 0);
	kiln_error_free(err);
	err = NULL;
	json_t *notlist = json_object();
	cr_assert_lt(kiln_weights_list_blobs(notlist, "w.json", &b, &n, &bytes, &err), 0);
	cr_assert_str_eq(err->message, "w.json: not a list of weights");
	kiln_error_free(err);
	json_decref(notlist);
	json_decref(list);
}
