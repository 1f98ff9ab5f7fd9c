/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_ignore.c: libFuzzer target for .kilnignore (kiln_ignore_load, kiln_ignore_match, kiln_glob_match). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "pkg/plan.h"

/* Paths to match when the input names none. */
static const char *const default_paths[] = {
    "kiln.yaml",     "predict.py", "weights/model.bin", "a/b/c/d.txt", ".git/HEAD",
    "samples/x.png", "dir",        "a b/[x].py",        "..",          ".",
};

/* Input: the ignore file, then after a NUL byte the project-relative paths to match, NUL-separated (a
 * trailing '/' makes one a directory). Each line of the file is also matched as a glob. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t text_len = nul ? (size_t)(nul - data) : size;
	char path[8192];
	snprintf(path, sizeof(path), "%s", fuzz_scratch_path(".kilnignore"));
	fuzz_write_file(path, data, text_len);
	struct kiln_ignore *ig = NULL;
	struct kiln_error *err = NULL;
	if (kiln_ignore_load(&ig, fuzz_scratch(), &err) < 0) {
		if (err == NULL || err->message == NULL || !*err->message)
			abort();
		kiln_error_free(err);
		ig = NULL;
	}
	char *text = fuzz_strndup(data, text_len);
	char *paths = nul ? fuzz_strndup(nul + 1, size - text_len - 1) : NULL;
	size_t paths_len = nul ? size - text_len - 1 : 0;
	const char *list[64];
	size_t n = 0;
	for (size_t off = 0; paths && off < paths_len && n < 64; off += strlen(paths + off) + 1)
		list[n++] = paths + off;
	if (n == 0)
		for (; n < sizeof(default_paths) / sizeof(default_paths[0]); n++)
			list[n] = default_paths[n];
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(list[i]);
		bool is_dir = len > 0 && list[i][len - 1] == '/';
		if (ig)
			(void)kiln_ignore_match(ig, list[i], is_dir);
		char *clean = kiln_path_clean(list[i]);
		char *twice = clean ? kiln_path_clean(clean) : NULL;
		if (clean == NULL || twice == NULL || strcmp(clean, twice) != 0) {
			fprintf(stderr, "cleaning '%s' gives '%s', then '%s'\n", list[i], clean, twice);
			abort();
		}
		free(clean);
		free(twice);
	}
	size_t lines = 0;
	for (char *line = text, *next; line && lines < 16; line = next, lines++) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		for (size_t i = 0; i < n; i++)
			(void)kiln_glob_match(line, list[i]);
	}
	free(text);
	free(paths);
	kiln_ignore_free(ig);
	return 0;
}
