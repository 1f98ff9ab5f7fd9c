/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unpack.h: an image's layers unpacked from the store into a directory, for `kiln predict --runtime
 * native|bwrap`. Each blob is streamed from the store (stored whole, or produced from its recipe), its
 * digest checked as it is read, and extracted by the rules of layers/extract.h: OCI whiteouts applied,
 * nothing written outside the directory, device nodes skipped, ownership restored only as root.
 */
#ifndef KILN_UNPACK_H
#define KILN_UNPACK_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "layers/extract.h"
#include "pkg/store.h"

struct kiln_unpack_stats {
	size_t layers;                 /* layers unpacked */
	struct kiln_extract_stats sum; /* what they held, added up */
};

struct kiln_unpack_options {
	/* Called after each piece of a blob is read, with its size (may be NULL). */
	void (*progress)(void *ctx, uint64_t bytes);
	void *progress_ctx;
	volatile sig_atomic_t *cancel; /* when non-NULL and set, stop with KILN_EINTR */
	/* kiln_unpack_image: PLACE (may be NULL) is offered each layer in turn, in the image's order, with
	 * the temporary directory that becomes DIR. It returns 1 when it put the layer there itself (kiln
	 * predict links its cached weight layers in with kiln_layer_link), 0 to have it unpacked, or a
	 * negative code that ends the unpack. */
	int (*place)(void *ctx, size_t index, const json_t *layer, const char *tmpdir,
	             struct kiln_error **err);
	void *ctx;
};

/* true when MEDIA_TYPE is that of a tar layer (OCI, Docker, ModelPack; plain, gzip or zstd). */
bool kiln_unpack_media_type_ok(const char *media_type);

/*
 * Unpack the layer DIGEST of MEDIA_TYPE (NULL: plain tar or gzip, told apart by their first bytes) into
 * the existing directory DIR, on top of what it holds. OPT may be NULL; the counts are added to *st (may
 * be NULL). Every error names the layer: KILN_ENOTFOUND when the store has no such blob, KILN_EINVAL for
 * a media type that is not a tar layer's or an entry that is refused (naming it), KILN_EIO when the
 * content does not match the digest, KILN_ECHANGED when a recipe's source file changed.
 *
 * Nothing outside DIR is touched, but on failure DIR may hold part of the layer: unpack into a
 * directory that is discarded on failure, as kiln_unpack_image does.
 */
int kiln_unpack_layer(struct kiln_store *s, const char *digest, const char *media_type, const char *dir,
                      const struct kiln_unpack_options *opt, struct kiln_unpack_stats *st,
                      struct kiln_error **err);

/*
 * Unpack the layers FIRST_LAYER and above of the image whose manifest is MANIFEST_DIGEST, in order,
 * into DIR, which must not exist yet (KILN_EINVAL). Every layer is checked to be in the store first
 * (KILN_ENOTFOUND naming the first that is not). The layers go into a temporary directory beside DIR,
 * which is synced and renamed to DIR at the end: DIR is complete or absent, whatever happens. The
 * temporary directory is removed on failure, and one left by a process that died is removed by the
 * next unpack into DIR. FIRST_LAYER may equal the number of layers (an empty DIR).
 */
int kiln_unpack_image(struct kiln_store *s, const char *manifest_digest, size_t first_layer, const char *dir,
                      const struct kiln_unpack_options *opt, struct kiln_unpack_stats *st,
                      struct kiln_error **err);

#endif
