/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recipe.h: how to produce an uncompressed tar blob from source files without storing its bytes.
 * A recipe is a list of segments: literal bytes (tar headers, padding, the end-of-archive blocks) and
 * ranges of source files (the weight bytes). Streaming a recipe checks each source file's stat
 * fingerprint before reading it and the blob's digest at the end.
 */
#ifndef KILN_RECIPE_H
#define KILN_RECIPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/fs.h"
#include "layers/digest.h"

struct kiln_segment {
	/* literal bytes, when source is NULL */
	unsigned char *data;
	size_t len;
	/* else the whole content of a source file (size bytes), as it was when hashed */
	char *source;
	uint64_t size;
	struct kiln_stat_fp fp;
};

struct kiln_recipe {
	char digest[KILN_DIGEST_LEN]; /* digest of the produced blob */
	uint64_t size;                /* size of the produced blob */
	struct kiln_segment *segs;
	size_t nsegs;
};

/* Called with consecutive pieces of a blob; return 0 to go on, or a negative KILN_E* code to stop
 * (set *err then). */
typedef int (*kiln_write_fn)(void *ctx, const void *data, size_t len, struct kiln_error **err);

/* A kiln_write_fn writing to the file descriptor *(int *)CTX (errno's words on failure). */
int kiln_write_to_fd(void *ctx, const void *data, size_t len, struct kiln_error **err);

/*
 * Stream the blob described by R to WRITE. Each source file is opened and its fingerprint compared with
 * the recorded one before reading (KILN_ECHANGED naming the file when it differs, or when it changes
 * while read); the digest of all streamed bytes is compared with r->digest at the end (KILN_ECHANGED).
 * Memory use is a fixed buffer whatever the size.
 */
int kiln_recipe_stream(const struct kiln_recipe *r, kiln_write_fn write, void *ctx, struct kiln_error **err);

/* Check every source file's fingerprint without reading it (0, or KILN_ECHANGED naming the file). */
int kiln_recipe_check(const struct kiln_recipe *r, struct kiln_error **err);

/* JSON form (stored in the store): {"digest","size","segments":[{"data":base64}|{"file","size","dev",
 * "ino","mtime_ns","ctime_ns"}]}. */
int kiln_recipe_to_json(json_t **out, const struct kiln_recipe *r, struct kiln_error **err);
int kiln_recipe_from_json(struct kiln_recipe **out, const json_t *j, struct kiln_error **err);

void kiln_recipe_free(struct kiln_recipe *r);

#endif
