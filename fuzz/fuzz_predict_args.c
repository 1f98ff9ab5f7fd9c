/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_predict_args.c: libFuzzer target for the typing of `kiln predict -i NAME=VALUE`
 * (shim_inputs_from_args, as `cog predict` types them) against the unit tests' schemas. The first byte picks
 * the schema; the rest is the arguments, NUL-separated. A value "@F" names a scratch file of a few bytes
 * (read into a data: URI); any other '@' becomes '%', so that no other file of the machine is read.
 * Afterwards: an input made is an object that holds every NAME given; a refusal has a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "shim/shim.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const json_t *schema = fuzz_schemas()[data[0] % FUZZ_SCHEMAS];
	static char file_arg[8192];
	if (!*file_arg) {
		const char *f = fuzz_scratch_path("input.bin");
		fuzz_write_file(f, (const uint8_t *)"\x89PNG\0bytes", 10);
		snprintf(file_arg, sizeof(file_arg), "@%s", f);
	}

	char *text = fuzz_strndup(data + 1, size - 1);
	char *args[MAX_ARGS];
	size_t n = 0;
	for (size_t at = 0; at < size - 1 && n < MAX_ARGS;) {
		char *a = text + at;
		size_t len = strlen(a);
		at += len + 1;
		char *eq = strchr(a, '=');
		char *value = eq ? eq + 1 : a;
		char *arg;
		if (strcmp(value, "@F") == 0) {
			size_t name_len = (size_t)(value - a);
			arg = malloc(name_len + strlen(file_arg) + 1);
			if (!arg)
				abort();
			memcpy(arg, a, name_len);
			strcpy(arg + name_len, file_arg);
		} else {
			for (char *c = a; *c; c++)
				if (*c == '@')
					*c = '%';
			arg = strdup(a);
			if (!arg)
				abort();
		}
		args[n++] = arg;
	}

	json_t *out = NULL;
	struct kiln_error *err = NULL;
	int rc = shim_inputs_from_args(&out, schema, NULL, args, n, &err);
	if (rc == 0) {
		if (!json_is_object(out) || err)
			abort();
		for (size_t i = 0; i < n; i++) {
			char *eq = strchr(args[i], '=');
			if (!eq || eq == args[i] || strcspn(args[i], "@") < (size_t)(eq - args[i]))
				continue; /* a bare VALUE (no NAME before '=') goes to the first input by
				             x-order */
			*eq = '\0';
			if (!json_object_get(out, args[i]))
				abort(); /* every NAME given is in the input made */
		}
	} else if (!err || !err->message || !*err->message || out) {
		abort(); /* a refusal says why, and makes nothing */
	}
	json_decref(out);
	kiln_error_free(err);
	for (size_t i = 0; i < n; i++)
		free(args[i]);
	free(text);
	return 0;
}
