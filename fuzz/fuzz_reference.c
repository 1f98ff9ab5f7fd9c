/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_reference.c: libFuzzer target for image references (kiln_reference_parse and its round trip). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "registry/reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	struct kiln_reference *r = NULL;
	struct kiln_error *err = NULL;
	if (kiln_reference_parse(&r, s, &err) < 0) {
		if (err == NULL || err->message == NULL || !*err->message)
			abort();
		kiln_error_free(err);
		free(s);
		return 0;
	}
	/* What kiln prints of a reference must parse again to the same reference. */
	char *full = kiln_reference_string(r);
	char *familiar = kiln_reference_familiar(r);
	if (full == NULL || familiar == NULL)
		abort();
	const char *forms[] = {full, familiar};
	for (size_t i = 0; i < 2; i++) {
		struct kiln_reference *again = NULL;
		if (kiln_reference_parse(&again, forms[i], &err) < 0) {
			fprintf(stderr, "'%s' parsed, but its form '%s' did not: %s\n", s, forms[i],
			        err->message);
			abort();
		}
		char *full2 = kiln_reference_string(again);
		if (full2 == NULL || strcmp(full, full2) != 0) {
			fprintf(stderr, "'%s': '%s' parses to '%s'\n", s, forms[i], full2 ? full2 : "(null)");
			abort();
		}
		free(full2);
		kiln_reference_free(again);
	}
	free(full);
	free(familiar);
	kiln_reference_free(r);
	free(s);
	return 0;
}
