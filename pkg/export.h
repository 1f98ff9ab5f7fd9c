/* SPDX-License-Identifier: Apache-2.0 */
/*
 * export.h: copy an image from the store to an OCI layout directory ("oci:DIR[:TAG]") or an OCI archive
 * ("oci-archive:FILE[:TAG]"), producing weight blobs from their source files as they are written.
 */
#ifndef KILN_EXPORT_H
#define KILN_EXPORT_H

#include <stdint.h>

#include "common/error.h"
#include "pkg/store.h"
#include "registry/client.h"

/* Check that DEST is "oci:DIR[:TAG]" or "oci-archive:FILE[:TAG]" (KILN_EINVAL otherwise). */
int kiln_export_check(const char *dest, struct kiln_error **err);

/*
 * Write the image whose manifest is DIGEST to DEST; TAG names it there when DEST carries none. Blobs are
 * written under temporary names and renamed once complete and verified; an existing layout keeps its
 * other images. Blobs the store only knows the location of (a registry base's layers) are fetched first,
 * with ROPT (NULL: defaults). *written gets the bytes written (may be NULL).
 */
int kiln_export(struct kiln_store *s, const char *digest, const char *dest, const char *tag,
                uint64_t *written, const struct kiln_registry_options *ropt, struct kiln_error **err);

#endif
