/* SPDX-License-Identifier: Apache-2.0 */
/* base.h: the base image a build starts from: scratch, or an image in an OCI layout on disk. */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include "common/error.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/store.h"
#include "registry/client.h"

/*
 * Resolve M's base into OUT (released with kiln_base_release). For "oci:DIR[:TAG]" the image is read from
 * the layout (an index is resolved to linux/amd64), and its config and layer blobs are checked against
 * their digests and put in the store (hard-linked when possible). Any other base is a registry reference
 * ("python:3.11-slim" is docker.io/library/python:3.11-slim): its manifest and config are fetched, its
 * layers are not (the store records where they are). Docker media types become their OCI equivalents.
 * Errors carry the manifest position.
 */
int kiln_base_load(struct kiln_base *out, const struct kiln_manifest *m, struct kiln_store *s,
                   const char *platform, const struct kiln_registry_options *ropt, struct kiln_error **err);
void kiln_base_release(struct kiln_base *b);

#endif
