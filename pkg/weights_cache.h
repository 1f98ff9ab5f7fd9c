/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weights_cache.h: a node's cache of weight blobs (KILN_WEIGHTS_DIR), filled from a registry: each blob
 * fetched once per node, written once, checked against its digest before it takes its name, and only ever
 * used whole. Several processes may share the directory: a blob being fetched is locked, so a second
 * process waits for it instead of fetching it again.
 *
 *   DIR/sha256/<hex>               a blob, complete and checked
 *   DIR/tmp/<pid>-<hex>-XXXXXX     a blob being fetched (removed when its process is gone)
 *   DIR/locks/<hex>                held (flock) while the blob is fetched
 */
#ifndef KILN_WEIGHTS_CACHE_H
#define KILN_WEIGHTS_CACHE_H

#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/store.h"
#include "registry/client.h"

/* One weight blob: its digest, its size, and its file's path in the image (for messages). */
struct kiln_weight_blob {
	const char *digest;
	uint64_t size;
	const char *name;
};

/*
 * The weights list LIST (an image's KILN_WEIGHTS_LIST: [{"path", "digest", "size"}], as
 * kiln_weights_registry_list writes it) as *N blobs in *OUT (the caller frees the array; its names and
 * digests point into LIST) of *BYTES in all. Each path is absolute without a '..' part and each digest a
 * valid sha256 digest; else an error naming WHERE and the entry.
 */
int kiln_weights_list_blobs(const json_t *list, const char *where, struct kiln_weight_blob **out, size_t *n,
                            uint64_t *bytes, struct kiln_error **err);

enum kiln_weight_state {
	KILN_WEIGHT_PENDING,
	KILN_WEIGHT_FETCHING,
	KILN_WEIGHT_CACHED,  /* the cache held it already */
	KILN_WEIGHT_FETCHED, /* fetched now */
	KILN_WEIGHT_FAILED,
};

/* What kiln_weights_fill has done so far, readable from other threads while it runs (/health-check). */
struct kiln_weights_progress {
	size_t n;
	_Atomic int *state;       /* of each blob, an enum kiln_weight_state */
	_Atomic uint64_t *done;   /* bytes of each blob in the cache or written so far */
	_Atomic uint64_t fetched; /* bytes received from the registry, all blobs */
};

/* Allocate P for N blobs (all pending). */
int kiln_weights_progress_init(struct kiln_weights_progress *p, size_t n, struct kiln_error **err);
void kiln_weights_progress_release(struct kiln_weights_progress *p);

/* The path of DIGEST's file in the cache DIR (caller frees; NULL when out of memory or not a sha256). */
char *kiln_weights_cache_path(const char *dir, const char *digest);

/*
 * Make the cache DIR hold each of the N blobs B: a blob whose file is there with its size is used as it is
 * (its digest was checked when it was written); the others are fetched from R/REPO
 * (kiln_registry_blob_fetch: ranged parts, resumed and retried), AT_ONCE blobs at once, each into a
 * temporary file preallocated to its size (a full disk fails before any byte is fetched), checked, synced
 * and renamed into place. A blob whose bytes do not match its digest is thrown away and fetched once
 * more. A file of the wrong size in the cache is replaced. P (may be NULL) follows the work. The first
 * failure stops the rest; it names the blob, its file and the registry's answer, and nothing
 * half-written keeps a blob's name.
 */
int kiln_weights_fill(const char *dir, struct kiln_registry *r, const char *repo,
                      const struct kiln_weight_blob *b, size_t n, size_t at_once,
                      struct kiln_weights_progress *p, struct kiln_error **err);

/*
 * Put in the cache DIR each of the N blobs B that it lacks and the store S holds (whole: a hard link when
 * both are on one filesystem, else a copy; as a recipe: streamed from the source files, checked): what
 * kiln predict and kiln serve do before starting an image, so that its shim finds them. Blobs the store
 * lacks are left for the shim to fetch. *PLACED (may be NULL): how many were put there.
 */
int kiln_weights_from_store(const char *dir, struct kiln_store *s, const struct kiln_weight_blob *b, size_t n,
                            size_t *placed, struct kiln_error **err);

#endif
