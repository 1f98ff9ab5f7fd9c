/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weights.h: the weights of an image built with serve.weights: registry, fetched at start. The image lists
 * them in /.kiln/weights.json (KILN_WEIGHTS_LIST overrides the path) and has, at each file's path, a
 * symlink into /var/lib/kiln/weights (KILN_WEIGHTS_DIR overrides where the shim fills the cache: a node's
 * volume mounted there). Blobs missing from the cache are fetched from the repository KILN_WEIGHTS_SOURCE
 * names ("host/repository", set by kiln build to the image's own), KILN_WEIGHTS_PARALLEL at once (3), each
 * in ranged parts (KILN_FETCH_PART_SIZE, KILN_FETCH_PARALLEL), with the registry client's credentials
 * (KILN_REGISTRY_USERNAME/PASSWORD, Docker's config.json) and retries. setup() waits for them.
 */
#ifndef KILN_SHIM_WEIGHTS_H
#define KILN_SHIM_WEIGHTS_H

#include <jansson.h>

#include "common/error.h"

struct shim_weights;

enum shim_weights_state { SHIM_WEIGHTS_FETCHING, SHIM_WEIGHTS_DONE, SHIM_WEIGHTS_FAILED };

/*
 * Read the image's weights list; NULL in *OUT when there is none (weights are in the image). When every
 * blob is in the cache already the state is DONE at once; else a thread fetches them (state FETCHING
 * until it ends). An error only for a list that cannot be read; a missing source is a FAILED state.
 */
int shim_weights_start(struct shim_weights **out, struct kiln_error **err);

/* The state; when FAILED, *MESSAGE (valid until shim_weights_free) says why, naming the blob. */
enum shim_weights_state shim_weights_state(struct shim_weights *w, const char **message);

/* For /health-check: {"state", "files", "bytes", "bytes_done", "bytes_fetched", "seconds", "rate",
 * "cached", "source", "dir", "error"?, "per_file": [{"path", "size", "done", "state"}]}. */
json_t *shim_weights_json(struct shim_weights *w);

/* Stop (a fetch in progress is cancelled) and free. */
void shim_weights_free(struct shim_weights *w);

#endif
