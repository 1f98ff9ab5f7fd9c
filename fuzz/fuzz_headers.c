/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_headers.c: libFuzzer target for the registry answers' headers other than WWW-Authenticate's
 * challenge (fuzz_challenge): header lines as libcurl hands them over (kiln_http_header_line), then what kiln
 * does with the values kept: Retry-After to seconds (kiln_http_retry_after_seconds), Location resolved
 * against the request's URL (kiln_http_resolve), Content-Range's first byte (kiln_http_content_range_first).
 * The input is header lines separated by '\n' (each handed over with its CRLF, as on the wire).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/http.h"

static const char *const bases[] = {"https://registry.example/v2/a/b/blobs/uploads/",
                                    "http://127.0.0.1:5000/v2/team/model/manifests/latest",
                                    "https://[::1]:443/v2/x/blobs/sha256:0"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kiln_http_response r = {0};
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = malloc(n + 2);
		if (!line)
			abort();
		memcpy(line, p, n);
		memcpy(line + n, "\r\n", 2); /* not NUL-terminated: libcurl's lines are not */
		kiln_http_header_line(&r, line, n + 2);
		free(line);
		p += n + 1;
	}

	double wait = kiln_http_retry_after_seconds(r.retry_after);
	if (!(wait == -1 || (isfinite(wait) && wait >= 0)))
		abort(); /* a wait kiln can sleep: none, or a finite number of seconds */
	if (r.retry_after && *r.retry_after == '\0' && wait != -1)
		abort();

	if (r.location) {
		for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
			char *abs = kiln_http_resolve(bases[i], r.location);
			if (abs) {
				/* an absolute URL resolves to itself, whatever the base */
				char *again = kiln_http_resolve(bases[(i + 1) % 3], abs);
				if (!again || strcmp(again, abs) != 0)
					abort();
				free(again);
			}
			free(abs);
		}
	}

	uint64_t first = 0;
	if (kiln_http_content_range_first(r.content_range, &first) == 0 && !r.content_range)
		abort();

	kiln_http_response_release(&r);
	return 0;
}
