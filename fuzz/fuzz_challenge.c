/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_challenge.c: libFuzzer target for WWW-Authenticate headers (kiln_challenge_parse). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "registry/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	struct kiln_challenge c;
	memset(&c, 0, sizeof(c));
	if (kiln_challenge_parse(&c, s) == 0) {
		/* A challenge has a lowercase scheme; the parameters are NUL-terminated strings. */
		if (c.scheme == NULL)
			abort();
		for (const char *p = c.scheme; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				abort();
		const char *params[] = {c.realm, c.service, c.scope, c.error};
		size_t total = 0;
		for (size_t i = 0; i < 4; i++)
			total += params[i] ? strlen(params[i]) : 0;
		if (total > size)
			abort();
	}
	kiln_challenge_release(&c);
	free(s);
	return 0;
}
