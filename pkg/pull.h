/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pull.h: images from registries into the store: `kiln pull`, and the registry bases of builds, whose
 * manifest and config are fetched while their layers stay where they are until something needs them.
 */
#ifndef KILN_PULL_H
#define KILN_PULL_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/store.h"
#include "registry/client.h"

struct kiln_remote_image {
	char *reference;                       /* full form */
	char manifest_digest[KILN_DIGEST_LEN]; /* of the platform's manifest */
	char *media_type;                      /* of that manifest */
	uint64_t manifest_size;
	json_t *manifest;
	json_t *config;
};

/*
 * Fetch REFERENCE's manifest (an index resolved to PLATFORM, "os/arch[/variant]", default linux/amd64)
 * and config into the store, verifying their digests, and record where each layer can be had. Layers are
 * not downloaded.
 */
int kiln_remote_resolve(struct kiln_remote_image *out, struct kiln_store *s, const char *reference,
                        const char *platform, const struct kiln_registry_options *ropt,
                        struct kiln_error **err);
void kiln_remote_image_release(struct kiln_remote_image *img);

/*
 * Read DATA (LEN bytes, media type MT, as a registry sent it for REFERENCE): an OCI index or a Docker
 * manifest list gives the digest of PLATFORM's manifest (as above) in *NEXT (caller frees; *OUT stays
 * NULL); an image manifest whose config and every layer have a valid digest gives its document in *OUT
 * (caller frees). Anything else fails with KILN_EINVAL or KILN_ENOTFOUND naming REFERENCE.
 */
int kiln_remote_manifest_read(json_t **out, char **next, const char *data, size_t len, const char *mt,
                              const char *platform, const char *reference, struct kiln_error **err);

/* Download the blob DIGEST of SIZE bytes (0: not known) into the store from a registry known to hold it
 * (kiln_store_locations); a large one in parts, several at once (kiln_registry_blob_fetch). */
int kiln_fetch_blob(struct kiln_store *s, const char *digest, uint64_t size,
                    const struct kiln_registry_options *ropt, uint64_t *received, struct kiln_error **err);

struct kiln_pull_result {
	char *reference; /* full form */
	char *familiar;
	char manifest_digest[KILN_DIGEST_LEN];
	size_t layers;
	size_t weights; /* weight blobs outside the layers (serve.weights: registry), pulled too */
	size_t fetched; /* layers and weight blobs downloaded (the others were in the store already) */
	uint64_t bytes_received;
	double seconds;
};

/* `kiln pull`: resolve REFERENCE, download its layers (verified), tag it in the store. */
int kiln_pull(struct kiln_pull_result **out, struct kiln_store *s, const char *reference,
              const char *platform, const struct kiln_registry_options *ropt, struct kiln_error **err);
void kiln_pull_result_free(struct kiln_pull_result *r);

#endif
