/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_manifest.c: libFuzzer target for kiln.yaml / cog.yaml (kiln_manifest_parse, YAML to struct). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "pkg/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[8192];
	snprintf(path, sizeof(path), "%s", fuzz_scratch_path("kiln.yaml"));
	fuzz_write_file(path, data, size);
	struct kiln_manifest *m = NULL;
	struct kiln_error *err = NULL;
	if (kiln_manifest_parse(&m, path, fuzz_scratch(), &err) < 0) {
		/* A refusal must say why. */
		if (err == NULL || err->message == NULL || !*err->message || m != NULL)
			abort();
		kiln_error_free(err);
		return 0;
	}
	if (m == NULL)
		abort();
	kiln_manifest_free(m);
	return 0;
}
