/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_image_json.c: libFuzzer target for what a registry sends as JSON for an image: a manifest's check
 * and media type (kiln_registry_manifest_check), an index or manifest list resolved to a platform and an
 * image manifest's config and layer digests (kiln_remote_manifest_read), a config blob (a JSON object).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/scratch.h"
#include "pkg/pull.h"
#include "registry/client.h"

/* Content-Type headers a registry may send; the input's first byte picks one. */
static const char *const content_types[] = {
    NULL,
    "",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8",
    "application/json",
    "text/plain; charset=utf-8",
};

/* Platforms asked for; the input's second byte picks one. */
static const char *const platforms[] = {NULL, "linux/amd64", "linux/arm64/v8", "windows/amd64"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const char *ct = content_types[data[0] % (sizeof(content_types) / sizeof(content_types[0]))];
	const char *platform = platforms[data[1] % (sizeof(platforms) / sizeof(platforms[0]))];
	const char *body = (const char *)data + 2;
	size_t len = size - 2;
	struct kiln_error *err = NULL;
	char *mt = NULL;
	if (kiln_registry_manifest_check(&mt, "registry.example", ct, body, len, &err) < 0) {
		if (err == NULL || mt != NULL)
			abort();
		kiln_error_free(err);
		return 0;
	}
	json_t *doc = NULL;
	char *next = NULL;
	if (kiln_remote_manifest_read(&doc, &next, body, len, mt, platform, "registry.example/m:v1", &err) <
	    0) {
		if (err == NULL || doc != NULL)
			abort();
		kiln_error_free(err);
		err = NULL;
	} else if ((doc == NULL) == (next == NULL)) {
		abort(); /* exactly one of a manifest and the next digest */
	}
	/* As kiln_remote_resolve reads a config blob. */
	json_t *config = json_loadb(body, len, 0, NULL);
	(void)json_is_object(config);
	json_decref(config);
	json_decref(doc);
	free(next);
	free(mt);
	return 0;
}
