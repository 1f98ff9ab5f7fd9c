/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_validate.c: libFuzzer target for the shim's request validation: a body's input against a fixed
 * schema (shim_validate_input: strict types, enums, bounds, files) and its data: URIs decoded as the
 * shim saves them (shim_files_save_data_uri).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/scratch.h"
#include "shim/shim.h"

/* Decode every data: URI in V (strings, arrays, objects) into a scratch file, as a file input is. */
static void save_data_uris(const json_t *v)
{
	size_t i;
	const char *key;
	json_t *x;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (strncmp(s, "data:", 5) != 0)
			return;
		(void)shim_files_data_uri_extension(s);
		char path[8192];
		snprintf(path, sizeof(path), "%s", fuzz_scratch_path("input.bin"));
		struct kiln_error *err = NULL;
		if (shim_files_save_data_uri(s, path, &err) < 0) {
			if (err == NULL || err->message == NULL || !*err->message)
				abort();
			kiln_error_free(err);
		}
		unlink(path);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x) save_data_uris(x);
	} else if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, x) save_data_uris(x);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool training = data[0] & 0x80;
	/* the first byte: a schema of the unit tests, as a training's input sees it when its top bit is set
	 */
	json_t *doc = json_incref(fuzz_schemas()[(data[0] & 0x7f) % FUZZ_SCHEMAS]);
	if (training) {
		json_t *t = shim_schema_for_training(doc);
		json_decref(doc);
		if (t == NULL)
			return 0;
		doc = t;
	}
	json_t *input = json_loadb((const char *)data + 1, size - 1, JSON_ALLOW_NUL, NULL);
	if (input == NULL) {
		json_decref(doc);
		return 0;
	}
	json_t *norm = NULL, *detail = NULL;
	int rc = shim_validate_input(doc, input, &norm, &detail);
	if (rc == 0) {
		/* A valid input is an object; validating what came out accepts it as it is. */
		json_t *norm2 = NULL, *detail2 = NULL;
		if (!json_is_object(norm) || detail != NULL ||
		    shim_validate_input(doc, norm, &norm2, &detail2) != 0) {
			char *d = detail2 ? json_dumps(detail2, JSON_COMPACT) : NULL;
			fprintf(stderr, "a normalized input is refused: %s\n", d ? d : "(no detail)");
			abort();
		}
		json_decref(norm2);
		save_data_uris(norm);
	} else if (!json_is_array(detail) || json_array_size(detail) == 0 || norm != NULL) {
		abort(); /* a refusal has Cog's 422 detail, one entry per problem at least */
	}
	json_decref(norm);
	json_decref(detail);
	json_decref(input);
	json_decref(doc);
	return 0;
}
