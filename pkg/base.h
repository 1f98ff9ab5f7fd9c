/* SPDX-License-Identifier: Apache-2.0 */
/* base.h: the base image a build starts from: scratch, or an image in an OCI layout on disk. */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include <stdbool.h>

#include "common/error.h"
#include "pkg/image.h"
#include "pkg/manifest.h"
#include "pkg/store.h"
#include "registry/client.h"

/* Cog's python_version when a manifest has none, and the versions Cog accepts (older ones deprecated). */
#define KILN_PYTHON_DEFAULT      "3.12"
#define KILN_PYTHON_MIN_MINOR    10 /* 3.10 */
#define KILN_PYTHON_MAX_MINOR    13 /* 3.13 */
#define KILN_PYTHON_OLDEST_MINOR 8  /* 3.8 and 3.9: deprecated, still built */

/*
 * Check a python_version as Cog reads it ("3.11", "3.11.4"): *minor is its minor version. Below 3.8, above
 * 3.13, not 3.x, or not a version: an error. 3.8 and 3.9: *deprecated is set (Cog's deprecation warning).
 */
int kiln_python_version_check(int *minor, bool *deprecated, const char *version, struct kiln_error **err);

/*
 * The base M builds on, and why. base: when given; else, for a Python predictor, ENV_DEFAULT
 * ($KILN_PYTHON_BASE; NULL or empty: python:<python_version>-slim, Cog's), "{python_version}" in it
 * replaced by the manifest's python_version (Cog's default when absent); else (a native predictor)
 * scratch. *name and *reason are the caller's to free.
 */
int kiln_base_choose(char **name, char **reason, const struct kiln_manifest *m, const char *env_default,
                     struct kiln_error **err);

/* Whether M's predictor is Python code (not "native:"). */
bool kiln_manifest_is_python(const struct kiln_manifest *m);

/*
 * Resolve M's base into OUT (released with kiln_base_release). For "oci:DIR[:TAG]" the image is read from
 * the layout (an index is resolved to linux/amd64), and its config and layer blobs are checked against
 * their digests and put in the store (hard-linked when possible). Any other base is a registry reference
 * ("python:3.11-slim" is docker.io/library/python:3.11-slim): its manifest and config are fetched, its
 * layers are not (the store records where they are). Docker media types become their OCI equivalents.
 * The base is chosen by kiln_base_choose ($KILN_PYTHON_BASE read here). For a Python predictor the
 * python_version is checked (kiln_python_version_check) and so is the base's own Python: its config's
 * PYTHON_VERSION, else usr/local/bin/python3.X or usr/bin/python3.X in its layers (fetched for a registry
 * base only then; the answer cached in the store per base). No Python, or another version than
 * python_version: an error (a warning with KILN_ALLOW_NO_PYTHON=1 for the first, and for scratch).
 * Errors carry the manifest position; one that cannot be fetched names the way out.
 */
int kiln_base_load(struct kiln_base *out, const struct kiln_manifest *m, struct kiln_store *s,
                   const char *platform, const struct kiln_registry_options *ropt, struct kiln_error **err);

/* When BASE has no Python but the build steps may install one (python_from_steps): look for it in the
 * N environment LAYERS (in the store), set base->python, and check python_version against it; an error
 * naming base: when there is none. Else nothing. */
int kiln_base_python_after_steps(struct kiln_base *b, const struct kiln_manifest *m, struct kiln_store *s,
                                 const struct kiln_built_layer *layers, size_t n, struct kiln_error **err);
void kiln_base_release(struct kiln_base *b);

#endif
