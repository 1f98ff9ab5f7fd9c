/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prune.h: the store's garbage collection. What no tag of index.json reaches (manifests, image indexes,
 * configs, layers) is removed from blobs/ and recipes/, with the layer-cache entries that named it; so
 * are run/ directories of images no tag reaches (every one with --all), their logs, and temporary files
 * left behind.
 */
#ifndef KILN_PRUNE_H
#define KILN_PRUNE_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/store.h"

/* Unreachable blobs and recipes younger than this are kept (but with --all): one may belong to a kiln too
 * old to hold gc.lock, or to another tool writing the store. */
#define KILN_PRUNE_GRACE_SECONDS (10 * 60)
/* Files in tmp/ untouched for this long are stale. */
#define KILN_PRUNE_TMP_AGE_SECONDS (60 * 60)

struct kiln_prune_options {
	bool all;     /* remove every run/ directory, not only those of images no tag reaches, the build's
	               * roots/ and pip-cache/, and unreachable blobs however recent */
	bool dry_run; /* count what would go, change nothing */
	volatile sig_atomic_t
	    *cancel; /* when set, the prune stops between removals (KILN_EINTR); may be NULL */
};

/* What went (or would go, with dry_run). Bytes are the files' sizes on disk, as removed. */
struct kiln_prune_result {
	size_t blobs, recipes, run, logs, tmp, cache;
	size_t roots; /* --all: entries of roots/ (the build steps' roots and views), and pip-cache/ as one */
	uint64_t blob_bytes, recipe_bytes, run_bytes, other_bytes, roots_bytes;
	size_t kept_recent; /* unreachable blobs and recipes kept for being younger than the grace period */
	size_t kept_busy;   /* run/ directories kept because a live `kiln predict` uses them */
};

/*
 * The digests every tag of the store reaches, as a JSON object whose keys are the digests: each tagged
 * manifest, the manifests of a tagged image index, and their configs and layers. A tagged manifest or
 * index that the store does not hold, or that is not valid JSON, is an error: what it reaches is unknown.
 */
int kiln_prune_reachable(json_t **out, struct kiln_store *s, struct kiln_error **err);

/* Remove (or count, with dry_run) what no tag reaches; see above. Holds the store's index lock, so no
 * image is tagged meanwhile. */
int kiln_prune(struct kiln_prune_result *out, struct kiln_store *s, const struct kiln_prune_options *opt,
               struct kiln_error **err);

#endif
