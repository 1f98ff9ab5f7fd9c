/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store.h: the local store under $KILN_HOME: an OCI image layout (oci-layout, index.json, blobs/) plus
 * kiln's caches. Weight blobs are not copied in: recipes/ records how to produce each one from its source
 * files. Every write is atomic (temporary name, fsync, rename), so an interrupted build never leaves a
 * blob whose name is not its digest.
 *
 *   $KILN_HOME/oci-layout, index.json          the layout; images tagged by full reference
 *   $KILN_HOME/blobs/sha256/<hex>               blobs stored whole (config, manifest, code layers)
 *   $KILN_HOME/recipes/sha256/<hex>.json        blobs produced from source files (weight layers)
 *   $KILN_HOME/cache/layers/<hex>.json          layer cache: what a layer's inputs gave last time
 *   $KILN_HOME/tmp/                             temporary files, "<pid>-..." (stale ones are removed)
 *   $KILN_HOME/run/                             roots kiln predict unpacked (see kiln_store_private_dir)
 *
 * Every directory the store makes, $KILN_HOME included, is its owner's alone (0700): the unpacked roots
 * hold whatever images hold, for this user only.
 */
#ifndef KILN_STORE_H
#define KILN_STORE_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "layers/digest.h"
#include "layers/recipe.h"

struct kiln_store;

/* The store's directory: $KILN_HOME, else $XDG_CACHE_HOME/kiln, else $HOME/.cache/kiln. Caller frees. */
char *kiln_store_default_home(void);

/* Open (creating it when needed) the store at HOME (NULL: the default), and remove temporary files
 * left by processes that no longer run. */
int kiln_store_open(struct kiln_store **out, const char *home, struct kiln_error **err);
void kiln_store_free(struct kiln_store *s);
const char *kiln_store_home(const struct kiln_store *s);

/*
 * The directory HOME/REL (into *out, the caller's to free), for this user alone: made (0700, with the
 * directories above it up to HOME) when it is missing, and tightened to 0700 when its group or others may
 * enter it (a store made by an older kiln left run/ 0755).
 */
int kiln_store_private_dir(char **out, struct kiln_store *s, const char *rel, struct kiln_error **err);

/* A new temporary file in the store (same filesystem as blobs/, so it can be renamed in). */
int kiln_store_tmpfile(struct kiln_store *s, int *fd_out, char **path_out, struct kiln_error **err);

/* fsync FD, close it, and rename TMP_PATH to the blob DIGEST (TMP_PATH is removed on failure). */
int kiln_store_blob_commit(struct kiln_store *s, int fd, const char *tmp_path, const char *digest,
                           struct kiln_error **err);

/* Store DATA as a blob; its digest goes to out. */
int kiln_store_blob_put(struct kiln_store *s, const void *data, size_t len, char out[KILN_DIGEST_LEN],
                        struct kiln_error **err);

/* Store a recipe for the blob r->digest. */
int kiln_store_recipe_put(struct kiln_store *s, const struct kiln_recipe *r, struct kiln_error **err);

/* true when the blob is stored whole or as a recipe. */
bool kiln_store_blob_exists(struct kiln_store *s, const char *digest);

/* Path of a blob stored whole (caller frees), or NULL when it is not. */
char *kiln_store_blob_path(struct kiln_store *s, const char *digest);

/* Read a blob stored whole, at most MAX bytes, checking its digest. */
int kiln_store_blob_read(struct kiln_store *s, const char *digest, char **out, size_t *len, size_t max,
                         struct kiln_error **err);
/* Read the blob DIGEST (at most MAX bytes, its digest checked) as a JSON object into *out: a manifest, an
 * index, a config. KILN_EINVAL when it is not one. */
int kiln_store_json_read(struct kiln_store *s, const char *digest, size_t max, json_t **out,
                         struct kiln_error **err);

/* Stream a blob (stored whole, or produced from its recipe) to WRITE. */
int kiln_store_blob_stream(struct kiln_store *s, const char *digest, kiln_write_fn write, void *ctx,
                           struct kiln_error **err);

/* A seekable reader for a blob of the store, stored whole or produced from its recipe. */
struct kiln_blob_reader;
struct kiln_store_reader {
	struct kiln_blob_reader *rd;
	struct kiln_recipe *recipe;
	char *path;
};
int kiln_store_reader_open(struct kiln_store_reader *out, struct kiln_store *s, const char *digest,
                           struct kiln_error **err);
void kiln_store_reader_release(struct kiln_store_reader *r);

/* Load the recipe of DIGEST (KILN_ENOTFOUND when there is none). */
int kiln_store_recipe_get(struct kiln_store *s, const char *digest, struct kiln_recipe **out,
                          struct kiln_error **err);

/* Hold the store for kiln prune alone: the lock every open store holds shared, taken exclusively. When
 * other kiln processes have the store open: KILN_EFAIL at once, or with WAIT, once they have closed it
 * (KILN_EINTR when *CANCEL is set meanwhile). Released by kiln_store_free. */
int kiln_store_lock_exclusive(struct kiln_store *s, bool wait, volatile sig_atomic_t *cancel,
                              struct kiln_error **err);
/* Lock index.json against other kiln processes (flock, exclusive; waits): the descriptor to close to
 * unlock, or -1. kiln_store_tag takes it for its read-modify-write; kiln prune holds it throughout. */
int kiln_store_lock_index(struct kiln_store *s, struct kiln_error **err);

/* Point the tag REF (a full reference) at a manifest. Replaces an earlier image of that tag. */
int kiln_store_tag(struct kiln_store *s, const char *ref, const char *digest, uint64_t size,
                   const char *media_type, struct kiln_error **err);

/* The manifest digest REF points at (KILN_ENOTFOUND: "no image 'REF' in the store"). */
int kiln_store_resolve(struct kiln_store *s, const char *ref, char out[KILN_DIGEST_LEN],
                       struct kiln_error **err);

/*
 * Where a blob can be had without holding it: REGISTRY/REPOSITORY (a registry base's layer, or a blob
 * this store pushed there). Each blob keeps a few such locations, newest first.
 */
int kiln_store_location_add(struct kiln_store *s, const char *digest, const char *registry,
                            const char *repository, struct kiln_error **err);
/* The locations of DIGEST as a JSON array of {"registry","repository"} (new reference; empty when none). */
json_t *kiln_store_locations(struct kiln_store *s, const char *digest);

/* Layer cache: KEY (64 hex digits) → a JSON object. get returns NULL when absent or unreadable. */
json_t *kiln_store_cache_get(struct kiln_store *s, const char *key);
int kiln_store_cache_put(struct kiln_store *s, const char *key, json_t *value, struct kiln_error **err);

#endif
