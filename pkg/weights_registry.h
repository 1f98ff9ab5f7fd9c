/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weights_registry.h: images whose weights stay in the registry (serve.weights: registry). Each weight
 * file is a blob of its own, its bytes alone (KILN_MEDIA_WEIGHT_RAW in image.h, digest = the file's), left
 * out of the image's layers. In their place one small layer holds, at each weight file's path, a symlink to
 * KILN_WEIGHTS_IMAGE_DIR/sha256/<hex> (where a node's cache is mounted and the shim fetches into), and
 * KILN_WEIGHTS_LIST, the list of {path, digest, size} the shim reads at start. In the registry the blobs
 * are the layers of an artifact manifest (artifactType KILN_MEDIA_WEIGHTS_ARTIFACT) whose subject is the
 * image, made again from the image's label whenever it is pushed, and found through the referrers API or
 * its fallback tag sha256-<hex of the image manifest>.
 */
#ifndef KILN_WEIGHTS_REGISTRY_H
#define KILN_WEIGHTS_REGISTRY_H

#include <jansson.h>
#include <stdint.h>

#include "common/error.h"
#include "pkg/image.h"
#include "pkg/plan.h"
#include "pkg/store.h"

#define KILN_MEDIA_WEIGHTS_ARTIFACT "application/vnd.kiln.weights.v1"
#define KILN_MEDIA_WEIGHTS_CONFIG   "application/vnd.kiln.weights.config.v1+json"
#define KILN_WEIGHTS_IMAGE_DIR      "/var/lib/kiln/weights"
#define KILN_WEIGHTS_LIST           "/.kiln/weights.json"

/*
 * The weight files of PLAN whose layers (MINE, in plan order) are raw blobs, as a JSON array of
 * {"path" (in the image, "/src/..."), "digest", "size"}, sorted by path.
 */
json_t *kiln_weights_registry_list(const struct kiln_plan *plan, const struct kiln_built_layer *mine);

/*
 * Build the layer that stands for the raw weight blobs LIST (kiln_weights_registry_list) into OUT
 * (media type and title set, caller frees them): the symlinks and KILN_WEIGHTS_LIST, gzip, in the store.
 */
int kiln_weights_links_layer(struct kiln_built_layer *out, struct kiln_store *s, const json_t *list,
                             int64_t mtime, struct kiln_error **err);

/*
 * The weights of an image CONFIG (from its labels) into *OUT: the list (a new reference, each entry checked
 * as kiln_weights_list_blobs checks it) when its mode is "registry", else NULL. A label that is no such
 * list is an error naming the label and the entry: the image would not find its weights.
 */
int kiln_weights_registry_of(json_t **out, const json_t *config, struct kiln_error **err);

/*
 * The artifact manifest that carries the weights LIST of the image manifest SUBJECT (its digest and size)
 * and its config, both compact JSON; the caller frees them.
 */
int kiln_weights_artifact(char **manifest_out, char **config_out, const json_t *list, const char *subject,
                          uint64_t subject_size, struct kiln_error **err);

#endif
