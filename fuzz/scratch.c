/* SPDX-License-Identifier: Apache-2.0 */
/* scratch.c: the fuzz targets' scratch directory and file helpers (scratch.h). */
#include "fuzz/scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"

static char dir[4096];
static char joined[8192];

static void remove_scratch(void)
{
	struct kiln_error *err = NULL;
	if (kiln_remove_tree(dir, &err) < 0)
		kiln_error_free(err);
}

const char *fuzz_scratch(void)
{
	if (*dir)
		return dir;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/kiln-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz: cannot make a scratch directory");
		abort();
	}
	atexit(remove_scratch);
	return dir;
}

const char *fuzz_scratch_path(const char *sub)
{
	snprintf(joined, sizeof(joined), "%s/%s", fuzz_scratch(), sub);
	return joined;
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

char *fuzz_strndup(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

static const char *const schema_names[FUZZ_SCHEMAS] = {"every_type.json", "union_inputs.json", "union.json",
                                                       "no_input.json"};
static json_t *schemas[FUZZ_SCHEMAS];

static void free_schemas(void)
{
	for (size_t i = 0; i < FUZZ_SCHEMAS; i++)
		json_decref(schemas[i]);
}

json_t *const *fuzz_schemas(void)
{
	if (schemas[0])
		return schemas;
	for (size_t i = 0; i < FUZZ_SCHEMAS; i++) {
		char path[4096];
		json_error_t je;
		snprintf(path, sizeof(path), "%s/schemas/%s", KILN_FIXTURES, schema_names[i]);
		schemas[i] = json_load_file(path, 0, &je);
		if (schemas[i] == NULL) {
			fprintf(stderr, "fuzz: cannot load '%s': %s\n", path, je.text);
			abort();
		}
	}
	atexit(free_schemas);
	return schemas;
}
